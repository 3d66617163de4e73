package evidence

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestWriterFoldsOneHostsNames: one host that proved itself (tcp, or a
// DNS cookie: exchange) sends a stream of distinct names under a listed
// wildcard. Its first HostLines names get lines of their own; the rest
// fold into one summary line per host, event and signature, which counts
// them and their distinct names. The budget bounds the host whatever its
// proof, the host line is there, and the counts add up.
func TestWriterFoldsOneHostsNames(t *testing.T) {
	for _, proof := range []Proof{ProofTCP, ProofExchange, ProofDatagram} {
		t.Run(proof.String(), func(t *testing.T) {
			var buf bytes.Buffer
			const hostLines, n = 8, 50_000
			w := NewWriter(&buf, Config{LineRate: 10, LineBurst: 100, HostLines: hostLines})
			real := netip.MustParseAddr("198.51.100.7")
			for i := 0; i < n; i++ {
				w.Record(Event{Kind: DNSSinkhole, Host: real, Port: uint16(40000 + i%2), Sig: "conficker", Family: "Conficker",
					QName: "x" + strconv.Itoa(i) + ".trafficconverter.biz.", QType: "A", Transport: "tcp", Proof: proof})
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			ls := evidenceLines(t, buf.Bytes())
			var sum, names float64
			var detailed, summary int
			for _, l := range ls {
				if l["host"] != real.String() || l["proof"] != proof.String() {
					t.Errorf("line %v", l)
				}
				sum += l["count"].(float64)
				if nm, ok := l["names"].(float64); ok {
					summary++
					names += nm
				} else {
					detailed++
				}
			}
			if sum != n {
				t.Errorf("counts add up to %v, want %d", sum, n)
			}
			// The summary lines come once a window: the test takes far less
			// than ten.
			if detailed > hostLines || summary < 1 || summary > 10 {
				t.Errorf("%d detailed and %d summary lines (%d lines in all)", detailed, summary, len(ls))
			}
			// Every folded name was distinct; the count is an estimate past a
			// few dozen: HyperLogLog over 1,024 registers, a standard error of
			// 3.3 % with a fresh hash seed each run (one run in a few hundred
			// fell 10.2 % short), so within 15 %, about four and a half errors.
			if want := float64(n - detailed); names < want*0.85 || names > want*1.15 {
				t.Errorf("summary lines count %v distinct names, want about %v", names, want)
			}
			if st := w.Stats(); st.Sightings != n {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestWriterRoundTripKeepsHostLine: with the budget spent by a forged
// flood, a host that proved itself still gets a line naming it, and the
// forged sources fold into network lines.
func TestWriterRoundTripKeepsHostLine(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{LineRate: 1, LineBurst: 10})
	for i := 0; i < 10_000; i++ {
		w.Record(Event{Kind: TFTPRefused, Host: netip.AddrFrom4([4]byte{127, 9, byte(i >> 8), byte(i)}), Port: 1, Sig: "blaster", File: "msblast.exe", Op: "read"})
	}
	real := netip.MustParseAddr("198.51.100.8")
	for i := 0; i < 1000; i++ {
		w.Record(Event{Kind: DNSSinkhole, Host: real, Sig: "conficker", QName: fmt.Sprintf("n%d.example.", i), QType: "A", Transport: "tcp", Proof: ProofTCP})
	}
	w.Close()
	var got float64
	for _, l := range evidenceLines(t, buf.Bytes()) {
		if l["host"] == real.String() {
			got += l["count"].(float64)
		}
	}
	if got != 1000 {
		t.Errorf("the proven host's lines count %v sightings, want 1000:\n%s", got, buf.String())
	}
}

// TestWriterRelayedProofTakesBudget: a dns_lookup's proof is the
// resolver's report, not a round trip wormsink saw: it gets no way past
// the line budget, or one dnstap stream could name a million hosts.
func TestWriterRelayedProofTakesBudget(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{LineRate: 1, LineBurst: 10})
	const n = 5000
	for i := 0; i < n; i++ {
		w.Record(Event{Kind: DNSLookup, Host: netip.AddrFrom4([4]byte{127, 9, byte(i >> 8), byte(i)}), Sig: "conficker",
			QName: "a.example", QType: "A", Transport: "tcp", Resolver: "r", Proof: ProofTCP})
	}
	w.Close()
	if hl := len(evidenceLines(t, buf.Bytes())); hl > 20 {
		t.Errorf("%d host lines from %d relayed sightings, budget 10", hl, n)
	}
}

// TestWriterNeverNamesNonHosts: the unspecified, broadcast and multicast
// addresses and addresses the machine holds (followed live through
// Config.Own) are never a host.
func TestWriterNeverNamesNonHosts(t *testing.T) {
	var buf bytes.Buffer
	own := &ownSet{}
	w := NewWriter(&buf, Config{Own: own})
	rec := func(h string) {
		w.Record(Event{Time: time.Now(), Kind: TFTPRefused, Host: netip.MustParseAddr(h), Sig: "blaster", File: "msblast.exe", Op: "read"})
	}
	for _, h := range []string{"0.0.0.0", "::", "255.255.255.255", "::ffff:255.255.255.255", "224.0.0.1", "239.1.2.3", "ff02::1", "::ffff:224.0.0.9", "198.51.100.9", "198.51.100.10"} {
		rec(h)
	}
	own.add(netip.MustParseAddr("198.51.100.10")) // added after the writer started
	rec("198.51.100.10")
	rec("::ffff:198.51.100.10")
	w.Close()
	var hosts []string
	for _, l := range evidenceLines(t, buf.Bytes()) {
		hosts = append(hosts, l["host"].(string))
	}
	if fmt.Sprint(hosts) != "[198.51.100.9 198.51.100.10]" {
		t.Errorf("hosts %v", hosts)
	}
	if st := w.Stats(); st.Excluded != 10 || st.Sightings != 2 {
		t.Errorf("stats %+v", st)
	}
}

type ownSet struct{ m map[netip.Addr]bool }

func (o *ownSet) add(a netip.Addr) {
	if o.m == nil {
		o.m = map[netip.Addr]bool{}
	}
	o.m[a] = true
}
func (o *ownSet) Contains(a netip.Addr) bool { return o.m[a] }

// BenchmarkRecordHostNames: one proven host, a new name each time, past
// its host lines: every sighting folds into its summary line.
func BenchmarkRecordHostNames(b *testing.B) {
	w := NewWriter(ioDiscard{}, Config{LineRate: 1, LineBurst: 1})
	defer w.Close()
	names := make([]string, 4096)
	for i := range names {
		names[i] = "x" + strconv.Itoa(i) + ".trafficconverter.biz."
	}
	ev := Event{Time: time.Now(), Kind: DNSSinkhole, Host: netip.MustParseAddr("198.51.100.7"), Port: 1, Sig: "conficker",
		QType: "A", Transport: "tcp", Proof: ProofTCP}
	for _, n := range names {
		ev.QName = n
		w.Record(ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev.QName = names[i%len(names)]
		i++
		w.Record(ev)
	}
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }
