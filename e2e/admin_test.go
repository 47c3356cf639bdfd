package e2e_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/proto"
	"github.com/khadga/khadga/signaling/signalingtest"
	"github.com/khadga/khadga/signaling/store"
)

// TestAdminStatusPage: an admin signs in on /admin.html and sees the live
// figures, a room with its member among them; a user without the admin
// role is refused.
func TestAdminStatusPage(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	s.Register(t, "root", password)
	if err := s.Store().UpdateUser("root", func(u *store.User) error { u.Role = proto.RoleAdmin; return nil }); err != nil {
		t.Fatal(err)
	}
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("standup")

	signIn := func(p *page, user string) {
		p.do(
			chromedp.WaitVisible(chromedp.ID("admin-user")),
			chromedp.SendKeys(chromedp.ID("admin-user"), user),
			chromedp.SendKeys(chromedp.ID("admin-password"), password+kb.Enter),
		)
	}
	denied := openPage(t, s.URL+"/admin.html", "alice-admin")
	signIn(denied, "alice")
	denied.waitFor("the refusal", `document.getElementById('admin-error').textContent.includes('admins')`)

	admin := openPage(t, s.URL+"/admin.html", "root")
	signIn(admin, "root")
	admin.waitFor("the live figures", `!document.getElementById('status').hidden &&
		[...document.querySelectorAll('#status-figures dt')].some(dt => dt.textContent === 'Rooms' && dt.nextElementSibling.textContent === '1')`)
}

// TestEmailVerifiedNotice: the page the verification link lands on says
// the address is confirmed, and drops the query from the address bar.
func TestEmailVerifiedNotice(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	p := openPage(t, s.URL+"/?email-verified=1", "erin")
	p.waitFor("the notice", `!document.getElementById('signin-notice').hidden &&
		document.getElementById('signin-notice').textContent.includes('confirmed') && location.search === ''`)
}
