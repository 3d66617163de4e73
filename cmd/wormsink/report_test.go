package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/internal/loggen"
	"wormsink/signatures"
)

// writeLog writes events through the real evidence writer into dir/name
// (gzip-compressed when name ends in .gz) and returns the path.
func writeLog(t *testing.T, dir, name, sensor string, evs ...evidence.Event) string {
	t.Helper()
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: sensor})
	svc := w.Service()
	svc.Info().Str("event", "start").Msg("")
	for _, ev := range evs {
		w.Record(ev)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if strings.HasSuffix(name, ".gz") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func ev(host string, at time.Time, kind evidence.Kind, strength signatures.Strength, fam string) evidence.Event {
	e := evidence.Event{Time: at, Kind: kind, Host: netip.MustParseAddr(host), Port: 3000, Sig: strings.ToLower(fam), Family: fam, Evidence: strength, Serial: 1}
	switch kind {
	case evidence.DNSSinkhole:
		e.QName, e.QType, e.Transport = "worm.example", "A", "udp"
	case evidence.TFTPRefused:
		e.File, e.Mode, e.Op, e.Srv = "msblast.exe", "octet", "read", netip.MustParseAddrPort("192.0.2.1:69")
	}
	return e
}

func reportCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, append([]string{"report"}, args...))
	return code, out.String(), errb.String()
}

func csvRows(t *testing.T, s string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(s)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v\n%s", err, s)
	}
	return recs
}

func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC()
	old := now.Add(-48 * time.Hour)
	a := writeLog(t, dir, "a.log", "edge-1",
		ev("10.0.0.1", now.Add(-time.Hour), evidence.TFTPRefused, signatures.Strong, "Blaster"),
		ev("10.0.0.2", old, evidence.DNSSinkhole, signatures.Weak, "Blaster"),
	)
	b := writeLog(t, dir, "b.log.gz", "edge-2",
		ev("10.0.0.1", now.Add(-2*time.Hour), evidence.DNSSinkhole, signatures.Weak, "Welchia"),
		ev("10.0.0.3", now.Add(-3*time.Hour), evidence.DNSSinkhole, signatures.Weak, "Welchia"),
	)
	// A bad line in the middle of a file is skipped and counted.
	withBad := filepath.Join(dir, "bad.log")
	data, _ := os.ReadFile(a)
	os.WriteFile(withBad, append(append([]byte("garbage\n"), data...), "{\"x\":1}\n"...), 0o644)

	code, out, errs := reportCmd(t, "", "--format", "csv", a, b)
	rows := csvRows(t, out)
	if code != 0 || errs != "" || len(rows) != 4 {
		t.Fatalf("exit %d, stderr %q, rows %q", code, errs, rows)
	}
	if strings.Join(rows[0], ",") != "host,first_seen,last_seen,events,evidence,families,signatures,sources,sensors,proof,subscribers" {
		t.Errorf("header %q", rows[0])
	}
	if rows[1][0] != "10.0.0.1" || rows[1][3] != "2" || rows[1][4] != "strong" || rows[1][5] != "Blaster;Welchia" || rows[1][8] != "edge-1;edge-2" {
		t.Errorf("first row %q", rows[1])
	}

	t.Run("stdin", func(t *testing.T) {
		data, _ := os.ReadFile(b) // gzip on stdin too
		for _, args := range [][]string{{"--format", "csv"}, {"--format", "csv", "-"}} {
			code, out, _ := reportCmd(t, string(data), args...)
			if code != 0 || len(csvRows(t, out)) != 3 {
				t.Errorf("%v: exit %d, out %q", args, code, out)
			}
		}
	})
	t.Run("malformed lines", func(t *testing.T) {
		code, out, errs := reportCmd(t, "", "--format", "csv", withBad)
		if code != 0 || len(csvRows(t, out)) != 3 {
			t.Errorf("exit %d, out %q", code, out)
		}
		if !strings.Contains(errs, "skipped 2 malformed or foreign lines") || !strings.Contains(errs, "bad.log:1:") {
			t.Errorf("stderr %q", errs)
		}
	})
	t.Run("since duration", func(t *testing.T) {
		_, out, _ := reportCmd(t, "", "--format", "csv", "--since", "24h", a, b)
		if r := csvRows(t, out); len(r) != 3 || r[1][0] != "10.0.0.1" || r[2][0] != "10.0.0.3" {
			t.Errorf("rows %q", r)
		}
		_, out, _ = reportCmd(t, "", "--format", "csv", "--until", "1d", a, b)
		if r := csvRows(t, out); len(r) != 2 || r[1][0] != "10.0.0.2" {
			t.Errorf("rows %q", r)
		}
		_, out, _ = reportCmd(t, "", "--format", "csv", "--since", old.Add(-time.Minute).Format(time.RFC3339), "--until", old.Add(time.Minute).Format(time.RFC3339), a, b)
		if r := csvRows(t, out); len(r) != 2 || r[1][0] != "10.0.0.2" {
			t.Errorf("rows %q", r)
		}
	})
	t.Run("evidence and family", func(t *testing.T) {
		_, out, _ := reportCmd(t, "", "--format", "csv", "--evidence", "strong", a, b)
		if r := csvRows(t, out); len(r) != 2 || r[1][0] != "10.0.0.1" {
			t.Errorf("strong: rows %q", r)
		}
		_, out, _ = reportCmd(t, "", "--format", "csv", "--family", "welchia", a, b)
		if r := csvRows(t, out); len(r) != 3 || r[1][5] != "Welchia" {
			t.Errorf("family: rows %q", r)
		}
	})
	t.Run("formats", func(t *testing.T) {
		code, out, _ := reportCmd(t, "", a, b)
		if code != 0 || !strings.HasPrefix(out, "HOST ") || strings.Count(out, "\n") != 4 {
			t.Errorf("table: %q", out)
		}
		code, out, _ = reportCmd(t, "", "--format", "json", a, b)
		var doc struct {
			Hosts   []map[string]any `json:"hosts"`
			Summary map[string]any   `json:"summary"`
		}
		if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || len(doc.Hosts) != 3 {
			t.Errorf("json: %v %q", err, out)
		}
		// These logs hold lone datagrams only: complaints need --include-unverified.
		code, out, _ = reportCmd(t, "", "--format", "shadowserver", "--evidence", "weak", "--include-unverified", a, b)
		if r := csvRows(t, out); code != 0 || len(r) != 5 || r[0][0] != "timestamp" || r[0][2] != "src_ip" {
			t.Errorf("shadowserver: %q", r)
		}
		code, out, _ = reportCmd(t, "", "--format", "xarf", "--evidence", "weak", "--include-unverified", "--reporter-contact", "abuse@isp.example", a, b)
		if code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"org":"isp.example"`) {
			t.Errorf("xarf: %q", out)
		}
		code, out, _ = reportCmd(t, "", "--format", "html", a, b)
		if code != 0 || !strings.Contains(out, "<svg") || strings.Count(out, `<tr class="host`) != 3 {
			t.Errorf("html: %.300q", out)
		}
	})
	// A host seen only in lone datagrams (a forged source address looks
	// exactly like that) gets no complaint unless --include-unverified; a
	// host whose address was proven (here a DNS query over TCP) does.
	t.Run("proof", func(t *testing.T) {
		forged := ev("10.0.0.7", now.Add(-time.Hour), evidence.TFTPRefused, signatures.Strong, "Blaster")
		proven := ev("10.0.0.8", now.Add(-time.Hour), evidence.DNSSinkhole, signatures.Strong, "Blaster")
		proven.Transport, proven.Proof = "tcp", evidence.ProofTCP
		c := writeLog(t, dir, "proof.log", "edge-3", forged, proven)

		_, out, _ := reportCmd(t, "", "--format", "csv", c)
		if r := csvRows(t, out); len(r) != 3 || r[1][0] != "10.0.0.8" || r[1][9] != "tcp" || r[2][0] != "10.0.0.7" || r[2][9] != "datagram" {
			t.Errorf("csv: %q", r)
		}
		_, out, _ = reportCmd(t, "", "--format", "xarf", "--reporter-contact", "abuse@isp.example", c)
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, `"source_identifier":"10.0.0.8"`) || !strings.Contains(out, `"confidence":0.9`) {
			t.Errorf("xarf by default: %q", out)
		}
		_, out, _ = reportCmd(t, "", "--format", "xarf", "--include-unverified", "--reporter-contact", "abuse@isp.example", c)
		if strings.Count(out, "\n") != 2 || !strings.Contains(out, `"source_identifier":"10.0.0.7"`) || !strings.Contains(out, `"confidence":0.3`) {
			t.Errorf("xarf --include-unverified: %q", out)
		}
		_, out, _ = reportCmd(t, "", "--format", "shadowserver", c)
		if r := csvRows(t, out); len(r) != 2 || r[1][2] != "10.0.0.8" || !strings.HasSuffix(r[1][slices.Index(r[0], "tag")], ";proof=tcp") {
			t.Errorf("shadowserver by default: %q", r)
		}
		_, out, _ = reportCmd(t, "", "--format", "shadowserver", "--include-unverified", c)
		if r := csvRows(t, out); len(r) != 3 {
			t.Errorf("shadowserver --include-unverified: %q", r)
		}
	})
	t.Run("truncated gzip", func(t *testing.T) {
		var big []evidence.Event
		for i := 0; i < 5000; i++ {
			big = append(big, ev(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String(), now.Add(-time.Duration(i)*time.Second), evidence.DNSSinkhole, signatures.Weak, "Blaster"))
		}
		full := writeLog(t, dir, "big.log.gz", "edge-3", big...)
		data, _ := os.ReadFile(full)
		cut := filepath.Join(dir, "cut.log.gz")
		os.WriteFile(cut, data[:len(data)*2/3], 0o644)
		code, out, errs := reportCmd(t, "", "--format", "csv", cut, a)
		rows := csvRows(t, out)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if len(rows) < 100 || len(rows) > 5002 {
			t.Errorf("%d rows: the report of what was read should be written", len(rows))
		}
		if !strings.Contains(errs, "cut.log.gz") || !strings.Contains(errs, "unexpected EOF") {
			t.Errorf("stderr %q", errs)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		code, _, errs := reportCmd(t, "", filepath.Join(dir, "nope.log"), a)
		if code != 1 || !strings.Contains(errs, "nope.log") {
			t.Errorf("exit %d, stderr %q", code, errs)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--format", "pdf"}, {"--evidence", "maybe"}, {"--since", "yesterday"}, {"--format", "xarf"},
			{"--format", "xarf", "--reporter-contact", "nobody"}, {"--since", "1h", "--until", "2h"}, {"--bogus"},
		} {
			if code, _, errs := reportCmd(t, "", args...); code != 2 || errs == "" {
				t.Errorf("%v: exit %d, stderr %q; want 2 and a message", args, code, errs)
			}
		}
		if code, out, _ := reportCmd(t, "", "--help"); code != 0 || !strings.Contains(out, "--format") && !strings.Contains(out, "-format") {
			t.Errorf("--help: exit %d, %q", code, out)
		}
	})
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"24h":                       now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-11-24":                time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		"2026-11-24T10:00:00Z":      time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
		"2026-11-24T10:00:00+01:00": time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC),
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "soon", "2026-13-01", "d"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// BenchmarkReportCommand runs `report --format csv` over the log named by
// WORMSINK_PERF_LOG (made by testdata/report/gen); it does nothing without.
func BenchmarkReportCommand(b *testing.B) {
	path := os.Getenv("WORMSINK_PERF_LOG")
	if path == "" {
		b.Skip("set WORMSINK_PERF_LOG to a log made by testdata/report/gen")
	}
	for b.Loop() {
		e := env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
		if code := run(context.Background(), e, []string{"report", "--format", "csv", path}); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}

// TestReportExportsFromScan: the evidence of `scan` over the captures in
// the tree, reported as X-ARF, validates against the official X-ARF v4
// schema (python3-jsonschema), and the Shadowserver rows split by family.
func TestReportExportsFromScan(t *testing.T) {
	pcaps, _ := filepath.Glob("../../testdata/pcap/crafted/*.pcap")
	args := append([]string{"scan", "--sensor", "ns1.isp.example"}, pcaps...)
	code, logs, errs := runCmd(t, "", args...)
	if code != exitOK && code != exitFailure { // malformed.pcap makes it exit 1 after matching
		t.Fatalf("scan: %d %s", code, errs)
	}
	// Captured UDP requests prove nothing beyond one datagram: file them anyway.
	code, xarf, errs := reportCmd(t, logs, "--format", "xarf", "--include-unverified", "--reporter-contact", "abuse@isp.example")
	if code != exitOK || strings.Count(xarf, "\n") < 3 {
		t.Fatalf("xarf: %d %q %s", code, xarf, errs)
	}
	v := exec.Command("/usr/bin/python3", "../../testdata/report/xarf-v4/validate.py")
	v.Stdin = strings.NewReader(xarf)
	if out, err := v.CombinedOutput(); err != nil {
		t.Fatalf("reports fail the official X-ARF v4 schema (python3-jsonschema; make deps): %v\n%s", err, out)
	}
	_, v4, errs4 := reportCmd(t, logs, "--format", "shadowserver", "--include-unverified")
	_, v6, _ := reportCmd(t, logs, "--format", "shadowserver6", "--include-unverified")
	r4, r6 := csvRows(t, v4), csvRows(t, v6)
	if len(r4) < 2 || len(r6) < 2 || len(r4[0]) != 33 || r4[0][14] != "severity" || !slices.Equal(r4[0], r6[0]) {
		t.Fatalf("shadowserver: %d and %d rows, header %q", len(r4), len(r6), r4[0])
	}
	for _, r := range r4[1:] {
		if strings.Contains(r[2], ":") {
			t.Errorf("IPv6 host in event4_sinkhole: %q", r)
		}
	}
	for _, r := range r6[1:] {
		if !strings.Contains(r[2], ":") {
			t.Errorf("IPv4 host in event6_sinkhole: %q", r)
		}
	}
	if !strings.Contains(errs4, "left out of event4_sinkhole; write them with --format shadowserver6") {
		t.Errorf("no note about the IPv6 rows: %q", errs4)
	}
	if code, _, _ := reportCmd(t, logs, "--format", "xarf", "--reporter-contact", "abuse@isp.example", "--reporter-org", strings.Repeat("x", 201)); code != exitUsage {
		t.Errorf("an org longer than X-ARF allows: %d", code)
	}
}

// TestReportWorkersSameOutput: report on several workers writes byte for
// byte what one worker writes, in every format, with and without time,
// family and evidence filters, over plain and gzip logs, a log with bad
// and over-long lines, a cut-off gzip log and stdin.
func TestReportWorkersSameOutput(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	kinds := []evidence.Kind{evidence.DNSSinkhole, evidence.TFTPRefused, evidence.WireMatch}
	fams := []string{"Blaster", "Welchia", "Sasser", "Conficker"}
	var evs []evidence.Event
	for i := range 4000 {
		e := ev(fmt.Sprintf("10.%d.%d.%d", i%3, i%50, i%97), t0.Add(time.Duration(i%600)*time.Second), kinds[i%3],
			signatures.Strength(i%2), fams[i%4])
		e.Port = uint16(1000 + i%7)
		e.Proof = evidence.Proof(i % 4) // xarf files proven hosts only
		evs = append(evs, e)
	}
	a := writeLog(t, dir, "a.log", "s1", evs[:2500]...)
	b := writeLog(t, dir, "b.log.gz", "s2", evs[1500:]...)
	data, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.log")
	mixed := append(append(append(bytes.Clone(data[:len(data)/2]), "not json\n"...), bytes.Repeat([]byte("y"), 2<<20)...), data[len(data)/2:]...)
	if err := os.WriteFile(bad, mixed, 0o644); err != nil {
		t.Fatal(err)
	}
	zdata, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.log.gz")
	if err := os.WriteFile(cut, zdata[:len(zdata)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	files := []string{a, b, bad, cut, "-"}
	for _, format := range []string{"table", "csv", "json", "html", "xarf"} {
		for _, extra := range [][]string{nil, {"--since", "2026-11-24T08:02:00Z", "--until", "2026-11-24T08:07:00Z"}, {"--family", "welchia,SASSER", "--evidence", "strong"}} {
			args := append([]string{"--format", format, "--reporter-contact", "abuse@isp.example"}, extra...)
			code1, out1, err1 := reportCmd(t, string(data), append(append(args, "--workers", "1"), files...)...)
			if code1 != exitFailure || !strings.Contains(err1, "cut.log.gz") || len(out1) < 1000 {
				t.Fatalf("%s %v, one worker: exit %d, %d bytes, %s", format, extra, code1, len(out1), err1)
			}
			for _, n := range []string{"2", "3"} {
				code, out, errOut := reportCmd(t, string(data), append(append(args, "--workers", n), files...)...)
				if code != code1 || out != out1 || errOut != err1 {
					t.Errorf("%s %v, %s workers: exit %d (want %d), output equal %v, stderr %q (want %q)", format, extra, n, code, code1, out == out1, errOut, err1)
				}
			}
		}
	}
}

// TestReportWorkersSameOutputShapes: on logs of every shape internal/loggen
// makes (other sensors' line lengths, optional fields, IPv6, attribution,
// many sensors out of time order; small ones), report on several workers
// writes byte for byte what one worker writes.
func TestReportWorkersSameOutputShapes(t *testing.T) {
	dir := t.TempDir()
	for _, v := range loggen.Variants(4000) {
		v.Hosts = min(v.Hosts, 1500)
		path := filepath.Join(dir, v.Name+".log")
		var buf bytes.Buffer
		if err := loggen.Write(&buf, v.Config); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, format := range []string{"csv", "json", "table"} {
			code1, out1, err1 := reportCmd(t, "", "--format", format, "--workers", "1", path)
			if code1 != exitOK || len(out1) < 10_000 {
				t.Fatalf("%s %s, one worker: exit %d, %d bytes, %s", v.Name, format, code1, len(out1), err1)
			}
			code, out, errOut := reportCmd(t, "", "--format", format, "--workers", "2", path)
			if code != code1 || out != out1 || errOut != err1 {
				t.Errorf("%s %s, 2 workers: exit %d (want %d), output equal %v, stderr %q (want %q)", v.Name, format, code, code1, out == out1, errOut, err1)
			}
		}
	}
}
