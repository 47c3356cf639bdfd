// Package scripts_test checks the shell scripts that prepare a machine.
package scripts_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSetupListsMissingTools: on a machine without a C compiler, make and
// git, and without root, setup.sh installs nothing and stops with the
// packages to install and the apt-get line. The test builds a PATH that
// has every command of this machine except gcc, cc, make, git and npm,
// and runs the script as nobody when the test runs as root.
func TestSetupListsMissingTools(t *testing.T) {
	root, bin, repo := sandbox(t)
	hidden := map[string]bool{"gcc": true, "cc": true, "make": true, "git": true, "npm": true}
	for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if hidden[e.Name()] {
				continue
			}
			os.Symlink(filepath.Join(dir, e.Name()), filepath.Join(bin, e.Name())) // the first directory wins
		}
	}
	for _, d := range []string{filepath.Dir(root), root, bin, repo} {
		os.Chmod(d, 0o755) // t.TempDir is 0700; nobody must reach the script
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "bash"), filepath.Join(repo, "scripts", "setup.sh"))
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + bin, "HOME=/nonexistent", "LANG=C"}
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("setup.sh: %v, want exit status 1:\n%s", err, out)
	}
	for _, want := range []string{"missing: build-essential make git", "sudo apt-get install build-essential make git"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestSetupStartsNoServices runs setup.sh as root would, with apt-get,
// dpkg-query, systemctl and the probed tools replaced by stubs that log
// what they are asked: coturn and nginx-light are missing, caddy's
// package was installed before. While apt-get installs, policy-rc.d must exist and
// forbid services (exit 101); afterwards it is gone, even when apt-get
// failed, and only the services of the packages this run installed are
// disabled; nothing is killed. A policy-rc.d that was there before is
// left as it was.
func TestSetupStartsNoServices(t *testing.T) {
	for _, c := range []struct {
		name      string
		aptExit   int
		oldPolicy bool
	}{{"installs", 0, false}, {"apt-get fails", 100, false}, {"image has its own policy-rc.d", 0, true}} {
		t.Run(c.name, func(t *testing.T) {
			root, bin, repo := sandbox(t)
			write := func(path, text string, mode os.FileMode) {
				t.Helper()
				if err := os.WriteFile(path, []byte(text), mode); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{"bash", "sh", "dirname", "chmod", "rm", "grep", "cat"} {
				path, err := exec.LookPath(name)
				if err != nil {
					t.Skipf("%s: %v", name, err)
				}
				os.Symlink(path, filepath.Join(bin, name))
			}
			log := filepath.Join(root, "log")
			state := filepath.Join(root, "installed") // what the fake dpkg knows
			policy := filepath.Join(root, "policy-rc.d")
			write(state, "caddy\n", 0o644)
			stub := func(name, body string) {
				write(filepath.Join(bin, name), "#!"+filepath.Join(bin, "sh")+"\n"+body+"\n", 0o755)
			}
			// Present: everything but turnutils_uclient (coturn), nginx,
			// caddy and npm. The caddy package is installed (its command
			// is not on this PATH), so it is asked for, but its service was
			// there before.
			for _, name := range []string{"gcc", "make", "git", "chromium", "pkg-config", "ip", "nft"} {
				stub(name, "exit 0")
			}
			stub("id", "echo 0")
			stub("dpkg-query", `for p; do :; done; grep -qx "$p" `+state+` && echo "install ok installed"`) // the package is last
			stub("systemctl", `echo "systemctl $*" >> `+log)
			stub("pkill", `echo "pkill $*" >> `+log)
			stub("apt-get", `[ "$1" = update ] && exit 0
if [ -x "$SETUP_POLICY_RC_D" ]; then "$SETUP_POLICY_RC_D" coturn start; echo "policy-rc.d $?" >> `+log+`; else echo "no policy-rc.d" >> `+log+`; fi
for a; do case "$a" in -*|install) ;; *) echo "$a" >> `+state+`;; esac; done
exit `+strconv.Itoa(c.aptExit))
			if c.oldPolicy {
				write(policy, "#!/bin/sh\nexit 0\n", 0o755)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "bash"), filepath.Join(repo, "scripts", "setup.sh"))
			cmd.Dir = "/"
			cmd.Env = []string{"PATH=" + bin, "HOME=/nonexistent", "LANG=C", "SETUP_POLICY_RC_D=" + policy}
			out, err := cmd.CombinedOutput()
			wantExit := 0
			if c.aptExit != 0 {
				wantExit = 1
			}
			if code := cmd.ProcessState.ExitCode(); code != wantExit {
				t.Fatalf("setup.sh: %v, want exit status %d:\n%s", err, wantExit, out)
			}
			b, _ := os.ReadFile(log)
			var calls []string
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				calls = append(calls, l)
			}
			wantPolicy := "policy-rc.d 101"
			if c.oldPolicy {
				wantPolicy = "policy-rc.d 0" // the image's own, untouched
			}
			want := []string{wantPolicy, "systemctl disable --now coturn", "systemctl disable --now nginx"}
			if !slices.Equal(calls, want) {
				t.Errorf("calls %q, want %q\n%s", calls, want, out)
			}
			old, err := os.ReadFile(policy)
			switch {
			case c.oldPolicy && string(old) != "#!/bin/sh\nexit 0\n":
				t.Errorf("the image's policy-rc.d was changed: %q, %v", old, err)
			case !c.oldPolicy && !errors.Is(err, os.ErrNotExist):
				t.Errorf("policy-rc.d is still there after setup.sh: %q, %v", old, err)
			}
		})
	}
}

// sandbox makes a temporary root with an empty bin directory for stubs and
// a repo with a copy of setup.sh in its scripts directory.
func sandbox(t *testing.T) (root, bin, repo string) {
	t.Helper()
	root = t.TempDir()
	bin, repo = filepath.Join(root, "bin"), filepath.Join(root, "repo")
	for _, d := range []string{bin, filepath.Join(repo, "scripts")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("setup.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "scripts", "setup.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	return root, bin, repo
}
