package evidence

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"wormsink/signatures"
)

// Every line says its proof; sightings of different proof are never
// folded together (the counts still add up); --trusted-sources raises a
// datagram to trusted-source and leaves a better proof alone.
func TestProofLines(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s", TrustedSources: Networks{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	ev := Event{Time: at, Kind: TFTPRefused, Host: netip.MustParseAddr("192.0.2.1"), Port: 1069, Sig: "blaster", Family: "Blaster",
		Evidence: signatures.Strong, File: "msblast.exe", Mode: "octet", Op: "read"}
	w.Record(ev)
	w.Record(ev)
	up := ev
	up.Proof = ProofExchange
	w.Record(up)
	trusted := ev
	trusted.Host = netip.MustParseAddr("::ffff:10.9.1.1")
	w.Record(trusted)
	trustedTCP := ev
	trustedTCP.Host, trustedTCP.Proof = netip.MustParseAddr("2001:db8::7"), ProofTCP
	w.Record(trustedTCP)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		got[m["host"].(string)+" "+m["proof"].(string)] += m["count"].(float64)
	}
	want := map[string]float64{"192.0.2.1 datagram": 2, "192.0.2.1 exchange": 1, "::ffff:10.9.1.1 trusted-source": 1, "2001:db8::7 tcp": 1}
	if len(got) != len(want) {
		t.Fatalf("lines %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: count %v, want %v (all %v)", k, got[k], v, got)
		}
	}
}

func TestProofNames(t *testing.T) {
	for p := ProofDatagram; p <= ProofTCP; p++ {
		back, ok := ParseProof(p.String())
		if !ok || back != p {
			t.Errorf("%v does not read back", p)
		}
		if p.Verified() != (p != ProofDatagram) {
			t.Errorf("%v: verified %v", p, p.Verified())
		}
	}
	if Proof(200).String() != "datagram" {
		t.Error("an unknown proof must claim nothing")
	}
	if _, ok := ParseProof("forged"); ok {
		t.Error("parsed a proof that does not exist")
	}
}

func TestParseNetworks(t *testing.T) {
	n, err := ParseNetworks(" 10.1.2.3/8, 192.0.2.7 ,2001:db8::1/32,::ffff:198.51.100.0/120,")
	if err != nil {
		t.Fatal(err)
	}
	if got := n.join(); got != "10.0.0.0/8,192.0.2.7/32,2001:db8::/32,198.51.100.0/24" {
		t.Errorf("parsed %s", got)
	}
	for _, a := range []string{"10.200.0.1", "::ffff:10.0.0.1", "192.0.2.7", "2001:db8:ff::1", "198.51.100.9"} {
		if !n.Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not contained", a)
		}
	}
	if n.Contains(netip.MustParseAddr("192.0.2.8")) {
		t.Error("192.0.2.8 contained")
	}
	for _, bad := range []string{"nonsense", "10.0.0.0/33", "10.0.0.0/8,x"} {
		if _, err := ParseNetworks(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// When the detailed table is full, sightings fold per host, event and
// signature; such a line carries the best proof of what it folds.
func TestProofCoarseKeepsBest(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s", MaxPending: 1, Window: time.Hour})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	ev := Event{Time: at, Kind: TFTPRefused, Host: netip.MustParseAddr("192.0.2.9"), Port: 1, Sig: "blaster", Family: "Blaster", Evidence: signatures.Strong}
	w.Record(ev) // fills the detailed table
	for i, p := range []Proof{ProofDatagram, ProofExchange, ProofDatagram} {
		e := ev
		e.Port, e.Proof = uint16(2+i), p
		w.Record(e)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var coarse map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["port"].(float64) == 0 {
			coarse = m
		}
	}
	if coarse == nil || coarse["count"].(float64) != 3 || coarse["proof"] != "exchange" {
		t.Fatalf("coarse line %v in\n%s", coarse, buf.String())
	}
}

// With the line budget spent, lone datagrams fold into network lines, but
// a sighting whose proof took a round trip keeps its host line: a forged
// flood cannot push proven hosts out of the log. trusted-source is
// budgeted like a datagram. Network lines carry the best proof they fold.
func TestProofRoundTripKeepsHostLine(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s", LineRate: 0.001, LineBurst: 1,
		TrustedSources: Networks{netip.MustParsePrefix("198.51.100.0/24")}})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	rec := func(host string, p Proof) {
		w.Record(Event{Time: at, Kind: TFTPRefused, Host: netip.MustParseAddr(host), Port: 1, Sig: "blaster", Family: "Blaster", Evidence: signatures.Strong, Proof: p})
	}
	rec("192.0.2.1", ProofDatagram)    // takes the one token
	rec("192.0.2.2", ProofDatagram)    // network line
	rec("198.51.100.7", ProofDatagram) // trusted-source: network line too
	rec("203.0.113.5", ProofExchange)  // host line
	rec("203.0.113.6", ProofTCP)       // host line
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{}
	nets := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if h, ok := m["host"].(string); ok {
			hosts[h] = m["proof"].(string)
		}
		if n, ok := m["network"].(string); ok {
			nets[n] = m["proof"].(string)
		}
	}
	want := map[string]string{"192.0.2.1": "datagram", "203.0.113.5": "exchange", "203.0.113.6": "tcp"}
	if len(hosts) != len(want) {
		t.Errorf("host lines %v, want %v", hosts, want)
	}
	for h, p := range want {
		if hosts[h] != p {
			t.Errorf("%s: %q, want %q (hosts %v)", h, hosts[h], p, hosts)
		}
	}
	if nets["192.0.2.0/24"] != "datagram" || nets["198.51.100.0/24"] != "trusted-source" {
		t.Errorf("network lines %v", nets)
	}
}

// A host the packet only named (Named: the server a request was sent to)
// gets nothing from it: the writer keeps its line weak and a datagram even
// inside --trusted-sources and whatever proof or strength the caller set,
// while the sender of the same packet is raised as usual.
func TestNamedHostGetsNothing(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Sensor: "s", TrustedSources: Networks{netip.MustParsePrefix("10.1.0.0/16")}})
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	req := Event{Time: at, Kind: WireMatch, Host: netip.MustParseAddr("10.1.0.5"), Port: 1027, Sig: "blaster", Family: "Blaster",
		Evidence: signatures.Strong, File: "msblast.exe", Mode: "octet", Op: "read", Role: RoleRequester, Peer: netip.MustParseAddr("10.1.0.9")}
	w.Record(req)
	srv := req
	srv.Host, srv.Port, srv.Peer, srv.Role, srv.Named = req.Peer, 69, req.Host, RoleServer, true
	srv.Proof = ProofTCP // a caller's mistake must not stick
	w.Record(srv)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		got[m["host"].(string)] = m["evidence"].(string) + " " + m["proof"].(string)
	}
	if got["10.1.0.5"] != "strong trusted-source" || got["10.1.0.9"] != "weak datagram" {
		t.Errorf("lines %v", got)
	}
}

// TestParsePrefixMapped: an IPv4-mapped prefix is its IPv4 network (it
// used to become a /32 in the writer's exclusions and match nothing in
// the report's); one shorter than /96 is refused.
func TestParsePrefixMapped(t *testing.T) {
	for in, want := range map[string]string{
		"::ffff:10.1.2.3/104": "10.0.0.0/8",
		"::ffff:10.1.2.3/120": "10.1.2.0/24",
		"::ffff:10.1.2.3/128": "10.1.2.3/32",
		"::ffff:10.1.2.3/96":  "0.0.0.0/0",
		"::ffff:10.1.2.3":     "10.1.2.3/32",
		"10.1.2.3/16":         "10.1.0.0/16",
		"2001:db8::1/32":      "2001:db8::/32",
		"2001:db8::1":         "2001:db8::1/128",
	} {
		p, err := ParsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v, want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"::ffff:10.1.2.3/95", "::ffff:0:0/80", "10.0.0.0/33", "x", ""} {
		if p, err := ParsePrefix(in); err == nil {
			t.Errorf("%s: %v, want an error", in, p)
		} else if strings.Contains(in, "ffff") && !strings.Contains(err.Error(), "/96") {
			t.Errorf("%s: %v does not say why", in, err)
		}
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Exclude: []netip.Prefix{netip.MustParsePrefix("::ffff:10.1.0.0/112")}})
	for _, h := range []string{"10.1.2.3", "10.2.0.1", "::ffff:10.1.9.9"} {
		w.Record(Event{Time: time.Now(), Kind: DNSSinkhole, Host: netip.MustParseAddr(h), Sig: "s", QName: "a."})
	}
	w.Close()
	if st := w.Stats(); st.Excluded != 2 || !strings.Contains(buf.String(), `"10.2.0.1"`) {
		t.Errorf("excluded %d of 3 (want 2, 10.1/16):\n%s", st.Excluded, buf.String())
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"::ffff:10.1.2.3/104", "::ffff:1.2.3.4/95", "10.0.0.0/8", "2001:db8::/32", "1.2.3.4", "::ffff:0.0.0.0/96", "x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
			t.Fatalf("%q: %v is not a masked, unmapped prefix", s, p)
		}
		if q, err := ParsePrefix(p.String()); err != nil || q != p {
			t.Fatalf("%q: %v reads back as %v %v", s, p, q, err)
		}
	})
}
