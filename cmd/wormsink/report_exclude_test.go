package main

import (
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// TestReportExcludeMappedPrefix: --exclude ::ffff:a.b.c.d/N leaves out the
// IPv4 network a.b.c.d/N-96 (it used to be an IPv6 prefix that matched no
// host); a mapped prefix shorter than /96 is refused, with the reason.
func TestReportExcludeMappedPrefix(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	log := writeLog(t, t.TempDir(), "a.log", "s1",
		ev("10.1.2.3", t0, evidence.DNSSinkhole, signatures.Strong, "Blaster"),
		ev("10.1.200.4", t0, evidence.DNSSinkhole, signatures.Strong, "Blaster"),
		ev("10.2.0.1", t0, evidence.DNSSinkhole, signatures.Strong, "Blaster"))
	for _, x := range []string{"::ffff:10.1.0.0/112", "::FFFF:10.1.0.0/112,192.0.2.1", "10.1.0.0/16"} {
		code, out, errs := reportCmd(t, "", "--format", "csv", "--exclude", x, log)
		if code != exitOK || strings.Contains(out, "10.1.") || !strings.Contains(out, "10.2.0.1") {
			t.Errorf("--exclude %s: exit %d, stderr %q:\n%s", x, code, errs, out)
		}
	}
	code, _, errs := reportCmd(t, "", "--exclude", "::ffff:10.1.0.0/90", log)
	if code != exitUsage || !strings.Contains(errs, "/96") || strings.Count(errs, "\n") > 3 {
		t.Errorf("a mapped prefix shorter than /96: exit %d, stderr %q", code, errs)
	}
}
