package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

const chatHelp = `commands:
  /who               members and how each is connected (host, srflx, relay)
  /online            who is online on the server
  /send FILE PEER    send a file to a member (user name or peer id)
  /accept            accept the oldest file offer (saved in --dir)
  /reject            reject the oldest file offer
  /quit              leave
anything else is a chat message to everyone in the room`

// chatConfig is the configuration of `khadga-peer chat`.
type chatConfig struct {
	common `yaml:",inline"`
	Dir    string `yaml:"dir" default:"." usage:"where /accept saves files"`
}

func runChat(ctx context.Context, e *env, args []string) error {
	var c chatConfig
	rest, err := parse(e, &c, &c.common, 0, peerCommand(e, "chat", "chat ROOM",
		"Line-based chat in ROOM. Messages go peer to peer. Type /help for commands.",
		"khadga-peer chat lobby --relay"), args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fail(exitUsage, "need ROOM")
	}
	cl, r, err := c.dialJoin(ctx, e, rest[0])
	if err != nil {
		return err
	}
	defer cl.Close()
	self := cl.Self()
	fmt.Fprintf(e.stdout, "* joined %s as %s (peer %s); /help for commands\n", r.Name(), self.User, self.Peer)
	ch := &chat{e: e, cl: cl, r: r, dir: c.Dir, joined: c.joined, down: map[string]time.Time{}}
	// Transfers end with the chat, before the client closes: each tells
	// its peer why, and a file being received leaves no partial file in
	// --dir. The process exits as soon as runChat returns, under any
	// transfer still running.
	ctx, stop := context.WithCancel(ctx)
	err = ch.loop(ctx)
	stop()
	ch.transfers.Wait()
	return err
}

type chat struct {
	e      *env
	cl     *client.Client
	r      *client.Room
	dir    string
	joined time.Time
	offers []*client.IncomingFile
	down   map[string]time.Time // peers whose connection dropped, since when
	lost   *client.RoomLost     // why the room ended, once it did
	// transfers are the /send and /accept under way; runChat waits for them.
	transfers sync.WaitGroup
}

func (ch *chat) loop(ctx context.Context) error {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(ch.e.stdin)
		sc.Buffer(make([]byte, 64<<10), client.MaxMessageText)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-ch.r.Events():
			if !ok {
				return roomGone(ch.lost)
			}
			ch.roomEvent(ev)
		case ev, ok := <-ch.cl.Events():
			if ok {
				ch.clientEvent(ev)
			}
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if quit := ch.command(ctx, strings.TrimSpace(line)); quit {
				return nil
			}
		}
	}
}

// say prints a line. What peers wrote (chat text, names) goes through it
// as args, whose control characters, newlines included, are shown
// escaped, so that a peer can neither forge a line that reads as someone
// else's nor send the terminal escapes; format is ours.
func (ch *chat) say(format string, args ...any) {
	for i, a := range args {
		switch a := a.(type) {
		case string:
			args[i] = client.Printable(a)
		case error, fmt.Stringer:
			args[i] = client.Printable(fmt.Sprint(a))
		}
	}
	fmt.Fprintf(ch.e.stdout, format+"\n", args...)
}

func (ch *chat) roomEvent(ev client.Event) {
	switch ev := ev.(type) {
	case *client.RoomLost:
		ch.lost = ev
		ch.say("* the server ended our place in the room: %v", ev.Err)
	case *client.MemberJoined:
		ch.say("* %s joined (%s)", name(ev.Member), ev.Member.Role)
	case *client.MemberLeft:
		ch.say("* %s left", name(ev.Member))
	case *client.PeerConnected:
		ch.say("* %s", connectedLine(ev, ch.joined))
	case *client.PeerState:
		ch.peerState(ev)
	case *client.Message:
		ch.say("[%s] %s: %s", ev.Time.Local().Format("15:04:05"), ev.From.User, ev.Text)
	case *client.IncomingFile:
		ch.offers = append(ch.offers, ev)
		ch.say("* %s offers %s (%d bytes): /accept or /reject", ev.From.User, ev.Name, ev.Size)
	case *client.IncomingTrack:
		ch.say("* %s sends %s video (not shown in chat)", ev.From.User, ev.Track.Codec().MimeType)
	}
}

// peerState tells the user how a peer connection is doing, in words for
// the moments that matter: it dropped (the client restarts ICE), it is
// back, or no path works at all.
func (ch *chat) peerState(ev *client.PeerState) {
	who := name(ev.Member)
	switch ev.State {
	case webrtc.PeerConnectionStateDisconnected:
		if _, was := ch.down[ev.Member.Peer]; !was {
			ch.down[ev.Member.Peer] = time.Now()
			ch.say("* lost the connection to %s (the network changed or broke); reconnecting", who)
		}
	case webrtc.PeerConnectionStateConnected:
		if since, was := ch.down[ev.Member.Peer]; was {
			delete(ch.down, ev.Member.Peer)
			info, _ := ch.r.PeerInfo(ev.Member.Peer)
			ch.say("* %s", backLine(ev.Member, info, since))
			return
		}
		ch.say("* connection to %s: %s", who, ev.State)
	case webrtc.PeerConnectionStateFailed:
		ch.say("* %s", failedLine(ev.Member))
	default:
		ch.say("* connection to %s: %s", who, ev.State)
	}
}

func (ch *chat) clientEvent(ev client.Event) {
	switch ev := ev.(type) {
	case *client.Presence:
		if line := presenceLine(ev, ch.cl.Self().Peer); line != "" {
			ch.say("%s", line)
		}
	case *client.Disconnected:
		ch.say("* signaling connection lost (%v); reconnecting", ev.Err)
	case *client.SignedOut:
		ch.say("* %v; sign in again", ev.Err)
	case *client.Reconnected:
		ch.say("* reconnected (session resumed: %v)", ev.Resumed)
	case *client.NetworkChanged:
		for _, m := range ev.Peers {
			if _, was := ch.down[m.Peer]; !was {
				ch.down[m.Peer] = time.Now()
				ch.say("* lost the connection to %s (the network changed); reconnecting", name(m))
			}
		}
	}
}

// command handles one input line and reports whether to quit.
func (ch *chat) command(ctx context.Context, line string) bool {
	f := strings.Fields(line)
	switch {
	case line == "":
	case f[0] == "/quit":
		return true
	case f[0] == "/help":
		fmt.Fprintln(ch.e.stdout, chatHelp)
	case f[0] == "/who":
		for _, m := range ch.r.Members() {
			info, _ := ch.r.PeerInfo(m.Peer)
			ch.say("  %-16s %-9s peer %s  %s %s", m.User, m.Role, m.Peer, info.State, info.Kind())
		}
	case f[0] == "/online":
		ch.say("* online: %s", users(ch.cl.Online(), ch.cl.Self().Peer))
	case f[0] == "/send" && len(f) == 3:
		ch.send(ctx, f[1], f[2])
	case f[0] == "/accept" || f[0] == "/reject":
		if len(ch.offers) == 0 {
			ch.say("* no file offers")
			break
		}
		off := ch.offers[0]
		ch.offers = ch.offers[1:]
		if f[0] == "/reject" {
			off.Reject("declined")
			break
		}
		ch.transfers.Go(func() {
			if err := receive(ctx, ch.e, off, ch.dir); err != nil {
				fmt.Fprintf(ch.e.stderr, "* receiving %s failed: %v\n", off.Name, err)
			}
		})
	case strings.HasPrefix(f[0], "/"):
		ch.say("* unknown command; /help lists them")
	default:
		n, err := ch.r.Send(line)
		if err != nil {
			ch.say("* send: %v", err)
		} else if n == 0 {
			ch.say("* nobody is connected yet; message not sent")
		}
	}
	return false
}

// send runs /send FILE PEER in the background with a progress bar.
func (ch *chat) send(ctx context.Context, path, who string) {
	peer := who
	if ms := ch.r.MembersByUser(who); len(ms) > 0 {
		peer = ms[0].Peer
	}
	file, err := os.Open(path)
	if err != nil {
		ch.say("* %v", err)
		return
	}
	fi, err := file.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		file.Close()
		ch.say("* %s is not a regular file", path)
		return
	}
	t, err := ch.r.SendFile(ctx, peer, filepath.Base(path), file, fi.Size())
	if err != nil {
		file.Close()
		ch.say("* send: %v", err)
		return
	}
	ch.transfers.Go(func() {
		defer file.Close()
		if err := watchProgress(ch.e.stderr, t); err != nil {
			fmt.Fprintf(ch.e.stderr, "* sending %s failed: %v\n", t.Name, err)
			return
		}
		fmt.Fprintf(ch.e.stderr, "* sent %s to %s, verified (sha256 %s)\n", t.Name, who, t.SHA256()[:16])
	})
}

// presenceLine says what a presence update changed, each kind in words
// of its own: the full list and one person coming online read alike
// before ("* online: bob"), and a change of the count alone read
// "* count: nobody".
func presenceLine(ev *client.Presence, self string) string {
	switch ev.Kind {
	case proto.PresenceFull:
		if more := ev.Count - len(ev.Peers); more > 0 {
			return fmt.Sprintf("* online now: %s, and %d more", users(ev.Peers, self), more)
		}
		return "* online now: " + users(ev.Peers, self)
	case proto.PresenceOnline:
		return "* came online: " + users(ev.Peers, self)
	case proto.PresenceOffline:
		return "* went offline: " + users(ev.Peers, self)
	case proto.PresenceCount:
		return fmt.Sprintf("* %d online", ev.Count)
	}
	return "" // a kind this version does not know
}

func name(m proto.Member) string {
	if m.User == "" {
		return m.Peer
	}
	return m.User
}

// users names ms, marking the peer self (this process's session): its
// own coming online is announced too, often after the first list.
func users(ms []proto.Member, self string) string {
	if len(ms) == 0 {
		return "nobody"
	}
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Peer == self {
			names = append(names, name(m)+" (you)")
		} else {
			names = append(names, name(m))
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
