package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/proto"
)

// File transfer protocol, on a data channel labelled "file" that the sender
// opens for each transfer (reliable, ordered):
//
//	sender   -> {"type":"offer","room":R,"name":N,"size":S}   (text)
//	receiver -> {"type":"accept"} or {"type":"reject","message":M}
//	sender   -> chunks of at most fileChunk bytes              (binary)
//	sender   -> {"type":"end","size":S,"sha256":HEX}
//	receiver -> {"type":"ok"} or {"type":"error","message":M}
//
// The receiver hashes what it writes and checks size and SHA-256 against
// "end"; a channel that closes before "ok" is an interrupted transfer.
// Either side cancels by sending {"type":"error","message":M} and closing
// the channel (closing alone works too; the message says why). The web
// app's SDK (signaling/web/sdk/files.js) speaks the same protocol.
const (
	fileLabel = "file"
	// fileChunk is the size of one binary message.
	fileChunk = 32 << 10
	// fileHighWater and fileLowWater bound the data queued in the channel:
	// the sender waits above high until pion reports the queue below low.
	// Pion's buffered amount counts data in flight (sent, not yet acked) as
	// well as data not yet sent, so the low mark must stay above the
	// congestion window, or the pipe runs dry before the sender refills it.
	// The window reached 1 to 2 MB on loopback, and is the bandwidth-delay
	// product on a real path (100 Mbit/s at 50 ms is 625 KB); the SCTP
	// receive window (8 MiB, see newAPI) caps it. A 512 KiB low mark left
	// loopback transfers waiting on the sender; 4 MiB covers up to about
	// 320 Mbit/s at 100 ms, for at most 8 MiB held per outgoing transfer.
	fileHighWater = 8 << 20
	fileLowWater  = 4 << 20
	// maxFileControl caps a control message.
	maxFileControl = 4 << 10
	// maxFileName caps a file name, in bytes.
	maxFileName = 255
	// maxIncomingPerPeer caps transfers one peer may have open towards us.
	maxIncomingPerPeer = 8
	// offerTimeout is how long a receiver waits for the offer on a new
	// channel, and fileAnswerTimeout how long a sender waits for
	// accept/reject and for the final ok, and a receiver that accepted
	// for the sender's next message (stalled).
	offerTimeout      = 10 * time.Second
	fileAnswerTimeout = 2 * time.Minute
)

// Transfer errors.
var (
	// ErrTransferInterrupted: the data channel closed before the transfer
	// completed and was verified.
	ErrTransferInterrupted = errors.New("file transfer interrupted")
	// ErrTransferRejected: the receiver refused the file.
	ErrTransferRejected = errors.New("file transfer rejected")
	// ErrChecksumMismatch: the received bytes do not match the sender's
	// size or SHA-256.
	ErrChecksumMismatch = errors.New("file checksum mismatch")
	// ErrFileTooLarge: the file is larger than the receiver accepts.
	ErrFileTooLarge = errors.New("file too large")
	// ErrNotConnected: the peer connection or its chat channel is not open.
	ErrNotConnected = errors.New("peer not connected")
)

type fileControl struct {
	Type    string `json:"type"`
	Room    string `json:"room,omitempty"`
	Name    string `json:"name,omitempty"`
	Size    int64  `json:"size,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Message string `json:"message,omitempty"`
}

// Transfer is one file going to or coming from a peer.
type Transfer struct {
	Name string
	Size int64
	Peer proto.Member

	done   atomic.Int64
	once   sync.Once
	finish chan struct{}
	err    error
	sum    string
	// release, if set, runs when the transfer ends: it unhooks the
	// watch on the context that bounds an accepted transfer.
	release func() bool
}

func newTransfer(name string, size int64, m proto.Member) *Transfer {
	return &Transfer{Name: name, Size: size, Peer: m, finish: make(chan struct{})}
}

// Progress reports bytes moved so far and the total.
func (t *Transfer) Progress() (done, total int64) { return t.done.Load(), t.Size }

// Done is closed when the transfer ends, well or not.
func (t *Transfer) Done() <-chan struct{} { return t.finish }

// Err is the transfer's outcome once Done is closed: nil means the receiver
// verified size and SHA-256.
func (t *Transfer) Err() error {
	select {
	case <-t.finish:
		return t.err
	default:
		return nil
	}
}

// SHA256 is the verified hex digest, once the transfer succeeded.
func (t *Transfer) SHA256() string {
	if t.Err() != nil {
		return ""
	}
	return t.sum
}

// Wait blocks until the transfer ends or ctx is done.
func (t *Transfer) Wait(ctx context.Context) error {
	select {
	case <-t.finish:
		return t.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *Transfer) end(err error, sum string) {
	t.once.Do(func() {
		t.err, t.sum = err, sum
		close(t.finish)
		if t.release != nil {
			t.release()
		}
	})
}

// sendFile starts a transfer of size bytes from r; the returned Transfer
// reports progress and the outcome. ctx bounds the whole transfer.
func (p *peer) sendFile(ctx context.Context, room, name string, r io.Reader, size int64) (*Transfer, error) {
	if err := validFileName(name); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("file size %d: must not be negative", size)
	}
	if p.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		return nil, fmt.Errorf("peer %s: %w", p.id, ErrNotConnected)
	}
	ordered := true
	dc, err := p.pc.CreateDataChannel(fileLabel, &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return nil, fmt.Errorf("create file channel: %w", err)
	}
	t := newTransfer(name, size, p.Member())
	s := &fileSender{dc: dc, t: t, log: p.log.With(slog.String("file", name)),
		ctrl: make(chan fileControl, 4), low: make(chan struct{}, 1),
		open: make(chan struct{}), closed: make(chan struct{})}
	s.wire()
	go func() {
		err := s.run(ctx, room, r)
		if err != nil && ctx.Err() != nil {
			// Closing alone would leave the receiver to guess why.
			s.tellCancelled(ctx.Err())
		}
		t.end(err, s.sum)
		_ = dc.Close()
	}()
	return t, nil
}

// tellCancelled sends the receiver why the transfer stopped, closes the
// channel and waits (at most okGrace) until the receiver has closed its
// side. The reason goes out behind up to fileHighWater bytes already
// queued, and the receiver closes only once it has read it: a caller that
// closes the connection as soon as the Transfer ends (khadga-peer send at
// Ctrl-C or its --timeout) would otherwise take the reason down with the
// queue, and the receiver would see a bare ErrTransferInterrupted.
func (s *fileSender) tellCancelled(cause error) {
	if s.sendControl(fileControl{Type: "error", Message: "sender cancelled: " + cause.Error()}) != nil {
		return
	}
	_ = s.dc.Close()
	timer := time.NewTimer(okGrace)
	defer timer.Stop()
	select {
	case <-s.closed:
	case <-timer.C:
	}
}

type fileSender struct {
	dc     *webrtc.DataChannel
	t      *Transfer
	log    *slog.Logger
	ctrl   chan fileControl
	low    chan struct{}
	open   chan struct{}
	closed chan struct{}
	sum    string
}

func (s *fileSender) wire() {
	s.dc.SetBufferedAmountLowThreshold(fileLowWater)
	s.dc.OnBufferedAmountLow(func() {
		select {
		case s.low <- struct{}{}:
		default:
		}
	})
	var openOnce, closeOnce sync.Once
	s.dc.OnOpen(func() { openOnce.Do(func() { close(s.open) }) })
	s.dc.OnClose(func() { closeOnce.Do(func() { close(s.closed) }) })
	s.dc.OnMessage(func(msg webrtc.DataChannelMessage) {
		var c fileControl
		if !msg.IsString || len(msg.Data) > maxFileControl || json.Unmarshal(msg.Data, &c) != nil {
			s.log.Debug("bad control message from receiver")
			return
		}
		select {
		case s.ctrl <- c:
		default:
		}
	})
}

// await waits for something or fails on context, channel close or timeout.
func (s *fileSender) await(ctx context.Context, what <-chan struct{}, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-what:
		return nil
	case <-s.closed:
		return ErrTransferInterrupted
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("%w: receiver did not answer within %s", ErrTransferInterrupted, timeout)
	}
}

func (s *fileSender) control(ctx context.Context, timeout time.Duration) (fileControl, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case c := <-s.ctrl:
		return c, nil
	case <-s.closed:
		return fileControl{}, ErrTransferInterrupted
	case <-ctx.Done():
		return fileControl{}, ctx.Err()
	case <-timer.C:
		return fileControl{}, fmt.Errorf("%w: receiver did not answer within %s", ErrTransferInterrupted, timeout)
	}
}

func (s *fileSender) sendControl(c fileControl) error {
	b, _ := json.Marshal(c)
	if err := s.dc.SendText(string(b)); err != nil {
		return fmt.Errorf("%w: %w", ErrTransferInterrupted, err)
	}
	return nil
}

func (s *fileSender) run(ctx context.Context, room string, r io.Reader) error {
	if err := s.await(ctx, s.open, offerTimeout); err != nil {
		return fmt.Errorf("open file channel: %w", err)
	}
	if err := s.sendControl(fileControl{Type: "offer", Room: room, Name: s.t.Name, Size: s.t.Size}); err != nil {
		return err
	}
	c, err := s.control(ctx, fileAnswerTimeout)
	if err != nil {
		return fmt.Errorf("wait for accept: %w", err)
	}
	if c.Type != "accept" {
		return fmt.Errorf("%w: %s", ErrTransferRejected, peerText(c.Message, 200))
	}
	h := sha256.New()
	if err := s.stream(ctx, io.TeeReader(io.LimitReader(r, s.t.Size), h)); err != nil {
		return err
	}
	s.sum = hex.EncodeToString(h.Sum(nil))
	if err := s.sendControl(fileControl{Type: "end", Size: s.t.done.Load(), SHA256: s.sum}); err != nil {
		return err
	}
	c, err = s.control(ctx, fileAnswerTimeout)
	if err != nil {
		return fmt.Errorf("wait for verification: %w", err)
	}
	if c.Type != "ok" {
		return fmt.Errorf("%w: receiver says %s", ErrChecksumMismatch, peerText(c.Message, 200))
	}
	return nil
}

// stream sends r in chunks, keeping at most fileHighWater bytes queued.
func (s *fileSender) stream(ctx context.Context, r io.Reader) error {
	buf := make([]byte, fileChunk)
	for {
		if err := s.cancelled(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for s.dc.BufferedAmount() > fileHighWater {
			if err := s.await(ctx, s.low, fileAnswerTimeout); err != nil {
				return s.interrupted(err)
			}
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if serr := s.dc.Send(buf[:n]); serr != nil {
				return s.interrupted(fmt.Errorf("%w: %w", ErrTransferInterrupted, serr))
			}
			s.t.done.Add(int64(n))
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			if s.t.done.Load() != s.t.Size {
				return fmt.Errorf("source ended after %d of %d bytes", s.t.done.Load(), s.t.Size)
			}
			return nil
		case err != nil:
			return fmt.Errorf("read source: %w", err)
		}
		if s.t.done.Load() == s.t.Size {
			return nil
		}
	}
}

// interrupted explains a transfer that stopped with err: a receiver that
// cancelled said why just before it closed the channel. Pion delivers that
// message before it reports the close, which a failed send can precede,
// so this waits (briefly) for the close first.
func (s *fileSender) interrupted(err error) error {
	if !errors.Is(err, ErrTransferInterrupted) {
		return err
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-s.closed:
	case <-t.C:
	}
	if c := s.cancelled(); c != nil {
		return c
	}
	return err
}

// cancelled reports a receiver that gave up mid-transfer (it sends
// "error", then closes), with its reason.
func (s *fileSender) cancelled() error {
	select {
	case c := <-s.ctrl:
		return fmt.Errorf("%w: receiver says %s", ErrTransferInterrupted, peerText(c.Message, 200))
	default:
		return nil
	}
}

// fileChannel is what the receiving side needs of its data channel.
type fileChannel interface {
	SendText(string) error
	Close() error
}

// incoming is the receiving side of one transfer.
type incoming struct {
	p   *peer
	dc  fileChannel
	log *slog.Logger

	mu       sync.Mutex
	offer    fileControl
	offered  bool
	answered bool
	w        io.Writer
	h        hash.Hash
	t        *Transfer
	finished bool
	// verified is the SHA-256 of a complete, checked file whose "ok" is on
	// its way to the sender; the transfer ends when the sender closes.
	verified string
	// ending is why a transfer we ended (and told the sender why) failed:
	// it is reported once the channel has closed, so that the sender has
	// the reason before a caller that exits at once (khadga-peer recv)
	// takes the connection down with the reason still queued.
	ending error
	// idle ends an accepted transfer whose sender sent nothing for
	// idleFor (stalled); each chunk starts it again.
	idle    *time.Timer
	idleFor time.Duration
}

// okGrace bounds how long a verified transfer waits for the sender to
// close the channel after our "ok" before it is reported done anyway.
const okGrace = 5 * time.Second

// acceptFileChannel handles a "file" channel the remote opened.
func (p *peer) acceptFileChannel(dc *webrtc.DataChannel) {
	p.mu.Lock()
	busy := p.incoming >= maxIncomingPerPeer
	if !busy {
		p.incoming++
	}
	p.mu.Unlock()
	in := &incoming{p: p, dc: dc, log: p.log}
	if busy {
		dc.OnOpen(func() { in.reply(fileControl{Type: "reject", Message: "too many transfers"}); _ = dc.Close() })
		return
	}
	var release sync.Once
	dc.OnClose(func() {
		release.Do(func() {
			p.mu.Lock()
			p.incoming--
			p.mu.Unlock()
		})
		in.fail(ErrTransferInterrupted)
	})
	dc.OnMessage(in.onMessage)
	time.AfterFunc(offerTimeout, func() {
		in.mu.Lock()
		offered := in.offered
		in.mu.Unlock()
		if !offered {
			_ = dc.Close()
		}
	})
}

func (in *incoming) reply(c fileControl) {
	b, _ := json.Marshal(c)
	if err := in.dc.SendText(string(b)); err != nil {
		in.log.Debug("file reply", slog.Any("err", err))
	}
}

func (in *incoming) onMessage(msg webrtc.DataChannelMessage) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.finished {
		return
	}
	if !msg.IsString {
		in.onChunk(msg.Data)
		return
	}
	var c fileControl
	if len(msg.Data) > maxFileControl || json.Unmarshal(msg.Data, &c) != nil {
		in.abortLocked(fmt.Errorf("bad control message"))
		return
	}
	switch {
	case c.Type == "offer" && !in.offered:
		in.onOffer(c)
	case c.Type == "end" && in.t != nil:
		in.onEnd(c)
	case c.Type == "error" && in.offered:
		// The sender cancelled.
		in.finished = true
		in.stopIdle()
		if in.t != nil {
			in.t.end(fmt.Errorf("%w: sender says %s", ErrTransferInterrupted, peerText(c.Message, 200)), "")
		}
		go func() { _ = in.dc.Close() }()
	default:
		in.abortLocked(fmt.Errorf("unexpected \"%s\" message", peerText(c.Type, 32)))
	}
}

func (in *incoming) onOffer(c fileControl) {
	in.offered = true
	room, ok := in.p.roomFor(c.Room)
	switch {
	case !ok:
		in.rejectLocked("not in that room")
	case validFileName(c.Name) != nil:
		in.rejectLocked("bad file name")
	case c.Size < 0 || c.Size > in.p.opts.maxFileSize:
		in.rejectLocked(fmt.Sprintf("size %d is over the limit %d", c.Size, in.p.opts.maxFileSize))
	default:
		in.offer = c
		if !in.p.host.emit(room, &IncomingFile{Room: room, From: in.p.Member(), Name: c.Name, Size: c.Size, in: in}) {
			in.rejectLocked("receiver is busy")
		}
	}
}

func (in *incoming) onChunk(b []byte) {
	if in.t == nil {
		in.abortLocked(fmt.Errorf("data before accept"))
		return
	}
	if in.t.done.Load()+int64(len(b)) > in.t.Size {
		in.abortLocked(fmt.Errorf("%w: more data than the offered %d bytes", ErrChecksumMismatch, in.t.Size))
		return
	}
	in.h.Write(b)
	if _, err := in.w.Write(b); err != nil {
		in.abortLocked(fmt.Errorf("write: %w", err))
		return
	}
	in.t.done.Add(int64(len(b)))
	in.idle.Reset(in.idleFor)
}

// stalled ends an accepted transfer whose sender went silent: a sender
// waits at most fileAnswerTimeout for us, and we as long for it, so that
// a room member who offers a file and never sends it cannot keep the
// transfer, and an application waiting for it, open for ever.
func (in *incoming) stalled() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.finished {
		return
	}
	in.abortLocked(fmt.Errorf("%w: the sender sent nothing for %s", ErrTransferInterrupted, in.idleFor))
}

// stopIdle stops the idle timer of a transfer that ended; in.mu is held.
func (in *incoming) stopIdle() {
	if in.idle != nil {
		in.idle.Stop()
	}
}

func (in *incoming) onEnd(c fileControl) {
	sum := hex.EncodeToString(in.h.Sum(nil))
	got := in.t.done.Load()
	if got != in.t.Size || c.Size != got || !strings.EqualFold(c.SHA256, sum) {
		in.abortLocked(fmt.Errorf("%w: got %d bytes sha256 %s, sender says %d bytes sha256 %s",
			ErrChecksumMismatch, got, sum, c.Size, peerText(c.SHA256, 64)))
		return
	}
	in.reply(fileControl{Type: "ok"})
	in.finished = true
	in.stopIdle()
	// Report success only once the sender has read the "ok" (it then closes
	// the channel): a caller that exits at once, like khadga-peer recv,
	// would otherwise close the connection with the "ok" still queued, and
	// the sender would see an interrupted transfer.
	in.verified = sum
	t := in.t
	time.AfterFunc(okGrace, func() { t.end(nil, sum) })
}

func (in *incoming) rejectLocked(why string) {
	in.finished = true
	in.reply(fileControl{Type: "reject", Message: why})
	go func() { _ = in.dc.Close() }()
}

// abortLocked ends the transfer with err and tells the sender.
func (in *incoming) abortLocked(err error) { in.endLocked(err, err.Error()) }

// cancel ends an accepted transfer whose context ended first, and tells
// the sender why.
func (in *incoming) cancel(cause error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.finished {
		return
	}
	in.endLocked(fmt.Errorf("%w: cancelled: %w", ErrTransferInterrupted, cause), "receiver cancelled: "+cause.Error())
}

// endLocked ends the transfer with err, sends the sender why, and closes
// the channel; in.mu is held.
func (in *incoming) endLocked(err error, why string) {
	in.finished = true
	in.stopIdle()
	in.reply(fileControl{Type: "error", Message: why})
	if t := in.t; t != nil {
		in.ending = err // reported by fail, when the channel has closed
		time.AfterFunc(okGrace, func() { t.end(err, "") })
	}
	go func() { _ = in.dc.Close() }()
}

func (in *incoming) fail(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.verified != "" {
		in.t.end(nil, in.verified) // the channel closed after our "ok"
		return
	}
	if in.ending != nil {
		in.t.end(in.ending, "") // the channel closed after our "error"
		return
	}
	if in.finished {
		return
	}
	in.finished = true
	in.stopIdle()
	if in.t != nil {
		in.t.end(err, "")
	}
}

// Accept receives the file into w. The returned Transfer reports progress;
// its Err is nil only after size and SHA-256 were verified. On error, what
// was written to w is incomplete: discard it. Only a sender that goes
// silent for two minutes ends the transfer: bound it with AcceptContext.
func (f *IncomingFile) Accept(w io.Writer) (*Transfer, error) {
	return f.AcceptContext(context.Background(), w)
}

// AcceptContext is Accept with ctx bounding the whole transfer, as ctx
// bounds Room.SendFile: if ctx ends first, the sender is told (the
// receiver cancelled, and why), the channel closes, and the Transfer's
// Err wraps ErrTransferInterrupted and ctx.Err(). A sender that trickles
// a few bytes at a time never goes silent for long, so only a context
// bounds its transfer.
func (f *IncomingFile) AcceptContext(ctx context.Context, w io.Writer) (*Transfer, error) {
	in := f.in
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.answered || in.finished {
		return nil, fmt.Errorf("file %q: already answered or ended", f.Name)
	}
	in.answered = true
	in.w, in.h = w, sha256.New()
	in.t = newTransfer(f.Name, f.Size, f.From)
	in.idleFor = in.p.opts.fileIdle
	in.idle = time.AfterFunc(in.idleFor, in.stalled)
	// cancel takes in.mu: if ctx is already done, it waits for us.
	in.t.release = context.AfterFunc(ctx, func() { in.cancel(ctx.Err()) })
	in.reply(fileControl{Type: "accept"})
	return in.t, nil
}

// Reject refuses the file.
func (f *IncomingFile) Reject(reason string) {
	in := f.in
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.answered || in.finished {
		return
	}
	in.answered = true
	in.rejectLocked(peerText(reason, 200))
}

// validFileName accepts a bare file name: no directories, no "." or "..",
// no control characters, at most maxFileName bytes.
func validFileName(name string) error {
	if name == "" || len(name) > maxFileName || name == "." || name == ".." ||
		strings.ContainsAny(name, `/\`) || filepath.Base(name) != name {
		return fmt.Errorf("file name \"%s\": must be a plain name of 1 to %d bytes", peerText(name, 64), maxFileName)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError {
			// C0 and C1 controls reach terminals as escapes; bidi controls
			// make "exe.pdf" of "fdp.exe".
			return fmt.Errorf("file name \"%s\": control characters are not allowed", peerText(name, 64))
		}
	}
	return nil
}

// peerText makes a remote peer's text (a transfer's reason) fit for an
// error message that may reach a terminal or a log: Printable, cut to
// about n bytes at a character.
func peerText(s string, n int) string {
	s = Printable(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Printable shows a remote peer's text with its control and bidi
// characters escaped as Go quotes them (invalid UTF-8 shows as U+FFFD),
// so that printed on a terminal it can neither send escape sequences (to
// move the cursor, set the title, or write the clipboard with OSC 52) nor
// forge or reorder a line.
func Printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
