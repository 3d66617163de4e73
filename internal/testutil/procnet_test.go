package testutil

import (
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
