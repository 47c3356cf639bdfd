package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/khadga/khadga/signaling/store"
	"github.com/nats-io/nats.go/jetstream"
)

// auditBatch is how many events one fetch of the audit stream asks for.
const auditBatch = 500

// Audit appends ev to the audit stream; its stream sequence is its Seq.
// The stream drops the oldest events past AuditMax or AuditMaxAge.
func (s *Store) Audit(ev store.AuditEvent) error {
	data, err := json.Marshal(ev.Bounded(time.Now()))
	if err != nil {
		return err
	}
	err = s.do("audit", s.opts.OpTimeout, func(ctx context.Context) error {
		return again(ctx, func() error {
			_, err := s.conn.JetStream().Publish(ctx, s.subject, data)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditLog returns up to limit events, newest first (store.AuditPage).
func (s *Store) AuditLog(limit int) (evs []store.AuditEvent, err error) {
	limit = store.AuditPage(limit, s.opts.AuditMax)
	err = s.do("audit_log", listTimeout, func(ctx context.Context) error {
		var info *jetstream.StreamInfo
		err := again(ctx, func() (err error) { info, err = s.audit.Info(ctx); return err })
		if err != nil || info.State.Msgs == 0 {
			return err
		}
		st := info.State
		first := st.FirstSeq
		if st.LastSeq >= uint64(limit) {
			first = max(first, st.LastSeq-uint64(limit)+1)
		}
		evs, err = s.readAudit(ctx, first, st.LastSeq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	slices.Reverse(evs)
	return evs, nil
}

// readAudit reads the events from sequence first to last, oldest first,
// with an ordered consumer (which the server deletes soon after).
func (s *Store) readAudit(ctx context.Context, first, last uint64) ([]store.AuditEvent, error) {
	// The consumer is made by the stream's leader: a stream that has just
	// been made, or lost its leader, answers "no responders" until it
	// elects one (again).
	var cons jetstream.Consumer
	err := again(ctx, func() (err error) {
		cons, err = s.audit.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
			DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: first, InactiveThreshold: 10 * time.Second,
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []store.AuditEvent
	for {
		batch, err := cons.Fetch(auditBatch, jetstream.FetchMaxWait(s.opts.OpTimeout))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			var ev store.AuditEvent
			if err := json.Unmarshal(m.Data(), &ev); err != nil {
				return nil, fmt.Errorf("decode audit event %d: %w", md.Sequence.Stream, err)
			}
			ev.Seq = md.Sequence.Stream
			out = append(out, ev)
			if ev.Seq >= last {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
		if got == 0 { // the rest was dropped meanwhile (age or count)
			return out, nil
		}
	}
}
