package main

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/report"
	"wormsink/signatures"
)

// TestComplaintFormatsFileOnlyProvenStrongHosts: every format that files
// complaints with other networks (shadowserver, shadowserver6, xarf) keeps
// to the same rules: strong evidence only unless --evidence weak, and no
// host whose only proof is a lone datagram unless --include-unverified;
// each says on stderr how many it left out and why. shadowserver6 used to
// file weak, datagram-only IPv6 hosts that shadowserver left out.
func TestComplaintFormatsFileOnlyProvenStrongHosts(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	var evs []evidence.Event
	// Per family: .1 strong and proven, .2 strong from a lone datagram,
	// .3 weak and proven, .4 weak from a lone datagram.
	for _, prefix := range []string{"10.0.0.", "2001:db8::"} {
		for i, c := range []struct {
			s signatures.Strength
			p evidence.Proof
		}{{signatures.Strong, evidence.ProofTCP}, {signatures.Strong, evidence.ProofDatagram}, {signatures.Weak, evidence.ProofExchange}, {signatures.Weak, evidence.ProofDatagram}} {
			e := ev(prefix+string(rune('1'+i)), t0.Add(time.Duration(i)*time.Minute), evidence.TFTPRefused, c.s, "Blaster")
			e.Proof = c.p
			evs = append(evs, e)
		}
	}
	log := writeLog(t, dir, "a.log", "s1", evs...)

	hostsOf := func(format, out string) []string {
		var hosts []string
		if format == "xarf" {
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				var x struct {
					Source string `json:"source_identifier"`
				}
				if l == "" {
					continue
				}
				if err := json.Unmarshal([]byte(l), &x); err != nil {
					t.Fatalf("xarf: %q: %v", l, err)
				}
				hosts = append(hosts, x.Source)
			}
		} else {
			for _, r := range csvRows(t, out)[1:] {
				hosts = append(hosts, r[2])
			}
		}
		slices.Sort(hosts)
		return hosts
	}
	for _, c := range []struct {
		format string
		extra  []string
		want   []string
		note   *regexp.Regexp // on stderr, or nil for none about rules
	}{
		{"shadowserver", nil, []string{"10.0.0.1"}, regexp.MustCompile(`2 rows with weak evidence only .*--evidence weak.* and 1 rows? whose only proof is a lone datagram.*--include-unverified`)},
		{"shadowserver6", nil, []string{"2001:db8::1"}, regexp.MustCompile(`2 rows with weak evidence only .* and 1 rows? whose only proof is a lone datagram`)},
		{"xarf", nil, []string{"10.0.0.1", "2001:db8::1"}, regexp.MustCompile(`4 hosts with weak evidence only .* and 2 hosts whose only proof is a lone datagram`)},
		{"shadowserver6", []string{"--include-unverified"}, []string{"2001:db8::1", "2001:db8::2"}, regexp.MustCompile(`2 rows with weak evidence only`)},
		{"shadowserver6", []string{"--evidence", "weak"}, []string{"2001:db8::1", "2001:db8::3"}, regexp.MustCompile(`2 rows whose only proof is a lone datagram`)},
		{"shadowserver6", []string{"--evidence", "weak", "--include-unverified"}, []string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"}, nil},
		{"xarf", []string{"--include-unverified"}, []string{"10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"}, regexp.MustCompile(`4 hosts with weak evidence only`)},
	} {
		args := append([]string{"--format", c.format, "--reporter-contact", "abuse@isp.example"}, c.extra...)
		code, out, errs := reportCmd(t, "", append(args, log)...)
		if code != exitOK {
			t.Fatalf("%s %v: exit %d: %s", c.format, c.extra, code, errs)
		}
		if got := hostsOf(c.format, out); !slices.Equal(got, c.want) {
			t.Errorf("%s %v: filed %q, want %q", c.format, c.extra, got, c.want)
		}
		if c.note != nil && !c.note.MatchString(errs) {
			t.Errorf("%s %v: stderr %q does not match %q", c.format, c.extra, errs, c.note)
		}
		if c.note == nil && strings.Contains(errs, "left out") && !strings.Contains(errs, "other address family") {
			t.Errorf("%s %v: stderr %q: nothing was left out by the rules", c.format, c.extra, errs)
		}
	}
	// The formats the operator reads list every host, with its proof.
	for _, f := range []string{"table", "csv", "json", "html"} {
		code, out, errs := reportCmd(t, "", "--format", f, log)
		if code != exitOK || !strings.Contains(out, "2001:db8::4") || !strings.Contains(out, "10.0.0.4") || strings.Contains(errs, "left out") {
			t.Errorf("%s: exit %d, stderr %q, all hosts listed: %v", f, code, errs, strings.Contains(out, "2001:db8::4"))
		}
	}
}

// TestHelpListsEveryFormat: the top-level help and report --help name
// every format of the registry (the help once lacked shadowserver6).
func TestHelpListsEveryFormat(t *testing.T) {
	_, top, _ := runCmd(t, "", "--help")
	_, out, errs := runCmd(t, "", "report", "--help")
	rep := out + errs
	for _, f := range report.FormatNames() {
		if !strings.Contains(top, f) || !strings.Contains(rep, f) {
			t.Errorf("format %s: in the help %v, in report --help %v", f, strings.Contains(top, f), strings.Contains(rep, f))
		}
	}
}
