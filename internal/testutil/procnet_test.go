package testutil

import (
	"context"
	"fmt"
	"net"
	"testing"
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
