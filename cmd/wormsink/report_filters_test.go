package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// TestReportComplaintFormatsDefaultToStrong: xarf and shadowserver file
// complaints, so without --evidence they leave out hosts (and sightings)
// with only weak evidence, such as one lookup of windowsupdate.com; the
// other formats still list everything, and an explicit --evidence wins.
func TestReportComplaintFormatsDefaultToStrong(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().UTC()
	weak := ev("10.0.0.2", now.Add(-time.Hour), evidence.DNSSinkhole, signatures.Weak, "Blaster")
	weak.QName = "windowsupdate.com"
	log := writeLog(t, dir, "a.log", "edge-1",
		ev("10.0.0.1", now.Add(-time.Hour), evidence.TFTPRefused, signatures.Strong, "Blaster"),
		weak,
	)
	// The log holds lone datagrams: --include-unverified keeps the proof
	// filter out of this test (TestReportCommand/proof has it).
	xarf := []string{"--format", "xarf", "--reporter-contact", "abuse@isp.example", "--include-unverified"}
	count := func(args ...string) (int, string) {
		t.Helper()
		code, out, errs := reportCmd(t, "", append(args, log)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		return strings.Count(out, "\n"), out
	}
	if n, out := count(xarf...); n != 1 || strings.Contains(out, "10.0.0.2") {
		t.Errorf("xarf by default: %d reports:\n%s", n, out)
	}
	if n, out := count("--format", "shadowserver", "--include-unverified"); n != 2 || strings.Contains(out, "10.0.0.2") {
		t.Errorf("shadowserver by default: %d lines:\n%s", n, out)
	}
	if n, _ := count(append(xarf, "--evidence", "weak")...); n != 2 {
		t.Errorf("xarf --evidence weak: %d reports", n)
	}
	if n, _ := count("--format", "shadowserver", "--include-unverified", "--evidence", "weak"); n != 3 {
		t.Errorf("shadowserver --evidence weak: %d lines", n)
	}
	for _, f := range []string{"csv", "table"} {
		if n, out := count("--format", f); n != 3 || !strings.Contains(out, "10.0.0.2") {
			t.Errorf("%s by default: %d lines:\n%s", f, n, out)
		}
	}
	if n, _ := count("--format", "csv", "--evidence", "strong"); n != 2 {
		t.Errorf("csv --evidence strong: %d lines", n)
	}
}

// TestReportOfANonLogFails: a report of a file with no evidence line at all
// (README.md, a pcap) exits 1 naming it; a log whose sightings all fall
// outside the window, a log with only service lines and an empty file are
// valid and exit 0.
func TestReportOfANonLogFails(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("# wormsink\n\nA worm sinkhole.\n{\"a\":1}\n"), 0o644)
	pcap := filepath.Join(dir, "x.pcap")
	os.WriteFile(pcap, []byte("\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00\n\x01\x02"), 0o644)
	old := writeLog(t, dir, "old.log", "edge-1", ev("10.0.0.1", time.Now().Add(-72*time.Hour), evidence.TFTPRefused, signatures.Strong, "Blaster"))
	quiet := writeLog(t, dir, "quiet.log", "edge-1")
	empty := filepath.Join(dir, "empty.log")
	os.WriteFile(empty, nil, 0o644)

	for _, in := range []string{readme, pcap} {
		for _, f := range []string{"table", "csv", "json"} {
			code, _, errs := reportCmd(t, "", "--format", f, in)
			if code != 1 || !strings.Contains(errs, "no evidence lines in "+in) {
				t.Errorf("%s %s: exit %d, stderr %q", f, in, code, errs)
			}
		}
	}
	// One wrong file among good ones: the report of the good ones is
	// written, and the status says something was wrong.
	code, out, errs := reportCmd(t, "", "--format", "csv", old, readme)
	if code != 1 || !strings.Contains(out, "10.0.0.1") || !strings.Contains(errs, "no evidence lines in "+readme) {
		t.Errorf("good + wrong: exit %d, out %q, stderr %q", code, out, errs)
	}
	code, _, errs = reportCmd(t, "", "--format", "csv", "--since", "1h", old)
	if code != 0 || errs != "" {
		t.Errorf("nothing in the window: exit %d, stderr %q", code, errs)
	}
	for _, in := range []string{quiet, empty} {
		if code, _, errs := reportCmd(t, "", in); code != 0 || errs != "" {
			t.Errorf("%s: exit %d, stderr %q", in, code, errs)
		}
	}
	if code, _, errs := reportCmd(t, "garbage\n", "-"); code != 1 || !strings.Contains(errs, "no evidence lines in stdin") {
		t.Errorf("stdin: exit %d, stderr %q", code, errs)
	}
}

// TestReportNetworkLines: network lines show as networks in table and json,
// never as hosts, and the host-only formats say what they leave out.
func TestReportNetworkLines(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: "edge-1", LineRate: 0.001, LineBurst: 1})
	now := time.Now().UTC()
	for i := 0; i < 50; i++ {
		w.Record(ev(fmt.Sprintf("10.1.%d.%d", i%2, i), now.Add(-time.Minute), evidence.TFTPRefused, signatures.Strong, "Blaster"))
	}
	w.Close()
	log := filepath.Join(dir, "net.log")
	os.WriteFile(log, buf.Bytes(), 0o644)

	code, out, errs := reportCmd(t, "", log)
	if code != 0 || !strings.Contains(out, "NETWORK") || !strings.Contains(out, "10.1.0.0/24") || !strings.Contains(out, "10.1.1.0/24") || errs != "" {
		t.Errorf("table: exit %d, stderr %q:\n%s", code, errs, out)
	}
	code, out, _ = reportCmd(t, "", "--format", "json", log)
	var doc struct {
		Hosts    []map[string]any `json:"hosts"`
		Networks []map[string]any `json:"networks"`
		Summary  map[string]any   `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || len(doc.Hosts) != 1 || len(doc.Networks) != 2 ||
		doc.Summary["sightings"] != 50.0 || doc.Summary["network_sightings"] != 49.0 {
		t.Errorf("json: %v %s", err, out)
	}
	for _, f := range [][]string{{"--format", "csv"}, {"--format", "shadowserver"}, {"--format", "xarf", "--reporter-contact", "abuse@isp.example"}} {
		code, out, errs := reportCmd(t, "", append(f, log)...)
		if code != 0 || strings.Contains(out, "/24") || !strings.Contains(errs, "49 sightings are in network lines") {
			t.Errorf("%v: exit %d, stderr %q:\n%s", f, code, errs, out)
		}
	}
}
