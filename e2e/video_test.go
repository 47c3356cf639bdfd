package e2e_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// videoStats is what a page reports about the video it receives from one peer.
type videoStats struct {
	Width          int  `json:"width"`
	FramesDecoded  int  `json:"framesDecoded"`
	BytesReceived  int  `json:"bytesReceived"`
	HasVideoWindow bool `json:"window"`
}

// receivedVideo reads, on page p, the remote video window of user and the
// inbound video RTP stats of the peer connection to user.
func receivedVideo(p *page, user string) videoStats {
	return eval[videoStats](p, fmt.Sprintf(`(async () => {
		const peer = %s;
		if (!peer) return {width: 0, framesDecoded: 0, bytesReceived: 0, window: false};
		const v = document.querySelector('.vwin video[data-peer="' + peer.id + '"]');
		let frames = 0, bytes = 0;
		(await peer.pc.getStats()).forEach(r => {
			if (r.type === 'inbound-rtp' && r.kind === 'video') { frames += r.framesDecoded || 0; bytes += r.bytesReceived || 0; }
		});
		return {width: v ? v.videoWidth : 0, framesDecoded: frames, bytesReceived: bytes, window: !!v};
	})()`, peerExpr(user)))
}

// waitVideoPlaying waits until p plays user's video and its decoded frame
// count keeps growing.
func waitVideoPlaying(p *page, user string) videoStats {
	p.t.Helper()
	p.waitFor(user+"'s video window playing", fmt.Sprintf(`(() => {
		const peer = %s;
		const v = peer && document.querySelector('.vwin video[data-peer="' + peer.id + '"]');
		return v && v.videoWidth > 0 && !v.paused;
	})()`, peerExpr(user)))
	first := receivedVideo(p, user)
	p.waitFor(user+"'s framesDecoded growing", fmt.Sprintf(`(async () => {
		let frames = 0;
		(await %s.pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') frames += r.framesDecoded || 0; });
		return frames >= %d;
	})()`, peerExpr(user), first.FramesDecoded+10))
	return receivedVideo(p, user)
}

// TestVideoBetweenBrowsers: both people turn on the fake camera, and each
// page plays the other's video. Saves a screenshot of the call.
func TestVideoBetweenBrowsers(t *testing.T) {
	_, alice, bob := twoInRoom(t, signalingtest.Options{}, "call")
	alice.press("camera")
	bob.press("camera")

	a := waitVideoPlaying(alice, "bob")
	b := waitVideoPlaying(bob, "alice")
	t.Logf("alice receives %dpx wide, %d frames; bob receives %dpx wide, %d frames", a.Width, a.FramesDecoded, b.Width, b.FramesDecoded)
	if a.Width == 0 || b.Width == 0 || a.FramesDecoded == 0 || b.FramesDecoded == 0 {
		t.Fatalf("video not playing: alice %+v, bob %+v", a, b)
	}

	// The video window moves with the keyboard (focus its title bar, then arrows).
	before := eval[float64](alice, `document.querySelector('.vwin').getBoundingClientRect().left`)
	alice.do(chromedp.Focus(chromedp.CSS(".vwin-bar")), chromedp.KeyEvent(kb.ArrowRight))
	if after := eval[float64](alice, `document.querySelector('.vwin').getBoundingClientRect().left`); after <= before {
		t.Errorf("video window did not move right: %v -> %v", before, after)
	}

	bob.say("hi alice, I can see you")
	alice.waitMessage("bob", "hi alice, I can see you")
	alice.say("the screenshot shows a call")
	bob.waitMessage("alice", "the screenshot shows a call")
	alice.do(chromedp.Evaluate[chromedp.Void](`document.activeElement.blur(), window.scrollTo(0, 0)`))
	shot, err := runScreenshot(alice)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	saveArtifact(t, "two-person-call.png", shot)
	if path := os.Getenv("KHADGA_UPDATE_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runScreenshot(p *page) ([]byte, error) {
	ctx, cancel := contextWithTimeout(p)
	defer cancel()
	return chromedp.Run(ctx, chromedp.CaptureScreenshot())
}
