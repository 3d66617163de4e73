package report

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"wormsink/evidence"
	"wormsink/signatures"
)

func scenarioRows(t *testing.T) ([]HostSummary, *Aggregator, ReadStats) {
	logA, logB := scenario(t)
	a := NewAggregator(Filter{}, true)
	var st ReadStats
	for _, l := range [][]byte{logA, logB} {
		r, _ := NewReader(bytes.NewReader(l), "log")
		for r.Next() {
			a.Add(r.Sighting())
		}
		st.Add(r.Stats())
	}
	return a.Hosts(), a, st
}

func TestCSV(t *testing.T) {
	rows, _, _ := scenarioRows(t)
	var buf bytes.Buffer
	if err := WriteCSV(&buf, rows); err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(buf.String(), "\n")
	if header != "host,first_seen,last_seen,events,evidence,families,signatures,sources,sensors,proof,subscribers" {
		t.Fatalf("header %q", header)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(rows)+1 {
		t.Fatalf("%d records for %d rows", len(recs), len(rows))
	}
	want := []string{"10.0.0.1", "2026-11-24T11:00:00.000Z", "2026-11-24T14:00:00.000Z", "4", "strong",
		"Blaster;Welchia", "blaster;welchia", "dns=3;tftp=0;wire=1", "sensor-a;sensor-b", "datagram", ""}
	if !reflect.DeepEqual(recs[1], want) {
		t.Errorf("first row %q, want %q", recs[1], want)
	}
	if last := recs[len(recs)-1]; last[0] != "2001:db8::4" || last[4] != "weak" || last[5] != "" {
		t.Errorf("last row %q", last)
	}
}

func TestTable(t *testing.T) {
	rows, _, _ := scenarioRows(t)
	rows[0].Sensors = append(rows[0].Sensors, "evil\x1b[2J\tsensor")
	var buf bytes.Buffer
	if err := WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(rows)+1 || !strings.HasPrefix(lines[0], "HOST ") {
		t.Fatalf("table:\n%s", buf.String())
	}
	// Columns line up: EVENTS starts at the same offset on every line.
	col := strings.Index(lines[0], "EVENTS")
	for _, l := range lines[1:] {
		if l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("misaligned line %q", l)
		}
	}
	if strings.ContainsRune(buf.String(), 0x1b) || !strings.Contains(buf.String(), `evil\x1b[2J\tsensor`) {
		t.Errorf("control characters from the log reached the terminal:\n%q", buf.String())
	}
}

func TestJSON(t *testing.T) {
	rows, a, st := scenarioRows(t)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, rows, Summary{Hosts: len(rows), Sightings: a.Sightings(), Lines: st.Lines, Malformed: st.Malformed, Service: st.Service}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hosts []struct {
			Host        string            `json:"host"`
			FirstSeen   string            `json:"first_seen"`
			LastSeen    string            `json:"last_seen"`
			Events      uint64            `json:"events"`
			Evidence    string            `json:"evidence"`
			Families    []string          `json:"families"`
			Signatures  []string          `json:"signatures"`
			Sources     map[string]uint64 `json:"sources"`
			Sensors     []string          `json:"sensors"`
			Proof       string            `json:"proof"`
			Subscribers []string          `json:"subscribers"`
		} `json:"hosts"`
		Summary  map[string]uint64 `json:"summary"`
		Networks []map[string]any  `json:"networks"`
	}
	d := json.NewDecoder(&buf)
	d.DisallowUnknownFields()
	if err := d.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Hosts) != 5 || doc.Hosts[0].Host != "10.0.0.1" || doc.Hosts[0].Events != 4 ||
		!reflect.DeepEqual(doc.Hosts[0].Sources, map[string]uint64{"dns": 3, "tftp": 0, "wire": 1}) ||
		doc.Hosts[4].Families == nil {
		t.Errorf("hosts %+v", doc.Hosts)
	}
	if doc.Summary["hosts"] != 5 || doc.Summary["sightings"] != 9 || doc.Summary["malformed"] != 2 {
		t.Errorf("summary %v", doc.Summary)
	}
}

// publishedFields reads a report's column list from Shadowserver's
// published schema file (its source: testdata/report/shadowserver/SOURCE.md).
func publishedFields(t *testing.T, report string) []string {
	t.Helper()
	data, err := os.ReadFile("../testdata/report/shadowserver/reports.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]struct {
		Fields []string `json:"fields"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	f := schema[report].Fields
	if len(f) == 0 {
		t.Fatalf("no %s in the published schema", report)
	}
	return f
}

// TestShadowserverHeaderIsPublished compares the header, column by column,
// with the event4_sinkhole and event6_sinkhole field lists Shadowserver
// publishes (33 columns: severity after device_model, TLS at the end).
func TestShadowserverHeaderIsPublished(t *testing.T) {
	for _, w := range []*ShadowserverWriter{NewShadowserverWriter(io.Discard), NewShadowserverWriter6(io.Discard)} {
		want := publishedFields(t, w.Report())
		if !reflect.DeepEqual(ShadowserverHeader, want) {
			t.Errorf("%s header\n got %q\nwant %q", w.Report(), ShadowserverHeader, want)
		}
	}
}

func TestShadowserver(t *testing.T) {
	logA, logB := scenario(t)
	var buf, buf6 bytes.Buffer
	sw, sw6 := NewShadowserverWriter(&buf), NewShadowserverWriter6(&buf6)
	n := 0
	for _, l := range [][]byte{logA, logB} {
		r, _ := NewReader(bytes.NewReader(l), "log")
		for r.Next() {
			for _, w := range []*ShadowserverWriter{sw, sw6} {
				if err := w.Write(r.Sighting()); err != nil {
					t.Fatal(err)
				}
			}
			n++
		}
	}
	for _, w := range []*ShadowserverWriter{sw, sw6} {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	recs6, err := csv.NewReader(&buf6).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// IPv6 hosts go to event6_sinkhole, and only there.
	if len(recs6) != 2 || recs6[1][2] != host4.String() || sw.Skipped() != 1 || sw6.Skipped() != uint64(n-1) {
		t.Fatalf("event6 rows %q, skipped %d and %d of %d", recs6, sw.Skipped(), sw6.Skipped(), n)
	}
	n--
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := publishedFields(t, ShadowserverReport4)
	if !reflect.DeepEqual(recs[0], wantHeader) || !reflect.DeepEqual(recs6[0], wantHeader) {
		t.Fatalf("header %q\nwant %q", recs[0], wantHeader)
	}
	if len(recs) != n+1 {
		t.Fatalf("%d rows for %d lines", len(recs)-1, n)
	}
	col := map[string]int{}
	for i, c := range recs[0] {
		col[c] = i
	}
	byKind := map[string][]string{}
	for _, r := range recs[1:] {
		if len(r) != len(wantHeader) {
			t.Fatalf("row with %d columns", len(r))
		}
		// IntelMQ's required fields: timestamp (with " UTC" appended it must parse), src_ip, src_port.
		if _, err := time.Parse("2006-01-02 15:04:05 MST", r[col["timestamp"]]+" UTC"); err != nil {
			t.Errorf("timestamp %q: %v", r[col["timestamp"]], err)
		}
		if _, err := strconv.ParseUint(r[col["src_port"]], 10, 16); err != nil || r[col["src_ip"]] == "" {
			t.Errorf("src %q:%q", r[col["src_ip"]], r[col["src_port"]])
		}
		kind, _, _ := strings.Cut(r[col["tag"]], ";")
		byKind[kind] = r
	}
	tftp := byKind["tftp_refused"]
	if tftp[col["protocol"]] != "udp" || tftp[col["dst_ip"]] != "192.0.2.69" || tftp[col["dst_port"]] != "69" ||
		tftp[col["infection"]] != "blaster" || tftp[col["family"]] != "Blaster" || tftp[col["application"]] != "tftp" ||
		tftp[col["public_source"]] == "" {
		t.Errorf("tftp row %q", tftp)
	}
	dns := byKind["dns_sinkhole"]
	if dns[col["protocol"]] != "udp" || dns[col["application"]] != "dns" || !strings.Contains(dns[col["tag"]], "evidence=weak") || dns[col["severity"]] != "medium" {
		t.Errorf("dns row %q", dns)
	}
	wire := byKind["wire_match"]
	if wire[col["dst_ip"]] != "10.9.9.9" || wire[col["dst_port"]] != "69" || wire[col["src_port"]] != "4444" || wire[col["severity"]] != "critical" {
		t.Errorf("wire row %q", wire)
	}
	var folded bool
	for _, r := range recs[1:] {
		folded = folded || strings.HasSuffix(r[col["tag"]], ";count=2;proof=datagram")
	}
	if !folded {
		t.Errorf("the folded line's count is not in any tag")
	}
}

var (
	uuidV4  = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	xarfTag = regexp.MustCompile(`^[a-z0-9][a-z0-9_+-]*:[a-z0-9][a-z0-9_+-]*$`) // X-ARF v4 xarf-core.json
)

// TestXARF checks each report against the X-ARF v4 core schema and the
// infrastructure/botnet type schema (required fields, constants, formats).
func TestXARF(t *testing.T) {
	rows, _, _ := scenarioRows(t)
	rep := Reporter{Org: "Example ISP", Contact: "abuse@isp.example", Domain: "isp.example"}
	var buf bytes.Buffer
	if err := WriteXARF(&buf, rows, rep); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(rows) {
		t.Fatalf("%d reports for %d hosts", len(lines), len(rows))
	}
	ids := map[string]bool{}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"xarf_version", "report_id", "timestamp", "reporter", "sender", "source_identifier", "category", "type", "compromise_evidence"} {
			if _, ok := m[k]; !ok {
				t.Errorf("report %d lacks required %q", i, k)
			}
		}
		if m["xarf_version"] != "4.0.0" || m["category"] != "infrastructure" || m["type"] != "botnet" {
			t.Errorf("report %d: version/category/type %v %v %v", i, m["xarf_version"], m["category"], m["type"])
		}
		id, _ := m["report_id"].(string)
		if !uuidV4.MatchString(id) || ids[id] {
			t.Errorf("report_id %q not a fresh UUID v4", id)
		}
		ids[id] = true
		for _, k := range []string{"timestamp", "first_seen", "last_seen"} {
			if _, err := time.Parse(time.RFC3339, m[k].(string)); err != nil {
				t.Errorf("%s: %v", k, err)
			}
		}
		for _, who := range []string{"reporter", "sender"} {
			c := m[who].(map[string]any)
			if len(c) != 3 || c["org"] != rep.Org || c["contact"] != rep.Contact || c["domain"] != rep.Domain {
				t.Errorf("%s %v", who, c)
			}
		}
		if m["source_identifier"] != rows[i].Host.String() {
			t.Errorf("source_identifier %v, want %v", m["source_identifier"], rows[i].Host)
		}
		if p, ok := m["source_port"].(float64); !ok || p < 1 || p > 65535 || uint16(p) != rows[i].LastPort {
			t.Errorf("source_port %v", m["source_port"])
		}
		if c := m["confidence"].(float64); c < 0 || c > 1 {
			t.Errorf("confidence %v", c)
		}
		tags, _ := m["tags"].([]any)
		for _, tg := range tags {
			if !xarfTag.MatchString(tg.(string)) {
				t.Errorf("tag %q breaks the pattern", tg)
			}
		}
		ev := m["evidence"].([]any)[0].(map[string]any)
		payload, err := base64.StdEncoding.DecodeString(ev["payload"].(string))
		if err != nil || ev["content_type"] != "application/json" || !strings.HasPrefix(ev["hash"].(string), "sha256:") {
			t.Fatalf("evidence item %v: %v", ev, err)
		}
		var row map[string]any
		if err := json.Unmarshal(payload, &row); err != nil || row["host"] != rows[i].Host.String() {
			t.Errorf("evidence payload %s: %v", payload, err)
		}
	}
	// The same input files the same ids: re-running does not open new tickets.
	var again bytes.Buffer
	WriteXARF(&again, rows, rep)
	if again.String() != buf.String() {
		t.Errorf("X-ARF output is not deterministic")
	}
}

func htmlPage(t *testing.T) ([]byte, int) {
	rows, a, st := scenarioRows(t)
	var buf bytes.Buffer
	err := WriteHTML(&buf, rows, HTMLPage{Title: "Outbreak <test>", Timeline: a.Timeline().Bin(TimelineBins),
		Summary: Summary{Hosts: len(rows), Sightings: a.Sightings(), Lines: st.Lines, Malformed: st.Malformed}})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), len(rows)
}

func TestHTMLSelfContained(t *testing.T) {
	page, n := htmlPage(t)
	s := string(page)
	for _, bad := range []string{" src=", " href=", "url(", "@import", "<link", "<iframe", "fetch(", "XMLHttpRequest"} {
		if strings.Contains(s, bad) {
			t.Errorf("page refers to something outside itself: %q", bad)
		}
	}
	if strings.Count(s, `<tr class="host`) != n || !strings.Contains(s, "<svg") || !strings.Contains(s, "<polyline") {
		t.Errorf("page lacks rows or chart")
	}
	if strings.Contains(s, "Outbreak <test>") || !strings.Contains(s, "Outbreak &lt;test&gt;") {
		t.Errorf("title not escaped")
	}
	for _, fam := range []string{"Blaster (", "Welchia (", "(no family"} {
		if !strings.Contains(s, fam) {
			t.Errorf("legend lacks %q", fam)
		}
	}
}

// TestHTMLInChromium renders the page in headless Chromium, after its
// script ran, and checks the host count it shows equals the CSV's rows.
func TestHTMLInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		// scripts/deps.sh (make test) installs chromium; only a bare `go test`
		// without it skips.
		t.Skip("chromium not installed (make deps installs it)")
	}
	page, _ := htmlPage(t)
	rows, _, _ := scenarioRows(t)
	var csvBuf bytes.Buffer
	WriteCSV(&csvBuf, rows)
	csvRows, _ := csv.NewReader(&csvBuf).ReadAll()
	wantHosts := len(csvRows) - 1

	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, page, 0o644); err != nil {
		t.Fatal(err)
	}
	dom := chromium(t, bin, dir, "--dump-dom", "file://"+file)
	if !strings.Contains(dom, `data-ready="1"`) {
		t.Fatalf("the page's script did not run:\n%.2000s", dom)
	}
	m := regexp.MustCompile(`<b id="host-count">(\d+)</b>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no host count in the rendered page")
	}
	if got, _ := strconv.Atoi(m[1]); got != wantHosts || strings.Count(dom, `<tr class="host`) != wantHosts {
		t.Errorf("page shows %s hosts and %d rows, CSV has %d", m[1], strings.Count(dom, `<tr class="host`), wantHosts)
	}
	shot := filepath.Join(dir, "shot.png")
	chromium(t, bin, dir, "--screenshot="+shot, "--window-size=1280,900", "file://"+file)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 5000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("no screenshot (%d bytes): %v", len(png), err)
	}
	if out := os.Getenv("WORMSINK_SCREENSHOT"); out != "" {
		os.WriteFile(out, png, 0o644) // for a human to look at
	}
}

func chromium(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
		"--user-data-dir=" + filepath.Join(dir, "profile")}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// FuzzReport feeds arbitrary bytes (plain or gzip) through the reader, the
// aggregator and every format: nothing panics, every line is accounted for,
// and the CSV has one row per host.
func FuzzReport(f *testing.F) {
	logA, logB := scenario(f)
	f.Add(logA)
	f.Add(logB[:len(logB)/2])
	f.Add(gz(f, logA))
	f.Add([]byte("\n\n{}\n[]\n\x00\xff\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			return // a gzip header that is not one
		}
		a := NewAggregator(Filter{}, true)
		var ss bytes.Buffer
		sw := NewShadowserverWriter(&ss)
		n := uint64(0)
		for r.Next() {
			a.Add(r.Sighting())
			if err := sw.Write(r.Sighting()); err != nil {
				t.Fatal(err)
			}
			n++
		}
		st := r.Stats()
		if st.Evidence != n || st.Evidence+st.Service+st.Malformed > st.Lines {
			t.Fatalf("stats %+v for %d records", st, n)
		}
		rows := a.Hosts()
		var out bytes.Buffer
		if err := WriteCSV(&out, rows); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&out).ReadAll()
		if err != nil || len(recs) != len(rows)+1 {
			t.Fatalf("csv: %d records for %d rows: %v", len(recs), len(rows), err)
		}
		for _, w := range []func(*bytes.Buffer) error{
			func(b *bytes.Buffer) error { return WriteTable(b, rows) },
			func(b *bytes.Buffer) error { return WriteJSON(b, rows, Summary{}) },
			func(b *bytes.Buffer) error {
				return WriteXARF(b, rows, Reporter{Org: "o", Contact: "a@b.c", Domain: "b.c"})
			},
			func(b *bytes.Buffer) error {
				return WriteHTML(b, rows, HTMLPage{Timeline: a.Timeline().Bin(TimelineBins)})
			},
			func(b *bytes.Buffer) error { return sw.Flush() },
		} {
			var b bytes.Buffer
			if err := w(&b); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestShadowserverIntercepted: the interceptor's two lines of a refused
// worm fetch map to rows whose other end is the other host: the server
// asked for the requester, the requester for the server.
func TestShadowserverIntercepted(t *testing.T) {
	log := `{"time":"2026-12-01T12:05:00.667Z","event":"tftp_refused","host":"10.13.1.2","port":58054,"signature":"blaster","family":"Blaster","evidence":"strong","count":1,"sensor":"r1","serial":1,"file":"msblast.exe","mode":"octet","op":"read","server":"10.13.2.2:69","intercepted":true,"role":"requester","peer":"10.13.2.2"}
{"time":"2026-12-01T12:05:00.667Z","event":"tftp_refused","host":"10.13.2.2","port":69,"signature":"blaster","family":"Blaster","evidence":"strong","count":1,"sensor":"r1","serial":1,"file":"msblast.exe","mode":"octet","op":"read","server":"10.13.2.2:69","intercepted":true,"role":"server","peer":"10.13.1.2"}
`
	var buf bytes.Buffer
	sw := NewShadowserverWriter(&buf)
	r, _ := NewReader(strings.NewReader(log), "log")
	for r.Next() {
		if err := sw.Write(r.Sighting()); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d rows, %v", len(recs), err)
	}
	for i, want := range [][2]string{{"10.13.1.2", "10.13.2.2"}, {"10.13.2.2", "10.13.1.2"}} {
		if row := recs[1+i]; row[ssSrcIP] != want[0] || row[ssDstIP] != want[1] {
			t.Errorf("row %d: src %s dst %s, want %s -> %s", i, row[ssSrcIP], row[ssDstIP], want[0], want[1])
		}
	}
}

// csvReference is how WriteCSV wrote before it appended its own bytes:
// encoding/csv over the neutralised cells. The fast writer must match it
// byte for byte.
func csvReference(t testing.TB, rows []HostSummary) []byte {
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	cw.Write(CSVHeader)
	for i := range rows {
		cw.Write(neutralise(rows[i].cells()))
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWriteCSVSameAsEncodingCSV(t *testing.T) {
	odd := []string{"", "Blaster", "a,b", `say "hi"`, "line\nbreak", "cr\rhere", " lead", "\u00a0nbsp", "=1+2", "+x", "-y", "@z",
		"\tt", "\rr", `\.`, "'q", "x\\y", "ünï", "\xff\xfe", "tail "}
	var rows []HostSummary
	for i := range 200 {
		pick := func(k int) []string {
			var out []string
			for j := range k {
				out = append(out, odd[(i*7+j*3)%len(odd)])
			}
			return out
		}
		rows = append(rows, HostSummary{
			Host:      netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
			FirstSeen: t0.Add(time.Duration(i) * time.Millisecond), LastSeen: t0.Add(time.Duration(i) * time.Hour),
			Events: uint64(i * 1000), Evidence: signatures.Strength(i % 2),
			Families: pick(i % 3), Signatures: pick(i % 4), Sensors: pick(i % 2),
			Sources: Sources{DNS: uint64(i), TFTP: 1, Wire: 1 << 40}, Proof: evidence.Proof(i % 4),
		})
	}
	rows = append(rows, HostSummary{Host: netip.MustParseAddr("2001:db8::1")}) // zero times, no names
	var got bytes.Buffer
	if err := WriteCSV(&got, rows); err != nil {
		t.Fatal(err)
	}
	if want := csvReference(t, rows); !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("WriteCSV differs from encoding/csv:\n got %q\nwant %q", got.Bytes(), want)
	}
}

// FuzzCSVCell: any cell text is written as encoding/csv writes it
// neutralised.
func FuzzCSVCell(f *testing.F) {
	for _, s := range []string{"", "Blaster", "a,b", `"`, "\n", " x", "=x", "\t", "\r\n", `\.`, "\u2028", "\xff", "a\x00b", "\u0085", "\x1b[2J"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b bytes.Buffer
		cw := csv.NewWriter(&b)
		cw.Write([]string{neutraliseCell(s)})
		cw.Flush()
		want := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
		if got := appendCSVCell(nil, []byte(s)); !bytes.Equal(got, want) {
			t.Fatalf("cell %q: got %q, want %q", s, got, want)
		}
	})
}

// TestCSVEscapesControlsAsTheTable: a NUL (or any control character) in a
// name from the log is escaped in CSV and Shadowserver rows as the table
// escapes it; it used to be written raw.
func TestCSVEscapesControlsAsTheTable(t *testing.T) {
	line := `{"time":"2026-11-24T12:00:00.000Z","event":"tftp_refused","host":"10.0.0.1","port":1,"signature":"bl\u0000aster","family":"Bla\u0000ster\u001b[2J","evidence":"strong","proof":"tcp","count":1,"sensor":"s\u0085"}`
	rows, st := aggregate(t, Filter{}, []byte(line+"\n"))
	if st.Evidence != 1 || len(rows) != 1 {
		t.Fatalf("%+v %+v", rows, st)
	}
	var table, csvOut, ss bytes.Buffer
	if err := WriteTable(&table, rows); err != nil {
		t.Fatal(err)
	}
	if err := WriteCSV(&csvOut, rows); err != nil {
		t.Fatal(err)
	}
	sw := NewShadowserverWriter(&ss)
	r, _ := NewReader(strings.NewReader(line), "log")
	for r.Next() {
		sw.Write(r.Sighting())
	}
	sw.Flush()
	for name, out := range map[string]string{"table": table.String(), "csv": csvOut.String(), "shadowserver": ss.String()} {
		if strings.ContainsAny(out, "\x00\x1b\u0085") {
			t.Errorf("%s writes a raw control character: %q", name, out)
		}
		for _, want := range []string{`Bla\x00ster\x1b[2J`, `bl\x00aster`, `s\u0085`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: no %s in %q", name, want, out)
			}
		}
	}
}
