// Package scripts_test checks the shell scripts that prepare a machine.
package scripts_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	repo := filepath.Join(root, "repo")
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
