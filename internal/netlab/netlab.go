// Package netlab builds small networks of Linux network namespaces for
// tests: namespaces joined by veth pairs and bridges, with nftables rules
// for NAT, filtering and loss, and programs run inside them with
// `ip netns exec`. It uses the kernel's own NAT, so what a test sees is
// what users behind real routers meet.
//
// Everything a Lab makes lives inside namespaces it created: no interface,
// route or rule is added to the host's own namespace, and the namespaces
// (with every veth and bridge in them) are removed when the test ends,
// also after a failure. Namespace names start with Prefix, then the id of
// the test process's run (see run.go), so that parallel test binaries
// never collide, and a new Lab removes the namespaces of earlier runs that
// died before their cleanup ran.
//
// Tests should use addresses from the documentation ranges 198.51.100.0/24
// and 203.0.113.0/24 only, and give no namespace a default route out of
// the lab, so that nothing is ever sent elsewhere. Every namespace has
// IPv6 turned off, and a guard (an nftables table) that drops what it
// would send anywhere else; the lab's cleanup fails the test that made it
// if the guard dropped anything.
//
// Helpers that can fail take the test (or subtest) that calls them, and
// fail that one: a subtest must not call FailNow on its parent.
//
// A Lab needs Linux, root, and the ip (iproute2) and nft (nftables)
// commands. Without them New skips the test with the reason, or fails it
// when the environment says KHADGA_REQUIRE_NETLAB=1 (RequireEnv), as the
// project's CI does (.ci/run), so that CI cannot pass without the lab.
package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prefix starts the name of every namespace a Lab makes.
const Prefix = "kl-"

// RequireEnv is the environment variable that, set to 1, makes New fail a
// test instead of skipping it when no lab can be built here. It is an
// explicit opt-in, not CI=true, which CI systems set for every job.
const RequireEnv = "KHADGA_REQUIRE_NETLAB"

// Required reports whether the environment requires the lab (RequireEnv).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// cmdTimeout bounds each ip or nft command.
const cmdTimeout = 30 * time.Second

// Lab is the namespaces of one test.
type Lab struct {
	t    testing.TB // the test that made the lab, which its cleanup reports to
	name string     // Prefix + run id + "-" + the lab's name

	mu  sync.Mutex
	nss []*Netns
}

// New checks that namespaces can be made here, removes stale ones, and
// returns an empty lab whose namespaces are removed when t ends. name
// tells the lab apart from the other labs of the same test binary; keep
// it short (a few letters): interface names are limited to 15 bytes.
func New(t testing.TB, name string) *Lab {
	t.Helper()
	if err := Available(); err != nil {
		if Required() {
			t.Fatalf("the network lab is required (%s=1): %v", RequireEnv, err)
		}
		t.Skipf("skipping the network lab: %v", err)
	}
	sweepOnce.Do(sweepStale)
	l := &Lab{t: t, name: Prefix + run.id + "-" + name}
	t.Cleanup(l.remove)
	return l
}

var (
	availOnce sync.Once
	availErr  error
	sweepOnce sync.Once
)

// Available reports why no lab can be built here, or nil: it needs Linux,
// root, the ip and nft commands, and a namespace it can create. The first
// call starts the process's run.
func Available() error {
	availOnce.Do(func() { availErr = probe() })
	return availErr
}

func probe() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("network namespaces need Linux, not %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, cmd := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("no %s command (Debian: apt-get install iproute2 nftables; scripts/setup.sh does it)", cmd)
		}
	}
	id, err := runID()
	if err != nil {
		return err
	}
	// Under the run's id: if the process dies before the del, a sweep
	// removes it.
	name := Prefix + id + "-probe"
	if out, err := ipCmd("netns", "add", name); err != nil {
		return fmt.Errorf("cannot create a network namespace: %v: %s", err, out)
	}
	_, _ = ipCmd("netns", "del", name)
	return nil
}

// deleteNetns stops the processes left in a namespace, which a lab
// started, and deletes it. Its veths and bridges go with it.
func deleteNetns(name string) error {
	if out, err := ipCmd("netns", "pids", name); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := ipCmd("netns", "del", name); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, out)
	}
	return nil
}

// remove deletes the lab's namespaces, newest first, and fails the test
// that made the lab if a namespace's guard dropped a packet.
func (l *Lab) remove() {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		n := nss[i]
		if n.guardUp {
			if dropped, err := n.guarded(); err != nil {
				l.t.Errorf("netlab: %s: reading the guard: %v", n.Name, err)
			} else if len(dropped) > 0 {
				l.t.Errorf("netlab: %s sent packets outside the lab's ranges (dropped) to %s", n.Name, strings.Join(dropped, ", "))
			}
		}
		_ = deleteNetns(n.name) // gone already when its add failed
	}
}

// Netns makes a namespace with IPv6 off, the guard in place and its
// loopback up.
func (l *Lab) Netns(t testing.TB, name string) *Netns {
	t.Helper()
	n := &Netns{lab: l, Name: name, name: l.name + "-" + name}
	// Recorded before the add: if the add is killed half way, the
	// cleanup still removes what it made.
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	if out, err := ipCmd("netns", "add", n.name); err != nil {
		t.Fatalf("netlab: add namespace %s: %v: %s", n.name, err, out)
	}
	// No IPv6: the lab's ranges are IPv4, and an interface with IPv6 on
	// sends neighbour discovery and router solicitations to ff02:: of
	// its own accord.
	n.Sysctl(t, "net.ipv6.conf.all.disable_ipv6", "1")
	n.Sysctl(t, "net.ipv6.conf.default.disable_ipv6", "1")
	n.Nft(t, guardRules)
	n.guardUp = true
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// Link joins a and b with a veth pair: aIf in a with address aCIDR (none
// if empty), bIf in b with bCIDR. Both ends are up.
func (l *Lab) Link(t testing.TB, a *Netns, aIf, aCIDR string, b *Netns, bIf, bCIDR string) {
	t.Helper()
	a.IP(t, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.name)
	for _, end := range []struct {
		n         *Netns
		ifc, cidr string
	}{{a, aIf, aCIDR}, {b, bIf, bCIDR}} {
		if end.cidr != "" {
			end.n.IP(t, "addr", "add", end.cidr, "dev", end.ifc)
		}
		end.n.IP(t, "link", "set", end.ifc, "up")
	}
}

// Netns is one network namespace of a lab.
type Netns struct {
	lab     *Lab
	Name    string // as the test named it
	name    string // the system-wide name
	guardUp bool   // the guard table is loaded (set before the lab shares n)
}

// Path is the namespace's file, for setns(2).
func (n *Netns) Path() string { return "/run/netns/" + n.name }

// SystemName is the name `ip netns` knows the namespace by.
func (n *Netns) SystemName() string { return n.name }

// IP runs `ip -n NS args...`, failing t on an error.
func (n *Netns) IP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := ipCmd(append([]string{"-n", n.name}, args...)...); err != nil {
		t.Fatalf("netlab: %s: ip %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Bridge makes a bridge with address cidr, and attaches the given
// interfaces of the namespace to it.
func (n *Netns) Bridge(t testing.TB, name, cidr string, ports ...string) {
	t.Helper()
	n.IP(t, "link", "add", name, "type", "bridge")
	n.IP(t, "addr", "add", cidr, "dev", name)
	n.IP(t, "link", "set", name, "up")
	for _, p := range ports {
		n.IP(t, "link", "set", p, "master", name)
	}
}

// Forward turns IPv4 forwarding on, making the namespace a router.
func (n *Netns) Forward(t testing.TB) {
	t.Helper()
	n.Sysctl(t, "net.ipv4.ip_forward", "1")
}

// Sysctl sets a sysctl inside the namespace (the net.* ones are per
// namespace).
func (n *Netns) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if out, err := n.run(nil, "sh", "-c", `echo "$1" > "$2"`, "sh", value, path); err != nil {
		t.Fatalf("netlab: %s: sysctl %s=%s: %v: %s", n.Name, key, value, err, out)
	}
}

// Nft loads an nftables ruleset (nft -f syntax) into the namespace. It
// must not flush the whole ruleset, which holds the lab's guard (use
// FlushNft).
func (n *Netns) Nft(t testing.TB, ruleset string) {
	t.Helper()
	if out, err := n.run(strings.NewReader(ruleset), "nft", "-f", "-"); err != nil {
		t.Fatalf("netlab: %s: nft: %v: %s\nruleset:\n%s", n.Name, err, out, ruleset)
	}
}

// FlushNft removes every nftables table of the namespace but the lab's
// guard, NAT state kept in conntrack aside.
func (n *Netns) FlushNft(t testing.TB) {
	t.Helper()
	list, err := n.run(nil, "nft", "list", "tables")
	if err != nil {
		t.Fatalf("netlab: %s: nft list tables: %v: %s", n.Name, err, list)
	}
	if del := tablesBut(string(list)); del != "" {
		n.Nft(t, del)
	}
}

// Command is prog with args run inside the namespace (through
// `ip netns exec`, which execs it, so the process is prog itself). The
// context kills it. A process that must not outlive a killed test binary
// needs SysProcAttr.Pdeathsig, and to be started and waited for on one
// goroutine locked to its OS thread: the signal comes when the thread
// that started it exits (go.dev/issue/27505).
func (n *Netns) Command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, prog}, args...)...)
}

// run runs prog in the namespace with stdin and returns its combined
// output.
func (n *Netns) run(stdin *strings.Reader, prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := n.Command(ctx, prog, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	return cmd.CombinedOutput()
}

func ipCmd(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}
