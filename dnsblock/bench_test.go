package dnsblock

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/evidence"
)

// newTestHandler builds a handler as New does, with an upstream at addr
// (none when empty).
func newTestHandler(tb testing.TB, upAddr string, cacheSize int, rec evidence.Recorder) *handler {
	tb.Helper()
	cfg := Config{Listen: "127.0.0.1:0", Upstreams: []string{"127.0.0.1:9"}, CacheSize: cacheSize,
		SinkholeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.66"), netip.MustParseAddr("2001:db8::66")},
		Timeout:     time.Second}
	if upAddr != "" {
		cfg.Upstreams = []string{upAddr}
	}
	s, err := newServer(cfg, newSource(tb, testSigs), rec, zerolog.Nop())
	if err != nil {
		tb.Fatal(err)
	}
	if upAddr != "" {
		u, err := newUpstream(upAddr, 2, time.Second, &s.h.stats.upStrays)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(u.close)
		s.h.ups = []*upstream{u}
	}
	return s.h
}

func packQuery(tb testing.TB, name string, qtype uint16, edns bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var benchClient = netip.MustParseAddrPort("127.0.0.1:40000")

// BenchmarkSinkholeAnswer is a listed name from query bytes to answer bytes,
// evidence recorded into a real evidence.Writer.
func BenchmarkSinkholeAnswer(b *testing.B) {
	w := evidence.NewWriter(io.Discard, evidence.Config{Sensor: "bench"})
	defer w.Close()
	h := newTestHandler(b, "", 0, w)
	q := packQuery(b, "worm.example.", dns.TypeA, true)
	sc := newScratch()
	b.ReportAllocs()
	for b.Loop() {
		resp, fwd := h.answer(sc, q, benchClient, false)
		if fwd || len(resp) == 0 {
			b.Fatal("not answered")
		}
	}
}

// BenchmarkSinkholeCookie is BenchmarkSinkholeAnswer for a query that
// echoes a valid server cookie: checking it, making the next one and
// recording proof exchange.
func BenchmarkSinkholeCookie(b *testing.B) {
	w := evidence.NewWriter(io.Discard, evidence.Config{Sensor: "bench"})
	defer w.Close()
	h := newTestHandler(b, "", 0, w)
	sc := newScratch()
	first, _ := h.answer(sc, cookieQuery(b, "0102030405060708"), benchClient, false)
	var r dns.Msg
	if err := r.Unpack(first); err != nil {
		b.Fatal(err)
	}
	q := cookieQuery(b, r.IsEdns0().Option[0].(*dns.EDNS0_COOKIE).Cookie)
	b.ReportAllocs()
	for b.Loop() {
		resp, fwd := h.answer(sc, q, benchClient, false)
		if fwd || len(resp) == 0 || !sc.q.cookieOK {
			b.Fatal("not answered with a valid cookie")
		}
	}
}

func cookieQuery(tb testing.TB, cookie string) []byte {
	m := new(dns.Msg)
	m.SetQuestion("worm.example.", dns.TypeA)
	m.SetEdns0(1232, false)
	o := m.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkSinkholeNoEvidence is the answer alone, without the evidence writer.
func BenchmarkSinkholeNoEvidence(b *testing.B) {
	h := newTestHandler(b, "", 0, nil)
	q := packQuery(b, "worm.example.", dns.TypeA, true)
	sc := newScratch()
	b.ReportAllocs()
	for b.Loop() {
		if _, fwd := h.answer(sc, q, benchClient, false); fwd {
			b.Fatal("not answered")
		}
	}
}

func BenchmarkSinkholeWildcard(b *testing.B) {
	w := evidence.NewWriter(io.Discard, evidence.Config{Sensor: "bench"})
	defer w.Close()
	h := newTestHandler(b, "", 0, w)
	q := packQuery(b, "x.wild.example.", dns.TypeA, false)
	sc := newScratch()
	b.ReportAllocs()
	for b.Loop() {
		if _, fwd := h.answer(sc, q, benchClient, false); fwd {
			b.Fatal("not answered")
		}
	}
}

// BenchmarkCacheHit is an unlisted name answered from the cache, the clock
// read per query (TCP, the reader without recvmmsg).
func BenchmarkCacheHit(b *testing.B) {
	h, q, sc := cacheHitSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		out, fwd := h.answer(sc, q, benchClient, false)
		if fwd || binary.BigEndian.Uint16(out[6:]) != 1 {
			b.Fatal("not a cache hit")
		}
	}
}

// BenchmarkCacheHitBatch is BenchmarkCacheHit as the batch reader answers
// it: the clock read once per batch of 32 queries.
func BenchmarkCacheHitBatch(b *testing.B) {
	h, q, sc := cacheHitSetup(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%32 == 0 {
			setBatchClock(h, sc)
		}
		i++
		out, fwd := h.answer(sc, q, benchClient, false)
		if fwd || binary.BigEndian.Uint16(out[6:]) != 1 {
			b.Fatal("not a cache hit")
		}
	}
}

// BenchmarkCacheHitMany is BenchmarkCacheHitBatch over 100,000 cached
// names asked in a shuffled order: the entries are far more than the CPU
// caches hold, so every hit pays the memory loads of its entry, as every
// hit does in the server after a recvmmsg and a sendmmsg have been through
// the caches (perf showed the cache look-up's share there in the key
// compare and the copy of the answer, not in the hashing).
func BenchmarkCacheHitMany(b *testing.B) {
	const n = 100000
	h := newTestHandler(b, "", 2*n, nil)
	qs := make([][]byte, n)
	sc := newScratch()
	for i := range qs {
		name := fmt.Sprintf("www%d.cached.example.", i)
		qs[i] = packQuery(b, name, dns.TypeA, true)
		r := new(dns.Msg)
		r.Unpack(qs[i])
		r.SetReply(r.Copy())
		rr, _ := dns.NewRR(name + " 300 IN A 192.0.2.1")
		r.Answer = []dns.RR{rr}
		resp, _ := r.Pack()
		if err := parseQuery(qs[i], &sc.q, sc.name[:]); err != nil {
			b.Fatal(err)
		}
		h.relay(sc, qs[i], resp, h.src.Current(), benchClient, false)
	}
	// Asked in a shuffled order, but the queries lie one after the other
	// in that order: in the server a query is in the CPU's caches, just
	// received.
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
	var all []byte
	for _, q := range qs {
		all = append(all, q...)
	}
	for i, off := 0, 0; i < n; i++ {
		qs[i], off = all[off:off+len(qs[i]):off+len(qs[i])], off+len(qs[i])
	}
	setBatchClock(h, sc)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%32 == 0 {
			setBatchClock(h, sc)
		}
		out, fwd := h.answer(sc, qs[i%n], benchClient, false)
		if fwd || binary.BigEndian.Uint16(out[6:]) != 1 {
			b.Fatal("not a cache hit")
		}
		i++
	}
}

// setBatchClock does what serveUDPBatch does after each recvmmsg.
func setBatchClock(h *handler, sc *scratch) { sc.now, sc.batch = h.cache.now(), true }

func cacheHitSetup(b *testing.B) (*handler, []byte, *scratch) {
	h := newTestHandler(b, "", 1000, nil)
	q := packQuery(b, "www.cached.example.", dns.TypeA, true)
	r := new(dns.Msg)
	r.Unpack(q)
	r.SetReply(r.Copy())
	rr, _ := dns.NewRR("www.cached.example. 300 IN A 192.0.2.1")
	r.Answer = []dns.RR{rr}
	resp, _ := r.Pack()
	sc := newScratch()
	if err := parseQuery(q, &sc.q, sc.name[:]); err != nil {
		b.Fatal(err)
	}
	h.relay(sc, q, resp, h.src.Current(), benchClient, false)
	return h, q, sc
}

func BenchmarkRefused(b *testing.B) {
	h := newTestHandler(b, "", 0, nil)
	q := packQuery(b, "worm.example.", dns.TypeA, false)
	sc := newScratch()
	outside := netip.MustParseAddrPort("198.51.100.1:5000")
	b.ReportAllocs()
	for b.Loop() {
		h.answer(sc, q, outside, false)
	}
}

// BenchmarkForwardUDP is a cache miss: one round trip to a real upstream
// on loopback.
func BenchmarkForwardUDP(b *testing.B) {
	up := startUpstream(b, answerA)
	h := newTestHandler(b, up.addr, 0, nil)
	q := packQuery(b, "fwd.example.", dns.TypeA, false)
	sc := newScratch()
	b.ReportAllocs()
	for b.Loop() {
		_, fwd := h.answer(sc, q, benchClient, false)
		if !fwd {
			b.Fatal("not forwarded")
		}
		if out := h.forward(context.Background(), sc, q, benchClient, false); out[3]&0xf != 0 {
			b.Fatal("upstream failed")
		}
	}
}
