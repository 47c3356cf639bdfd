package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/input"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/khadga/khadga/signaling/signalingtest"
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
	for _, p := range []*page{alice, bob} { // not "Declined: declined"
		dir := map[*page]string{alice: "out", bob: "in"}[p]
		p.waitFor("the decline said once", fmt.Sprintf(`document.querySelector(%s + ' .status')?.textContent === 'Declined.'`, js(transferRow(dir, "declined.bin"))))
	}

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

	// The SDK refuses the names the Go client refuses: C1 and bidi
	// controls as well as C0 ("invoice\u202efdp.exe" shows as
	// "invoiceexe.pdf"), and text that is not well-formed.
	names := `["ok.txt", "a\x1bb", "a\u0085b", "invoice\u202efdp.exe", "a\u2066b", "a\u200fb", "\ufffd.txt", "a\ud800b"]`
	why := eval[[]string](alice, `import('/sdk/khadga.js').then(m => `+names+`.map(m.validFileName))`)
	if len(why) != 8 || why[0] != "" {
		t.Fatalf("validFileName: %q", why)
	}
	for i, w := range why[1:] {
		if w == "" {
			t.Errorf("validFileName accepts name %d of %s", i+1, names)
		}
	}
}

var peerBin struct {
	once sync.Once
	dir  string
	err  error
}

// khadgaPeer builds the khadga-peer binary once per test binary (with cgo
// where there is a C compiler, as go build does by default).
func khadgaPeer(t *testing.T) string {
	t.Helper()
	peerBin.once.Do(func() {
		if peerBin.dir, peerBin.err = os.MkdirTemp("", "khadga-e2e-bin"); peerBin.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(peerBin.dir, "khadga-peer"), "github.com/khadga/khadga/cmd/khadga-peer").CombinedOutput()
		if err != nil {
			peerBin.err = fmt.Errorf("building khadga-peer: %v\n%s", err, out)
		}
	})
	if peerBin.err != nil {
		t.Fatal(peerBin.err)
	}
	return filepath.Join(peerBin.dir, "khadga-peer")
}

// peerProcess runs khadga-peer as the user whose tokens are in configDir.
func peerProcess(ctx context.Context, t *testing.T, configDir string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, khadgaPeer(t), args...)
	cmd.Env = append(os.Environ(), "KHADGA_PEER_CONFIG="+configDir, "KHADGA_USER=", "KHADGA_PASSWORD=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// TestFilesBrowserAndKhadgaPeer: the web app and khadga-peer speak the same
// file protocol both ways. A 20 MiB file from the page arrives in
// khadga-peer recv's directory byte for byte; a 20 MiB file from
// khadga-peer send arrives in the page with the same SHA-256; both show
// their progress to the end. When the page cancels halfway, khadga-peer
// send fails with the page's reason and its transfer exit code.
func TestFilesBrowserAndKhadgaPeer(t *testing.T) {
	s := signalingtest.Start(t, resumable)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("drop")
	alice.watchProgress()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.Register(t, "gopher", password)
	cfg := t.TempDir()
	login, out, _ := peerProcess(ctx, t, cfg, "login", "--server", s.URL, "--user", "gopher")
	login.Stdin, login.Stderr = strings.NewReader(password+"\n"), out
	if err := login.Run(); err != nil {
		t.Fatalf("khadga-peer login: %v\n%s", err, out)
	}

	const size = 20 << 20
	big, bigSum := randomFile(t, "big.bin", size)
	inbox := t.TempDir()
	recv, recvOut, recvErr := peerProcess(ctx, t, cfg, "recv", "--room", "drop", "--dir", inbox, "--count", "1", "--from", "alice", "--loopback", "--timeout", "2m")
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	alice.waitConnected("gopher")
	alice.pickFiles("gopher", big)
	alice.waitTransfer("out", "big.bin", "done")
	if err := recv.Wait(); err != nil {
		t.Fatalf("khadga-peer recv: %v\n%s\n%s", err, recvOut, recvErr)
	}
	got, err := os.ReadFile(filepath.Join(inbox, "big.bin"))
	if sum := sha256.Sum256(got); err != nil || hex.EncodeToString(sum[:]) != bigSum {
		t.Fatalf("khadga-peer saved big.bin: %v, %d bytes\n%s", err, len(got), recvOut)
	}
	if !strings.Contains(recvOut.String(), "sha256 "+bigSum+") from alice") || !strings.Contains(recvErr.String(), "100% 20.0/20.0 MiB") {
		t.Errorf("khadga-peer recv output:\n%s\n%s", recvOut, recvErr)
	}
	alice.checkProgress("out", "big.bin", size)

	src, srcSum := randomFile(t, "from-peer.bin", size)
	send, sendOut, sendErr := peerProcess(ctx, t, cfg, "send", src, "--room", "drop", "--to", "alice", "--loopback", "--timeout", "2m")
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	alice.pressIn(transferRow("in", "from-peer.bin"), "accept")
	alice.waitTransfer("in", "from-peer.bin", "done")
	if err := send.Wait(); err != nil {
		t.Fatalf("khadga-peer send: %v\n%s\n%s", err, sendOut, sendErr)
	}
	if got := alice.receivedSum("from-peer.bin"); got != srcSum {
		t.Fatalf("the page's file hashes to %s, want %s", got, srcSum)
	}
	if !strings.Contains(sendOut.String(), "sha256 "+srcSum+") to alice") || !strings.Contains(sendErr.String(), "100% 20.0/20.0 MiB") {
		t.Errorf("khadga-peer send output:\n%s\n%s", sendOut, sendErr)
	}
	alice.checkProgress("in", "from-peer.bin", size)

	// The page cancels as soon as the first bytes arrive.
	alice.do(evalVoid(`khadgaApp.client.on('file-offer', ({transfer}) => {
		if (transfer.name !== 'cut.bin') return;
		transfer.addEventListener('progress', () => {
			const b = document.querySelector('#transfers li[data-transfer="' + transfer.id + '"] button.cancel');
			if (b) b.click();
		});
	})`))
	cut, _ := randomFile(t, "cut.bin", 8<<20)
	send, sendOut, sendErr = peerProcess(ctx, t, cfg, "send", cut, "--room", "drop", "--to", "alice", "--loopback", "--timeout", "2m")
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	alice.pressIn(transferRow("in", "cut.bin"), "accept")
	alice.waitTransfer("in", "cut.bin", "cancelled")
	err = send.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 || !strings.Contains(sendErr.String(), "receiver says cancelled by the receiver") {
		t.Fatalf("khadga-peer send of a cancelled file: %v, want exit 6 with the page's reason\n%s\n%s", err, sendOut, sendErr)
	}
}

// TestFilesFromAStalledSender: a Go peer offers the page a file and, once
// the page accepted it, sends half and then nothing (its reader blocks).
// The page's transfer ends 'failed' once the sender has sent nothing for
// the stall timeout (shortened here through the SDK's fileStallTimeout
// option), its row says so, and the sender hears why.
func TestFilesFromAStalledSender(t *testing.T) {
	const stall = 3 * time.Second
	s := signalingtest.Start(t, resumable)
	alice := openPage(t, s.URL, "alice")
	alice.register("alice")
	alice.join("drop")
	// The app takes the SDK's default (2 minutes). The option lives in the
	// client's opts, which every new peer connection reads: set it before
	// the Go peer comes.
	alice.do(evalVoid(fmt.Sprintf(`khadgaApp.client.opts.fileStallTimeout = %d`, stall.Milliseconds())))
	// Times on the page's clock: the last data, and the end.
	alice.do(evalVoid(`window.stall = {}; khadgaApp.client.on('file-offer', ({transfer}) => {
		transfer.addEventListener('progress', () => { stall.data = performance.now(); });
		transfer.addEventListener('end', () => { stall.end = performance.now(); });
	})`))

	_, room, conn := goPeerJoins(t, s, "gopher", "drop", alice)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	const size, half = 256 << 10, 128 << 10
	src, w := io.Pipe()
	defer w.Close()
	go w.Write(make([]byte, half)) // then nothing, until the test says
	tr, err := room.SendFile(ctx, conn.Member.Peer, "stalled.bin", src, size)
	if err != nil {
		t.Fatalf("Go send: %v", err)
	}
	alice.pressIn(transferRow("in", "stalled.bin"), "accept")
	alice.waitFor("half of the file", fmt.Sprintf(`%s.done === %d`, transferJS("in", "stalled.bin"), half))
	alice.waitTransfer("in", "stalled.bin", "failed")
	if msg := eval[string](alice, transferJS("in", "stalled.bin")+`.error`); !strings.Contains(msg, "sent nothing for 3 s") {
		t.Errorf("the transfer failed with %q, want one that says the sender sent nothing for 3 s", msg)
	}
	if gap := time.Duration(eval[float64](alice, `stall.end - stall.data`)) * time.Millisecond; gap < stall-100*time.Millisecond || gap > stall+5*time.Second {
		t.Errorf("the transfer ended %v after the last data, want about %v", gap, stall)
	}
	if eval[bool](alice, fmt.Sprintf(`!!document.querySelector(%s + ' button.cancel')`, js(transferRow("in", "stalled.bin")))) {
		t.Error("the page still offers to cancel the ended transfer")
	}

	// The sender, unblocked, finds the page's reason.
	go w.Write(make([]byte, size-half))
	select {
	case <-tr.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the Go sender's transfer did not end")
	}
	if err := tr.Err(); err == nil || !strings.Contains(err.Error(), "receiver says the sender sent nothing for 3 s") {
		t.Errorf("the Go sender's transfer ended with %v, want the page's reason", err)
	}
}
