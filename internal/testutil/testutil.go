package testutil

// This file: free loopback ports, waiting on a condition, finding the
// programs a test runs.

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// Need returns the path of each program, looked up in PATH and the sbin
// directories, and fails the test when one is missing: every program a
// test runs is installed by scripts/deps.sh (make deps), so a missing one
// is a broken setup, never a reason to skip.
func Need(t testing.TB, prog string) string {
	t.Helper()
	p, err := Find(prog)
	if err != nil {
		t.Fatalf("%s is not installed: run `make deps` (scripts/deps.sh)", prog)
	}
	return p
}

// Find looks a program up in PATH, then in /usr/sbin and /sbin (root's
// tools are there, and PATH may not name them).
func Find(prog string) (string, error) {
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin/", "/sbin/", "/usr/local/sbin/"} {
		if fi, err := os.Stat(dir + prog); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return dir + prog, nil
		}
	}
	return "", exec.ErrNotFound
}

// FreePort returns a port on 127.0.0.1 that was free for both TCP and UDP
// a moment ago, for servers that cannot be given port 0.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return port
}

// WaitFor polls cond until it holds or timeout passes, then fails the test
// with what. Tests wait on what they count, not on a clock: timeout is only
// the point where the wait is taken as broken, so make it generous (the
// machine is often loaded).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; ; d = min(d*2, 100*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(d)
	}
}
