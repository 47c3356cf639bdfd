package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// sendConfig is the configuration of `khadga-peer send`.
type sendConfig struct {
	common `yaml:",inline"`
	Room   string `yaml:"room" usage:"room to join"`
	To     string `yaml:"to" usage:"user to send to"`
}

func runSend(ctx context.Context, e *env, args []string) error {
	var c sendConfig
	rest, err := parse(e, &c, &c.common, 5*time.Minute, peerCommand(e, "send", "send FILE --room ROOM --to USER",
		"Joins ROOM, waits for USER to connect peer to peer, and sends FILE over its own\ndata channel. Exits 0 only when the receiver has verified size and SHA-256.\n"+
			"By default only the wait for USER times out (after 5m). A --timeout you give\nbounds the whole command, the transfer included: at it the receiver is told,\nand the command exits with code 5.",
		"khadga-peer send report.pdf --room team --to bob"), args)
	if err != nil {
		return err
	}
	if len(rest) != 1 || c.Room == "" || c.To == "" {
		return fail(exitUsage, "need FILE, --room and --to")
	}
	room, to, file := c.Room, c.To, rest[0]
	f, err := os.Open(file)
	if err != nil {
		return fail(exitError, "%v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fail(exitError, "%s is not a regular file", file)
	}
	wait, cancel := c.withTimeout(ctx)
	defer cancel()
	cl, r, err := c.dialJoin(wait, e, room)
	if err != nil {
		return err
	}
	defer cl.Close()
	m, err := waitConnected(wait, e, r, to, c.joined)
	if err != nil {
		return err
	}
	t, err := r.SendFile(c.transferContext(ctx, wait), m.Peer, filepath.Base(file), f, fi.Size())
	if err != nil {
		return fail(exitTransfer, "%v", err)
	}
	if err := watchProgress(e.stderr, t); err != nil {
		if terr := c.timedOut(wait, "sending "+t.Name); terr != nil {
			return terr
		}
		return fail(exitTransfer, "%v", err)
	}
	fmt.Fprintf(e.stdout, "sent %s (%d bytes, sha256 %s) to %s\n", t.Name, t.Size, t.SHA256(), to)
	return nil
}

// waitConnected waits for a member signed in as user to connect, and
// tells the user how.
func waitConnected(ctx context.Context, e *env, r *client.Room, user string, joined time.Time) (proto.Member, error) {
	var lost *client.RoomLost
	for {
		select {
		case ev, ok := <-r.Events():
			if !ok {
				return proto.Member{}, roomGone(lost)
			}
			if l, is := ev.(*client.RoomLost); is {
				lost = l
			}
			if pc, is := ev.(*client.PeerConnected); is && pc.Member.User == user {
				fmt.Fprintln(e.stderr, connectedLine(pc, joined))
				return pc.Member, nil
			}
			if m, ok := failed(ev); ok && m.User == user {
				fmt.Fprintln(e.stderr, failedLine(m))
			}
		case <-ctx.Done():
			return proto.Member{}, fail(exitPeer, "%s did not connect: %v", user, ctx.Err())
		}
	}
}

// recvConfig is the configuration of `khadga-peer recv`.
type recvConfig struct {
	common `yaml:",inline"`
	Room   string `yaml:"room" usage:"room to join"`
	Dir    string `yaml:"dir" default:"." usage:"directory to save files in"`
	From   string `yaml:"from" usage:"accept files only from this user (others are rejected)"`
	Count  int    `yaml:"count" default:"1" usage:"exit after this many files (0: never)"`
}

func runRecv(ctx context.Context, e *env, args []string) error {
	var c recvConfig
	rest, err := parse(e, &c, &c.common, 10*time.Minute, peerCommand(e, "recv", "recv --room ROOM --dir DIR",
		"Joins ROOM and saves the files members send into DIR. A file is written under a\ntemporary name and renamed only after its SHA-256 checked out; an existing file\nis never overwritten. Exits after --count files, or with code 5 at --timeout.\n"+
			"By default only the wait for files times out (after 10m): a transfer under way\ngoes on. A --timeout you give bounds the whole command, transfers included: at it\nthe sender is told and the partial file is removed. A partial file (.khadga-*.part)\nthat a recv killed outright left is removed by the next recv into DIR.",
		"khadga-peer recv --room team --dir ~/Downloads --count 1 --from alice"), args)
	if err != nil {
		return err
	}
	if c.Room == "" || len(rest) != 0 {
		return fail(exitUsage, "need --room and no arguments")
	}
	room, dir, from, count := c.Room, c.Dir, c.From, c.Count
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return fail(exitError, "%s is not a directory", dir)
	}
	removeLeftovers(e.stderr, dir)
	wait, cancel := c.withTimeout(ctx)
	defer cancel()
	cl, r, err := c.dialJoin(wait, e, room)
	if err != nil {
		return err
	}
	defer cl.Close()
	transfer := c.transferContext(ctx, wait)
	fmt.Fprintf(e.stderr, "waiting for files in %s as %s\n", room, cl.Self().User)
	var lost *client.RoomLost
	for got := 0; count == 0 || got < count; {
		select {
		case ev, ok := <-r.Events():
			if !ok {
				return roomGone(lost)
			}
			if l, is := ev.(*client.RoomLost); is {
				lost = l
			}
			if pc, is := ev.(*client.PeerConnected); is {
				fmt.Fprintln(e.stderr, connectedLine(pc, c.joined))
			}
			if m, ok := failed(ev); ok {
				fmt.Fprintln(e.stderr, failedLine(m))
			}
			f, is := ev.(*client.IncomingFile)
			if !is {
				continue
			}
			if from != "" && f.From.User != from {
				f.Reject("not accepting files from " + f.From.User)
				continue
			}
			if err := receive(transfer, e, f, dir); err != nil {
				if terr := c.timedOut(wait, fmt.Sprintf("receiving %s from %s", client.Printable(f.Name), f.From.User)); terr != nil {
					return terr
				}
				if from != "" {
					return fail(exitTransfer, "%s from %s: %v", f.Name, f.From.User, err)
				}
				// Any member may offer a file: one that fails must not end
				// the wait for the others.
				fmt.Fprintf(e.stderr, "%s\n", client.Printable(fmt.Sprintf("%s from %s failed: %v", f.Name, f.From.User, err)))
				continue
			}
			got++
		case <-wait.Done():
			return fail(exitPeer, "no file arrived: %v", wait.Err())
		}
	}
	return nil
}

// partPattern names the files transfers are written to until checked.
const partPattern = ".khadga-*.part"

// partMinAge is how old a partial file must be before a recv removes it
// as abandoned: one another recv just created may not hold its lock yet.
const partMinAge = time.Minute

// removeLeftovers removes the partial files in dir that a receive killed
// before it could clean up (SIGKILL, a crash, a power cut) left behind:
// unlocked and older than partMinAge. A live transfer's is locked.
func removeLeftovers(stderr io.Writer, dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, partPattern))
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || time.Since(st.ModTime()) < partMinAge {
			continue
		}
		if removeAbandoned(p) {
			fmt.Fprintf(stderr, "removed %s, left by a receive that was stopped\n", p)
		}
	}
}

// receive saves one file into dir; ctx bounds the transfer. A transfer
// that fails leaves nothing in dir.
func receive(ctx context.Context, e *env, f *client.IncomingFile, dir string) error {
	// Not named after the file: a name of up to 255 bytes, the protocol's
	// limit, would not leave room for the prefix and suffix.
	tmp, err := os.CreateTemp(dir, partPattern)
	if err != nil {
		f.Reject("cannot write")
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := holdPart(tmp); err != nil {
		tmp.Close()
		f.Reject("cannot write")
		return err
	}
	t, err := f.AcceptContext(ctx, tmp)
	if err != nil {
		tmp.Close()
		return err
	}
	terr := watchProgress(e.stderr, t)
	if err := tmp.Close(); err != nil && terr == nil {
		terr = err
	}
	if terr != nil {
		return terr
	}
	final, err := placeFile(tmp.Name(), dir, f.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "received %s (%d bytes, sha256 %s) from %s\n", final, t.Size, t.SHA256(), f.From.User)
	return nil
}

// placeFile links the verified temp file to dir/name, or name.1, name.2,
// ... if taken: a hard link never replaces an existing file. The stem is
// shortened where the number would make the name longer than a file
// system takes (255 bytes).
func placeFile(tmp, dir, name string) (string, error) {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 0; i < 1000; i++ {
		p := filepath.Join(dir, name)
		if i > 0 {
			n := "." + strconv.Itoa(i) + ext
			p = filepath.Join(dir, truncateUTF8(stem, maxNameBytes-len(n))+n)
		}
		err := os.Link(tmp, p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s", name, dir)
}

// maxNameBytes is the longest file name Linux file systems take.
const maxNameBytes = 255

// truncateUTF8 cuts s to at most n bytes, at a rune boundary.
func truncateUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
