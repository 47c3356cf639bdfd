package cluster

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/khadga/khadga/internal/natstest"
	"github.com/khadga/khadga/signaling/hub"
)

// TestSubjectsAreDocumented: every subject a node listens on is in
// docs/cluster.md, with its node id written <node>, so that the page's
// list of what crosses the nodes is the code's.
func TestSubjectsAreDocumented(t *testing.T) {
	srv := natstest.Start(t)
	startNode(t, "n1", srv.ClientURL(), fastConfig(), hub.Config{})
	doc, err := os.ReadFile("../../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	subs, err := srv.Subsz(&server.SubszOptions{Subscriptions: true, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, s := range subs.Subs {
		if strings.HasPrefix(s.Subject, "_INBOX.") || strings.HasPrefix(s.Subject, "_R_.") || strings.HasPrefix(s.Subject, "$") {
			continue // replies, and JetStream's own
		}
		subjects = append(subjects, s.Subject)
	}
	slices.Sort(subjects)
	subjects = slices.Compact(subjects)
	t.Logf("a node listens on %q", subjects)
	if len(subjects) < 4 {
		t.Fatalf("a node listens on %q only: the test would prove little", subjects)
	}
	for _, s := range subjects {
		written := strings.ReplaceAll(s, ".n1.", ".<node>.")
		if strings.HasSuffix(written, ".n1") {
			written = strings.TrimSuffix(written, ".n1") + ".<node>"
		}
		if !strings.Contains(string(doc), "`"+written+"`") {
			t.Errorf("subject %s (`%s`) is not in docs/cluster.md", s, written)
		}
	}
}
