package main

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every error is one line "wormsink: COMMAND: ...", a wrong flag value
// exits 2 and a failure at run time 1, and no message shows an internal
// package name or says the same thing twice.
func TestErrorMessages(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	serve := func(args ...string) []string {
		return append([]string{"serve", "--tftp-listen", "", "--dns-listen", "127.0.0.1:0", "--sinkhole-ip", "192.0.2.1",
			"--upstream", "192.0.2.53", "--log", log, "--user", ""}, args...)
	}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{serve("--upstream", "x:y"), exitUsage, `wormsink: serve: --upstream: "x:y": want IP or IP:port`},
		{serve("--metrics-listen", "localhost9100"), exitUsage, "wormsink: serve: --metrics-listen:"},
		{serve("--dns-listen", "127.0.0.1"), exitUsage, "wormsink: serve: --dns-listen:"},
		{serve("--tftp-listen", "[::1"), exitUsage, "wormsink: serve: --tftp-listen:"},
		{serve("--ttl", "500ms"), exitUsage, "wormsink: serve: --ttl:"},
		{serve("--allow", "10.0.0.0/33"), exitUsage, "wormsink: serve: --allow:"},
		{serve("--watch-interval", "soon"), exitUsage, "wormsink: serve: --watch-interval:"},
		{serve("--bogus"), exitUsage, "wormsink: serve: "},
		{serve("extra"), exitUsage, "wormsink: serve: "},
		{serve("--dns-listen", busy.LocalAddr().String()), exitFailure, "wormsink: serve: dns: listen udp " + busy.LocalAddr().String()},
		{serve("--signatures", filepath.Join(dir, "none.yaml")), exitFailure, "wormsink: serve: "},
		{[]string{"scan"}, exitUsage, "wormsink: scan: "},
		{[]string{"scan", "--bogus"}, exitUsage, "wormsink: scan: "},
		{[]string{"scan", filepath.Join(dir, "none.pcap")}, exitFailure, "wormsink: scan: "},
		{[]string{"scan", "--signatures", filepath.Join(dir, "none.yaml"), "x.pcap"}, exitFailure, "wormsink: scan: "},
		{[]string{"report", "--format", "nope"}, exitUsage, "wormsink: report: "},
		{[]string{"report", filepath.Join(dir, "none.log")}, exitFailure, "wormsink: report: "},
		{[]string{"sigs"}, exitUsage, "wormsink: sigs: "},
		{[]string{"sigs", "nope"}, exitUsage, "wormsink: sigs: "},
		{[]string{"sigs", "check"}, exitUsage, "wormsink: sigs check: "},
		{[]string{"sigs", "check", filepath.Join(dir, "none.yaml")}, exitFailure, "wormsink: sigs check: "},
		{[]string{"sigs", "export", "--format", "nope"}, exitUsage, "wormsink: sigs export: "},
		{[]string{"sigs", "export", "--format", "rpz", "--sinkhole-ip", "x"}, exitUsage, "wormsink: sigs export: --sinkhole-ip:"},
		{[]string{"version", "x"}, exitUsage, "wormsink: version: "},
	}
	internal := regexp.MustCompile(`\b(wire|evidence|dnsblock|sinkhole|signatures|report|evidencetest): `)
	for _, tc := range tests {
		code, _, errs := runCmd(t, "", tc.args...)
		msg, summary, _ := strings.Cut(strings.TrimSuffix(errs, "\n"), "\n")
		if tc.args[0] == "scan" && strings.HasPrefix(summary, "wormsink: scan: 1 files, 0 packets") {
			summary = "" // scan's summary follows its errors
		}
		if code != tc.code || summary != "" || !strings.HasPrefix(msg, tc.want) {
			t.Errorf("%q: status %d, stderr %q; want %d and one line starting %q", tc.args, code, errs, tc.code, tc.want)
			continue
		}
		rest := strings.TrimPrefix(msg, "wormsink: "+tc.args[0]+": ")
		if m := internal.FindString(rest); m != "" {
			t.Errorf("%q: %q names an internal package (%q)", tc.args, msg, m)
		}
		seen := map[string]bool{}
		for _, part := range strings.Split(msg, ": ") {
			if len(part) > 8 && seen[part] {
				t.Errorf("%q: %q says %q twice", tc.args, msg, part)
			}
			seen[part] = true
		}
	}
}
