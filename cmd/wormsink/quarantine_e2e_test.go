package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const quarantinePolicy = `enter:
  proof: [tcp, exchange]
allow:
  - windowsupdate.com
self_release:
  max: 1
  grace: 1m
notice:
  contact: Call 0800 555 0100
  families:
    Blaster:
      title: Blaster on your connection
      cleanup: Install MS03-026 and run the removal tool.
`

// The remediation loop on loopback: a client proven by TCP is quarantined
// within a second, its browsing goes to the notice page while allowed names
// resolve, its neighbour is untouched, a datagram flood quarantines nobody,
// the abuse team releases it from the command line, and a restart keeps
// the quarantine.
func TestServeQuarantineLoop(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	needTool(t, "curl")
	up := startUnbound(t, "www.example.net. 60 IN A 192.0.2.10", "download.windowsupdate.com. 60 IN A 192.0.2.20")
	dir := t.TempDir()
	sigs := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(sigs, []byte(fmt.Sprintf(storySigs, 1, "worm.example")), 0o644)
	policy := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policy, []byte(quarantinePolicy), 0o644)
	db := "sqlite:" + filepath.Join(dir, "wormsink.db")
	noticeAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--upstream", up, "--signatures", sigs, "--db", db, "--quarantine-policy", policy,
		"--notice-ip", "127.0.0.80", "--notice-listen", noticeAddr, "--notice-isp", "Example ISP"}
	p := startServe(t, bin, args...)

	a := func(from, name string) string {
		t.Helper()
		_, ans := p.dig(t, from, name, "A")
		return strings.Join(ans, ",")
	}
	if got := a("127.0.0.5", "www.example.net"); got != "192.0.2.10" {
		t.Fatalf("before any sighting: %q", got)
	}
	// A forged-looking flood: UDP datagrams without cookies for the worm's
	// name from many addresses. Nobody is quarantined.
	c, err := net.ListenPacket("udp", "127.0.0.7:0")
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("worm.example.", dns.TypeA)
	wire, _ := m.Pack()
	for range 200 {
		c.WriteTo(wire, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p.dns})
	}
	c.Close()
	waitFor(t, "the flood's answers", 20*time.Second, func() bool { return p.metric(t, `wormsink_dns_queries_total{outcome="sinkholed"}`) >= 200 })
	if got := a("127.0.0.7", "www.example.net"); got != "192.0.2.10" {
		t.Fatalf("a datagram flood quarantined its source: %q", got)
	}

	// The client asks for the worm's name over TCP: proof tcp, strong.
	start := time.Now()
	out, err := exec.Command("dig", "-b", "127.0.0.5", "-p", fmt.Sprint(p.dns), "@127.0.0.1", "+tcp", "+time=3", "worm.example", "A").CombinedOutput()
	if err != nil {
		t.Fatalf("dig +tcp: %v\n%s", err, out)
	}
	waitFor(t, "the walled garden for 127.0.0.5", 10*time.Second, func() bool { return a("127.0.0.5", "www.example.net") == "127.0.0.80" })
	t.Logf("strong sighting to walled garden: %v", time.Since(start))
	if got := a("127.0.0.5", "download.windowsupdate.com"); got != "192.0.2.20" {
		t.Errorf("allowed name: %q", got)
	}
	if got := a("127.0.0.5", "captive.apple.com"); got != "127.0.0.80" {
		t.Errorf("captive-portal probe: %q", got)
	}
	if got := a("127.0.0.6", "www.example.net"); got != "192.0.2.10" {
		t.Errorf("the neighbour: %q", got)
	}
	// The notice page, as the client's browser gets it.
	page, err := exec.Command("curl", "-s", "--interface", "127.0.0.5", "-w", "\n%{http_code}", "http://"+noticeAddr+"/some/page").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v %s", err, page)
	}
	for _, want := range []string{"Blaster on your connection", "Install MS03-026", "0800 555 0100", "Example ISP", "\n511"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("notice page lacks %q", want)
		}
	}
	if n := p.metric(t, "wormsink_quarantine_subjects"); n != 1 {
		t.Errorf("wormsink_quarantine_subjects %v", n)
	}

	if n := p.metric(t, `wormsink_dns_queries_total{outcome="walled_garden"}`); n < 2 {
		t.Errorf("walled-garden answers counted: %v", n)
	}
	// Restart: the quarantine is still there.
	p.stop(t)
	var entered []map[string]any
	for _, l := range logLines(t, p.log) {
		if l["event"] == "quarantine" {
			entered = append(entered, l)
		}
	}
	if len(entered) != 1 || entered[0]["subject"] != "address:127.0.0.5" || entered[0]["family"] != "Blaster" {
		t.Errorf("quarantine lines in the evidence log: %v", entered)
	}
	p = startServe(t, bin, args...)
	if got := a("127.0.0.5", "www.example.net"); got != "127.0.0.80" {
		t.Fatalf("after a restart: %q", got)
	}
	// The abuse team releases it; the running serve sees it.
	list, err := exec.Command(bin, "quarantine", "list", "--db", db).CombinedOutput()
	if err != nil || !strings.Contains(string(list), "address:127.0.0.5") || !strings.Contains(string(list), "Blaster") {
		t.Fatalf("quarantine list: %v\n%s", err, list)
	}
	if out, err := exec.Command(bin, "quarantine", "release", "127.0.0.5", "--db", db, "--note", "customer called").CombinedOutput(); err != nil {
		t.Fatalf("quarantine release: %v\n%s", err, out)
	}
	waitFor(t, "the release to reach the shim", 10*time.Second, func() bool { return a("127.0.0.5", "www.example.net") == "192.0.2.10" })
	show, _ := exec.Command(bin, "quarantine", "show", "127.0.0.5", "--db", db).CombinedOutput()
	for _, want := range []string{"quarantine", "release", "admin", "customer called"} {
		if !strings.Contains(string(show), want) {
			t.Errorf("audit trail lacks %q:\n%s", want, show)
		}
	}
	// Released: the page says so.
	resp, err := http.Get("http://" + noticeAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "not restricted") {
		t.Errorf("notice page after release: %d", resp.StatusCode)
	}
}
