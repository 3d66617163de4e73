package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestServeProof is the forged-flood story end to end through the real
// binary: fifty sources that never answer (from here a forged source
// address and a source that never answers look the same: neither sees the
// reply) send TFTP requests and DNS queries for worm names; a real
// tftp-hpa client, dig over TCP, dig echoing its server cookie and a
// source inside --trusted-sources do the same. Every forged sighting is a
// datagram; each of the others reaches its stronger proof; and the default
// X-ARF and Shadowserver output names none of the forged hosts.
func TestServeProof(t *testing.T) {
	bin := wormsinkBinary(t)
	needTool(t, "dig")
	tftp := needTool(t, "tftp")
	sigs := t.TempDir() + "/sigs.yaml"
	if err := os.WriteFile(sigs, fmt.Appendf(nil, storySigs, 1, "tftp.worm.example"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The sinkhole on 127.0.0.200, so that clients on 127.0.0.1 are not its
	// own address (which is never recorded as a host).
	const sink = "127.0.0.200"
	dnsPort, tftpPort := freePort(t), freePort(t)
	p := startServe(t, bin, "--signatures", sigs, "--upstream", "127.0.0.1:9", "--sinkhole-ip", sink,
		"--dns-listen", fmt.Sprintf("%s:%d", sink, dnsPort), "--tftp-listen", fmt.Sprintf("%s:%d", sink, tftpPort),
		"--trusted-sources", "127.0.0.77/32", "--tftp-source-rate", "-1", "--tftp-total-rate", "-1",
		"--tftp-exchange-wait", "30s") // generous on a loaded machine; the test waits on counters, and stopping records what still waits
	tftpAddr := netip.AddrPortFrom(netip.MustParseAddr(sink), uint16(tftpPort))
	dnsAddr := netip.AddrPortFrom(netip.MustParseAddr(sink), uint16(dnsPort))

	rrq := []byte("\x00\x01msblast.exe\x00octet\x00")
	q := new(dns.Msg)
	q.SetQuestion("tftp.worm.example.", dns.TypeA)
	query, _ := q.Pack()
	send := func(from string, to netip.AddrPort, payload []byte) {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close() // never reads the reply
		if _, err := c.WriteToUDPAddrPort(payload, to); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < 60; i++ {
		from := "127.0.0." + strconv.Itoa(i)
		send(from, tftpAddr, rrq)
		send(from, dnsAddr, query)
	}
	send("127.0.0.77", tftpAddr, rrq) // trusted network: its edge drops forged sources

	// tftp-hpa (from 127.0.0.1, the kernel's choice): it ACKs the refusal
	// to the port it came from.
	if out, err := exec.Command(tftp, sink, strconv.Itoa(tftpPort), "-m", "binary", "-c", "get", "msblast.exe", "/dev/null").CombinedOutput(); err != nil || !strings.Contains(string(out), "denied") {
		t.Fatalf("tftp-hpa: %v %s", err, out)
	}
	digArgs := func(from string, args ...string) string {
		out, err := exec.Command("dig", append([]string{"-b", from, "-p", strconv.Itoa(dnsPort), "@" + sink, "+time=3", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	digArgs("127.0.0.2", "+tcp", "+nocookie", "tftp.worm.example", "A")
	out := digArgs("127.0.0.3", "+cookie", "tftp.worm.example", "A")
	m := regexp.MustCompile(`COOKIE: ([0-9a-f]{48})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no server cookie:\n%s", out)
	}
	digArgs("127.0.0.3", "+cookie="+m[1], "tftp.worm.example", "A")

	// The follow-up is counted when it arrives; more than one would be a
	// forger's win, which the proofs below would show.
	followed := func() bool { return p.metric(t, "wormsink_tftp_exchanges_total") >= 1 }
	for deadline := time.Now().Add(10 * time.Second); !followed(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			// Say what the server did with the requests, so that a failure
			// here names its cause.
			resp, err := http.Get("http://" + p.metrics + "/metrics")
			if err != nil {
				t.Fatalf("no follow-up counted in 10 s; metrics: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var tftp []string
			for _, l := range strings.Split(string(body), "\n") {
				if strings.HasPrefix(l, "wormsink_tftp_") {
					tftp = append(tftp, l)
				}
			}
			t.Fatalf("no follow-up counted in 10 s:\n%s", strings.Join(tftp, "\n"))
		}
	}
	p.stop(t)

	best := map[string]string{}
	rank := map[string]int{"datagram": 0, "trusted-source": 1, "exchange": 2, "tcp": 3}
	total := 0.0
	for _, l := range logLines(t, p.log) {
		h, ok := l["host"].(string)
		if !ok {
			continue
		}
		total += l["count"].(float64)
		pr, _ := l["proof"].(string)
		if _, known := rank[pr]; !known {
			t.Fatalf("line without a known proof: %v", l)
		}
		if cur, seen := best[h]; !seen || rank[pr] > rank[cur] {
			best[h] = pr
		}
	}
	// 50 forged sources × 2, the trusted datagram, tftp-hpa, dig tcp, two cookie digs.
	if total != 100+1+1+1+2 {
		t.Errorf("%v sightings counted, want 105", total)
	}
	want := map[string]string{"127.0.0.1": "exchange", "127.0.0.2": "tcp", "127.0.0.3": "exchange", "127.0.0.77": "trusted-source"}
	for i := 10; i < 60; i++ {
		want["127.0.0."+strconv.Itoa(i)] = "datagram"
	}
	if len(best) != len(want) {
		t.Errorf("%d hosts, want %d: %v", len(best), len(want), best)
	}
	for h, w := range want {
		if best[h] != w {
			t.Errorf("%s: best proof %q, want %q", h, best[h], w)
		}
	}

	code, xarf, errs := runCmd(t, "", "report", "--format", "xarf", "--reporter-contact", "abuse@isp.example", p.log)
	if code != 0 {
		t.Fatalf("xarf: exit %d: %s", code, errs)
	}
	filed := regexp.MustCompile(`"source_identifier":"([0-9.]+)"`).FindAllStringSubmatch(xarf, -1)
	got := map[string]bool{}
	for _, f := range filed {
		got[f[1]] = true
	}
	if len(got) != 4 || !got["127.0.0.1"] || !got["127.0.0.2"] || !got["127.0.0.3"] || !got["127.0.0.77"] {
		t.Errorf("xarf filed %v, want the four proven hosts only", got)
	}
	code, ss, errs := runCmd(t, "", "report", "--format", "shadowserver", p.log)
	if code != 0 {
		t.Fatalf("shadowserver: exit %d: %s", code, errs)
	}
	rows, err := csv.NewReader(strings.NewReader(ss)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows[1:] {
		if want[r[2]] == "datagram" || strings.HasSuffix(r[26], "proof=datagram") {
			t.Errorf("shadowserver row for an unverified sighting: %q", r)
		}
	}
	if len(rows) < 5 {
		t.Errorf("shadowserver rows %q", rows)
	}
}
