package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLowPortNeedsCapability: an unprivileged khadga asked to serve on
// port 80 stops with an error that names the capability and the setcap
// line, instead of a bare "permission denied". As root the test runs the
// binary as nobody.
func TestLowPortNeedsCapability(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n <= 80 {
			t.Skipf("unprivileged processes may bind port %d and up here", n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, khadgaBin, "serve", "--http", "127.0.0.1:80")
	cmd.Dir = "/"
	if os.Getuid() == 0 {
		// nobody must reach the binary in TestMain's private directory.
		if err := os.Chmod(filepath.Dir(khadgaBin), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("khadga exited 0:\n%s", out)
	}
	for _, want := range []string{"--http 127.0.0.1:80", "permission denied", "CAP_NET_BIND_SERVICE", "setcap cap_net_bind_service=+ep"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("error lacks %q:\n%s", want, out)
		}
	}
}
