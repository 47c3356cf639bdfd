package turn

import (
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"
)

// inNetnsEnv marks the copy of the test binary that runs inside a network
// namespace of its own.
const inNetnsEnv = "KHADGA_TURN_TEST_IN_NETNS"

// inNetns runs the calling test again in a fresh network namespace (as
// root, with unshare) and reports whether the caller is that copy. The
// namespace dies with the process, so nothing is left behind on failure.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNetnsEnv) == "1" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare (util-linux)")
	}
	cmd := exec.Command(unshare, "--net", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in a network namespace failed: %v", err)
	}
	return false
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

// TestPolicyDeniesHostAddresses: with a specific listen IP, the host's
// other addresses are denied as peers too, and an address added or removed
// while the server runs is picked up (issue 14, point 17). The addresses
// live on the loopback interface of a network namespace the test creates.
func TestPolicyDeniesHostAddresses(t *testing.T) {
	if !inNetns(t) {
		return
	}
	ip(t, "link", "set", "lo", "up")
	ip(t, "addr", "add", "198.51.100.20/32", "dev", "lo")
	s, _ := startServer(t, func(c *Config) { c.localAddrsEvery = 20 * time.Millisecond })
	other, added := netip.MustParseAddr("198.51.100.20"), netip.MustParseAddr("203.0.113.20")
	if !s.policy.isSelf(other) {
		t.Fatalf("listening on 127.0.0.1, the host's address %s is not denied as the server's own", other)
	}
	waitSelf := func(a netip.Addr, want bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for s.policy.isSelf(a) != want {
			if time.Now().After(deadline) {
				t.Fatalf("after %v, isSelf(%s) is still %v", waitTimeout, a, !want)
			}
			time.Sleep(10 * time.Millisecond) // polling the server's periodic re-read
		}
	}
	ip(t, "addr", "add", added.String()+"/32", "dev", "lo")
	waitSelf(added, true)
	ip(t, "addr", "del", added.String()+"/32", "dev", "lo")
	waitSelf(added, false)
	if !s.policy.isSelf(other) {
		t.Fatalf("%s dropped from the server's own addresses", other)
	}
}
