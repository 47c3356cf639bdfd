// Package netlab builds small networks of Linux network namespaces for
// tests: namespaces joined by veth pairs and bridges, with nftables rules
// for NAT, filtering and loss, and programs run inside them with
// `ip netns exec`. It uses the kernel's own NAT, so what a test sees is
// what users behind real routers meet.
//
// Everything a Lab makes lives inside namespaces it created: no interface,
// route or rule is added to the host's own namespace, and the namespaces
// (with every veth and bridge in them) are removed when the test ends,
// also after a failure. Namespace names start with Prefix, then the test
// process's pid, so that parallel test binaries never collide, and a new
// Lab removes the namespaces of earlier processes that died before their
// cleanup ran.
//
// Tests should use addresses from the documentation ranges 198.51.100.0/24
// and 203.0.113.0/24 only, and give no namespace a default route out of
// the lab, so that nothing is ever sent elsewhere.
//
// A Lab needs Linux, root, and the ip (iproute2) and nft (nftables)
// commands. Without them New skips the test with the reason, or fails it
// when the environment says CI=true, so that CI cannot pass without the
// lab.
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

// cmdTimeout bounds each ip or nft command.
const cmdTimeout = 30 * time.Second

// Lab is the namespaces of one test.
type Lab struct {
	t    testing.TB
	name string // Prefix + pid + "-" + the lab's name

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
		if os.Getenv("CI") == "true" {
			t.Fatalf("the network lab must run under CI: %v", err)
		}
		t.Skipf("skipping the network lab: %v", err)
	}
	sweepOnce.Do(sweepStale)
	l := &Lab{t: t, name: Prefix + strconv.Itoa(os.Getpid()) + "-" + name}
	t.Cleanup(l.remove)
	return l
}

var (
	availOnce sync.Once
	availErr  error
	sweepOnce sync.Once
)

// Available reports why no lab can be built here, or nil: it needs Linux,
// root, the ip and nft commands, and a namespace it can create.
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
	name := Prefix + strconv.Itoa(os.Getpid()) + "-probe"
	if out, err := ipCmd("netns", "add", name); err != nil {
		return fmt.Errorf("cannot create a network namespace: %v: %s", err, out)
	}
	_, _ = ipCmd("netns", "del", name)
	return nil
}

// sweepStale removes the namespaces left by lab processes that are gone.
func sweepStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), Prefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		deleteNetns(e.Name())
	}
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// deleteNetns stops the processes left in a namespace, which a lab
// started, and deletes it. Its veths and bridges go with it.
func deleteNetns(name string) {
	if out, err := ipCmd("netns", "pids", name); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_, _ = ipCmd("netns", "del", name)
}

// remove deletes the lab's namespaces, newest first.
func (l *Lab) remove() {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		deleteNetns(nss[i].name)
	}
}

// Netns makes a namespace with its loopback up.
func (l *Lab) Netns(name string) *Netns {
	l.t.Helper()
	n := &Netns{lab: l, Name: name, name: l.name + "-" + name}
	if out, err := ipCmd("netns", "add", n.name); err != nil {
		l.t.Fatalf("netlab: add namespace %s: %v: %s", n.name, err, out)
	}
	l.mu.Lock()
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	n.IP("link", "set", "lo", "up")
	return n
}

// Link joins a and b with a veth pair: aIf in a with address aCIDR (none
// if empty), bIf in b with bCIDR. Both ends are up.
func (l *Lab) Link(a *Netns, aIf, aCIDR string, b *Netns, bIf, bCIDR string) {
	l.t.Helper()
	a.IP("link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.name)
	for _, end := range []struct {
		n         *Netns
		ifc, cidr string
	}{{a, aIf, aCIDR}, {b, bIf, bCIDR}} {
		if end.cidr != "" {
			end.n.IP("addr", "add", end.cidr, "dev", end.ifc)
		}
		end.n.IP("link", "set", end.ifc, "up")
	}
}

// Netns is one network namespace of a lab.
type Netns struct {
	lab  *Lab
	Name string // as the test named it
	name string // the system-wide name
}

// Path is the namespace's file, for setns(2).
func (n *Netns) Path() string { return "/run/netns/" + n.name }

// SystemName is the name `ip netns` knows the namespace by.
func (n *Netns) SystemName() string { return n.name }

// IP runs `ip -n NS args...`, failing the test on an error.
func (n *Netns) IP(args ...string) {
	n.lab.t.Helper()
	if out, err := ipCmd(append([]string{"-n", n.name}, args...)...); err != nil {
		n.lab.t.Fatalf("netlab: %s: ip %s: %v: %s", n.Name, strings.Join(args, " "), err, out)
	}
}

// Bridge makes a bridge with address cidr, and attaches the given
// interfaces of the namespace to it.
func (n *Netns) Bridge(name, cidr string, ports ...string) {
	n.lab.t.Helper()
	n.IP("link", "add", name, "type", "bridge")
	n.IP("addr", "add", cidr, "dev", name)
	n.IP("link", "set", name, "up")
	for _, p := range ports {
		n.IP("link", "set", p, "master", name)
	}
}

// Forward turns IPv4 forwarding on, making the namespace a router.
func (n *Netns) Forward() {
	n.lab.t.Helper()
	n.Sysctl("net.ipv4.ip_forward", "1")
}

// Sysctl sets a sysctl inside the namespace (the net.* ones are per
// namespace).
func (n *Netns) Sysctl(key, value string) {
	n.lab.t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if out, err := n.run(nil, "sh", "-c", `echo "$1" > "$2"`, "sh", value, path); err != nil {
		n.lab.t.Fatalf("netlab: %s: sysctl %s=%s: %v: %s", n.Name, key, value, err, out)
	}
}

// Nft loads an nftables ruleset (nft -f syntax) into the namespace.
func (n *Netns) Nft(ruleset string) {
	n.lab.t.Helper()
	if out, err := n.run(strings.NewReader(ruleset), "nft", "-f", "-"); err != nil {
		n.lab.t.Fatalf("netlab: %s: nft: %v: %s\nruleset:\n%s", n.Name, err, out, ruleset)
	}
}

// FlushNft removes every nftables table of the namespace, NAT state kept
// in conntrack aside.
func (n *Netns) FlushNft() {
	n.lab.t.Helper()
	if out, err := n.run(nil, "nft", "flush", "ruleset"); err != nil {
		n.lab.t.Fatalf("netlab: %s: nft flush ruleset: %v: %s", n.Name, err, out)
	}
}

// Command is prog with args run inside the namespace (through
// `ip netns exec`, which execs it, so the process is prog itself). The
// context kills it.
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
