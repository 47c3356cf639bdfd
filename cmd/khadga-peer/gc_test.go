package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/signaling/signalingtest"
)

// gcPercent reads the process's GC percent without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestSetGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	os.Unsetenv("GOGC") // t.Setenv restores the original value afterwards
	debug.SetGCPercent(100)
	setGCPercent()
	if got := gcPercent(); got != peerGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, peerGCPercent)
	}
	t.Setenv("GOGC", "100")
	debug.SetGCPercent(100)
	setGCPercent()
	if got := gcPercent(); got != 100 {
		t.Fatalf("GOGC=100: GC percent %d, want 100 (the environment wins)", got)
	}
	var help bytes.Buffer
	usage(&help)
	if want := fmt.Sprintf("GOGC=%d", peerGCPercent); !strings.Contains(help.String(), want) {
		t.Errorf("khadga-peer help does not say %s:\n%s", want, help.String())
	}
}

// gcLine matches a GODEBUG=gctrace=1 line's heap goal: "gc 3 @0.1s 2%:
// ..., 5->6->2 MB, 16 MB goal, ...". Not anchored: a progress bar on
// stderr may precede it.
var gcLine = regexp.MustCompile(`gc \d+ @[^\n]*? MB, (\d+) MB goal`)

// checkGCTrace checks that the collections in a gctrace ran at percent.
// The runtime's heap minimum is 4 MB scaled by the GC percent (16 MB at
// 400, 4 MB at 100); the first collection's goal is that minimum, as the
// heap marked live is still nothing, and no later goal is below it.
func checkGCTrace(t *testing.T, who, trace string, percent int) {
	t.Helper()
	ms := gcLine.FindAllStringSubmatch(trace, -1)
	if len(ms) == 0 {
		t.Fatalf("%s: no gctrace lines in:\n%s", who, trace)
	}
	minimum := 4 * percent / 100
	for i, m := range ms {
		goal, _ := strconv.Atoi(m[1])
		if (i == 0 && goal != minimum) || goal < minimum {
			t.Errorf("%s: heap goal %d MB, not GC percent %d (minimum %d MB): %s", who, goal, percent, minimum, m[0])
		}
	}
}

// withEnv returns cmd's environment without the variables named in drop,
// plus add.
func withEnv(cmd *exec.Cmd, drop []string, add ...string) []string {
	var env []string
	for _, kv := range cmd.Env {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			keep = keep && k != d
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, add...)
}

// TestPeerGCPercentProcesses moves a file between two khadga-peer
// processes with the runtime's GC trace on: the sender, without GOGC,
// collects with peerGCPercent; the receiver, with GOGC=100, keeps it. The
// runtime's heap minimum is 4 MB scaled by the GC percent, and no
// collection's heap goal is below it, the first one's being exactly it.
func TestPeerGCPercentProcesses(t *testing.T) {
	s := signalingtest.Start(t, signalingtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice, bob := login(ctx, t, s, "alice"), login(ctx, t, s, "bob")
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	drop := []string{"GOGC", "GODEBUG", "GOMEMLIMIT"}
	var recvOut, recvErr bytes.Buffer
	recv := peerCmd(ctx, t, bob, "", "recv", "--room", "gc", "--dir", t.TempDir(), "--from", "alice", "--loopback", "--timeout", "60s")
	recv.Env = withEnv(recv, drop, "GODEBUG=gctrace=1", "GOGC=100")
	recv.Stdout, recv.Stderr = &recvOut, &recvErr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	var sendOut, sendErr bytes.Buffer
	send := peerCmd(ctx, t, alice, "", "send", src, "--room", "gc", "--to", "bob", "--loopback", "--timeout", "60s")
	send.Env = withEnv(send, drop, "GODEBUG=gctrace=1")
	send.Stdout, send.Stderr = &sendOut, &sendErr
	if code := exitCode(t, send.Run()); code != exitOK {
		t.Fatalf("send exited %d:\n%s", code, sendErr.String())
	}
	if code := exitCode(t, recv.Wait()); code != exitOK {
		t.Fatalf("recv exited %d:\n%s", code, recvErr.String())
	}
	checkGCTrace(t, "sender (GOGC unset)", sendErr.String(), peerGCPercent)
	checkGCTrace(t, "receiver (GOGC=100)", recvErr.String(), 100)
}
