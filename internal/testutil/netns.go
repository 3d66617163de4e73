package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Netns is a network namespace a test made; it is deleted when the test
// ends. Tests that make namespaces need root (make test runs as root).
type Netns string

// NewNetns makes a namespace named prefix plus the test process's id, so
// that packages testing in parallel never share one, with loopback up.
func NewNetns(t testing.TB, prefix string) Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: network namespaces (make test runs as root)")
	}
	Need(t, "ip")
	n := Netns(fmt.Sprintf("%s%d", prefix, os.Getpid()))
	exec.Command("ip", "netns", "del", string(n)).Run() // a leftover of a killed run
	Run(t, "ip", "netns", "add", string(n))
	t.Cleanup(func() { exec.Command("ip", "netns", "del", string(n)).Run() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Run runs a command in the namespace and fails the test when it fails.
func (n Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", string(n), name}, args...)...)
}

// Do runs fn on a thread moved into the namespace named name (under
// /run/netns): a socket fn opens stays there. The thread is moved back
// afterwards; one that cannot be is thrown away (left locked).
//
// Moving back matters beyond this goroutine: the thread may be the
// process's main thread, which Go never ends, and /proc/self/net (and so
// /proc/net) shows the main thread's namespace: a main thread left in
// the namespace showed every later test the namespace's sockets instead
// of its own. Readers of the test's own sockets use /proc/thread-self.
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", name, err)
			return
		}
		err = fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave %s: %w", name, err) // the thread stays locked and ends with us
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// Command is a command to run in the namespace.
func (n Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", string(n), name}, args...)...)
}

// Veth links the test's own namespace (interface host, with the addresses
// hostAddrs) to n (interface peer, addresses peerAddrs); addresses are
// CIDRs, IPv6 ones without duplicate address detection so they work at once.
func Veth(t testing.TB, n Netns, host, peer string, hostAddrs, peerAddrs []string) {
	t.Helper()
	exec.Command("ip", "link", "del", host).Run()
	Run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", string(n))
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	for _, a := range hostAddrs {
		Run(t, "ip", addrArgs(host, a)...)
	}
	for _, a := range peerAddrs {
		n.Run(t, "ip", addrArgs(peer, a)...)
	}
	Run(t, "ip", "link", "set", host, "up")
	n.Run(t, "ip", "link", "set", peer, "up")
}

func addrArgs(dev, cidr string) []string {
	args := []string{"addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	return args
}

// Run runs a program and fails the test with its output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
