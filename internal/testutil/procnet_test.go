package testutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestUDPSocketsFindsOwnSocket: a socket the test binds, with a datagram
// waiting in it, is in /proc/net/udp under its address with that queue.
func TestUDPSocketsFindsOwnSocket(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	s, err := net.DialUDP("udp4", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10e9, "the datagram in the socket's queue", func() bool {
		socks, err := UDPSockets()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range socks {
			if k.Local == addr && k.Remote.Port() == 0 && k.RxQueue > 0 {
				return true
			}
		}
		return false
	})
}

// TestDaemonTellsItsPortFromAnothers: a daemon told to use a port this
// test already serves on must not pass for ready because the test's
// server answers its readiness check; one that binds its port does.
func TestDaemonTellsItsPortFromAnothers(t *testing.T) {
	python := Need(t, "/usr/bin/python3")
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	dial := func(addr string) error {
		c, err := net.Dial("tcp4", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	// python3 binding a taken port fails and exits: before the check, the
	// test's own listener answered for it.
	serve := `import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(60)`
	d := Daemon{Name: "python3", Port: port, Ready: dial, Timeout: 30e9,
		Command: func(port int) (string, []string, error) { return python, []string{"-c", serve, fmt.Sprint(port)}, nil }}
	if p, err := d.Start(context.Background()); err == nil {
		p.Kill()
		t.Fatalf("a daemon that could not bind port %d passed for ready", port)
	}
	d.Port = 0
	p, err := d.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	if !p.ownsPort() {
		t.Errorf("ready daemon does not own port %d", p.Port)
	}
}

// TestOwnsPortReadsTheProgramsNamespace: the socket tables read are the
// program's own namespace's, not those of whatever namespace the test
// process's main thread is in (/proc/net follows it; a test that left its
// main thread in a namespace made every later daemon look as if another
// program answered for it).
func TestOwnsPortReadsTheProgramsNamespace(t *testing.T) {
	python := Need(t, "/usr/bin/python3")
	ns := NewNetns(t, "wsown")
	serve := `import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 5353)); s.listen(); print("ready", flush=True); time.sleep(60)`
	p := &Proc{Name: "python3", Port: 5353, bin: "/usr/bin/ip", args: []string{"netns", "exec", string(ns), python, "-c", serve}}
	if err := p.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	WaitFor(t, 20*time.Second, "python3 to listen in "+string(ns), func() bool { return strings.Contains(p.Log(), "ready") })
	if !p.ownsPort() {
		t.Errorf("a program listening on port 5353 in namespace %s does not own it", ns)
	}
}

// TestDoMovesTheThreadBack: a socket made in Do is in the namespace, seen
// there by UDPSockets; the thread is back in the test's namespace after.
func TestDoMovesTheThreadBack(t *testing.T) {
	ns := NewNetns(t, "wsdo")
	var tid int
	var local netip.AddrPort
	var seen bool
	err := Do(string(ns), func() error {
		tid = unix.Gettid()
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		socks, err := UDPSockets()
		for _, s := range socks {
			seen = seen || s.Local == local
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !seen {
		t.Errorf("UDPSockets inside %s does not list the socket made there (%v)", ns, local)
	}
	want, _ := os.Readlink("/proc/self/ns/net")
	if got, err := os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", tid)); err == nil && got != want {
		t.Errorf("Do's thread %d stays in %s, want %s", tid, got, want)
	}
}
