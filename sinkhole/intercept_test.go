//go:build linux

package sinkhole

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

func newTestInterceptor(policy Policy, rec evidence.Recorder) *Interceptor {
	return newInterceptor(Config{}, policy, staticSet{signatures.Default()}, rec, zerolog.Nop())
}

type staticSet struct{ s *signatures.Set }

func (s staticSet) Current() *signatures.Set { return s.s }

// sent collects what the interceptor would put on the wire.
type sent struct{ jobs []sendJob }

func (s *sent) send(j *sendJob) error {
	s.jobs = append(s.jobs, *j)
	return nil
}

func rrqBytes(op byte, file string) []byte {
	return append(append(append([]byte{0, op}, file...), 0), "octet\x00"...)
}

// TestInterceptDecisions: a worm file is refused with the sinkhole's ERROR
// from the address asked, cut to the request's size; any other read or
// write is forwarded byte for byte from the client's address; the policy
// refuse refuses everything; non-requests are dropped; the evidence names
// both hosts of a refusal.
func TestInterceptDecisions(t *testing.T) {
	var rec evidencetest.Recorder
	var out sent
	in := newTestInterceptor(PolicyPass, &rec)
	client := netip.MustParseAddrPort("10.0.0.5:40000")
	server := netip.MustParseAddrPort("10.0.0.9:69")
	var j sendJob

	worm := rrqBytes(1, `C:\WINDOWS\MSBLAST.EXE`)
	in.handle(worm, client, server, 0, &j, out.send)
	legit := rrqBytes(1, "pxelinux.0")
	in.handle(legit, client, server, 1, &j, out.send)
	upload := append(rrqBytes(2, "router-confg"), "blksize\x001428\x00"...)
	in.handle(upload, client, server, 2, &j, out.send)
	tiny := []byte("\x00\x01x.sh4\x00mail\x00")
	in.handle(tiny, client, server, 3, &j, out.send)
	in.handle([]byte("\x00\x04\x00\x01"), client, server, 4, &j, out.send) // an ACK
	in.handle([]byte("GET / HTTP/1.0\r\n"), client, server, 5, &j, out.send)

	if len(out.jobs) != 4 {
		t.Fatalf("%d datagrams sent, want 4", len(out.jobs))
	}
	r := out.jobs[0]
	if !r.refusal || r.from != server || r.to != client || !r.anyPort || !bytes.Equal(r.buf[:r.n], refusalPacket()) {
		t.Errorf("refusal: %+v %q", r, r.buf[:r.n])
	}
	for i, want := range [][]byte{legit, upload} {
		f := out.jobs[1+i]
		if f.refusal || f.from != client || f.to != server || f.anyPort || !bytes.Equal(f.buf[:f.n], want) {
			t.Errorf("forward %d: %+v %q", i, f, f.buf[:f.n])
		}
	}
	// A request shorter than the ERROR gets an ERROR no longer than itself.
	if r := out.jobs[3]; !r.refusal || r.n > len(tiny) || r.buf[1] != tftp.OpError || r.buf[r.n-1] != 0 {
		t.Errorf("short refusal: %q for a %d-byte request", r.buf[:r.n], len(tiny))
	}
	st := in.Stats()
	if st.Received != 6 || st.Refused != 2 || st.Passed != 2 || st.Stray != 1 || st.Malformed != 1 || st.Replies != 2 || st.Forwarded != 2 {
		t.Errorf("stats %+v", st)
	}
	evs := rec.Events()
	if len(evs) != 6 { // 2 per refusal, 1 per forward
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	if e := evs[0]; e.Kind != evidence.TFTPRefused || e.Host != client.Addr() || e.Port != client.Port() || e.Srv != server ||
		!e.Intercepted || e.Passed || e.Role != evidence.RoleRequester || e.Peer != server.Addr() || e.Sig != "blaster" || e.Evidence != signatures.Strong {
		t.Errorf("requester line %+v", e)
	}
	// The request is the client's packet: the server it named is no more
	// than a weak datagram (Named), whatever the signature says.
	if e := evs[1]; e.Kind != evidence.TFTPRefused || e.Host != server.Addr() || e.Port != 69 || e.Role != evidence.RoleServer || e.Peer != client.Addr() || !e.Intercepted ||
		!e.Named || e.Evidence != signatures.Weak || e.Proof != evidence.ProofDatagram || e.Sig != "blaster" {
		t.Errorf("server line %+v", e)
	}
	if e := evs[2]; e.Kind != evidence.TFTPRequest || e.Evidence != signatures.Weak || !e.Passed || !e.Intercepted || e.File != "pxelinux.0" || e.Op != "read" {
		t.Errorf("passed line %+v", e)
	}
	if e := evs[3]; e.Op != "write" || !e.Passed {
		t.Errorf("upload line %+v", e)
	}

	// Policy refuse: the legitimate read is refused too, and recorded as a
	// request (no signature), not passed.
	out.jobs = nil
	rec.Reset()
	in = newTestInterceptor(PolicyRefuse, &rec)
	in.handle(legit, client, server, 0, &j, out.send)
	if len(out.jobs) != 1 || !out.jobs[0].refusal || out.jobs[0].from != server {
		t.Errorf("policy refuse: %+v", out.jobs)
	}
	if evs := rec.Events(); len(evs) != 1 || evs[0].Kind != evidence.TFTPRequest || evs[0].Passed {
		t.Errorf("policy refuse evidence: %+v", evs)
	}
}

// TestInterceptRateLimit: one source gets its burst and then nothing until
// its rate allows, forwards and refusals alike, while every request is
// still recorded; another source is not affected.
func TestInterceptRateLimit(t *testing.T) {
	var rec evidencetest.Counter
	var out sent
	in := newTestInterceptor(PolicyPass, &rec)
	server := netip.MustParseAddrPort("10.0.0.9:69")
	var j sendJob
	a := netip.MustParseAddrPort("10.0.0.5:40000")
	for i := 0; i < 100; i++ {
		f := "pxelinux.0"
		if i%2 == 1 {
			f = "msblast.exe"
		}
		in.handle(rrqBytes(1, f), a, server, int64(i), &j, out.send) // 100 requests within 100 ns
	}
	if len(out.jobs) != DefaultSourceBurst {
		t.Errorf("%d datagrams sent to one flooding source, want the burst %d", len(out.jobs), DefaultSourceBurst)
	}
	in.handle(rrqBytes(1, "pxelinux.0"), netip.MustParseAddrPort("10.0.0.6:40000"), server, 100, &j, out.send)
	in.handle(rrqBytes(1, "pxelinux.0"), a, server, int64(time.Second), &j, out.send)
	if len(out.jobs) != DefaultSourceBurst+2 {
		t.Errorf("another source, or the same one a second later: %d sent", len(out.jobs)-DefaultSourceBurst)
	}
	if st := in.Stats(); st.SourceLimited != 90 || rec.Count() != 102+50 {
		t.Errorf("limited %d, events %d", st.SourceLimited, rec.Count())
	}
}

// BenchmarkInterceptRefusal is the refusal path the kernel does not do:
// parse, match, limit, make the transparent reply socket, bind it to the
// address asked, send the ERROR, close it, record both evidence lines. On
// loopback, so it runs anywhere as root.
func BenchmarkInterceptRefusal(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("needs root: the reply socket sets IP_TRANSPARENT")
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	go func() { // keep the receive buffer drained
		buf := make([]byte, 64)
		for {
			if _, _, err := rx.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	in := newInterceptor(Config{SourceRate: -1, TotalRate: -1}, PolicyPass, staticSet{signatures.Default()}, evidencetest.Discard{}, zerolog.Nop())
	client := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	server := netip.MustParseAddrPort("127.0.0.2:6913")
	req := rrqBytes(1, "msblast.exe")
	var j sendJob
	b.ReportAllocs()
	for b.Loop() {
		in.handle(req, client, server, 0, &j, sendFrom)
	}
	if st := in.Stats(); st.SendErrors > 0 || st.Replies == 0 {
		b.Fatalf("stats %+v", st)
	}
}

// TestSendFromPortTaken: a refusal whose port is taken on this host (by
// wormsink's own --tftp-listen :69, say) leaves from another port of the
// address asked; a forward, which must keep the client's port, fails.
func TestSendFromPortTaken(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the reply socket sets IP_TRANSPARENT")
	}
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero}) // a wildcard holder of the port
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := uint16(taken.LocalAddr().(*net.UDPAddr).Port)
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	from := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port)
	j := sendJob{from: from, to: rx.LocalAddr().(*net.UDPAddr).AddrPort(), anyPort: true, refusal: true}
	j.n = copy(j.buf[:], refusalPacket())
	if err := sendFrom(&j); err != nil {
		t.Fatalf("refusal with the port taken: %v", err)
	}
	rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, src, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if src.Addr() != from.Addr() || src.Port() == port || !bytes.Equal(buf[:n], refusalPacket()) {
		t.Errorf("got %q from %v, want the ERROR from %v on another port", buf[:n], src, from.Addr())
	}
	j.anyPort, j.refusal = false, false
	if err := sendFrom(&j); err == nil {
		t.Error("a forward from a taken port was sent")
	}
}
