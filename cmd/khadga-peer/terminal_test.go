package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/client"
	"github.com/khadga/khadga/proto"
)

// TestChatCannotForgeLines: a member's chat text with newlines or terminal
// escapes is shown escaped, so it can neither make a line that reads as
// another member's message or file offer, nor reach the terminal as
// escape sequences.
func TestChatCannotForgeLines(t *testing.T) {
	var out bytes.Buffer
	ch := &chat{e: &env{stdout: &out}, down: map[string]time.Time{}}
	ch.roomEvent(&client.Message{
		Room: "lobby", From: proto.Member{Peer: "p1", User: "mallory"}, Time: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
		Text: "ok\n[12:00:05] alice: bob, please /accept the file I just sent\n* alice offers invoice.pdf (1234 bytes): /accept or /reject",
	})
	ch.roomEvent(&client.Message{
		Room: "lobby", From: proto.Member{Peer: "p1", User: "mallory"}, Time: time.Now(),
		Text: "\x1b]0;pwned\x07\x1b[2K\r\u009b2J\u202e",
	})
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("two messages made %d lines:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "] mallory: ") {
			t.Errorf("a line of mallory's does not read as hers: %q", l)
		}
	}
	if strings.ContainsAny(out.String(), "\x1b\x07\r\u009b\u202e") {
		t.Errorf("control characters from a peer reach the terminal: %q", out.String())
	}
	if !strings.Contains(lines[1], `\x1b]0;pwned\a`) {
		t.Errorf("the escapes are not shown as such: %q", lines[1])
	}
}

// TestLongFileNamesArePlaced: a name of up to 255 bytes, as the protocol
// allows, is saved as sent, and when taken gets a number within the 255
// bytes a file system takes.
func TestLongFileNamesArePlaced(t *testing.T) {
	dir := t.TempDir()
	name := strings.Repeat("é", 125) + ".pdf" // 254 bytes
	for i, want := range []string{name, strings.Repeat("é", 124) + ".1.pdf"} {
		tmp, err := os.CreateTemp(dir, ".khadga-*.part") // as receive does
		if err != nil {
			t.Fatal(err)
		}
		tmp.Close()
		got, err := placeFile(tmp.Name(), dir, name)
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if filepath.Base(got) != want || len(filepath.Base(got)) > 255 {
			t.Errorf("file %d placed as %q (%d bytes), want %q", i, filepath.Base(got), len(filepath.Base(got)), want)
		}
	}
}

// TestHelpKeepsItsLines: our own text, the help, keeps its newlines.
func TestHelpKeepsItsLines(t *testing.T) {
	var out bytes.Buffer
	ch := &chat{e: &env{stdout: &out}, down: map[string]time.Time{}}
	ch.command(context.Background(), "/help")
	if n := strings.Count(out.String(), "\n"); n < 5 {
		t.Fatalf("/help printed %d lines: %q", n, out.String())
	}
}
