//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeNeverAccusesOwnAddresses: a router in a network namespace runs
// `serve --tftp-intercept --capture` on its customer interface. An address
// is added to the router after serve started; a customer then asks the
// router's original address, the new one and a server elsewhere for
// msblast.exe with tftp-hpa. The interceptor refuses all three and the
// capture sees them, but no line names one of the router's addresses (nor
// its network's broadcast address) as a host; the customer is named.
func TestServeNeverAccusesOwnAddresses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: network namespaces, nftables tproxy and a capture socket (make test runs as root)")
	}
	for _, tool := range []string{"ip", "nft", "tftp"} {
		needTool(t, tool)
	}
	bin := wormsinkBinary(t)
	l := &lab{t: t}
	id := fmt.Sprintf("%05d", os.Getpid()%100000)
	c, r := "ttap-"+id+"-c", "ttap-"+id+"-r"
	cIf, rIf := "ttapc"+id, "ttapr"+id
	for _, ns := range []string{c, r} {
		exec.Command("ip", "netns", "del", ns).Run()
		l.host("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		l.must(ns, "ip", "link", "set", "lo", "up")
	}
	l.host("ip", "link", "add", cIf, "netns", c, "type", "veth", "peer", "name", rIf, "netns", r)
	l.must(c, "ip", "addr", "add", "10.21.1.2/24", "dev", cIf)
	l.must(r, "ip", "addr", "add", "10.21.1.1/24", "dev", rIf)
	l.must(c, "ip", "link", "set", cIf, "up")
	l.must(r, "ip", "link", "set", rIf, "up")
	l.must(c, "ip", "route", "add", "default", "via", "10.21.1.1")
	l.must(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for _, rule := range interceptRules {
		l.must(r, rule...)
	}

	logFile := filepath.Join(t.TempDir(), "evidence.jsonl")
	var out bytes.Buffer
	serve, done := l.bg(r, &out, bin, "serve", "--dns-listen", "", "--tftp-listen", "", "--tftp-intercept", ":6969",
		"--capture", rIf, "--capture-workers", "1", "--tftp-source-rate", "-1",
		"--log", logFile, "--sensor", "ttap", "--user", "", "--watch-interval", "0")
	logHas := func(s string) bool {
		data, _ := os.ReadFile(logFile)
		if exited(done) {
			t.Fatalf("serve exited: %s", out.String())
		}
		return bytes.Contains(data, []byte(s))
	}
	waitFor(t, "the interceptor to serve", 20*time.Second, func() bool { return logHas(`"tftp_intercept_start"`) })

	// An address the router gets after the start.
	l.must(r, "ip", "addr", "add", "10.21.1.77/24", "dev", rIf)
	waitFor(t, "serve to follow the new address", 10*time.Second, func() bool {
		return logHas(`"event":"own_address_added","address":"10.21.1.77"`)
	})
	for _, dst := range []string{"10.21.1.77", "10.21.1.1", "10.21.9.9"} {
		o, _ := l.cmd(c, "tftp", "-m", "binary", dst, "-c", "get", "msblast.exe", "/dev/null").CombinedOutput()
		if !strings.Contains(string(o), "denied") {
			t.Fatalf("tftp from the customer to %s: not refused: %s", dst, o)
		}
	}
	serve.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	own := map[string]bool{"10.21.1.1": true, "10.21.1.77": true, "10.21.1.255": true}
	var customer = map[string]bool{}
	for _, ln := range logLines(t, logFile) {
		h, _ := ln["host"].(string)
		if own[h] {
			t.Errorf("the router's own address as a host: %v", ln)
		}
		if h == "10.21.1.2" {
			customer[ln["event"].(string)] = true
		}
	}
	if !customer["wire_match"] || !customer["tftp_refused"] {
		t.Errorf("the customer's lines are missing: %v\n%s", customer, out.String())
	}
}
