package e2e_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// randomFile writes size random bytes to a file called name and returns
// its path and SHA-256.
func randomFile(t *testing.T, name string, size int) (path, sum string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	path = filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return path, hex.EncodeToString(s[:])
}

// pickFiles presses the page's "Send file" button for user, which opens
// the file picker, and chooses paths in it, as a person would in the
// dialog (the browser hands the dialog to the test instead of showing it).
func (p *page) pickFiles(user string, paths ...string) {
	p.t.Helper()
	ctx, cancel := contextWithTimeout(p)
	defer cancel()
	if _, err := chromedp.Call(ctx, cdppage.SetInterceptFileChooserDialog, cdppage.SetInterceptFileChooserDialogParams{Enabled: true}); err != nil {
		p.t.Fatalf("%s: intercept the file chooser: %v", p.name, err)
	}
	opened := make(chan cdp.BackendNodeID, 1)
	evCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for ev, err := range chromedp.Events(evCtx, cdppage.FileChooserOpened) {
			if err != nil {
				return
			}
			opened <- ev.BackendNodeID
			return
		}
	}()
	button := chromedp.CSS(fmt.Sprintf(`#rooms li[data-user=%s] button.send-file:not([disabled])`, js(user)))
	p.do(chromedp.WaitVisible(button), chromedp.Focus(button), chromedp.KeyEvent(" "))
	select {
	case id := <-opened:
		if _, err := chromedp.Call(ctx, dom.SetFileInputFiles, dom.SetFileInputFilesParams{Files: paths, BackendNodeID: id}); err != nil {
			p.t.Fatalf("%s: choose files: %v", p.name, err)
		}
	case <-ctx.Done():
		p.t.Fatalf("%s: the file picker did not open", p.name)
	}
	for _, path := range paths {
		p.waitFor("the transfer of "+filepath.Base(path), fmt.Sprintf(`document.querySelector(%s)`, js(transferRow("out", filepath.Base(path)))))
	}
}

// dropFiles drags files from the desktop onto user's row in the room list.
func (p *page) dropFiles(user string, paths ...string) {
	p.t.Helper()
	pos := eval[[]float64](p, fmt.Sprintf(`(() => {
		const r = document.querySelector('#rooms li[data-user=' + CSS.escape(%s) + ']').getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2];
	})()`, js(user)))
	ctx, cancel := contextWithTimeout(p)
	defer cancel()
	data := &input.DragData{Files: paths, DragOperationsMask: 1, Items: []*input.DragDataItem{}}
	for _, typ := range []input.DispatchDragEventType{input.DispatchDragEventTypeDragEnter, input.DispatchDragEventTypeDragOver, input.DispatchDragEventTypeDrop} {
		if _, err := chromedp.Call(ctx, input.DispatchDragEvent, input.DispatchDragEventParams{Type: typ, X: pos[0], Y: pos[1], Data: data}); err != nil {
			p.t.Fatalf("%s: drag %s: %v", p.name, typ, err)
		}
	}
}

// transferRow is a CSS selector for the page's newest transfer row named name.
func transferRow(direction, name string) string {
	return fmt.Sprintf(`#transfers li[data-direction=%s][data-name=%s]`, js(direction), js(name))
}

// transferJS is a JavaScript expression for the page's newest Transfer named name.
func transferJS(direction, name string) string {
	return fmt.Sprintf(`khadgaApp.transfers.filter(t => t.direction === %s && t.name === %s).pop()`, js(direction), js(name))
}

// pressIn presses the button of class cls in the transfer row.
func (p *page) pressIn(row, cls string) {
	p.t.Helper()
	sel := chromedp.CSS(row + " button." + cls)
	p.waitFor("the "+cls+" button of "+row, fmt.Sprintf(`document.querySelector(%s)`, js(row+" button."+cls)))
	p.do(chromedp.Focus(sel), chromedp.KeyEvent(" "))
}

// watchProgress records, in window.progress[name], every progress the
// SDK reports for transfers of that name, from the page's first sight of them.
func (p *page) watchProgress() {
	p.do(evalVoid(`
		window.progress = {};
		const track = (t) => { if (!t) return t; const seen = (progress[t.name] = progress[t.name] || []);
			t.addEventListener('progress', e => seen.push(e.detail.done)); return t; };
		khadgaApp.client.on('file-offer', ({transfer}) => track(transfer));
		const send = khadgaApp.client.sendFile.bind(khadgaApp.client);
		khadgaApp.client.sendFile = (...a) => track(send(...a));`))
}

// checkProgress wants progress between 0 and size, ending at size, and a
// full progress bar on the page.
func (p *page) checkProgress(direction, name string, size int) {
	p.t.Helper()
	mid := eval[bool](p, fmt.Sprintf(`(progress[%s] || []).some(d => d > 0 && d < %d)`, js(name), size))
	last := eval[int](p, fmt.Sprintf(`(progress[%s] || [0]).at(-1)`, js(name)))
	bar := eval[[]int](p, fmt.Sprintf(`(() => { const b = document.querySelector(%s); return [b.value, b.max]; })()`, js(transferRow(direction, name)+" progress")))
	if !mid || last != size || bar[0] != size || bar[1] != size {
		p.t.Errorf("%s: %s progress: partial values seen %v, last %d, bar %v; want the bar full at %d", p.name, name, mid, last, bar, size)
	}
}

// waitTransfer waits until the transfer named name ends, and wants state.
func (p *page) waitTransfer(direction, name, state string) {
	p.t.Helper()
	t := transferJS(direction, name)
	p.waitFor(name+" to end", fmt.Sprintf(`(t => t && t.ended)(%s)`, t))
	if got := eval[[]string](p, fmt.Sprintf(`(t => [t.state, t.error])(%s)`, t)); got[0] != state {
		p.t.Fatalf("%s: transfer %s ended %v, want %s", p.name, name, got, state)
	}
	if got := eval[string](p, fmt.Sprintf(`document.querySelector(%s).dataset.state`, js(transferRow(direction, name)))); got != state {
		p.t.Fatalf("%s: the page shows %s as %s, want %s", p.name, name, got, state)
	}
}

// receivedSum hashes the received file's bytes with WebCrypto, apart
// from the SDK's own SHA-256, and checks that the page offers to save it.
func (p *page) receivedSum(name string) string {
	p.t.Helper()
	row := transferRow("in", name)
	if !eval[bool](p, fmt.Sprintf(`(a => !!a && a.download === %s && a.href.startsWith('blob:'))(document.querySelector(%s))`, js(name), js(row+" a.save"))) {
		p.t.Errorf("%s: no Save link for %s", p.name, name)
	}
	return eval[string](p, fmt.Sprintf(`(async () => {
		const f = %s.file;
		const d = new Uint8Array(await crypto.subtle.digest('SHA-256', await f.arrayBuffer()));
		return [...d].map(b => b.toString(16).padStart(2, '0')).join('');
	})()`, transferJS("in", name)))
}

// TestFilesBetweenBrowsers: alice sends bob a 20 MiB file through the file
// picker and a small one by dragging it onto bob's row. Bob accepts each;
// both pages show the progress and the verified SHA-256, and the bytes
// bob can save hash to the sender's SHA-256. Bob declines a third file,
// alice cancels a fourth before bob answers, and bob cancels a fifth
// halfway: each side says so.
func TestFilesBetweenBrowsers(t *testing.T) {
	_, alice, bob := twoInRoom(t, resumable, "files")
	alice.watchProgress()
	bob.watchProgress()
	const size = 20 << 20
	big, bigSum := randomFile(t, "big.bin", size)
	alice.pickFiles("bob", big)
	bob.pressIn(transferRow("in", "big.bin"), "accept")
	bob.waitTransfer("in", "big.bin", "done")
	alice.waitTransfer("out", "big.bin", "done")
	for _, p := range []*page{alice, bob} {
		dir := map[*page]string{alice: "out", bob: "in"}[p]
		if got := eval[string](p, transferJS(dir, "big.bin")+".sha256"); got != bigSum {
			p.t.Errorf("%s: SHA-256 %s, want %s", p.name, got, bigSum)
		}
		p.checkProgress(dir, "big.bin", size)
	}
	if got := bob.receivedSum("big.bin"); got != bigSum {
		t.Fatalf("bob's file hashes to %s, want %s", got, bigSum)
	}

	small, smallSum := randomFile(t, "dropped.txt", 100<<10+3)
	alice.dropFiles("bob", small)
	bob.pressIn(transferRow("in", "dropped.txt"), "accept")
	bob.waitTransfer("in", "dropped.txt", "done")
	alice.waitTransfer("out", "dropped.txt", "done")
	if got := bob.receivedSum("dropped.txt"); got != smallSum {
		t.Fatalf("the dropped file hashes to %s, want %s", got, smallSum)
	}

	declined, _ := randomFile(t, "declined.bin", 1000)
	alice.pickFiles("bob", declined)
	bob.pressIn(transferRow("in", "declined.bin"), "decline")
	alice.waitTransfer("out", "declined.bin", "rejected")
	bob.waitTransfer("in", "declined.bin", "rejected")

	withdrawn, _ := randomFile(t, "withdrawn.bin", 1000)
	alice.pickFiles("bob", withdrawn)
	bob.waitFor("the offer of withdrawn.bin", fmt.Sprintf(`document.querySelector(%s)`, js(transferRow("in", "withdrawn.bin"))))
	alice.pressIn(transferRow("out", "withdrawn.bin"), "cancel")
	alice.waitTransfer("out", "withdrawn.bin", "cancelled")
	bob.waitTransfer("in", "withdrawn.bin", "cancelled")

	// Bob presses Cancel as soon as the first bytes arrive.
	bob.do(evalVoid(`khadgaApp.client.on('file-offer', ({transfer}) => {
		if (transfer.name !== 'halfway.bin') return;
		transfer.addEventListener('progress', () => {
			const b = document.querySelector('#transfers li[data-transfer="' + transfer.id + '"] button.cancel');
			if (b) b.click();
		});
	})`))
	halfway, _ := randomFile(t, "halfway.bin", 8<<20)
	alice.pickFiles("bob", halfway)
	bob.pressIn(transferRow("in", "halfway.bin"), "accept")
	bob.waitTransfer("in", "halfway.bin", "cancelled")
	alice.waitTransfer("out", "halfway.bin", "failed")
	if msg := eval[string](alice, transferJS("out", "halfway.bin")+".error"); msg != "receiver says cancelled by the receiver" {
		t.Errorf("alice's halfway.bin failed with %q", msg)
	}
	if eval[bool](bob, fmt.Sprintf(`!!document.querySelector(%s) || !!%s.file`, js(transferRow("in", "halfway.bin")+" a.save"), transferJS("in", "halfway.bin"))) {
		t.Error("bob is offered a partial file to save")
	}
}
