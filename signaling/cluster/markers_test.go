package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// directoryMsgs counts the messages of the directory's KV stream: an
// entry per live session (and node health key), and whatever removal
// markers it keeps.
func directoryMsgs(t *testing.T, js jetstream.JetStream, bucket string) uint64 {
	t.Helper()
	return directoryStream(t, js, bucket).State.Msgs
}

// directoryStream reads the directory's KV stream's configuration and
// state.
func directoryStream(t *testing.T, js jetstream.JetStream, bucket string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestEndedSessionsLeaveNoMarkers: 30 sessions open on a node and end
// (a clean close each). Once they have ended, the directory's KV stream
// holds no more messages than before they opened: each removal's marker
// goes after directoryMarkerTTL. Each stayed for good, one per session
// the cluster ever had (peer ids are never reused), so the stream, and
// NATS's memory and disk, grew for as long as the cluster ran; a soak
// run of khadga-bench (-soak 10m -cluster 3) showed NATS's RSS rising.
func TestEndedSessionsLeaveNoMarkers(t *testing.T) {
	ttl := directoryMarkerTTL
	t.Cleanup(func() { directoryMarkerTTL = ttl })
	directoryMarkerTTL = 2 * time.Second
	urls := natstest.Start(t).ClientURL()
	cfg := fastConfig()
	a := startNode(t, "a", urls, cfg, hub.Config{})
	js, err := jetstream.New(natstest.Connect(t, urls))
	if err != nil {
		t.Fatal(err)
	}
	bucket := a.node.cfg.Bucket
	before := directoryMsgs(t, js, bucket)
	const n = 30
	for i := range n {
		c := a.dial(fmt.Sprintf("user=u%d", i))
		eventually(t, "the session in the directory", func() bool { return a.dirNode(c.peer()) == "a" })
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		<-c.closed
	}
	eventually(t, "every session to end", func() bool { return a.hub.Stats().Sessions == 0 })
	eventually(t, fmt.Sprintf("the directory's stream back to its %d messages", before), func() bool {
		return directoryMsgs(t, js, bucket) <= before
	})
}

// TestDirectoryOfAnEarlierReleaseIsTaken: a node of this release starts
// on a directory bucket that an earlier one made, without expiring
// markers (a rolling update), turns them on, and from then on its
// sessions' removals leave nothing for good.
func TestDirectoryOfAnEarlierReleaseIsTaken(t *testing.T) {
	ttl := directoryMarkerTTL
	t.Cleanup(func() { directoryMarkerTTL = ttl })
	directoryMarkerTTL = 2 * time.Second
	urls := natstest.Start(t).ClientURL()
	js, err := jetstream.New(natstest.Connect(t, urls))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	const bucket = "khadga-sessions"
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{ // the earlier release's
		Bucket: bucket, Description: "khadga: the sessions of every node (peer id -> state)",
		History: 1, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, "a", urls, fastConfig(), hub.Config{})
	if info := directoryStream(t, js, bucket); !info.Config.AllowMsgTTL || info.Config.SubjectDeleteMarkerTTL != directoryMarkerTTL {
		t.Fatalf("the earlier release's bucket kept its configuration: message TTLs %v, marker TTL %v",
			info.Config.AllowMsgTTL, info.Config.SubjectDeleteMarkerTTL)
	}
	before := directoryMsgs(t, js, bucket)
	c := a.dial("user=ann")
	eventually(t, "the session in the directory", func() bool { return a.dirNode(c.peer()) == "a" })
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	<-c.closed
	eventually(t, fmt.Sprintf("the directory's stream back to its %d messages", before), func() bool {
		return directoryMsgs(t, js, bucket) <= before
	})
}
