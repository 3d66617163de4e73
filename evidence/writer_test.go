package evidence

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"wormsink/signatures"
)

type line map[string]any

func lines(t *testing.T, b []byte) []line {
	t.Helper()
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		if err := CheckLine(l); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func evidenceLines(t *testing.T, b []byte) []line {
	var out []line
	for _, l := range lines(t, b) {
		if _, ok := l["host"]; ok {
			out = append(out, l)
		}
	}
	return out
}

var host = netip.MustParseAddr("198.51.100.7")

func TestWriterFields(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s1"})
	at := time.Date(2003, 8, 11, 16, 23, 5, 123456789, time.FixedZone("X", 3600))
	w.Record(Event{Time: at, Kind: TFTPRefused, Host: host, Port: 1234, Sig: "blaster", Family: "Blaster",
		Serial: 7, File: `C:\msblast.exe`, Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("192.0.2.1:69")})
	w.Record(Event{Time: at, Kind: DNSSinkhole, Host: host, Port: 53000, Sig: "blaster", Family: "Blaster",
		Evidence: signatures.Weak, Serial: 7, QName: "windowsupdate.com.", QType: "A", Transport: "udp"})
	w.Record(Event{Time: at, Kind: WireMatch, Host: host, Port: 1100, Sig: "blaster", Family: "Blaster", Serial: 7,
		Peer: netip.MustParseAddr("203.0.113.9"), Role: RoleRequester, Proto: "udp", DstPort: 69,
		File: "msblast.exe", Mode: "octet", Op: "read", PCAP: "x.pcap", Packet: 42})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ls := lines(t, buf.Bytes())
	if len(ls) != 3 {
		t.Fatalf("%d lines:\n%s", len(ls), buf.String())
	}
	common := map[string]any{"time": "2003-08-11T15:23:05.123Z", "host": "198.51.100.7", "signature": "blaster",
		"family": "Blaster", "count": 1.0, "sensor": "s1", "serial": 7.0}
	want := []map[string]any{
		{"event": "tftp_refused", "port": 1234.0, "evidence": "strong", "file": `C:\msblast.exe`, "mode": "octet", "op": "read", "server": "192.0.2.1:69"},
		{"event": "dns_sinkhole", "port": 53000.0, "evidence": "weak", "qname": "windowsupdate.com.", "qtype": "A", "transport": "udp"},
		{"event": "wire_match", "port": 1100.0, "evidence": "strong", "peer": "203.0.113.9", "role": "requester", "proto": "udp",
			"dst_port": 69.0, "file": "msblast.exe", "pcap": "x.pcap", "packet": 42.0},
	}
	for i, l := range ls {
		for k, v := range common {
			if l[k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, l[k], v)
			}
		}
		for k, v := range want[i] {
			if l[k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, l[k], v)
			}
		}
	}
}

func TestWriterFolds(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s", Window: time.Second})
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	ev := Event{Kind: TFTPRefused, Host: host, Port: 1000, Sig: "blaster", File: "msblast.exe", Mode: "octet", Op: "read"}
	for i := 0; i < 1000; i++ {
		ev.Time = t0.Add(time.Duration(i) * time.Millisecond / 2)
		w.Record(ev)
	}
	// Another port is another customer behind NAT: its own line.
	ev.Port, ev.Time = 1001, t0
	w.Record(ev)
	// The same sighting two windows later starts a new line.
	ev.Port, ev.Time = 1000, t0.Add(3*time.Second)
	w.Record(ev)
	// A count carried in from elsewhere adds up.
	ev.Time, ev.Count = t0.Add(3*time.Second+time.Millisecond), 5
	w.Record(ev)
	w.Close()
	ls := evidenceLines(t, buf.Bytes())
	if len(ls) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(ls), buf.String())
	}
	counts := map[string]float64{}
	for _, l := range ls {
		counts[fmt.Sprintf("%v@%v", l["port"], l["time"])] = l["count"].(float64)
	}
	want := map[string]float64{"1000@2026-11-25T00:00:00.000Z": 1000, "1001@2026-11-25T00:00:00.000Z": 1, "1000@2026-11-25T00:00:03.000Z": 6}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: count %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	if ls[0]["last"] != "2026-11-25T00:00:00.499Z" {
		t.Errorf("last = %v", ls[0]["last"])
	}
	if st := w.Stats(); st.Sightings != 1007 || st.Lines != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestWriterEventClock: with EventClock the lines depend on the sightings'
// times alone, not on how long recording takes: a sighting repeated over
// ten seconds of its own time, recorded with the wall clock stopped (the
// ticker never runs) or slowed (it would run many times), gives the same
// lines, and they are written as the sightings' time moves on, before
// Close.
func TestWriterEventClock(t *testing.T) {
	t0 := time.Date(2003, 8, 11, 16, 30, 0, 0, time.UTC)
	ev := Event{Kind: WireMatch, Host: host, Port: 1025, Sig: "blaster", File: "msblast.exe", Mode: "octet", Op: "read"}
	run := func(pause func()) (string, int) {
		var buf bytes.Buffer
		w := NewWriter(&buf, Config{Sensor: "s", EventClock: true})
		for i := range 100 {
			ev.Time = t0.Add(time.Duration(i) * 100 * time.Millisecond)
			w.Record(ev)
			pause()
		}
		before := len(evidenceLines(t, buf.Bytes()))
		w.Close()
		return buf.String(), before
	}
	fast, before := run(func() {})
	// Slow: each Record waits until the wall clock has moved, so a whole
	// run spans many of the (wall-clock) ticks a plain writer would take.
	slow, _ := run(func() {
		for start := time.Now(); time.Since(start) < 15*time.Millisecond; {
		}
	})
	if fast != slow {
		t.Errorf("lines depend on the recording speed:\n%s\n%s", fast, slow)
	}
	ls := evidenceLines(t, []byte(fast))
	if len(ls) != 10 || before < 8 {
		t.Errorf("%d lines (%d before Close), want 10 one-second lines written as time moves on:\n%s", len(ls), before, fast)
	}
	for _, l := range ls {
		if l["count"].(float64) != 10 {
			t.Errorf("count %v, want 10: %v", l["count"], l)
		}
	}
}

// Many goroutines, many hosts: every sighting is in exactly one line.
func TestWriterConcurrentNothingLost(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Window: 20 * time.Millisecond})
	const workers, each, hosts = 8, 5000, 300
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				h := netip.AddrFrom4([4]byte{10, 0, byte(i % hosts / 256), byte(i % hosts)})
				w.Record(Event{Kind: DNSSinkhole, Host: h, Port: uint16(g), Sig: "x", QName: "a.example.", QType: "A", Transport: "udp"})
			}
		}(g)
	}
	wg.Wait()
	w.Close()
	per := map[string]float64{}
	total := 0.0
	for _, l := range evidenceLines(t, buf.Bytes()) {
		per[l["host"].(string)] += l["count"].(float64)
		total += l["count"].(float64)
	}
	if total != workers*each || len(per) != hosts {
		t.Fatalf("total %v over %d hosts, want %d over %d", total, len(per), workers*each, hosts)
	}
	for h, n := range per {
		if n != workers*each/hosts && n != workers*(each/hosts+1) && n != workers*(each/hosts) {
			t.Errorf("host %s: %v", h, n)
		}
	}
}

// blockingWriter stands for a disk that has stopped answering.
type blockingWriter struct {
	gate chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.gate
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Record must not wait on a stuck disk, and when the tables fill, sightings
// fold per host and then into an overflow count, never vanish.
func TestWriterNeverBlocksAndCountsOverflow(t *testing.T) {
	out := &blockingWriter{gate: make(chan struct{})}
	w := NewWriter(out, Config{Window: 10 * time.Millisecond, MaxPending: 100, MaxAggregates: 50})
	// Let one flush start and block on the disk.
	w.Record(Event{Kind: TFTPRequest, Host: host, File: "first"})
	deadline := time.Now().Add(5 * time.Second)
	for w.Stats().Lines == 0 && time.Now().Before(deadline) {
		// Lines is counted only after the write returns; wait for the
		// batch to be taken instead.
		w.mu.Lock()
		taken := len(w.pending) == 0
		w.mu.Unlock()
		if taken {
			break
		}
		time.Sleep(time.Millisecond)
	}
	const n = 50_000
	sigs := make([]string, 60) // more than the network tables hold, to reach the overflow
	for i := range sigs {
		sigs[i] = fmt.Sprint("s", i)
	}
	// The disk stays stuck until every Record has returned: a Record that
	// waited for the disk would never return. The deadline only turns such
	// a hang into a failure; it measures nothing.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			h := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			w.Record(Event{Kind: TFTPRequest, Host: h, Port: uint16(i), Sig: sigs[i%len(sigs)], File: "f" + strings.Repeat("x", i%3)})
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("Record blocked with the disk stuck")
	}
	st := w.Stats()
	if st.Coarse == 0 || st.Aggregated == 0 || st.Overflow == 0 {
		t.Fatalf("stats %+v: want coarse folding, network lines and overflow", st)
	}
	close(out.gate)
	w.Close()
	var total float64
	for _, l := range lines(t, out.buf.Bytes()) {
		if c, ok := l["count"].(float64); ok {
			total += c
		}
	}
	if total != n+1 {
		t.Fatalf("counts add to %v, want %d", total, n+1)
	}
}

func TestServiceLines(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s9"})
	log := w.Service()
	log.Info().Str("event", "start").Msg("serving")
	w.Close()
	ls := lines(t, buf.Bytes())
	if len(ls) != 1 || ls[0]["event"] != "start" || ls[0]["sensor"] != "s9" || ls[0]["host"] != nil {
		t.Fatalf("service line %v", ls)
	}
	if _, err := time.Parse(time.RFC3339, ls[0]["time"].(string)); err != nil || !strings.HasSuffix(ls[0]["time"].(string), "Z") {
		t.Fatalf("time %v", ls[0]["time"])
	}
}

func BenchmarkRecordRepeat(b *testing.B) {
	w := NewWriter(io.Discard, Config{})
	defer w.Close()
	ev := Event{Time: time.Now(), Kind: TFTPRefused, Host: host, Port: 1, Sig: "blaster", File: "msblast.exe", Mode: "octet", Op: "read"}
	b.ReportAllocs()
	for b.Loop() {
		w.Record(ev)
	}
}

// failOnce fails its first write, as a disk that was briefly full.
type failOnce struct {
	failed bool
	buf    bytes.Buffer
}

func (f *failOnce) Write(p []byte) (int, error) {
	if !f.failed {
		f.failed = true
		return 0, io.ErrShortWrite
	}
	return f.buf.Write(p)
}

// One failed write loses that batch, is counted and returned by Close, and
// does not silence the log for good.
func TestWriterRecoversFromWriteError(t *testing.T) {
	out := &failOnce{}
	w := NewWriter(out, Config{})
	w.Record(Event{Kind: TFTPRequest, Host: host, File: "lost"})
	if err := w.Flush(); err == nil {
		t.Fatal("Flush hid the write error")
	}
	w.Record(Event{Kind: TFTPRequest, Host: host, File: "kept"})
	err := w.Close()
	if err == nil {
		t.Error("Close hid the earlier write error")
	}
	ls := evidenceLines(t, out.buf.Bytes())
	if len(ls) != 1 || ls[0]["file"] != "kept" {
		t.Fatalf("after the failure: %v", ls)
	}
	if st := w.Stats(); st.Errors != 1 || st.Lines != 1 {
		t.Fatalf("stats %+v", st)
	}
}
