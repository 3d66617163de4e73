package rpz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// stalledAXFR connects from src with a small receive window, asks for the
// zone and never reads.
func stalledAXFR(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b, _ := axfrMsg("rpz.wormsink.").Pack()
	c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...))
	return c
}

// firstRcode reads the first message of an answer.
func firstRcode(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatal(err)
	}
	return m.Rcode
}

func bigZone(names int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "serial: 9\nsignatures:\n  - id: s\n    family: S\n    domains:\n")
	for i := range names {
		fmt.Fprintf(&b, "      - n%07d.stall.example\n", i)
	}
	return b.String()
}

// Transfers to readers that stop reading are capped, in all and per
// client (more are REFUSED), and let go after the write timeout, which
// frees their slots for a reader that reads.
func TestStalledTransfersCappedAndLetGo(t *testing.T) {
	// Long enough for a reader that reads, under the race detector on a
	// loaded machine (2 s was not: the last reader's transfer was cut
	// 152,568 records in).
	const timeout = 6 * time.Second
	// Larger than the kernel buffers of a connection, so a transfer to a
	// reader that does not read stalls.
	f := start(t, Config{MaxTransfers: 2, MaxTransfersPerClient: 1, WriteTimeout: timeout}, bigZone(150_000))
	stalledAXFR(t, "127.0.0.1", f.addr)
	waitFor(t, "one transfer in progress", func() bool { return f.srv.Transfers() == 1 })
	// Per client: a second from 127.0.0.1 is refused.
	if rc := firstRcode(t, stalledAXFR(t, "127.0.0.1", f.addr)); rc != dns.RcodeRefused {
		t.Fatalf("second transfer from one client: %s, want REFUSED", dns.RcodeToString[rc])
	}
	stalledAXFR(t, "127.0.0.2", f.addr)
	waitFor(t, "two transfers in progress", func() bool { return f.srv.Transfers() == 2 })
	// In all: a third client is refused.
	start := time.Now()
	if rc := firstRcode(t, stalledAXFR(t, "127.0.0.3", f.addr)); rc != dns.RcodeRefused {
		t.Fatalf("third transfer: %s, want REFUSED", dns.RcodeToString[rc])
	}
	if n := f.srv.Stats().TransfersLimited; n != 2 {
		t.Fatalf("%d transfers limited, want 2", n)
	}
	// The stalled ones end at the write timeout, and their connections go.
	waitFor(t, "stalled transfers let go", func() bool { return f.srv.Transfers() == 0 && f.srv.Conns() == 0 })
	if took := time.Since(start); took > 10*timeout {
		t.Fatalf("stalled transfers held for %v, write timeout %v", took, timeout)
	}
	if n := f.srv.Stats().Count("axfr", "error"); n != 2 {
		t.Fatalf("%d transfers ended in error, want the 2 stalled ones", n)
	}
	// A reader that reads gets the whole zone.
	rrs, err := xfr(t, f.addr, axfrMsg("rpz.wormsink."), nil, "")
	if err != nil || len(rrs) < 150_000 {
		t.Fatalf("AXFR after: %d records, %v", len(rrs), err)
	}
}

// Connections are capped in all and per client address; those from
// outside Allow are reset at once.
func TestConnectionCaps(t *testing.T) {
	f := start(t, Config{MaxConns: 3, MaxConnsPerClient: 2, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/30")}}, sigYAML(1, "a.example"))
	dial := func(src string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
	a1, a2 := dial("127.0.0.1"), dial("127.0.0.1")
	waitFor(t, "two connections", func() bool { return f.srv.Conns() == 2 })
	if !closed(dial("127.0.0.1")) {
		t.Fatal("a third connection from one client was kept")
	}
	dial("127.0.0.2")
	waitFor(t, "three connections", func() bool { return f.srv.Conns() == 3 })
	if !closed(dial("127.0.0.3")) {
		t.Fatal("a connection past the total was kept")
	}
	// The outsider is reset at accept: the reset may already be there
	// when the dial checks its socket, or reach the first read.
	if c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).Dial("tcp", f.addr); err == nil {
		t.Cleanup(func() { c.Close() })
		if !closed(c) {
			t.Fatal("a connection from outside Allow was kept")
		}
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	st := f.srv.Stats()
	if st.ConnsRejected != 2 || st.ConnsRefused != 1 {
		t.Fatalf("rejected %d, refused %d; want 2 and 1", st.ConnsRejected, st.ConnsRefused)
	}
	// A connection that closes frees its place.
	a1.Close()
	waitFor(t, "the place freed", func() bool { return f.srv.Conns() == 2 })
	_ = a2
	c := dial("127.0.0.1")
	if m, _, err := (&dns.Client{Net: "tcp"}).ExchangeWithConn(soaMsg(), &dns.Conn{Conn: c}); err != nil || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("the freed place does not serve: %v", err)
	}
}

func soaMsg() *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion("rpz.wormsink.", dns.TypeSOA)
	return m
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A write that makes no progress for the timeout fails.
func TestDeadlineConnWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	released := 0
	c := &deadlineConn{Conn: sc, timeout: 200 * time.Millisecond, release: func() { released++ }}
	start := time.Now()
	buf := make([]byte, 1<<20)
	for time.Since(start) < 30*time.Second {
		if _, err = c.Write(buf); err != nil {
			break
		}
	}
	if !isTimeout(err) {
		t.Fatalf("write to a reader that never reads: %v, want a timeout", err)
	}
	c.Close()
	c.Close()
	if released != 1 {
		t.Fatalf("released %d times", released)
	}
}
