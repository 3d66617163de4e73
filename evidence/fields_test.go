package evidence

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"wormsink/signatures"
)

// everyKind records one event of each kind with every field of its kind
// set, long values included, and returns the lines written.
func everyKind(t *testing.T) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s1", MaxPending: 8})
	w.SetAttributor(tableAttributor{})
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	long := strings.Repeat("a", MaxStringLen+10)
	peer := netip.MustParseAddr("203.0.113.9")
	srv := netip.MustParseAddrPort("192.0.2.1:69")
	for i, ev := range []Event{
		{Kind: DNSSinkhole, QName: long, QType: "A", Transport: "udp", Rule: "*.x.example."},
		{Kind: DNSLookup, QName: "a.x.example.", QType: "A", Transport: "tcp", Rule: "*.x.example.", Resolver: long},
		{Kind: TFTPRefused, File: long, Mode: long, Op: "read", Srv: srv, Intercepted: true, Role: RoleServer, Peer: peer, Passed: true},
		{Kind: TFTPRequest, File: "x.bin", Mode: "octet", Op: "read", Srv: srv},
		{Kind: WireMatch, Peer: peer, Role: RoleRequester, Proto: "udp", DstPort: 69, File: "msblast.exe", Mode: "octet", Op: "read", PCAP: "x.pcap", Packet: 3},
	} {
		ev.Time, ev.Host, ev.Port, ev.Sig, ev.Family, ev.Evidence, ev.Serial = at, netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 1000, "blaster", "Blaster", signatures.Strong, 7
		w.Record(ev)
		ev.Time = at.Add(100 * time.Millisecond)
		w.Record(ev) // folded: count and last
	}
	// A network line: the detailed and coarse tables hold 8 each.
	for i := range 40 {
		w.Record(Event{Time: at, Kind: DNSSinkhole, Host: netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), Sig: "blaster", QName: "a.example.", Port: uint16(i)})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// tableAttributor names a subscriber behind NAT for 10.0.0.1 and finds
// several candidates for 10.0.0.2, so lines carry every attribution field.
type tableAttributor struct{}

func (tableAttributor) Attribute(host netip.Addr, port uint16, t time.Time) Attribution {
	switch host {
	case netip.AddrFrom4([4]byte{10, 0, 0, 1}):
		return Attribution{Subscriber: "alice\x00", NATInside: netip.MustParseAddrPort("100.64.0.2:40000")}
	case netip.AddrFrom4([4]byte{10, 0, 0, 2}):
		return Attribution{Candidates: 3}
	}
	return Attribution{}
}

// TestFieldTableIsTheLineFormat: every key the writer writes is in the
// table with the JSON kind the table gives, and every field of the table
// is written by some line (level by service lines only): the writer and
// the table cannot drift apart.
func TestFieldTableIsTheLineFormat(t *testing.T) {
	seen := map[Field]bool{}
	for _, m := range everyKind(t) {
		if err := CheckLine(m); err != nil {
			t.Errorf("%v: %v", m, err)
		}
		for k := range m {
			seen[FieldByName(k)] = true
		}
	}
	for _, f := range Fields() {
		if !seen[f] && f != FieldLevel {
			t.Errorf("field %s is in the table but no line carries it", f)
		}
		if f.Name() == "" || f.Spec().Kind == 0 {
			t.Errorf("field %d has no name or kind in the table", f)
		}
		if FieldByName(f.Name()) != f {
			t.Errorf("field %s: FieldByName gives %d", f, FieldByName(f.Name()))
		}
		if l := f.Spec().Len; l != FieldNone && l.Spec().Kind != JSONNumber {
			t.Errorf("field %s: its length field %s is no number", f, l)
		}
	}
}

func TestCheckLineRefuses(t *testing.T) {
	for _, l := range []string{
		`{"host":"10.0.0.1","hots":"x"}`,
		`{"host":"10.0.0.1","count":"3"}`,
		`{"host":"10.0.0.1","count":-1}`,
		`{"host":"10.0.0.1","count":1.5}`,
		`{"network":"10.0.0.0/24","intercepted":"yes"}`,
		`{"host":1}`,
		`{"host":"10.0.0.1","level":"info"}`,
	} {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if CheckLine(m) == nil {
			t.Errorf("%s: accepted", l)
		}
	}
	var m map[string]any
	json.Unmarshal([]byte(`{"level":"info","event":"start","anything":[1]}`), &m)
	if err := CheckLine(m); err != nil {
		t.Errorf("a service line: %v", err)
	}
}

// TestLookupLinesEscapeAsSinkholeLines: a byte that is not UTF-8 in a
// name is written as \xHH in a dns_lookup line as in a dns_sinkhole line
// (zerolog alone would write U+FFFD and lose it), and the resolver's
// identity and rule are escaped too.
func TestLookupLinesEscapeAsSinkholeLines(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{})
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, k := range []Kind{DNSSinkhole, DNSLookup} {
		w.Record(Event{Time: at, Kind: k, Host: host, Sig: "s", QName: "a\xff.x.example.", QType: "A\xfe", Transport: "udp",
			Rule: "*.x\xfd.example.", Resolver: "r\xfc"})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, l := range lines(t, buf.Bytes()) {
		got[l["event"].(string)] = l
	}
	for _, k := range []Kind{DNSSinkhole, DNSLookup} {
		l := got[string(k)]
		if l["qname"] != `a\xff.x.example.` || l["qtype"] != `A\xfe` || l["rule"] != `*.x\xfd.example.` {
			t.Errorf("%s: qname %q qtype %q rule %q; want the bytes escaped as \\xHH", k, l["qname"], l["qtype"], l["rule"])
		}
		if bytes.Contains(buf.Bytes(), []byte("\ufffd")) || bytes.Contains(buf.Bytes(), []byte(`\ufffd`)) {
			t.Errorf("a byte was replaced by U+FFFD:\n%s", buf.Bytes())
		}
	}
	if l := got[string(DNSLookup)]; l["resolver"] != `r\xfc` {
		t.Errorf("resolver %q, want r\\xfc", l["resolver"])
	}
}

// FuzzCheckLine: CheckLine never panics, and a line the writer writes
// always passes it.
func FuzzCheckLine(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-06T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.1","port":1,"count":2,"intercepted":true}`))
	f.Add([]byte(`{"network":"10.0.0.0/24","count":1e3}`))
	f.Add([]byte(`{"level":"warn"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			CheckLine(m)
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if d.Decode(&m) == nil {
			CheckLine(m)
		}
	})
}

// TestFieldsDocumented: docs/evidence-fields.md names every field of the
// table, so the document cannot fall behind it.
func TestFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/evidence-fields.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range Fields() {
		if !bytes.Contains(doc, []byte("`"+f.Name()+"`")) {
			t.Errorf("docs/evidence-fields.md does not name %s", f)
		}
	}
}
