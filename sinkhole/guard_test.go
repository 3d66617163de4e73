package sinkhole

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// newTestGuard is a guard on a real loopback socket, driven directly.
func newTestGuard(tb testing.TB, cfg Config, rec Recorder) *guard {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return newGuard(New(cfg, fixedSet{signatures.Default()}, rec, zerolog.New(io.Discard)), conn)
}

var (
	benchFrom  = netip.MustParseAddrPort("192.0.2.7:1027")
	benchLocal = netip.MustParseAddr("198.51.100.69")
)

// refusal is the ERROR pin/tftp sends for the refusal.
func refusal() []byte {
	b := []byte{0, OpError, 0, 1}
	b = append(b, RefusalText...)
	return append(b, 0)
}

func TestStripRequest(t *testing.T) {
	b := make([]byte, 516)
	long := string(bytes.Repeat([]byte("x"), 1000))
	for _, p := range [][]byte{
		rrq(1, "msblast.exe", "octet", "blksize", "1432", "tsize", "0"),
		rrq(2, `C:\WINDOWS\msblast.exe`, "NETASCII"),
		rrq(1, long, "octet"),
	} {
		n := stripRequest(b, p)
		got, err := ParseRequest(b[:n])
		want, _ := ParseRequest(p)
		if err != nil || got.HasOptions() || got.Op != want.Op || !bytes.Equal(got.Mode, want.Mode) || !bytes.HasPrefix(want.File, got.File) {
			t.Fatalf("stripRequest(%q) = %q (%v)", p, b[:n], err)
		}
	}
}

func TestFitReply(t *testing.T) {
	for _, max := range []int{5, 9, 11, 100} {
		out, ok := fitReply(refusal(), max)
		if !ok || len(out) > max || out[len(out)-1] != 0 || out[1] != OpError {
			t.Fatalf("fitReply(%d) = %q, %v", max, out, ok)
		}
	}
	for _, bad := range [][]byte{{0, OpData, 0, 1, 'x'}, {0, 6, 'b', 0, '1', 0}, {0, OpError, 0}} {
		if _, ok := fitReply(bad, 100); ok {
			t.Fatalf("fitReply let %q through", bad)
		}
	}
}

// A repeated request from one port is answered each time: every request
// is a transfer of its own to pin/tftp.
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
	if st := ts.srv.Stats(); st.Replies != 50 || st.Busy != 0 || len(ts.rec.Events()) != 50 {
		t.Fatalf("stats %+v", st)
	}
}

// BenchmarkGuardRefuse is the guard's share of one answered request:
// parse, match, record (folded), both limits, the token, options
// stripped, and the reply checked and cut on its way out.
func BenchmarkGuardRefuse(b *testing.B) {
	w := evidence.NewWriter(io.Discard, evidence.Config{})
	defer w.Close()
	g := newTestGuard(b, Config{SourceRate: -1, TotalRate: -1}, w)
	req := rrq(1, `C:\WINDOWS\system32\msblast.exe`, "OCTET", "blksize", "1432", "tsize", "0")
	fwd := make([]byte, 516)
	reply := make([]byte, 516)
	ref := refusal()
	b.ReportAllocs()
	var now int64
	for b.Loop() {
		now += 1000
		tok, ok := g.admit(req, benchFrom, benchLocal, now)
		if !ok {
			b.Fatal("not forwarded")
		}
		stripRequest(fwd, req)
		d, ok := g.take(tok)
		n := copy(reply, ref)
		if out, fits := fitReply(reply[:n], d.size); !ok || !fits || len(out) > len(req) {
			b.Fatal("no reply")
		}
	}
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
		g.admit(req, benchFrom, benchLocal, now)
	}
	if g.s.c.sourceLimited.Load() == 0 {
		b.Fatal("nothing limited")
	}
}

// BenchmarkServe is one request and its refusal through the real socket,
// pin/tftp included, from a client on loopback. Allocations are the whole
// process's: most are pin/tftp's per-transfer state.
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
	srv := New(Config{SourceRate: -1, TotalRate: -1}, fixedSet{signatures.Default()}, w, zerolog.New(io.Discard))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(b.Context(), conn) }()
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
		if err != nil || buf[1] != OpError || n > len(req) {
			b.Fatal("no refusal", err)
		}
		if ack {
			cl.WriteToUDPAddrPort([]byte{0, OpAck, 0, 1}, from)
		}
	}
	if st := srv.Stats(); ack && st.Exchanged == 0 {
		b.Fatalf("no exchange: %+v", st)
	}
}

// FuzzGuard: whatever arrives, the guard does not panic, forwards only
// well-formed requests, hands pin/tftp no options, records exactly the
// well-formed ones, and lets out only an ERROR no larger than the datagram.
func FuzzGuard(f *testing.F) {
	f.Add(rrq(1, "msblast.exe", "octet"))
	f.Add(rrq(2, `C:\WINDOWS\msblast.exe`, "NetAscii", "blksize", "1432", "tsize", "0"))
	f.Add(rrq(1, "a", "mail"))
	f.Add([]byte{0, OpAck, 0, 1})
	f.Add(append(rrq(1, "x", "octet"), 0, 0, 0))
	f.Add(rrq(1, string(bytes.Repeat([]byte("/"), 600)), "octet"))
	rec := &evidencetest.Counter{}
	g := newTestGuard(f, Config{SourceRate: -1, TotalRate: -1}, rec)
	fwd := make([]byte, 516)
	var now int64
	f.Fuzz(func(t *testing.T, p []byte) {
		now += 1000
		before := rec.Count()
		_, perr := ParseRequest(p)
		tok, ok := g.admit(p, benchFrom, benchLocal, now)
		recorded := rec.Count() - before
		if ok != (perr == nil) || recorded != 0 {
			// A forwarded request's sighting waits for its reply.
			t.Fatalf("parse error %v, forwarded %v, recorded %d", perr, ok, recorded)
		}
		if !ok {
			return
		}
		n := stripRequest(fwd, p)
		got, err := ParseRequest(fwd[:n])
		if err != nil || got.HasOptions() {
			t.Fatalf("forwarded %q (%v)", fwd[:n], err)
		}
		d, ok := g.take(tok)
		if !ok || d.size != len(p) || d.ev.Kind == "" || d.ev.Proof != evidence.ProofDatagram {
			t.Fatalf("no reply or sighting due for %q: %+v", p, d)
		}
		out, fits := fitReply(refusal(), d.size)
		if !fits || len(out) > len(p) {
			t.Fatalf("reply %q to %d bytes", out, len(p))
		}
		if _, again := g.take(tok); again {
			t.Fatal("two replies due for one request")
		}
	})
}
