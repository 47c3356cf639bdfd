package e2e_test

import (
	"testing"

	"github.com/khadga/khadga/signaling"
	"github.com/khadga/khadga/signaling/signalingtest"
)

// TestPresenceCountsTheUnlisted: on a server that lists the first two
// online (--presence-list 2), the web app's presence column says how many
// more are online than it lists, and its count is everyone's.
func TestPresenceCountsTheUnlisted(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{Config: signaling.Config{MaxPresenceList: 2}})
	for _, u := range []string{"zed1", "zed2", "zed3"} {
		s.Register(t, u, password)
		c := s.Connect(t, s.Login(t, u, password).AccessToken, nil)
		t.Cleanup(c.Close)
	}
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.waitFor("four online, two listed", `document.getElementById('online-count').textContent === '4'
		&& document.querySelectorAll('#presence li[data-user]').length === 2
		&& document.querySelector('#presence li.more')?.textContent === 'and 2 more'`)
}
