package report

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"html"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// rawNames differ only in bytes that are not UTF-8, or in how a backslash
// sits next to them: every one must stay distinct from log to report.
var rawNames = []string{"Blaster\xff", "Blaster\xfe", "Blaster\ufffd", `Blaster\xff`, `Blaster\\xff`, "Blaster\\\xff", "Blaster\xc3", "Blaster\xc3\xa9"}

// TestBytesSurviveRoundTrip: names with bytes that are not UTF-8 go through
// the evidence log and come out of csv, json, html and xarf distinct, as
// the log's reversible escape of the original bytes.
func TestBytesSurviveRoundTrip(t *testing.T) {
	var logs [][]byte
	for i, n := range rawNames {
		h := netip.AddrFrom4([4]byte{10, 7, 0, byte(i + 1)})
		logs = append(logs, sensorLog(t, n, []evidence.Event{{Time: t0, Kind: evidence.TFTPRefused, Host: h, Port: 1000, Sig: "blaster",
			Family: n, Evidence: signatures.Strong, File: n, Mode: "octet", Op: "read"}}))
	}
	rows, _ := aggregate(t, Filter{}, logs...)
	if len(rows) != len(rawNames) {
		t.Fatalf("%d rows", len(rows))
	}
	// want: host → the name that host's sightings carried
	want := map[string]string{}
	for i, n := range rawNames {
		want[netip.AddrFrom4([4]byte{10, 7, 0, byte(i + 1)}).String()] = n
	}
	check := func(format, host, family, sensor string) {
		t.Helper()
		n, ok := want[host]
		if !ok {
			t.Errorf("%s: unexpected host %q", format, host)
			return
		}
		if evidence.Unescape(family) != n || evidence.Unescape(sensor) != n || strings.ContainsRune(family, '\uFFFD') && !strings.Contains(n, "\uFFFD") {
			t.Errorf("%s: host %s: family %q, sensor %q; want the escape of %q (%q)", format, host, family, sensor, n, evidence.Escape(n))
		}
	}

	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[1:] {
		check("csv", r[0], r[5], r[8])
	}

	buf.Reset()
	if err := WriteJSON(&buf, rows, Summary{}); err != nil {
		t.Fatal(err)
	}
	var doc JSONReport
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, h := range doc.Hosts {
		check("json", h.Host, strings.Join(h.Families, ""), strings.Join(h.Sensors, ""))
	}

	buf.Reset()
	if err := WriteHTML(&buf, rows, HTMLPage{}); err != nil {
		t.Fatal(err)
	}
	cell := regexp.MustCompile(`<td[^>]*>(.*?)</td>`)
	n := 0
	for _, tr := range regexp.MustCompile(`(?s)<tr class="host[^"]*">(.*?)</tr>`).FindAllStringSubmatch(buf.String(), -1) {
		cs := cell.FindAllStringSubmatch(tr[1], -1)
		// host, first seen, last seen, source port, events, evidence, families, signatures, sources, sensors
		check("html", html.UnescapeString(cs[0][1]), html.UnescapeString(cs[6][1]), html.UnescapeString(cs[9][1]))
		n++
	}
	if n != len(rawNames) {
		t.Errorf("html: %d rows", n)
	}

	buf.Reset()
	if err := WriteXARF(&buf, rows, Reporter{Org: "o", Contact: "a@b.example", Domain: "b.example"}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var x XARFReport
		if err := json.Unmarshal([]byte(l), &x); err != nil {
			t.Fatal(err)
		}
		payload, _ := base64.StdEncoding.DecodeString(x.Evidence[0].Payload)
		var row jsonHost
		if err := json.Unmarshal(payload, &row); err != nil {
			t.Fatal(err)
		}
		check("xarf malware_family", x.SourceIdentifier, x.MalwareFamily, strings.Join(row.Sensors, ""))
		check("xarf evidence", row.Host, strings.Join(row.Families, ""), strings.Join(row.Sensors, ""))
	}
}

// TestForeignBytesNotReplaced: a line another program wrote with raw bytes
// that are not UTF-8 reads with those bytes escaped, not as U+FFFD.
func TestForeignBytesNotReplaced(t *testing.T) {
	log := "{\"time\":\"2026-11-24T10:00:00Z\",\"event\":\"tftp_refused\",\"host\":\"10.0.0.1\",\"evidence\":\"strong\",\"family\":\"W\xffrm\",\"sensor\":\"s\\\\\xfe\"}\n" +
		"{\"time\":\"2026-11-24T10:00:00Z\",\"event\":\"tftp_refused\",\"host\":\"10.0.0.2\",\"evidence\":\"strong\",\"family\":\"W\xfe\\u0072m\",\"sensor\":\"s\"}\n"
	rows, st := aggregate(t, Filter{}, []byte(log))
	if st.Evidence != 2 || len(rows) != 2 {
		t.Fatalf("stats %+v", st)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Host.String()] = strings.Join(r.Families, ";") + "|" + strings.Join(r.Sensors, ";")
	}
	if got["10.0.0.1"] != `W\xffrm|s\\\xfe` || got["10.0.0.2"] != `W\xferm|s` {
		t.Errorf("got %q", got)
	}
}

// TestNetworkLinesAreNotHosts: the network lines a spent line budget makes
// are counted in the summary and listed as networks, never as hosts.
func TestNetworkLinesAreNotHosts(t *testing.T) {
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: "s", LineRate: 0.001, LineBurst: 3})
	const n = 1000
	for i := 0; i < n; i++ {
		w.Record(evidence.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Kind: evidence.TFTPRefused,
			Host: netip.AddrFrom4([4]byte{127, 3, byte(i % 4), byte(i)}), Port: 2000, Sig: "blaster", Family: "Blaster",
			File: "msblast.exe", Mode: "octet", Op: "read"})
	}
	w.Close()
	a := NewAggregator(Filter{}, true)
	r, _ := NewReader(bytes.NewReader(buf.Bytes()), "log")
	for r.Next() {
		a.Add(r.Sighting())
	}
	hosts, nets := a.Hosts(), a.Networks()
	if len(hosts) != 3 {
		t.Errorf("%d hosts, want the 3 the budget allowed", len(hosts))
	}
	var inHosts uint64
	for _, h := range hosts {
		inHosts += h.Events
	}
	if len(nets) != 4 || a.Sightings() != n || a.NetworkSightings()+inHosts != n {
		t.Errorf("%d networks, %d sightings, %d in networks, %d in hosts", len(nets), a.Sightings(), a.NetworkSightings(), inHosts)
	}
	for _, x := range nets {
		if x.Network.Bits() != 24 || !strings.HasPrefix(x.Network.String(), "127.3.") || x.Sources.TFTP != x.Events {
			t.Errorf("network %+v", x)
		}
	}
	var out bytes.Buffer
	WriteTable(&out, hosts)
	WriteNetworkTable(&out, nets)
	if s := out.String(); !strings.Contains(s, "NETWORK") || !strings.Contains(s, "127.3.0.0/24") || strings.Count(s, "\n") != 1+3+2+1+4 {
		t.Errorf("table:\n%s", s)
	}
	sum := Summary{Hosts: len(hosts), Sightings: a.Sightings(), Networks: len(nets), NetworkSightings: a.NetworkSightings(), NetworkRows: nets}
	out.Reset()
	WriteJSON(&out, hosts, sum)
	var doc JSONReport
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Hosts) != 3 || len(doc.Networks) != 4 || doc.Summary.NetworkSightings != a.NetworkSightings() {
		t.Errorf("json %v: %s", err, out.String())
	}
	out.Reset()
	WriteHTML(&out, hosts, HTMLPage{Summary: sum})
	if s := out.String(); strings.Count(s, `<tr class="host`) != 3 || strings.Count(s, `<tr class="network"`) != 4 {
		t.Errorf("html rows: %d hosts, %d networks", strings.Count(s, `<tr class="host`), strings.Count(s, `<tr class="network"`))
	}
	out.Reset()
	WriteCSV(&out, hosts)
	if strings.Contains(out.String(), "/24") {
		t.Errorf("csv lists a network as a host:\n%s", out.String())
	}
	// Shadowserver rows are per source address: a network line has none.
	out.Reset()
	sw := NewShadowserverWriter(&out)
	r, _ = NewReader(bytes.NewReader(buf.Bytes()), "log")
	for r.Next() {
		sw.Write(r.Sighting())
	}
	sw.Flush()
	if c := strings.Count(out.String(), "\n"); c != 1+3 || strings.Contains(out.String(), "/24") {
		t.Errorf("shadowserver:\n%s", out.String())
	}
	// --exclude of a network takes its network lines away too.
	a = NewAggregator(Filter{Exclude: []netip.Prefix{netip.MustParsePrefix("127.3.0.0/23")}}, false)
	r, _ = NewReader(bytes.NewReader(buf.Bytes()), "log")
	for r.Next() {
		a.Add(r.Sighting())
	}
	if nets := a.Networks(); len(nets) != 2 || nets[0].Network.Addr().As4()[2] < 2 {
		t.Errorf("after --exclude: %+v", nets)
	}
}
