package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"wormsink/internal/testutil"

	"golang.org/x/net/ipv4"
)

// TestServeForgedFlood: 200,000 TFTP requests for msblast.exe from 100,000
// forged sources in about 10 s, through `wormsink serve` on loopback (all of
// 127/8 is local on Linux, so the kernel delivers datagrams whose source is
// any 127.x.y.z; IP_PKTINFO picks it per datagram). With the default line
// budget the evidence log stays under 50 MB, every request is counted once
// (the counts of host and network lines add up to 200,000), and the report
// does not take the forged sources for 100,000 infected hosts.
func TestServeForgedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test skipped in -short mode")
	}
	const (
		sources  = 100_000
		perSrc   = 2
		total    = sources * perSrc
		sendFor  = 10 * time.Second
		maxBytes = 50 << 20
	)
	bin := wormsinkBinary(t)
	tftpAddr := netip.MustParseAddrPort(fmt.Sprintf("127.0.11.69:%d", freePort(t)))
	p := startServe(t, bin, "--dns-listen", "", "--tftp-listen", tftpAddr.String())

	// 100,000 distinct forged sources spread over 127/8 as a sweep would be,
	// none in 127.0/16 (127.0.0.1 is the test's own).
	rng := rand.New(rand.NewPCG(11, 2026))
	seen := make(map[uint32]bool, sources)
	srcs := make([]net.IP, 0, sources)
	for len(srcs) < sources {
		v := 0x10000 + rng.Uint32N(0xFFFFFF-0x10000)
		if b := byte(v); b == 0 || b == 255 || seen[v] {
			continue
		}
		seen[v] = true
		srcs = append(srcs, net.IPv4(127, byte(v>>16), byte(v>>8), byte(v)))
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	dst := net.UDPAddrFromAddrPort(tftpAddr)
	rrq := []byte("\x00\x01msblast.exe\x00octet\x00")
	cm := &ipv4.ControlMessage{}

	start := time.Now()
	sent := 0
	for round := 0; round < perSrc; round++ {
		for _, src := range srcs {
			cm.Src = src
			if _, err := pc.WriteTo(rrq, cm, dst); err != nil {
				t.Fatalf("send from %v: %v", src, err)
			}
			sent++
			if sent%500 == 0 {
				// Keep the pace, and never let the server's queue overflow:
				// a request the kernel drops, the server cannot count.
				if ahead := time.Duration(sent)*sendFor/total - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
				for {
					rx, _, ok := udpSocket(tftpAddr)
					if !ok || rx < 1<<20 {
						break
					}
					time.Sleep(time.Millisecond)
				}
			}
		}
	}
	sendTime := time.Since(start)
	waitFor(t, "serve to record every request", 60*time.Second, func() bool {
		return p.metric(t, "wormsink_evidence_sightings_total") >= total
	})
	_, drops, _ := udpSocket(tftpAddr)
	recorded := p.metric(t, "wormsink_evidence_sightings_total")
	aggregated := p.metric(t, "wormsink_evidence_aggregated_total")
	p.stop(t)

	fi, err := os.Stat(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var hostLines, netLines, overflowLines int
	var sum, netSum float64
	hosts := map[string]bool{}
	f, _ := os.Open(p.log)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		n, _ := l["count"].(float64)
		switch {
		case l["host"] != nil:
			hostLines++
			hosts[l["host"].(string)] = true
		case l["network"] != nil:
			netLines++
			netSum += n
		case l["event"] == "evidence_overflow":
			overflowLines++
		default:
			continue
		}
		sum += n
	}
	t.Logf("sent %d requests from %d sources in %v (%.0f/s); kernel drops %d", sent, sources, sendTime.Round(time.Millisecond), float64(sent)/sendTime.Seconds(), drops)
	t.Logf("evidence log: %d bytes; %d host lines (%d hosts), %d network lines (%v sightings), %d overflow lines; metric aggregated %v",
		fi.Size(), hostLines, len(hosts), netLines, netSum, overflowLines, aggregated)
	if drops != 0 {
		t.Fatalf("the kernel dropped %d requests: the counts cannot add up", drops)
	}
	if recorded != total {
		t.Errorf("serve recorded %v sightings, want %d", recorded, total)
	}
	if fi.Size() > maxBytes {
		t.Errorf("evidence log %d bytes, want at most %d", fi.Size(), maxBytes)
	}
	if sum != total {
		t.Errorf("the counts add up to %v, want %d (every request)", sum, total)
	}
	if netLines == 0 || netSum != aggregated {
		t.Errorf("%d network lines with %v sightings, metric %v", netLines, netSum, aggregated)
	}

	// The report: the sightings all counted, the forged sources mostly
	// networks, not 100,000 hosts.
	var out bytes.Buffer
	cmd := exec.Command(bin, "report", "--format", "json", p.log)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("report: %v", err)
	}
	var doc struct {
		Hosts    []map[string]any `json:"hosts"`
		Networks []map[string]any `json:"networks"`
		Summary  struct {
			Sightings        uint64 `json:"sightings"`
			Networks         int    `json:"networks"`
			NetworkSightings uint64 `json:"network_sightings"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	t.Logf("report: %d hosts, %d networks with %d sightings, %d sightings in all", len(doc.Hosts), doc.Summary.Networks, doc.Summary.NetworkSightings, doc.Summary.Sightings)
	if doc.Summary.Sightings != total || float64(doc.Summary.NetworkSightings) != netSum || len(doc.Networks) != doc.Summary.Networks {
		t.Errorf("report summary %+v", doc.Summary)
	}
	if len(doc.Hosts) != len(hosts) || len(doc.Hosts) > 30_000 {
		t.Errorf("report lists %d hosts (log names %d)", len(doc.Hosts), len(hosts))
	}
}

// udpSocket reads the receive queue and drop count of the UDP socket bound
// to addr from /proc/net/udp.
func udpSocket(addr netip.AddrPort) (rxQueue, drops int64, ok bool) {
	socks, _ := testutil.UDPSockets()
	for _, s := range socks {
		if s.Local == addr {
			return s.RxQueue, s.Drops, true
		}
	}
	return 0, 0, false
}
