package testutil

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tcpdump is a capture a test runs to see what went over the wire.
type Tcpdump struct {
	Iface  string   // the interface (lo on loopback)
	Netns  string   // run inside this network namespace (ip netns exec) when set
	Buffer int      // capture buffer in KiB (-B); 0 is tcpdump's default
	Filter []string // the capture filter, as tcpdump's arguments
}

// Capture is a running tcpdump.
type Capture struct {
	File   string // the pcap file it writes
	cmd    *exec.Cmd
	exited chan error
	mu     sync.Mutex
	lines  []string
}

// Start runs tcpdump writing to a file in the test's temporary directory
// and waits until it captures ("listening on"). Immediate mode and -U write
// each packet as it comes: without them libpcap holds packets until a
// block fills, and stopping it loses them. Capturing needs root (`make
// test` runs as root) and tcpdump installed; without either the test fails.
func (c Tcpdump) Start(t testing.TB) *Capture {
	t.Helper()
	bin := Need(t, "tcpdump")
	if os.Geteuid() != 0 {
		t.Fatal("capturing with tcpdump needs root (make test runs as root)")
	}
	name := c.Iface
	if c.Netns != "" {
		name = c.Netns + "-" + name
	}
	capt := &Capture{File: filepath.Join(t.TempDir(), name+".pcap"), exited: make(chan error, 1)}
	args := []string{"-i", c.Iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", capt.File}
	if c.Buffer > 0 {
		args = append(args, "-B", strconv.Itoa(c.Buffer))
	}
	args = append(args, c.Filter...)
	if c.Netns != "" {
		capt.cmd = exec.Command("ip", append([]string{"netns", "exec", c.Netns, bin}, args...)...)
	} else {
		capt.cmd = exec.Command(bin, args...)
	}
	errp, err := capt.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := capt.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capt.cmd.Process.Kill() })
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(errp)
		for sc.Scan() {
			capt.mu.Lock()
			capt.lines = append(capt.lines, sc.Text())
			capt.mu.Unlock()
			if strings.Contains(sc.Text(), "listening on") {
				close(listening)
			}
		}
		capt.exited <- capt.cmd.Wait()
	}()
	select {
	case <-listening:
	case err := <-capt.exited:
		t.Fatalf("tcpdump exited: %v\n%s", err, capt.Stderr())
	case <-time.After(60 * time.Second):
		t.Fatal("tcpdump did not start")
	}
	return capt
}

// Stop ends the capture (SIGINT, so tcpdump writes what it holds) and
// waits for it; the file is then complete.
func (c *Capture) Stop(t testing.TB) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not stop")
	}
}

// Stderr is what tcpdump said: its interface, and at the end its packet
// and drop counts.
func (c *Capture) Stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "; ")
}
