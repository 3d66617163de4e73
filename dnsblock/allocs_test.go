package dnsblock

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestServerPathAllocs checks the whole UDP path (socket read, answer,
// socket write), not just the handler: sinkhole answers and cache hits
// allocate nothing per query. The client is a raw socket, so its own
// allocations stay out of the count.
func TestServerPathAllocs(t *testing.T) {
	up := startUpstream(t, answerA)
	s := startShim(t, Config{Upstreams: []string{up.addr}, CacheSize: 100}, newSource(t, testSigs), nil)
	conn, err := net.Dial("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 512)
	for _, name := range []string{"worm.example.", "cached.example."} {
		q := packQuery(t, name, dns.TypeA, true)
		roundTrip := func() {
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(q); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip() // fills the cache for the unlisted name
		const n = 2000
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range n {
			roundTrip()
		}
		runtime.ReadMemStats(&after)
		per := float64(after.Mallocs-before.Mallocs) / n
		t.Logf("%s: %.3f allocations per query over the socket", name, per)
		if per > 0.1 {
			t.Errorf("%s: %.3f allocations per query", name, per)
		}
	}
	if st := s.Stats(); st.CacheHits < 2000 || st.Sinkholed < 2000 {
		t.Errorf("stats %+v", st)
	}
}
