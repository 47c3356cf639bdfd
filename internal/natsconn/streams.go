package natsconn

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// KeepReplicas is the number of replicas a node should give stream
// when it makes or updates it with want (its --nats-replicas): want, or
// what the stream has if that is more. A node brings the cluster's
// streams to its own settings as it starts, and --nats-replicas defaults
// to 1: one node started without it on a cluster that keeps three
// copies took every bucket down to one, without a word, and losing one
// NATS server then lost data. Raising stays a node's to do; lowering is
// the operator's, with the nats CLI (docs/cluster.md). A stream that
// cannot be read is given want: making or updating it reports the
// trouble.
func KeepReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int, log *slog.Logger) int {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return want
	}
	has := s.CachedInfo().Config.Replicas
	if has <= want {
		return want
	}
	if log != nil {
		log.Warn("--nats-replicas is lower than the copies the cluster keeps: keeping them; give every node the same --nats-replicas",
			slog.String("stream", stream), slog.Int("nats_replicas", want), slog.Int("kept", has))
	}
	return has
}

// MakeKeyValue makes the bucket with cfg, or brings an existing one to
// cfg. It asks to create it first, which JetStream answers at once for a
// bucket that has cfg already, and updates only one whose configuration
// differs. Nodes that start together on a new NATS cluster all make the
// same replicated buckets, and an update (what nats.go's CreateOrUpdate
// asks first) that met a bucket another node was creating went
// unanswered: three nodes waited out their timeouts for 45 s before any
// of them could start.
func MakeKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.UpdateKeyValue(ctx, cfg)
	}
	return kv, err
}

// MakeStream is MakeKeyValue for a stream.
func MakeStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.UpdateStream(ctx, cfg)
	}
	return s, err
}
