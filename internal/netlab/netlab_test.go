package netlab_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/khadga/khadga/internal/netlab"
)

// TestMasquerade: a host behind a router that masquerades reaches a
// server on the public side, which sees the router's address; the lab's
// namespaces are gone after its cleanup.
func TestMasquerade(t *testing.T) {
	var names []string
	t.Run("lab", func(t *testing.T) {
		lab := netlab.New(t, "nt")
		pub, router, host := lab.Netns(t, "pub"), lab.Netns(t, "r"), lab.Netns(t, "h")
		lab.Link(t, router, "wan", "", pub, "r0", "")
		pub.Bridge(t, "br0", "203.0.113.1/26", "r0")
		router.IP(t, "addr", "add", "203.0.113.33/26", "dev", "wan")
		lab.Link(t, host, "eth0", "198.51.100.2/28", router, "lan", "198.51.100.1/28")
		host.IP(t, "route", "add", "default", "via", "198.51.100.1")
		router.Forward(t)
		router.Nft(t, `table ip nat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan" masquerade; }
}`)
		names = []string{pub.SystemName(), router.SystemName(), host.SystemName()}

		srv, err := pub.ListenPacket("udp4", "203.0.113.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		c, err := host.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteTo([]byte("hello"), srv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, from, err := srv.ReadFrom(buf)
		if err != nil {
			t.Fatalf("server read: %v", err)
		}
		if string(buf[:n]) != "hello" || from.(*net.UDPAddr).IP.String() != "203.0.113.33" {
			t.Fatalf("server got %q from %v, want hello from the router 203.0.113.33", buf[:n], from)
		}
		// The host's own namespace has no such address: the socket is
		// the lab's.
		if _, err := net.ListenPacket("udp4", "203.0.113.1:0"); err == nil {
			t.Fatal("203.0.113.1 is bound in the host's namespace")
		}
	})
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s still there after cleanup (%v)", n, err)
		}
	}
}

// Without root, the lab skips its tests, except with
// KHADGA_REQUIRE_NETLAB=1, where it fails them: a CI that cannot build
// namespaces must not pass by skipping the whole lab. CI=true alone, which
// CI systems set for every job, still skips. The test binary runs itself
// as the user nobody.
func TestNoRootSkipsUnlessRequired(t *testing.T) {
	if os.Getenv("NETLAB_AS_NOBODY") == "1" {
		netlab.New(t, "nb")
		t.Fatal("New returned without root")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run itself as another user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop root")
	}
	// A copy nobody can run: the go build cache is root's alone.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "netlab-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "netlab.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(env ...string) (string, error) {
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin,
			"-test.run=^TestNoRootSkipsUnlessRequired$", "-test.v")
		cmd.Dir = dir
		cmd.Env = append([]string{"NETLAB_AS_NOBODY=1", "PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, env := range [][]string{nil, {"CI=true"}, {netlab.RequireEnv + "=0"}} {
		out, err := run(env...)
		if err != nil || !strings.Contains(out, "SKIP") || !strings.Contains(out, "need root") {
			t.Errorf("without root, environment %q: %v, want a skip naming root:\n%s", env, err, out)
		}
	}
	out, err := run(netlab.RequireEnv + "=1")
	if err == nil || !strings.Contains(out, "the network lab is required") || !strings.Contains(out, "need root") {
		t.Errorf("without root, %s=1: %v, want a failure naming root:\n%s", netlab.RequireEnv, err, out)
	}
}
