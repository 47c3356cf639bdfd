package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// need skips t, or fails it under RequireEnv, when no lab can be built.
func need(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		if Required() {
			t.Fatalf("the network lab is required (%s=1): %v", RequireEnv, err)
		}
		t.Skipf("skipping the network lab: %v", err)
	}
}

// TestSweepTakesOnlyDeadRuns: a sweep removes the namespaces and lock
// file of a run whose lock is free, also when that run had this process's
// pid (a killed test binary whose pid came back), and a lock file left
// under its temporary name; it leaves a run that holds its lock. The fake
// runs' lock files are in the real directory, so that a sweep after this
// process was killed removes what the test made.
func TestSweepTakesOnlyDeadRuns(t *testing.T) {
	need(t)
	dead := fmt.Sprintf("%d.testdead", os.Getpid())
	live := fmt.Sprintf("%d.testlive", os.Getpid())
	for _, id := range []string{dead, live} {
		lock := filepath.Join(lockDir, id+".lock")
		if err := os.WriteFile(lock, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		name := Prefix + id + "-x"
		t.Cleanup(func() {
			_ = deleteNetns(name)
			os.Remove(lock)
		})
		if out, err := ipCmd("netns", "add", name); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
	}
	held, err := os.Open(filepath.Join(lockDir, live+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.CreateTemp(lockDir, "new-*")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	t.Cleanup(func() { os.Remove(tmp.Name()) })

	sweepStale()

	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for p, want := range map[string]bool{
		"/run/netns/" + Prefix + dead + "-x":   false,
		filepath.Join(lockDir, dead+".lock"):   false,
		tmp.Name():                             false,
		"/run/netns/" + Prefix + live + "-x":   true,
		filepath.Join(lockDir, live+".lock"):   true,
		filepath.Join(lockDir, run.id+".lock"): true, // this process's own
	} {
		if exists(p) != want {
			t.Errorf("after the sweep, %s exists: %v, want %v", p, !want, want)
		}
	}
	if !strings.HasPrefix(run.id, fmt.Sprint(os.Getpid())+".") {
		t.Errorf("run id %q does not start with the pid", run.id)
	}
}
