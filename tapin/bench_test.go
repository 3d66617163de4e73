package tapin

import (
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"wormsink/internal/evidencetest"
)

func benchHandle(b *testing.B, qname string) {
	fr := tapFrame(b, dnstap.Message_CLIENT_QUERY, "unbound-1", qname, dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_UDP)
	rec := &evidencetest.Counter{}
	s := &Server{src: store{testSet(b)}, rec: rec, log: zerolog.Nop(), now: nowFunc}
	in := &ingest{s: s, resolver: "unix:/x"}
	b.ReportAllocs()
	b.SetBytes(int64(len(fr)))
	for b.Loop() {
		if err := in.handle(fr); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleUnlisted is the common case: a lookup of a name nobody
// listed must cost a decode and a hash probe, with no allocation.
func BenchmarkHandleUnlisted(b *testing.B) { benchHandle(b, "www.some-ordinary-site.example") }

// BenchmarkHandleListed records evidence (into a counter here).
func BenchmarkHandleListed(b *testing.B) { benchHandle(b, "x.wild.example") }

func TestUnlistedFrameAllocatesNothing(t *testing.T) {
	fr := tapFrame(t, dnstap.Message_CLIENT_QUERY, "unbound-1", "www.unlisted.example", dns.TypeA, "192.0.2.10", 40001, dnstap.SocketProtocol_UDP)
	s := &Server{src: store{testSet(t)}, rec: evidencetest.Discard{}, log: zerolog.Nop(), now: nowFunc}
	in := &ingest{s: s, resolver: "unix:/x"}
	in.handle(fr)
	if n := testing.AllocsPerRun(1000, func() { in.handle(fr) }); n != 0 {
		t.Fatalf("%v allocations per unlisted frame", n)
	}
}

var nowFunc = time.Now
