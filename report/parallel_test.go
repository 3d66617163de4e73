package report

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// randomLog writes n sightings of hosts hosts through the real writer:
// several kinds, families (more than 32 signature names, so the overflow
// sets are used), strengths, sensors, ports, many equal times (the ties
// that first and last ports must break as one reader does), times out of
// order, service lines, and bad lines of every kind.
func randomLog(t testing.TB, rng *rand.Rand, n, hosts int, sensor string) []byte {
	return randomLogCfg(t, rng, n, hosts, evidence.Config{Sensor: sensor, EventClock: true, Window: time.Millisecond})
}

// randomLogCfg is randomLog through a writer made with cfg (a line budget
// turns most sightings into network lines).
func randomLogCfg(t testing.TB, rng *rand.Rand, n, hosts int, cfg evidence.Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, cfg)
	svc := w.Service()
	t0 := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	kinds := []evidence.Kind{evidence.DNSSinkhole, evidence.TFTPRefused, evidence.TFTPRequest, evidence.WireMatch}
	for i := range n {
		h := netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(hosts) >> 8), byte(rng.IntN(hosts))})
		if rng.IntN(5) == 0 {
			h = netip.AddrFrom16([16]byte{0x20, 0x01, 0xd, 0xb8, 15: byte(rng.IntN(hosts))})
		}
		sig := rng.IntN(40)
		ev := evidence.Event{Time: t0.Add(time.Duration(rng.IntN(2000)) * time.Second), Kind: kinds[rng.IntN(len(kinds))], Host: h,
			Port: uint16(1000 + rng.IntN(5)), Sig: fmt.Sprintf("sig%d", sig), Family: fmt.Sprintf("Fam%d", sig%7),
			Evidence: signatures.Strength(rng.IntN(2)), Serial: 1, Count: uint64(1 + rng.IntN(3)),
			Proof: evidence.Proof(rng.IntN(int(evidence.ProofTCP) + 1))}
		if ev.Kind == evidence.TFTPRequest && rng.IntN(2) == 0 {
			ev.Sig, ev.Family = "", ""
		}
		w.Record(ev)
		if i%50 == 0 {
			w.Flush()
			switch rng.IntN(6) {
			case 0:
				svc.Info().Str("event", "reload").Msg("")
			case 1:
				buf.WriteString("not json\n")
			case 2:
				buf.WriteString("\n")
			case 3:
				buf.WriteString(`{"time":"2026-11-24T00:00:00Z","event":"wire_match"}` + "\n")
			case 4:
				buf.WriteString(`{"host":"10.0.0.1","time":"x"}` + "\n")
			}
		}
	}
	w.Close()
	return buf.Bytes()
}

type readResult struct {
	hosts     []HostSummary
	nets      []NetworkSummary
	netSights uint64
	sightings uint64
	timeline  Binned
	stats     []ReadStats
	errs      []string
}

func readOne(t testing.TB, f Filter, logs [][]byte) readResult {
	t.Helper()
	a := NewAggregator(f, true)
	var res readResult
	for i, l := range logs {
		r, err := NewReader(bytes.NewReader(l), fmt.Sprintf("log%d", i))
		if err != nil {
			res.errs = append(res.errs, err.Error())
			res.stats = append(res.stats, ReadStats{})
			continue
		}
		for r.Next() {
			a.Add(r.Sighting())
		}
		res.stats = append(res.stats, r.Stats())
		if r.Err() != nil {
			res.errs = append(res.errs, r.Err().Error())
		} else {
			res.errs = append(res.errs, "")
		}
	}
	res.hosts, res.sightings, res.timeline = a.Hosts(), a.Sightings(), a.Timeline().Bin(TimelineBins)
	res.nets, res.netSights = a.Networks(), a.NetworkSightings()
	return res
}

func readParallel(t testing.TB, f Filter, logs [][]byte, n int) readResult {
	t.Helper()
	return readParallelFrom(t, f, logs, n, "")
}

// inMapping, as readParallelFrom's dir, reads plain logs as the pages of a
// mapped file, from memory.
const inMapping = "(mapping)"

// readParallelFrom is readParallel from files written in dir when dir is
// not empty: plain logs are then mapped, not read.
func readParallelFrom(t testing.TB, f Filter, logs [][]byte, n int, dir string) readResult {
	t.Helper()
	p := NewParallelReader(f, true, n)
	var res readResult
	for i, l := range logs {
		name := fmt.Sprintf("log%d", i)
		var st ReadStats
		var err error
		switch {
		case dir == inMapping && len(l) >= 2 && (l[0] != 0x1f || l[1] != 0x8b):
			st, err = p.readMapped(context.Background(), &mapping{data: l}, name)
		case dir != "" && dir != inMapping:
			fd := writeAndOpen(t, filepath.Join(dir, name), l)
			st, err = p.Read(context.Background(), fd, name)
			fd.Close()
		default:
			st, err = p.Read(context.Background(), bytes.NewReader(l), name)
		}
		res.stats = append(res.stats, st)
		res.errs = append(res.errs, "")
		if err != nil {
			res.errs[i] = err.Error()
		}
	}
	a := p.Aggregator()
	res.hosts, res.sightings, res.timeline = a.Hosts(), a.Sightings(), a.Timeline().Bin(TimelineBins)
	res.nets, res.netSights = a.Networks(), a.NetworkSightings()
	return res
}

func tinyLineChunks(t testing.TB, n int) {
	old := parallelChunkSize
	parallelChunkSize = n
	t.Cleanup(func() { parallelChunkSize = old })
}

func sameRead(t *testing.T, what string, one, par readResult) {
	t.Helper()
	if reflect.DeepEqual(one, par) {
		return
	}
	t.Errorf("%s: parallel read differs: %d vs %d hosts, sightings %d vs %d\nstats %+v\n      %+v\nerrs %q\n     %q",
		what, len(one.hosts), len(par.hosts), one.sightings, par.sightings, one.stats, par.stats, one.errs, par.errs)
	for i := range min(len(one.hosts), len(par.hosts)) {
		if !reflect.DeepEqual(one.hosts[i], par.hosts[i]) {
			t.Errorf("row %d:\n%+v\n%+v", i, one.hosts[i], par.hosts[i])
			break
		}
	}
	if !reflect.DeepEqual(one.timeline, par.timeline) {
		t.Error("timelines differ")
	}
}

// TestParallelReadSameAsOneReader: several logs (plain and gzip, bad lines,
// an over-long line, a last line without its newline, a truncated gzip),
// chunks from a few hundred bytes to the default, 1 to 4 workers, and the
// time, family and evidence filters: rows, sightings, timeline, read
// counts (first bad line included) and errors equal one Reader's feeding
// one Aggregator. One log is mostly network lines (a writer over its line
// budget).
func TestParallelReadSameAsOneReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	a := randomLog(t, rng, 3000, 300, "s1")
	b := randomLog(t, rng, 2000, 200, "s2")
	c := randomLog(t, rng, 2000, 50, "s3")
	long := append(append(bytes.Clone(c[:len(c)/2]), bytes.Repeat([]byte("x"), MaxLineSize+10)...), c[len(c)/2:]...)
	z := gz(t, bytes.Repeat(b, 4))
	nets := randomLogCfg(t, rng, 2000, 300, evidence.Config{Sensor: "s4", EventClock: true, Window: time.Millisecond, LineRate: 0.2, LineBurst: 20})
	if !bytes.Contains(nets, []byte(`"network":`)) {
		t.Fatal("the budgeted log has no network lines")
	}
	logs := [][]byte{a, gz(t, b), long, c[:len(c)-7], z[:len(z)*2/3], []byte("\x1f\x8bnot gzip"), nil, nets, c}
	t0 := time.Date(2026, 11, 24, 0, 10, 0, 0, time.UTC)
	filters := []Filter{{}, {Since: t0, Until: t0.Add(10 * time.Minute)}, {Families: []string{"fam3", "FAM5"}}, {StrongOnly: true}}
	for _, size := range []int{300, 1 << 20} {
		tinyLineChunks(t, size)
		for _, f := range filters {
			one := readOne(t, f, logs)
			if len(one.hosts) < 20 || one.errs[4] == "" || len(one.nets) < 3 && f.Families == nil && !f.StrongOnly {
				t.Fatalf("the inputs are too tame: %d hosts, errors %q", len(one.hosts), one.errs)
			}
			for _, n := range []int{1, 3} {
				sameRead(t, fmt.Sprintf("chunks of %d, %d workers, filter %+v", size, n, f), one, readParallel(t, f, logs, n))
				sameRead(t, fmt.Sprintf("files, chunks of %d, %d workers, filter %+v", size, n, f), one, readParallelFrom(t, f, logs, n, t.TempDir()))
			}
		}
	}
}

// TestMergeSameAsOneRead: rows built by merging workers that each read
// every n-th chunk equal one sequential read, for random logs; a per-host
// field Add sets and merge forgets shows up here.
func TestMergeSameAsOneRead(t *testing.T) {
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 2))
		log := randomLog(t, rng, 1500, 1+rng.IntN(400), "s")
		tinyLineChunks(t, 200+rng.IntN(3000))
		one := readOne(t, Filter{}, [][]byte{log})
		sameRead(t, fmt.Sprintf("seed %d", seed), one, readParallel(t, Filter{}, [][]byte{log}, 3))
	}
}

// FuzzParallelRead is differential: any bytes read the same in parallel
// (tiny chunks, three workers) as with one Reader.
func FuzzParallelRead(f *testing.F) {
	tinyLineChunks(f, 64)
	rng := rand.New(rand.NewPCG(1, 1))
	f.Add(randomLog(f, rng, 30, 5, "s"))
	f.Add(gz(f, randomLog(f, rng, 30, 5, "s")))
	f.Add([]byte("{}\n\n{\"host\":\"1.2.3.4\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		one := readOne(t, Filter{}, [][]byte{data})
		par := readParallel(t, Filter{}, [][]byte{data}, 3)
		if !reflect.DeepEqual(one, par) {
			t.Fatalf("differs:\n%+v\n%+v", one, par)
		}
		// As a mapped file's pages, from memory: files, and the fault
		// handling of a real mapping (debug.SetPanicOnFault), stall go
		// test -fuzz's worker; TestParallelReadSameAsOneReader maps real
		// files and TestMappedLogShrinks makes one fault.
		if par := readParallelFrom(t, Filter{}, [][]byte{data}, 3, inMapping); !reflect.DeepEqual(one, par) {
			t.Fatalf("differs as a mapped file:\n%+v\n%+v", one, par)
		}
	})
}

// EachHost yields Hosts' rows in Hosts' order, and the CSV written from it
// is WriteCSV's of Hosts, under every filter.
func TestEachHostSameAsHosts(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	log := randomLog(t, rng, 3000, 500, "s")
	for _, f := range []Filter{{}, {StrongOnly: true}, {VerifiedOnly: true}} {
		a := NewAggregator(f, false)
		r, _ := NewReader(bytes.NewReader(log), "log")
		for r.Next() {
			a.Add(r.Sighting())
		}
		rows := a.Hosts()
		var each []HostSummary
		for h := range a.EachHost {
			each = append(each, *h)
		}
		if len(rows) == 0 || !reflect.DeepEqual(rows, each) {
			t.Fatalf("filter %+v: EachHost yields %d rows unlike Hosts' %d", f, len(each), len(rows))
		}
		var b1, b2 bytes.Buffer
		if err := WriteCSV(&b1, rows); err != nil {
			t.Fatal(err)
		}
		if err := WriteCSVSeq(&b2, a.EachHost); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
			t.Fatalf("filter %+v: WriteCSVSeq differs from WriteCSV", f)
		}
	}
}

// TestSubscribersSameOnAllCores: hosts that move between subscribers
// (and subscribers shared by several hosts) list the same subscribers,
// once each and in order, whether one reader or three workers with tiny
// chunks read the log: a host's first subscriber is kept by id without
// interning, the others are interned, and a merge compares them by name.
func TestSubscribersSameOnAllCores(t *testing.T) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var log bytes.Buffer
		for i := range 3000 {
			h := rng.IntN(200)
			sub := fmt.Sprintf("cust-%03d@bras", h%50)
			if rng.IntN(4) == 0 {
				sub = fmt.Sprintf("cust-%03d@bras", rng.IntN(60))
			}
			fmt.Fprintf(&log, `{"time":"2026-11-24T00:%02d:%02d.000Z","event":"dns_sinkhole","host":"10.0.%d.%d","port":%d,"signature":"sig","family":"Fam","evidence":"strong","subscriber":%q}`+"\n",
				i/60%60, i%60, h/100, h%100, 1000+rng.IntN(3), sub)
		}
		tinyLineChunks(t, 300+rng.IntN(2000))
		one := readOne(t, Filter{}, [][]byte{log.Bytes()})
		many := 0
		for _, h := range one.hosts {
			if len(h.Subscribers) > 1 {
				many++
			}
			if !slices.IsSorted(h.Subscribers) || len(slices.Compact(slices.Clone(h.Subscribers))) != len(h.Subscribers) {
				t.Fatalf("%v: subscribers %q: not sorted and distinct", h.Host, h.Subscribers)
			}
		}
		if many < 50 {
			t.Fatalf("seed %d: only %d hosts with several subscribers", seed, many)
		}
		sameRead(t, fmt.Sprintf("seed %d", seed), one, readParallel(t, Filter{}, [][]byte{log.Bytes()}, 3))
	}
}

// TestMappedLogShrinks: a mapped log cut short while it is read (as
// copytruncate does) faults past its new end; the read stops there with
// an error saying so, counting the lines before, and the process lives.
func TestMappedLogShrinks(t *testing.T) {
	tinyLineChunks(t, 4096)
	rng := rand.New(rand.NewPCG(3, 3))
	log := randomLog(t, rng, 20_000, 300, "s")
	path := filepath.Join(t.TempDir(), "log")
	f := writeAndOpen(t, path, log)
	defer f.Close()
	m := mapFile(f)
	if m == nil {
		t.Fatal("the log was not mapped")
	}
	defer m.close()
	if err := os.Truncate(path, int64(len(log)/2)); err != nil {
		t.Fatal(err)
	}
	p := NewParallelReader(Filter{}, false, 3)
	st, err := p.readMapped(context.Background(), m, "log")
	if err == nil || !strings.Contains(err.Error(), "log: after line ") || !strings.Contains(err.Error(), "shrank while it was read") {
		t.Fatalf("error %v, want the file's shrinking", err)
	}
	half := uint64(bytes.Count(log[:len(log)/2], []byte("\n")))
	if st.Lines == 0 || st.Lines > half+1 {
		t.Fatalf("%d lines counted, want some, at most the %d before the cut", st.Lines, half+1)
	}
	if len(p.Aggregator().Hosts()) == 0 {
		t.Fatal("nothing of what was read before the cut was kept")
	}
}

// writeAndOpen writes data to a new file at path and opens it for reading.
func writeAndOpen(t testing.TB, path string, data []byte) *os.File {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
