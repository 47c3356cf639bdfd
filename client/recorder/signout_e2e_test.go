//go:build cgo

package recorder

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/admin"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestE2ERecorderSignedOut: when the recorder's bot token is revoked
// (`khadga token revoke`), Run returns an error wrapping
// client.ErrSignedOut, so that the process fails, instead of reconnecting
// for ever with a token that no longer works.
func TestE2ERecorderSignedOut(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	a, err := admin.Dial(filepath.Join(s.DataDir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, err := a.MintToken(ctx, admin.TokenRequest{User: "rec", Role: proto.RoleRecorder, Rooms: []string{"studio"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	rec := startRecorder(t, s, "studio", t.TempDir(), func(c *Config) {
		c.Token = tok.Token
		c.ClientOptions = append(c.ClientOptions, client.WithReconnectBackoff(50*time.Millisecond, 200*time.Millisecond))
	})
	if err := a.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rec.done:
		if !errors.Is(rec.err, client.ErrSignedOut) {
			t.Fatalf("Run returned %v, want client.ErrSignedOut", rec.err)
		}
	case <-time.After(e2eTimeout):
		t.Fatal("the recorder went on after its token was revoked")
	}
}
