package main

import (
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
	xarf := []string{"--format", "xarf", "--reporter-contact", "abuse@isp.example"}
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
	if n, out := count("--format", "shadowserver"); n != 2 || strings.Contains(out, "10.0.0.2") {
		t.Errorf("shadowserver by default: %d lines:\n%s", n, out)
	}
	if n, _ := count(append(xarf, "--evidence", "weak")...); n != 2 {
		t.Errorf("xarf --evidence weak: %d reports", n)
	}
	if n, _ := count("--format", "shadowserver", "--evidence", "weak"); n != 3 {
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
