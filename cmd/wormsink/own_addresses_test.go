package main

import (
	"bytes"
	"encoding/csv"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServeNeverAccusesItself: with --capture on the interface the
// sinkhole answers on, a TFTP request to the sinkhole is seen twice, by the
// TFTP server and on the wire. The wire sees the sinkhole "serving" the
// worm; that server-side line names the sinkhole's own address and must not
// be written, nor may any line name an --exclude network. The requester is
// recorded; the report lists neither the sinkhole nor the excluded range,
// and report --exclude takes a host away too.
func TestServeNeverAccusesItself(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: port 69 and a capture socket (make test runs as root in CI)")
	}
	bin := wormsinkBinary(t)
	const sinkhole = "127.0.11.69"
	p := startServe(t, bin, "--dns-listen", "", "--tftp-listen", sinkhole+":69", "--capture", "lo",
		"--exclude", "127.0.12.0/24")
	rrq := []byte("\x00\x01msblast.exe\x00octet\x00")
	for _, from := range []string{"127.0.0.5", "127.0.12.7", "127.0.0.6"} {
		// Not a connected socket: the refusal comes from a fresh port of
		// the sinkhole's (RFC 1350's transfer identifier).
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUDP(rrq, &net.UDPAddr{IP: net.ParseIP(sinkhole), Port: 69}); err != nil {
			t.Fatal(err)
		}
		// The refusal arrives (after the probe this client never answers,
		// a round's wait later): the request was served, whoever sent it.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		for {
			n, src, err := c.ReadFromUDP(buf)
			if err != nil || n < 4 || !src.IP.Equal(net.ParseIP(sinkhole)) {
				t.Fatalf("from %s: no TFTP error reply from the sinkhole: %v %v", from, src, err)
			}
			if buf[1] == 5 {
				break
			}
			if string(buf[:n]) != "\x00\x03\x00\x00" {
				t.Fatalf("from %s: %q from the sinkhole, want a probe or an ERROR", from, buf[:n])
			}
		}
		c.Close()
	}
	// Each request: a tftp_refused and a wire requester line for the
	// sender, and a wire server line for the sinkhole, excluded. The
	// excluded sender's two go too.
	waitFor(t, "the sightings", 20*time.Second, func() bool {
		return p.metric(t, "wormsink_evidence_sightings_total") >= 4 && p.metric(t, "wormsink_evidence_excluded_total") >= 5
	})
	p.stop(t)
	lines := logLines(t, p.log)
	requester := map[string]bool{}
	for _, l := range lines {
		h, _ := l["host"].(string)
		if h == sinkhole || strings.HasPrefix(h, "127.0.12.") {
			t.Errorf("excluded address as host: %v", l)
		}
		if l["event"] == "wire_match" && l["role"] == "requester" && l["peer"] == sinkhole {
			requester[h] = true
		}
	}
	if !requester["127.0.0.5"] || !requester["127.0.0.6"] {
		t.Errorf("the wire requester lines are missing: %v", requester)
	}

	report := func(args ...string) map[string]bool {
		t.Helper()
		var out bytes.Buffer
		cmd := exec.Command(bin, append([]string{"report", "--format", "csv"}, args...)...)
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("report: %v", err)
		}
		rows, err := csv.NewReader(&out).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		hosts := map[string]bool{}
		for _, r := range rows[1:] {
			hosts[r[0]] = true
		}
		return hosts
	}
	if h := report(p.log); !h["127.0.0.5"] || !h["127.0.0.6"] || h[sinkhole] || h["127.0.12.7"] {
		t.Errorf("report hosts %v", h)
	}
	if h := report("--exclude", "127.0.0.6,10.0.0.0/8", p.log); !h["127.0.0.5"] || h["127.0.0.6"] {
		t.Errorf("report --exclude 127.0.0.6: hosts %v", h)
	}
}

// TestOwnAddresses: the sinkhole addresses, the listeners' addresses (every
// local address for a listener on all of them) and --exclude are what the
// evidence writer never records as a host.
func TestOwnAddresses(t *testing.T) {
	var c serveConfig
	fs := serveFlags(env{stdout: io.Discard, stderr: io.Discard}, &c)
	if err := fs.Parse([]string{"--dns-listen", "192.0.2.53:53", "--tftp-listen", "[2001:db8::69]:69", "--sinkhole-ip", "198.51.100.1,::ffff:198.51.100.2",
		"--exclude", "10.0.0.0/8,203.0.113.9"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, p := range c.ownAddresses() {
		got[p.String()] = true
	}
	for _, want := range []string{"192.0.2.53/32", "2001:db8::69/128", "198.51.100.1/32", "198.51.100.2/32", "10.0.0.0/8", "203.0.113.9/32"} {
		if !got[want] {
			t.Errorf("%s missing from %v", want, got)
		}
	}
	if got["127.0.0.1/32"] {
		t.Errorf("listeners on named addresses: 127.0.0.1 should not be excluded: %v", got)
	}
	// On all addresses: every local one, loopback included.
	c = serveConfig{}
	fs = serveFlags(env{stdout: io.Discard, stderr: io.Discard}, &c)
	fs.Parse([]string{"--dns-listen", "", "--tftp-listen", ":69"})
	got = map[string]bool{}
	for _, p := range c.ownAddresses() {
		got[p.String()] = true
	}
	if !got["127.0.0.1/32"] {
		t.Errorf("a listener on all addresses: 127.0.0.1 not excluded: %v", got)
	}
}
