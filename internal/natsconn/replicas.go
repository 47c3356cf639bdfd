package natsconn

import (
	"context"
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
