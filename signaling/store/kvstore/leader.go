package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bucket is a key-value bucket whose reads go to the leader of its
// stream. nats.go's Get uses direct gets, which every replica answers
// once it is 90% caught up: through a NATS server with a follower
// replica, a node could miss a write it had just made itself (a family
// created and at once "not found", a revocation not yet seen), and a
// store of accounts and refresh tokens must read its own writes. The
// leader has applied every write it acknowledged. Reads are a few per
// login or refresh, never per signal, so the leader can take them all.
// Writes and watches are nats.go's own; a listing reads from the
// leader what its watch did not deliver (list).
type bucket struct {
	jetstream.KeyValue
	nc *nats.Conn
}

// msgGetResponse is the JetStream API's answer to a message get.
type msgGetResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Seq     uint64 `json:"seq"`
		Headers []byte `json:"hdrs,omitempty"`
		Data    []byte `json:"data,omitempty"`
	} `json:"message,omitempty"`
}

// latest returns the value of key k and its revision, as the stream's
// leader has it, or jetstream.ErrKeyNotFound if k is absent or deleted.
func (b *bucket) latest(ctx context.Context, k string) ([]byte, uint64, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + b.Bucket() + "." + k})
	if err != nil {
		return nil, 0, err
	}
	msg, err := b.ask(ctx, "$JS.API.STREAM.MSG.GET.KV_"+b.Bucket(), req)
	if err != nil {
		return nil, 0, err
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("get %s/%s: %w", b.Bucket(), k, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, 0, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, 0, resp.Error
	case resp.Message == nil:
		return nil, 0, jetstream.ErrInvalidJetStreamResponse
	}
	if len(resp.Message.Headers) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Headers)
		if err != nil {
			return nil, 0, fmt.Errorf("get %s/%s: %w", b.Bucket(), k, err)
		}
		// A delete or purge leaves a marker with this header.
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil, 0, jetstream.ErrKeyNotFound
		}
	}
	return resp.Message.Data, resp.Message.Seq, nil
}

// streamInfo is the part of the JetStream API's answer to a stream info
// request that keys reads.
type streamInfo struct {
	Error *jetstream.APIError `json:"error,omitempty"`
	Total int                 `json:"total"`
	State struct {
		Subjects map[string]uint64 `json:"subjects"`
	} `json:"state"`
}

// keys returns the key of every record the stream's leader has, deleted
// ones included (a delete leaves a marker), in no particular order. The
// leader answers in pages of up to 100,000 keys.
func (b *bucket) keys(ctx context.Context) ([]string, error) {
	prefix := "$KV." + b.Bucket() + "."
	var keys []string
	for {
		req, err := json.Marshal(map[string]any{"subjects_filter": prefix + ">", "offset": len(keys)})
		if err != nil {
			return nil, err
		}
		msg, err := b.ask(ctx, "$JS.API.STREAM.INFO.KV_"+b.Bucket(), req)
		if err != nil {
			return nil, err
		}
		var resp streamInfo
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return nil, fmt.Errorf("keys of %s: %w", b.Bucket(), err)
		}
		if resp.Error != nil {
			return nil, resp.Error
		}
		for subj := range resp.State.Subjects {
			keys = append(keys, strings.TrimPrefix(subj, prefix))
		}
		if len(resp.State.Subjects) == 0 || len(keys) >= resp.Total {
			return keys, nil
		}
	}
}

// readTry bounds one try of a read. Only a stream's leader answers it:
// while the stream elects a new leader (a second or a few after its
// server stopped) nobody does, and a read is safe to send again.
const readTry = time.Second

// ask sends a read request to subject and waits for the answer, sending
// it again while it goes unanswered, until ctx ends.
func (b *bucket) ask(ctx context.Context, subject string, req []byte) (*nats.Msg, error) {
	for {
		try, cancel := context.WithTimeout(ctx, readTry)
		msg, err := b.nc.RequestWithContext(try, subject, req)
		cancel()
		switch {
		case err == nil || ctx.Err() != nil:
			return msg, err
		case errors.Is(err, nats.ErrNoResponders):
			if err := pause(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
		case !errors.Is(err, context.DeadlineExceeded):
			return nil, err
		}
	}
}
