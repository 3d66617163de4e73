package localaddr

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const nsEnv = "WORMSINK_LOCALADDR_NETNS"

// TestFollowsAddresses runs itself again inside a network namespace it
// makes: there an address added after New is in the set as soon as the
// kernel says so (with its network's broadcast address), and leaves it
// when removed; loopback is left out.
func TestFollowsAddresses(t *testing.T) {
	if os.Getenv(nsEnv) != "" {
		inNamespace(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root for a network namespace (make test runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("ip is not installed: run `make deps`")
	}
	ns := fmt.Sprintf("trust-tap-la-%d", os.Getpid())
	exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestFollowsAddresses$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), nsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in the namespace: %v\n%s", err, out)
	}
}

func inNamespace(t *testing.T) {
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	ip("link", "set", "lo", "up")
	ip("link", "add", "la0", "type", "veth", "peer", "name", "la1")
	ip("link", "set", "la0", "up")
	ip("addr", "add", "192.0.2.1/24", "dev", "la0")
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	a := netip.MustParseAddr
	if !s.Contains(a("192.0.2.1")) || !s.Contains(a("::ffff:192.0.2.1")) || !s.Contains(a("192.0.2.255")) || s.Contains(a("192.0.2.2")) {
		t.Fatalf("at start: %v", s.Addrs())
	}
	if s.Contains(a("127.0.0.1")) || s.Contains(a("::1")) {
		t.Errorf("loopback in the set: %v", s.Addrs())
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %v", what, s.Addrs())
			}
			time.Sleep(time.Millisecond)
		}
	}
	ip("addr", "add", "198.51.100.9/25", "dev", "la0")
	ip("-6", "addr", "add", "2001:db8::9/64", "dev", "la0", "nodad")
	wait("the added addresses", func() bool {
		return s.Contains(a("198.51.100.9")) && s.Contains(a("198.51.100.127")) && s.Contains(a("2001:db8::9"))
	})
	ip("addr", "del", "198.51.100.9/25", "dev", "la0")
	wait("the removed address to go", func() bool { return !s.Contains(a("198.51.100.9")) && !s.Contains(a("198.51.100.127")) })
	if !s.Contains(a("192.0.2.1")) || !s.Contains(a("2001:db8::9")) {
		t.Errorf("after a removal: %v", s.Addrs())
	}
	if n := testing.AllocsPerRun(100, func() { s.Contains(a("192.0.2.1")) }); n != 0 {
		t.Errorf("Contains: %v allocations", n)
	}
}
