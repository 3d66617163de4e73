package attribution

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"wormsink/store"
)

// bigIndex is 10 M NAT bindings: 500 public addresses, 10,000 ports each,
// every port held twice in a day by different inside addresses, behind
// 100,000 RADIUS sessions naming the inside addresses' subscribers.
var bigIndex struct {
	once sync.Once
	x    *Index
}

const (
	bigPublic   = 500
	bigPorts    = 10_000
	bigRounds   = 2
	bigSessions = 100_000
)

func buildBigIndex() *Index {
	bigIndex.once.Do(func() {
		x := NewIndex(DefaultSessionTimeout, DefaultNATTimeout)
		day := t0.UnixMilli()
		for i := range bigSessions {
			in := addrFrom(0x64400000 + uint32(i)) // 100.64.0.0/10
			x.putSessionLocked(&Session{NAS: mustAddr("192.0.2.1"), ID: fmt.Sprint(i), Subscriber: fmt.Sprintf("sub-%d", i),
				Framed: in, Start: t0.Add(-time.Hour), Last: t0.Add(-time.Hour)})
		}
		var b Binding
		b.Source = FormatULOGD
		for r := range bigRounds {
			for p := range bigPublic {
				b.Public = addrFrom(0xcb007100 + uint32(p)) // 203.0.113.0/24 and on
				for port := range bigPorts {
					n := uint32(r*bigPublic*bigPorts + p*bigPorts + port)
					b.Inside = addrFrom(0x64400000 + n%bigSessions)
					b.PortLo, b.PortHi, b.InsidePort = uint16(1024+port), uint16(1024+port), uint16(30000+port%20000)
					start := day + int64(r)*12*3600*1000 + int64(port)
					b.Start, b.Last = time.UnixMilli(start), time.UnixMilli(start)
					b.End = time.UnixMilli(start + 6*3600*1000)
					x.putNATLocked(&b)
				}
			}
		}
		bigIndex.x = x
	})
	return bigIndex.x
}

// BenchmarkLookup10M attributes one sighting among 10 M NAT bindings: the
// public address and port resolve to an inside address, that to its
// RADIUS session's subscriber.
func BenchmarkLookup10M(b *testing.B) {
	x := buildBigIndex()
	if _, n := x.Len(); n != bigPublic*bigPorts*bigRounds {
		b.Fatalf("%d bindings", n)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type q struct {
		a    netip.Addr
		port uint16
		t    time.Time
	}
	qs := make([]q, 4096)
	for i := range qs {
		r := rng.IntN(bigRounds)
		port := rng.IntN(bigPorts)
		qs[i] = q{addrFrom(0xcb007100 + uint32(rng.IntN(bigPublic))), uint16(1024 + port),
			t0.Add(time.Duration(r)*12*time.Hour + time.Duration(port)*time.Millisecond + time.Hour)}
	}
	if r := x.Lookup(qs[0].a, qs[0].port, qs[0].t); r.Subscriber == "" {
		b.Fatalf("no subscriber: %+v", r)
	}
	// Building the index left garbage: collect it now so that the GC's
	// workers are not counted, and count the CPU of the looking thread
	// alone (on a loaded machine the wall clock also counts the others).
	runtime.GC()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPUNow()
	i := 0
	for b.Loop() {
		q := &qs[i&4095]
		x.Lookup(q.a, q.port, q.t)
		i++
	}
	b.ReportMetric((threadCPUNow()-cpu0)*1000/float64(b.N), "cpu-ns/lookup")
	// Reported after the loop: ResetTimer drops metrics reported before it.
	b.ReportMetric(float64(mem.HeapInuse)/float64(bigPublic*bigPorts*bigRounds), "heap-B/binding")
}

func benchAttributor(b *testing.B) (*Attributor, func()) {
	b.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(context.Background(), Config{DB: db, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Serve(ctx); close(done) }()
	return a, func() { cancel(); <-done; db.Close() }
}

// BenchmarkIngestNAT stores conntrack NAT events on SQLite as serve does
// with a followed ulogd2 log: each connection a NEW and, most of them, a
// DESTROY a little later, both parsed from ulogd2 JSON lines.
func BenchmarkIngestNAT(b *testing.B) {
	a, stop := benchAttributor(b)
	defer stop()
	ctx := context.Background()
	const window = 1000 // connections open at once
	line := func(ev int, i int, start, end int64) []byte {
		port := 1024 + i%60000
		s := fmt.Sprintf(`{"timestamp": "2026-12-06T20:45:44", "dvc": "Netfilter", "orig.ip.protocol": 17, "orig.l4.sport": %d, "orig.l4.dport": 53, "reply.ip.protocol": 17, "reply.l4.sport": 53, "reply.l4.dport": %d, "ct.id": %d, "ct.event": %d, "flow.start.sec": %d, "flow.start.usec": 815015, `,
			30000+i%20000, port, i, ev, start)
		if ev == 4 {
			s += fmt.Sprintf(`"flow.end.sec": %d, "flow.end.usec": 1000, `, end)
		}
		s += fmt.Sprintf(`"oob.family": 2, "oob.protocol": 0, "src_ip": "100.64.%d.%d", "dest_ip": "198.51.100.2", "reply.ip.saddr.str": "198.51.100.2", "reply.ip.daddr.str": "203.0.113.%d"}`,
			(i/250)%256, i%250+1, (i/60000)%250+1)
		return []byte(s)
	}
	lines := make([][]byte, 0, 2*b.N+2*window)
	base := t0.Unix()
	for i := 0; i < b.N/2+window; i++ {
		lines = append(lines, line(1, i, base+int64(i/1000), 0))
		if i >= window {
			j := i - window
			lines = append(lines, line(4, j, base+int64(j/1000), base+int64(i/1000)))
		}
	}
	lines = lines[:b.N]
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuNow()
	for _, l := range lines {
		ev, err := ParseULOGD(l, time.UTC)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.NAT(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(cpuSince(cpu0)/float64(b.N), "cpu-µs/event")
	if st := a.Stats(); st.Errors > 0 {
		b.Fatalf("%d batches failed", st.Errors)
	}
}

// BenchmarkRADIUS sends Accounting-Requests over loopback UDP to the
// server, which stores each on SQLite before it answers: Start and Stop
// of distinct sessions, from 512 NAS conversations per P at once. Each
// waits for its answer, which comes after the batch's commit (up to
// DefaultRADIUSGather plus DefaultBatchDelay later): N conversations in a
// closed loop pass at most N/120 ms requests a second, so the rate needs
// as many in flight as a NAS fleet sending thousands a second has.
func BenchmarkRADIUS(b *testing.B) {
	a, stop := benchAttributor(b)
	defer stop()
	secrets, _ := ParseSecrets(stringsReader("127.0.0.1 s3cret\n"), "secrets")
	srv, err := NewRADIUS(RADIUSConfig{Secrets: secrets, Log: zerolog.Nop(), Listen: "127.0.0.1:0"}, a)
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() { srv.Serve(context.Background()); close(served) }()
	defer func() { srv.Shutdown(context.Background()); <-served }()
	addr := srv.Addr().String()
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(512)
	start, cpu0 := time.Now(), cpuNow()
	b.RunParallel(func(pb *testing.PB) {
		// One socket per NAS conversation, as a NAS or a proxy keeps: the
		// client's own cost stays small next to the server's.
		c, err := net.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			n := seq.Add(1)
			p := radius.New(radius.CodeAccountingRequest, []byte("s3cret"))
			rfc2865.UserName_SetString(p, fmt.Sprintf("user-%d", n/2))
			rfc2866.AcctSessionID_SetString(p, fmt.Sprintf("sess-%d", n/2))
			st := rfc2866.AcctStatusType_Value_Start
			if n%2 == 1 {
				st = rfc2866.AcctStatusType_Value_Stop
			}
			rfc2866.AcctStatusType_Set(p, st)
			rfc2865.NASIPAddress_Set(p, net.IPv4(192, 0, 2, 1))
			rfc2865.FramedIPAddress_Set(p, net.IPv4(100, 64, byte(n>>8), byte(n)))
			req, err := p.Encode()
			if err != nil {
				b.Error(err)
				return
			}
			for try := 0; ; try++ {
				if try == 20 {
					b.Error("no answer")
					return
				}
				c.Write(req)
				c.SetReadDeadline(time.Now().Add(time.Second))
				m, err := c.Read(buf)
				if err != nil {
					continue // lost or slow: the NAS retransmits
				}
				if m >= 20 && radius.Code(buf[0]) == radius.CodeAccountingResponse && buf[1] == req[1] {
					break
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
	b.ReportMetric(cpuSince(cpu0)/float64(b.N), "cpu-µs/request")
}

// cpuNow is the CPU time the process has used, in µs: on a machine shared
// with other work the wall clock says little, the CPU time per record says
// what one core does.
func cpuNow() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}

func cpuSince(t float64) float64 { return cpuNow() - t }

// threadCPUNow is the CPU time the calling OS thread has used, in µs.
func threadCPUNow() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}

// BenchmarkAccountBatch is the writer's share of RADIUS: batches of 100
// accounting records (the Starts of new sessions, then, in the next
// batch, their Stops), each stored in a transaction of its own before the
// next is queued, as RADIUS at a thousand a second fills one in
// DefaultBatchDelay.
func BenchmarkAccountBatch(b *testing.B) {
	a, stop := benchAttributor(b)
	defer stop()
	ctx := context.Background()
	const per = 100
	nas := netip.MustParseAddr("192.0.2.1")
	evs := make([]AcctEvent, per)
	ids := make([]string, per)
	b.ReportAllocs()
	cpu0 := cpuNow()
	b.ResetTimer()
	for n := 0; n < b.N; n += per {
		stopping := (n/per)%2 == 1
		for i := range evs {
			if !stopping {
				ids[i] = fmt.Sprintf("sess-%d-%d", n, i)
			}
			evs[i] = AcctEvent{Status: AcctStart, At: time.Now(), Session: Session{NAS: nas, ID: ids[i],
				Subscriber: "user-" + ids[i], Framed: netip.AddrFrom4([4]byte{100, 64, byte(n >> 8), byte(i)})}}
			if stopping {
				evs[i].Status = AcctStop
			}
		}
		c, err := a.AccountBatch(ctx, evs)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(cpuSince(cpu0)/float64(b.N), "cpu-µs/record")
}
