package dnsblock

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the upstream latency buckets in
// Stats.UpstreamLatency (a Prometheus histogram maps onto them directly).
var LatencyBounds = [...]time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
}

// Stats is a snapshot of the shim's counters. Every field only grows.
type Stats struct {
	// Answers by outcome; each query counts once.
	Sinkholed uint64 // policy answers (sinkhole, nxdomain, nodata), CNAME hits included
	Forwarded uint64 // answered with the upstream's answer
	CacheHits uint64 // answered from the cache
	Refused   uint64 // client outside --allow
	ServFail  uint64 // no upstream answered in time, or its answer could not be checked
	// Unchecked counts upstream answers refused because the policy could
	// not check them (undecodable names, pointer loops, too many CNAMEs);
	// the client got SERVFAIL (counted in ServFail too).
	Unchecked uint64
	FormErr   uint64 // malformed query
	NotImp    uint64 // opcode other than QUERY
	Dropped   uint64 // not answered: not a query, unreadable, or overload
	// Overload detail (the queries are also in Dropped or ServFail).
	Jostled       uint64 // forwards dropped for a newer query when every slot was taken
	ClientLimited uint64 // queries refused a slot: the client had its share in progress
	BudgetLimited uint64 // queries refused: the forwards in progress held their byte budget
	Merged        uint64 // forwards that shared an identical query already in progress
	TCPEvicted    uint64 // idle client TCP connections closed to make room
	TCPRejected   uint64 // client TCP connections closed at accept (outside --allow, or no room)

	// Upstream side.
	UpstreamErrors  uint64 // attempts that failed or timed out
	UpstreamStrays  uint64 // answers dropped: unknown ID or question mismatch
	UpstreamLatency [len(LatencyBounds) + 1]uint64
	// UpstreamLatencySum is the sum of the successful attempts' latencies.
	UpstreamLatencySum time.Duration

	// Walled garden: quarantined clients' queries answered with the
	// notice address, and those of their queries forwarded because the
	// name is allowed.
	Gardened     uint64
	GardenPassed uint64
}

// UpstreamLatencyCount is how many latencies the histogram holds.
func (s Stats) UpstreamLatencyCount() uint64 {
	var n uint64
	for _, c := range s.UpstreamLatency {
		n += c
	}
	return n
}

type counters struct {
	sinkholed, forwarded, cacheHits, refused, servFail, formErr, notImp, dropped atomic.Uint64
	upErrors, upStrays, upLatSum, unchecked                                      atomic.Uint64
	jostled, clientLimited, merged, tcpEvicted, tcpRejected, budgetLimited       atomic.Uint64
	gardened, gardenPassed                                                       atomic.Uint64
	upLat                                                                        [len(LatencyBounds) + 1]atomic.Uint64
}

func (c *counters) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	c.upLat[i].Add(1)
	c.upLatSum.Add(uint64(d))
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Sinkholed: c.sinkholed.Load(), Forwarded: c.forwarded.Load(), CacheHits: c.cacheHits.Load(),
		Refused: c.refused.Load(), ServFail: c.servFail.Load(), FormErr: c.formErr.Load(),
		NotImp: c.notImp.Load(), Dropped: c.dropped.Load(),
		Unchecked: c.unchecked.Load(), Jostled: c.jostled.Load(), ClientLimited: c.clientLimited.Load(), BudgetLimited: c.budgetLimited.Load(), Merged: c.merged.Load(),
		TCPEvicted: c.tcpEvicted.Load(), TCPRejected: c.tcpRejected.Load(), UpstreamErrors: c.upErrors.Load(), UpstreamStrays: c.upStrays.Load(),
		UpstreamLatencySum: time.Duration(c.upLatSum.Load()),
		Gardened:           c.gardened.Load(), GardenPassed: c.gardenPassed.Load(),
	}
	for i := range c.upLat {
		s.UpstreamLatency[i] = c.upLat[i].Load()
	}
	return s
}
