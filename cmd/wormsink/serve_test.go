package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A bad start fails at once with one clear line and status 1.
func TestServeStartFailures(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	base := []string{"--dns-listen", "", "--tftp-listen", "127.0.0.1:0", "--log", filepath.Join(dir, "log"), "--user", ""}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown config key", []string{"--config", write("a.yaml", "dns-listen: \"\"\nupstreams: [1.1.1.1]\n")}, "a.yaml:2: unknown key \"upstreams\""},
		{"bad config value", []string{"--config", write("b.yaml", "ttl: soon\n")}, "b.yaml:1: ttl:"},
		{"bad config yaml", []string{"--config", write("c.yaml", "ttl: [1\n")}, "c.yaml:1: invalid YAML"},
		{"bad config indent", []string{"--config", write("d.yaml", "sensor: a\nupstream:\n  - 192.0.2.1\n - 192.0.2.2\nttl: 30s\n")}, "d.yaml:4: invalid YAML"},
		{"broken signature indent", []string{"--signatures", write("i.yaml", "serial: 1\nsignatures:\n  - id: blaster\n    family: Blaster\n    tftp_files: [msblast.exe]\n   domains: [a.example]\n")}, "i.yaml:6: invalid YAML"},
		{"missing config", []string{"--config", filepath.Join(dir, "none.yaml")}, "none.yaml"},
		{"broken signatures", []string{"--signatures", write("s.yaml", "serial: 1\nsignatures:\n  - id: x\n    family: X\n    tftp_files: ['a/b']\n")}, "s.yaml:5: "},
		{"unbindable metrics", []string{"--metrics-listen", busy.Addr().String()}, "address already in use"},
		{"unbindable tftp", []string{"--tftp-listen", busyUDP.LocalAddr().String()}, "address already in use"},
		{"unbindable dns", []string{"--dns-listen", busyUDP.LocalAddr().String(), "--upstream", "127.0.0.1:1", "--sinkhole-ip", "192.0.2.1"}, "address already in use"},
		{"nothing to serve", []string{"--tftp-listen", ""}, "nothing to serve"},
		{"bad exchange wait", []string{"--tftp-exchange-wait", "2h"}, "--tftp-exchange-wait 2h0m0s"},
		{"no sinkhole ip", []string{"--dns-listen", "127.0.0.1:0", "--tftp-listen", ":0", "--upstream", "127.0.0.1:1"}, "--sinkhole-ip is needed"},
		{"upstream loop", []string{"--dns-listen", "127.0.0.1:5353", "--upstream", "127.0.0.1:5353", "--sinkhole-ip", "192.0.2.1"}, "loop"},
		{"bad intercept policy", []string{"--tftp-intercept", "127.0.0.1:0", "--tftp-intercept-policy", "drop"}, "--tftp-intercept-policy"},
		{"bad intercept address", []string{"--tftp-intercept", "6969"}, "--tftp-intercept \"6969\""},
		{"intercept not an IP", []string{"--tftp-intercept", "localhost:6969"}, "want an IP address"},
		{"unbindable intercept", []string{"--tftp-intercept", busyUDP.LocalAddr().String()}, "address already in use"},
		{"upstream loop via wildcard", []string{"--dns-listen", ":5353", "--upstream", "127.0.0.2:5353", "--sinkhole-ip", "192.0.2.1"}, "loop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, out, errs := runCmd(t, "", append(append([]string{"serve"}, base...), tc.args...)...)
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			if code != exitFailure || len(lines) != 1 || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("status %d, stderr %q, stdout %q; want 1 line with %q", code, errs, out, tc.want)
			}
		})
	}
	for _, bad := range [][]string{{"--ttl", "x"}, {"--ttl", "500ms"}, {"--upstream", "x:y"}, {"--allow", "10.0.0.0/33"}} {
		if code, _, errs := runCmd(t, "", append([]string{"serve"}, bad...)...); code != exitUsage || strings.Count(errs, "\n") != 1 {
			t.Errorf("serve %q: status %d, stderr %q; want 2 and one line", bad, code, errs)
		}
	}
	if code, _, _ := runCmd(t, "", "serve", "extra"); code != exitUsage {
		t.Errorf("extra argument: status %d, want 2", code)
	}
}

func TestServePrintConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "w.yaml")
	os.WriteFile(cfg, []byte("dns-listen: 127.0.0.1:5353\nupstream: [192.0.2.1, \"192.0.2.2:5300\"]\nallow: 10.0.0.0/8,192.0.2.0/24\nttl: 30s\nsensor: from-file\n"), 0o644)
	code, out, errs := runCmd(t, "", "serve", "--config", cfg, "--sensor", "from-flag", "--tftp-listen", "127.0.0.9:6969", "--print-config")
	if code != exitOK {
		t.Fatalf("status %d: %s", code, errs)
	}
	for _, want := range []string{
		"dns-listen: 127.0.0.1:5353\n",
		"upstream: 192.0.2.1:53,192.0.2.2:5300\n",
		"allow: 10.0.0.0/8,192.0.2.0/24\n",
		"ttl: 30s\n",
		"sensor: from-flag\n",      // the command line wins
		"sinkhole-ip: 127.0.0.9\n", // derived from --tftp-listen
		"tftp-listen: 127.0.0.9:6969\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

// TestCaptureFlagsValidated: the capture tuning flags are checked before
// anything is opened, with one line naming the flag.
func TestCaptureFlagsValidated(t *testing.T) {
	for _, bad := range [][]string{{"--capture-workers", "0"}, {"--capture-workers", "5000"}, {"--capture-ring-mb", "0"}} {
		args := append([]string{"serve", "--dns-listen", "", "--tftp-listen", "", "--capture", "ws15-none"}, bad...)
		code, out, errs := runCmd(t, "", args...)
		if code != exitFailure || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, bad[0]) || out != "" {
			t.Errorf("serve %q: status %d, stderr %q", bad, code, errs)
		}
	}
	for _, cmd := range []string{"scan", "report"} {
		if code, _, errs := runCmd(t, "", cmd, "--workers", "0", "x"); code != exitUsage || !strings.Contains(errs, "--workers 0") {
			t.Errorf("%s --workers 0: status %d, stderr %q", cmd, code, errs)
		}
	}
}

// TestUpstreamHelpSaysWhatItTakes: --upstream and --rpz-notify take
// addresses, IP[:port]; their help says so, and a host name is refused at
// once with a line saying why, not later at the first forward.
func TestUpstreamHelpSaysWhatItTakes(t *testing.T) {
	_, out, errs := runCmd(t, "", "serve", "--help")
	help := out + errs
	for _, flag := range []string{"-upstream", "-rpz-notify"} {
		i := strings.Index(help, "  "+flag+" value")
		if i < 0 || !strings.Contains(help[i:min(len(help), i+300)], "IP[:port]") {
			t.Errorf("help of %s does not say IP[:port]", flag)
		}
	}
	for _, args := range [][]string{{"--upstream", "resolver.example"}, {"--upstream", "192.0.2.1,ns.example:53"}, {"--rpz-notify", "secondary.example"}} {
		code, _, errs := runCmd(t, "", append([]string{"serve"}, args...)...)
		if code != exitUsage || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "not a host name") {
			t.Errorf("serve %q: status %d, stderr %q; want 2 and a line saying a host name is not taken", args, code, errs)
		}
	}
	// The addresses themselves are taken, with port 53 when left out.
	code, out, errs := runCmd(t, "", "serve", "--upstream", "192.0.2.1,[2001:db8::1]:5353", "--rpz-notify", "192.0.2.2", "--sinkhole-ip", "192.0.2.3", "--print-config")
	if code != exitOK || !strings.Contains(out, "192.0.2.1:53,[2001:db8::1]:5353") || !strings.Contains(out, "192.0.2.2:53") {
		t.Errorf("status %d, stdout %q, stderr %q", code, out, errs)
	}
}
