package report

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

var (
	host1 = netip.MustParseAddr("10.0.0.1")
	host2 = netip.MustParseAddr("10.0.0.2")
	host3 = netip.MustParseAddr("10.0.0.3")
	host4 = netip.MustParseAddr("2001:db8::4")
	host5 = netip.MustParseAddr("10.0.0.5")
)

func dnsEv(h netip.Addr, at time.Time, sig, fam string, ev signatures.Strength) evidence.Event {
	return evidence.Event{Time: at, Kind: evidence.DNSSinkhole, Host: h, Port: 40000, Sig: sig, Family: fam, Evidence: ev,
		QName: "kimble.org", QType: "A", Transport: "udp", Serial: 1}
}

func tftpEv(h netip.Addr, at time.Time, port uint16) evidence.Event {
	return evidence.Event{Time: at, Kind: evidence.TFTPRefused, Host: h, Port: port, Sig: "blaster", Family: "Blaster",
		File: "msblast.exe", Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("192.0.2.69:69"), Serial: 1}
}

func wireEv(h netip.Addr, at time.Time) evidence.Event {
	return evidence.Event{Time: at, Kind: evidence.WireMatch, Host: h, Port: 4444, Sig: "welchia", Family: "Welchia",
		Peer: netip.MustParseAddr("10.9.9.9"), Role: evidence.RoleRequester, Proto: "udp", DstPort: 69, Serial: 1}
}

// sensorLog writes batches through the real writer, flushing between
// batches so that later batches may carry earlier times (out of order).
func sensorLog(t testing.TB, sensor string, batches ...[]evidence.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: sensor})
	svc := w.Service()
	svc.Info().Str("event", "start").Msg("")
	for _, b := range batches {
		for _, ev := range b {
			w.Record(ev)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	svc.Info().Str("event", "stop").Msg("")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// scenario: two sensors, folding, out-of-order times, weak-only hosts, a
// tftp_request with no family, and two bad lines.
func scenario(t testing.TB) (logA, logB []byte) {
	logA = sensorLog(t, "sensor-a",
		[]evidence.Event{
			dnsEv(host1, t0, "blaster", "Blaster", signatures.Weak),
			dnsEv(host1, t0.Add(300*time.Millisecond), "blaster", "Blaster", signatures.Weak), // folds into the line above
			tftpEv(host2, t0.Add(time.Hour), 1069),
		},
		[]evidence.Event{wireEv(host1, t0.Add(-time.Hour))}, // earlier than what was written before
	)
	logA = append(logA, "not json at all\n{\"time\":\"2026-11-24T12:00:00.000Z\",\"event\":\"dns_sinkhole\"\n"...)
	logB = sensorLog(t, "sensor-b",
		[]evidence.Event{
			dnsEv(host1, t0.Add(2*time.Hour), "blaster", "Blaster", signatures.Weak),
			dnsEv(host3, t0.Add(30*time.Minute), "blaster.e", "Blaster", signatures.Weak),
			{Time: t0.Add(40 * time.Minute), Kind: evidence.TFTPRequest, Host: host4, Port: 2000, Evidence: signatures.Weak,
				File: "setup.exe", Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("192.0.2.69:69")},
			tftpEv(host5, t0.Add(3*time.Hour), 1100),
			tftpEv(host5, t0.Add(3*time.Hour+10*time.Second), 1101),
		},
	)
	return logA, logB
}

func aggregate(t testing.TB, f Filter, logs ...[]byte) ([]HostSummary, ReadStats) {
	t.Helper()
	a := NewAggregator(f, true)
	var total ReadStats
	for i, l := range logs {
		r, err := NewReader(bytes.NewReader(l), "log"+string(rune('A'+i)))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			a.Add(r.Sighting())
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		total.Add(r.Stats())
	}
	return a.Hosts(), total
}

func TestReportScenario(t *testing.T) {
	logA, logB := scenario(t)
	if !bytes.Contains(logA, []byte(`"count":2,"last":"2026-11-24T12:00:00.300Z"`)) {
		t.Fatalf("the writer did not fold the repeat as expected:\n%s", logA)
	}
	rows, st := aggregate(t, Filter{}, logA, logB)
	want := []HostSummary{
		{Host: host1, FirstSeen: t0.Add(-time.Hour), LastSeen: t0.Add(2 * time.Hour), FirstPort: 4444, LastPort: 40000, Events: 4,
			Evidence: signatures.Strong, Families: []string{"Blaster", "Welchia"}, Signatures: []string{"blaster", "welchia"},
			Sources: Sources{DNS: 3, Wire: 1}, Sensors: []string{"sensor-a", "sensor-b"}},
		{Host: host5, FirstSeen: t0.Add(3 * time.Hour), LastSeen: t0.Add(3*time.Hour + 10*time.Second), FirstPort: 1100, LastPort: 1101, Events: 2,
			Evidence: signatures.Strong, Families: []string{"Blaster"}, Signatures: []string{"blaster"},
			Sources: Sources{TFTP: 2}, Sensors: []string{"sensor-b"}},
		{Host: host2, FirstSeen: t0.Add(time.Hour), LastSeen: t0.Add(time.Hour), FirstPort: 1069, LastPort: 1069, Events: 1,
			Evidence: signatures.Strong, Families: []string{"Blaster"}, Signatures: []string{"blaster"},
			Sources: Sources{TFTP: 1}, Sensors: []string{"sensor-a"}},
		{Host: host3, FirstSeen: t0.Add(30 * time.Minute), LastSeen: t0.Add(30 * time.Minute), FirstPort: 40000, LastPort: 40000, Events: 1,
			Evidence: signatures.Weak, Families: []string{"Blaster"}, Signatures: []string{"blaster.e"},
			Sources: Sources{DNS: 1}, Sensors: []string{"sensor-b"}},
		{Host: host4, FirstSeen: t0.Add(40 * time.Minute), LastSeen: t0.Add(40 * time.Minute), FirstPort: 2000, LastPort: 2000, Events: 1,
			Evidence: signatures.Weak, Families: []string{}, Signatures: []string{},
			Sources: Sources{TFTP: 1}, Sensors: []string{"sensor-b"}},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows:\n%+v\nwant\n%+v", rows, want)
	}
	if st.Malformed != 2 || st.Service != 4 || st.Evidence != 8 || st.Sightings != 9 {
		t.Errorf("stats %+v, want 2 malformed, 4 service, 8 evidence lines, 9 sightings", st)
	}
	if !strings.HasPrefix(st.FirstBad, "logA:") || !strings.Contains(st.FirstBad, "not a JSON object") {
		t.Errorf("first bad line %q does not name the log and line", st.FirstBad)
	}
}

func TestReportFilters(t *testing.T) {
	logA, logB := scenario(t)
	hostsOf := func(rows []HostSummary) []netip.Addr {
		var out []netip.Addr
		for _, r := range rows {
			out = append(out, r.Host)
		}
		return out
	}
	tests := []struct {
		name   string
		f      Filter
		want   []netip.Addr
		events []uint64
	}{
		{"strong only", Filter{StrongOnly: true}, []netip.Addr{host1, host5, host2}, []uint64{4, 2, 1}},
		{"since", Filter{Since: t0.Add(90 * time.Minute)}, []netip.Addr{host5, host1}, []uint64{2, 1}},
		{"until", Filter{Until: t0.Add(35 * time.Minute)}, []netip.Addr{host1, host3}, []uint64{3, 1}},
		{"window", Filter{Since: t0.Add(20 * time.Minute), Until: t0.Add(time.Hour)}, []netip.Addr{host2, host3, host4}, []uint64{1, 1, 1}},
		{"family any case", Filter{Families: []string{"welchia"}}, []netip.Addr{host1}, []uint64{1}},
		{"two families", Filter{Families: []string{"WELCHIA", "blaster"}}, []netip.Addr{host1, host5, host2, host3}, []uint64{4, 2, 1, 1}},
		{"folded line overlapping the window counts whole", Filter{Since: t0.Add(200 * time.Millisecond), Until: t0.Add(time.Second)}, []netip.Addr{host1}, []uint64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, _ := aggregate(t, tt.f, logA, logB)
			if got := hostsOf(rows); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("hosts %v, want %v", got, tt.want)
			}
			for i, r := range rows {
				if r.Events != tt.events[i] {
					t.Errorf("%v: events %d, want %d", r.Host, r.Events, tt.events[i])
				}
				if !tt.f.Since.IsZero() && r.FirstSeen.Before(tt.f.Since) || !tt.f.Until.IsZero() && r.LastSeen.After(tt.f.Until) {
					t.Errorf("%v: seen %v..%v outside the window", r.Host, r.FirstSeen, r.LastSeen)
				}
			}
		})
	}
}

func TestSortOrder(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.9")
	b := netip.MustParseAddr("10.0.0.10")
	c := netip.MustParseAddr("::1")
	rows := []HostSummary{
		{Host: c, Evidence: signatures.Weak, Events: 100},
		{Host: b, Evidence: signatures.Strong, Events: 5},
		{Host: a, Evidence: signatures.Strong, Events: 5},
		{Host: c, Evidence: signatures.Strong, Events: 6},
		{Host: a, Evidence: signatures.Weak, Events: 100},
	}
	SortHosts(rows)
	want := []struct {
		h  netip.Addr
		ev signatures.Strength
		n  uint64
	}{{c, signatures.Strong, 6}, {a, signatures.Strong, 5}, {b, signatures.Strong, 5}, {a, signatures.Weak, 100}, {c, signatures.Weak, 100}}
	for i, w := range want {
		if rows[i].Host != w.h || rows[i].Evidence != w.ev || rows[i].Events != w.n {
			t.Errorf("row %d: %v %v %d, want %v %v %d", i, rows[i].Host, rows[i].Evidence, rows[i].Events, w.h, w.ev, w.n)
		}
	}
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGzip(t *testing.T) {
	logA, logB := scenario(t)
	plain, _ := aggregate(t, Filter{}, logA, logB)
	zipped, st := aggregate(t, Filter{}, gz(t, logA), logB)
	if !reflect.DeepEqual(plain, zipped) {
		t.Errorf("gzip changed the report:\n%+v\n%+v", zipped, plain)
	}
	if st.Malformed != 2 {
		t.Errorf("malformed %d, want 2", st.Malformed)
	}
	// Several gzip members one after another (logrotate + cat) read as one.
	both, _ := aggregate(t, Filter{}, append(gz(t, logA), gz(t, logB)...))
	if !reflect.DeepEqual(plain, both) {
		t.Errorf("concatenated gzip members changed the report")
	}
}

func TestTruncatedGzip(t *testing.T) {
	logA, _ := scenario(t)
	var big bytes.Buffer
	for big.Len() < 256<<10 {
		big.Write(logA)
	}
	z := gz(t, big.Bytes())
	r, err := NewReader(bytes.NewReader(z[:len(z)/2]), "cut.gz")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r.Next() {
		n++
	}
	if r.Err() == nil || !errors.Is(r.Err(), io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want unexpected EOF", r.Err())
	}
	if !strings.Contains(r.Err().Error(), "cut.gz") {
		t.Errorf("error %q does not name the file", r.Err())
	}
	if n == 0 || uint64(n) != r.Stats().Evidence {
		t.Errorf("read %d records before the cut (stats %+v), want some", n, r.Stats())
	}
}

func TestLongLineSkipped(t *testing.T) {
	logA, _ := scenario(t)
	long := append([]byte(`{"pad":"`), bytes.Repeat([]byte("x"), MaxLineSize+10)...)
	long = append(long, "\"}\n"...)
	// A valid line longer than the read buffer but within MaxLineSize is read.
	okLong := `{"pad":"` + strings.Repeat("y", 3*bufSize) + `","time":"2026-11-24T10:00:00Z","event":"wire_match","host":"10.7.7.7","evidence":"strong"}` + "\n"
	in := append(append(append(long, okLong...), logA...), long[:100]...) // and a last line without newline
	r, err := NewReader(bytes.NewReader(in), "long")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for r.Next() {
		n++
	}
	if r.Err() != nil || n != 4 {
		t.Fatalf("read %d records, err %v; want 4, nil", n, r.Err())
	}
	if st := r.Stats(); st.Malformed != 4 || !strings.Contains(st.FirstBad, "long:1: ") || !strings.Contains(st.FirstBad, "too long") {
		t.Errorf("stats %+v: want the long line, two bad lines and the torn last line counted", st)
	}
}

// Memory grows with hosts, not lines: a second pass over the same lines
// adds no per-host state.
func BenchmarkAggregate(b *testing.B) {
	var evs []evidence.Event
	for i := 0; i < 1000; i++ {
		h := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		evs = append(evs, tftpEv(h, t0.Add(time.Duration(i)*time.Second), uint16(1024+i)))
	}
	log := sensorLog(b, "s", evs)
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	a := NewAggregator(Filter{}, false)
	for b.Loop() {
		r, _ := NewReader(bytes.NewReader(log), "bench")
		for r.Next() {
			a.Add(r.Sighting())
		}
	}
}

// BenchmarkReportFile measures reading and aggregating a real log named by
// WORMSINK_PERF_LOG (made by testdata/report/gen); it does nothing without.
func BenchmarkReportFile(b *testing.B) {
	path := os.Getenv("WORMSINK_PERF_LOG")
	if path == "" {
		b.Skip("set WORMSINK_PERF_LOG to a log made by testdata/report/gen")
	}
	b.ReportAllocs()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		r, _ := NewReader(f, path)
		a := NewAggregator(Filter{}, false)
		for r.Next() {
			a.Add(r.Sighting())
		}
		b.ReportMetric(float64(r.Stats().Lines), "lines/op")
		f.Close()
	}
}

// TestDNSLookupCountsAsDNS: dns_lookup lines (a resolver's dnstap) are
// evidence counted under dns, by the fast reader and the fallback alike.
func TestDNSLookupCountsAsDNS(t *testing.T) {
	lookup := evidence.Event{Time: t0, Kind: evidence.DNSLookup, Host: host1, Port: 53001, Sig: "conficker", Family: "Conficker",
		Evidence: signatures.Strong, QName: "x.conficker.example", QType: "A", Transport: "tcp", Resolver: "unbound-1", Serial: 1}
	log := sensorLog(t, "sensor-a", []evidence.Event{lookup, dnsEv(host1, t0.Add(time.Minute), "blaster", "Blaster", signatures.Weak)})
	if !bytes.Contains(log, []byte(`"event":"dns_lookup"`)) || !bytes.Contains(log, []byte(`"resolver":"unbound-1"`)) {
		t.Fatalf("writer did not write the dns_lookup fields:\n%s", log)
	}
	// The same line with an escape in it takes the encoding/json path.
	slow := bytes.Replace(log, []byte(`"resolver":"unbound-1"`), []byte(`"resolver":"unbound\u002d1"`), 1)
	for name, l := range map[string][]byte{"fast": log, "fallback": slow} {
		hosts, st := aggregate(t, Filter{}, l)
		if st.Malformed != 0 || len(hosts) != 1 || hosts[0].Events != 2 || hosts[0].Sources.DNS != 2 || hosts[0].Evidence != signatures.Strong {
			t.Fatalf("%s: %+v %+v", name, hosts, st)
		}
	}
}
