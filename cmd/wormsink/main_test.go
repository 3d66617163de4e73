package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wormsink/signatures"
)

// runCmd runs the command line in process and returns its status and streams.
func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	if code, _, errs := runCmd(t, ""); code != exitUsage || !strings.Contains(errs, "usage") {
		t.Errorf("no args: %d %q", code, errs)
	}
	if code, out, _ := runCmd(t, "", "--help"); code != exitOK || !strings.Contains(out, "sigs") {
		t.Errorf("--help: %d %q", code, out)
	}
	if code, _, errs := runCmd(t, "", "frobnicate"); code != exitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown: %d %q", code, errs)
	}
	for _, c := range commands() {
		if code, out, _ := runCmd(t, "", c.name, "--help"); code != exitOK || !strings.Contains(out, "usage") {
			t.Errorf("%s --help: %d %q", c.name, code, out)
		}
	}
	if code, out, _ := runCmd(t, "", "version"); code != exitOK || !strings.HasPrefix(out, "wormsink ") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestSigsCheck(t *testing.T) {
	code, out, errs := runCmd(t, "", "sigs", "check", "../../signatures/default.yaml")
	def := signatures.Default()
	if code != exitOK || !strings.Contains(out, fmt.Sprintf("serial %d", def.Serial())) || !strings.Contains(out, fmt.Sprintf("%d signatures", len(def.Signatures()))) || errs != "" {
		t.Fatalf("check default: %d %q %q", code, out, errs)
	}
	bad, _ := filepath.Glob("../../testdata/signatures/bad/*.yaml")
	if len(bad) < 10 {
		t.Fatalf("only %d bad files", len(bad))
	}
	for _, f := range bad {
		code, out, errs := runCmd(t, "", "sigs", "check", f)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != exitFailure || out != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "wormsink: sigs check: "+f+":") {
			t.Errorf("%s: %d out=%q err=%q", f, code, out, errs)
		}
	}
	if code, _, errs := runCmd(t, "", "sigs", "check", "/nonexistent.yaml"); code != exitFailure || !strings.Contains(errs, "/nonexistent.yaml") {
		t.Errorf("missing file: %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, "", "sigs", "check"); code != exitUsage {
		t.Errorf("check without file: %d", code)
	}
	if code, _, _ := runCmd(t, "", "sigs", "check", "--bogus", "x"); code != exitUsage {
		t.Errorf("bad flag: %d", code)
	}
}

func TestSigsExport(t *testing.T) {
	code, out, errs := runCmd(t, "", "sigs", "export", "--format", "rpz", "--sinkhole-ip", "192.0.2.1")
	if code != exitOK || !strings.Contains(out, "windowsupdate.com CNAME .") || !strings.Contains(out, "SOA") {
		t.Fatalf("rpz: %d %q %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "", "sigs", "export", "--format", "suricata", "../../signatures/default.yaml")
	if code != exitOK || !strings.Contains(out, "msblast") {
		t.Fatalf("suricata: %d %q", code, out)
	}
	code, out, errs = runCmd(t, "", "sigs", "export", "--format", "rpz", "--zone", "rpz.isp.example", "--sinkhole-ip", "192.0.2.1")
	if code != exitOK || !strings.Contains(out, "$ORIGIN rpz.isp.example.\n") || !strings.Contains(out, "windowsupdate.com.rpz.isp.example. CNAME .") {
		t.Fatalf("rpz --zone: %d %q %q", code, out, errs)
	}
	// A sinkhole name with '_' is blocked as NODATA with a warning on
	// stderr and a comment in the zone, so BIND's default check-names loads it.
	us := filepath.Join(t.TempDir(), "us.yaml")
	if err := os.WriteFile(us, []byte("serial: 1\nsignatures:\n  - id: u\n    family: U\n    domains: [_tcp.worm.example]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd(t, "", "sigs", "export", "--format", "rpz", "--sinkhole-ip", "192.0.2.1", us)
	if code != exitOK || !strings.Contains(out, "\n_tcp.worm.example CNAME *.\n") || !strings.Contains(out, "; _tcp.worm.example: sinkhole answered as NODATA") ||
		!strings.Contains(errs, "warning: rpz: _tcp.worm.example (signature u)") {
		t.Errorf("underscore: %d %q %q", code, out, errs)
	}
	code, out, _ = runCmd(t, "", "sigs", "export", "--format", "rpz", "--keep-underscore", "--sinkhole-ip", "192.0.2.1", us)
	if code != exitOK || !strings.Contains(out, "\n_tcp.worm.example A 192.0.2.1\n") {
		t.Errorf("--keep-underscore: %d %q", code, out)
	}
	if code, _, errs := runCmd(t, "", "sigs", "export", "--format", "rpz", "--zone", "bad zone"); code != exitUsage || !strings.Contains(errs, "--zone") {
		t.Errorf("bad --zone: %d %q", code, errs)
	}
	if code, _, _ := runCmd(t, "", "sigs", "export", "--format", "hosts", "--zone", "x"); code != exitUsage {
		t.Errorf("--zone with hosts: %d", code)
	}
	if code, _, _ := runCmd(t, "", "sigs", "export", "--format", "bind"); code != exitUsage {
		t.Errorf("unknown format: %d", code)
	}
	if code, _, _ := runCmd(t, "", "sigs", "export"); code != exitUsage {
		t.Errorf("no format: %d", code)
	}
	if code, _, _ := runCmd(t, "", "sigs", "export", "--format", "hosts", "--sinkhole-ip", "nope"); code != exitUsage {
		t.Errorf("bad ip: %d", code)
	}
	if code, _, errs := runCmd(t, "", "sigs", "export", "--format", "hosts", "../../testdata/signatures/bad/bad-hex.yaml"); code != exitFailure || !strings.Contains(errs, "bad-hex.yaml:9:") {
		t.Errorf("bad file: %d %q", code, errs)
	}
}
