package e2e_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// checkPhone fails the test for what in the Files card (and the room's
// "Send file" buttons) does not fit a 375px screen or is too small to
// tap, and for what there is below WCAG AA contrast in either colour
// scheme.
func (p *page) checkPhone(what string) {
	p.t.Helper()
	p.do(evalVoid(wcagJS))
	for _, problem := range eval[[]string](p, `wcag.phone(`+js(fileScreens)+`, 375)`) {
		p.t.Errorf("%s, %s: %s", p.name, what, problem)
	}
	p.checkContrast(what, fileScreens)
}

// fileScreens selects what a file transfer shows.
const fileScreens = `.files, #rooms .send-file`

// snapshotWhileRunning makes the page check its Files card (fit, target
// size, contrast) the moment the transfer named name first reports
// progress, while its row shows the bar and "Sending" or "Receiving";
// with cancel, it then presses the row's Cancel button. The result is in
// window.running.
func (p *page) snapshotWhileRunning(name string, cancel bool) {
	p.do(evalVoid(wcagJS + fmt.Sprintf(`{
		window.running = null;
		const watch = (t) => {
			if (!t || t.name !== %[1]s) return t;
			t.addEventListener('progress', () => {
				if (window.running) return;
				const row = document.querySelector('#transfers li[data-transfer="' + t.id + '"]');
				window.running = { status: row.querySelector('.status').textContent,
					problems: [...wcag.phone(%[3]s, 375), ...wcag.contrast('#transfers')] };
				if (%[2]v) row.querySelector('button.cancel').click();
			});
			return t;
		};
		khadgaApp.client.on('file-offer', ({transfer}) => watch(transfer));
		const send = khadgaApp.client.sendFile.bind(khadgaApp.client);
		khadgaApp.client.sendFile = (...a) => watch(send(...a));
	}`, js(name), cancel, js(fileScreens))))
}

func (p *page) checkSnapshot(what string) {
	p.t.Helper()
	p.waitFor(what, `window.running`)
	s := eval[struct {
		Status   string
		Problems []string
	}](p, `window.running`)
	p.t.Logf("%s, %s: %q", p.name, what, s.Status)
	for _, problem := range s.Problems {
		p.t.Errorf("%s, %s: %s", p.name, what, problem)
	}
}

// TestFilesOnAPhone: on a 375x667 phone, every screen of a file transfer
// (the offer and its wait, the progress, the verified end, a decline, and
// a transfer cancelled halfway) fits the screen, with controls big enough
// to tap and text that meets WCAG AA contrast in both colour schemes,
// and its buttons and Save link show keyboard focus.
func TestFilesOnAPhone(t *testing.T) {
	_, alice, bob := twoInRoom(t, resumable, "files")
	for _, p := range []*page{alice, bob} {
		p.do(chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile))
	}
	// The name of a photo straight from a phone's camera: long, no spaces.
	const photo = "IMG_20261208_101010_HDR_PORTRAIT_0001.jpg"
	path, _ := randomFile(t, photo, 300<<10)
	alice.snapshotWhileRunning(photo, false)
	bob.snapshotWhileRunning(photo, false)
	alice.pickFiles("bob", path)
	bob.waitFor("the offer", fmt.Sprintf(`document.querySelector(%s + ' button.accept')`, js(transferRow("in", photo))))
	bob.checkPhone("the offer")
	bob.checkFocus("the offer")
	alice.checkPhone("waiting for bob")
	bob.pressIn(transferRow("in", photo), "accept")
	alice.checkSnapshot("sending")
	bob.checkSnapshot("receiving")
	bob.waitTransfer("in", photo, "done")
	alice.waitTransfer("out", photo, "done")
	bob.checkPhone("received")
	bob.checkFocus("received")
	alice.checkPhone("sent")

	declined, _ := randomFile(t, "declined.bin", 1000)
	alice.pickFiles("bob", declined)
	bob.pressIn(transferRow("in", "declined.bin"), "decline")
	alice.waitTransfer("out", "declined.bin", "rejected")
	bob.waitTransfer("in", "declined.bin", "rejected")
	alice.checkPhone("declined")

	halfway, _ := randomFile(t, "halfway.bin", 8<<20)
	bob.snapshotWhileRunning("halfway.bin", true)
	alice.pickFiles("bob", halfway)
	bob.pressIn(transferRow("in", "halfway.bin"), "accept")
	bob.waitTransfer("in", "halfway.bin", "cancelled")
	alice.waitTransfer("out", "halfway.bin", "failed")
	alice.checkPhone("failed")
	bob.checkPhone("cancelled")
}
