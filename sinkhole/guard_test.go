package sinkhole

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// newTestGuard is a guard on a real loopback socket, driven directly.
func newTestGuard(tb testing.TB, cfg Config, rec evidence.Recorder) *guard {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	cfg.Conn = conn
	return newGuard(mustNew(tb, cfg, fixedSet{signatures.Default()}, rec), conn)
}

var (
	benchFrom  = netip.MustParseAddrPort("192.0.2.7:1027")
	benchLocal = netip.MustParseAddr("198.51.100.69")
)

// refusal is the ERROR both front ends send.
func refusal() []byte { return tftp.AppendError(nil, tftp.ErrNotFound, RefusalText) }

// refusalPacket is refusal, for the interceptor's tests.
func refusalPacket() []byte { return refusal() }

// rrq builds a request: opcode, then each part NUL-terminated.
func rrq(op byte, parts ...string) []byte {
	b := []byte{0, op}
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, 0)
	}
	return b
}

// A repeated request from one port is answered each time: every request
// is a refusal of its own.
func TestRepeatsAnswered(t *testing.T) {
	ts := startServer(t, Config{SourceRate: -1, TotalRate: -1}, nil)
	c := newClient(t, ts.addr)
	req := rrq(1, "msblast.exe", "octet")
	for i := 0; i < 50; i++ {
		c.send(req)
	}
	for i := 0; i < 50; i++ {
		checkError(t, c.read(5*time.Second), len(req))
	}
	if r := c.read(quiet); r != nil {
		t.Fatalf("51st reply %q", r)
	}
	if st := ts.srv.Stats(); st.Replies != 50 || len(ts.rec.Events()) != 50 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkGuardRefuse is the guard's share of one answered request:
// parse, match, record (folded), both limits and the refusal built and
// sent from the main socket (fresh ports off).
func BenchmarkGuardRefuse(b *testing.B) {
	w := evidence.NewWriter(io.Discard, evidence.Config{})
	defer w.Close()
	g := newTestGuard(b, Config{SourceRate: -1, TotalRate: -1, Exchanges: -1}, w)
	req := rrq(1, `C:\WINDOWS\system32\msblast.exe`, "OCTET", "blksize", "1432", "tsize", "0")
	to := discardAddr(b)
	b.ReportAllocs()
	var now int64
	for b.Loop() {
		now += 1000
		g.handle(req, to, benchLocal, now)
	}
	if st := g.s.Stats(); st.Replies == 0 || st.Refused == 0 {
		b.Fatalf("nothing refused: %+v", st)
	}
}

// discardAddr is a loopback port nobody reads, so the refusals sent there
// cost a real send and nothing else.
func discardAddr(tb testing.TB) netip.AddrPort {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	c.SetReadBuffer(1)
	tb.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// BenchmarkGuardFlood is the cost of a request the limits drop: the common
// case under a flood.
func BenchmarkGuardFlood(b *testing.B) {
	w := evidence.NewWriter(io.Discard, evidence.Config{})
	defer w.Close()
	g := newTestGuard(b, Config{}, w)
	req := rrq(1, "msblast.exe", "octet")
	b.ReportAllocs()
	var now int64
	for b.Loop() {
		now += 1000
		g.handle(req, benchFrom, benchLocal, now)
	}
	if g.s.c.sourceLimited.Load() == 0 {
		b.Fatal("nothing limited")
	}
}

// BenchmarkServe is one request and its refusal through the real socket,
// from a client on loopback. Allocations are the whole process's.
func BenchmarkServe(b *testing.B) { benchServe(b, false) }

// BenchmarkServeExchange is BenchmarkServe with a client that ACKs every
// refusal to the port it came from, as tftp-hpa does: every request then
// costs a fresh socket, a goroutine and the upgrade to proof exchange.
func BenchmarkServeExchange(b *testing.B) { benchServe(b, true) }

func benchServe(b *testing.B, ack bool) {
	w := evidence.NewWriter(io.Discard, evidence.Config{})
	defer w.Close()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	srv := mustNew(b, Config{Conn: conn, SourceRate: -1, TotalRate: -1}, fixedSet{signatures.Default()}, w)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(b.Context()) }()
	defer func() {
		srv.Shutdown(b.Context())
		<-done
	}()
	cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	req := rrq(1, "msblast.exe", "octet")
	buf := make([]byte, 600)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.WriteToUDPAddrPort(req, to); err != nil {
			b.Fatal(err)
		}
		cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := cl.ReadFromUDPAddrPort(buf)
		if err != nil || buf[1] != tftp.OpError || n > len(req) {
			b.Fatal("no refusal", err)
		}
		if ack {
			cl.WriteToUDPAddrPort([]byte{0, tftp.OpAck, 0, 1}, from)
		}
	}
	if st := srv.Stats(); ack && st.Exchanged == 0 {
		b.Fatalf("no exchange: %+v", st)
	}
}

// FuzzGuard: whatever arrives, the guard does not panic, records exactly
// the well-formed requests, and sends at most one ERROR per request, no
// larger than the datagram.
func FuzzGuard(f *testing.F) {
	f.Add(rrq(1, "msblast.exe", "octet"))
	f.Add(rrq(2, `C:\WINDOWS\msblast.exe`, "NetAscii", "blksize", "1432", "tsize", "0"))
	f.Add(rrq(1, "a", "mail"))
	f.Add([]byte{0, tftp.OpAck, 0, 1})
	f.Add(append(rrq(1, "x", "octet"), 0, 0, 0))
	f.Add(rrq(1, string(bytes.Repeat([]byte("/"), 600)), "octet"))
	rec := &evidencetest.Counter{}
	g := newTestGuard(f, Config{SourceRate: -1, TotalRate: -1, Exchanges: -1}, rec)
	cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	defer cl.Close()
	from := cl.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 2048)
	var now int64
	f.Fuzz(func(t *testing.T, p []byte) {
		now += 1000
		before, replies := rec.Count(), g.s.Stats().Replies
		_, perr := tftp.ParseRequest(p)
		g.handle(p, from, benchLocal, now)
		recorded, sent := rec.Count()-before, g.s.Stats().Replies-replies
		if perr != nil {
			if recorded != 0 || sent != 0 {
				t.Fatalf("not a request, yet recorded %d and answered %d", recorded, sent)
			}
			return
		}
		if recorded != 1 || sent != 1 {
			t.Fatalf("request %q recorded %d and answered %d times", p, recorded, sent)
		}
		cl.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := cl.Read(buf)
		if err != nil || n > len(p) || buf[1] != tftp.OpError || buf[n-1] != 0 {
			t.Fatalf("reply %q to %d bytes (%v)", buf[:n], len(p), err)
		}
	})
}
