package sinkhole

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/internal/testutil"
	"wormsink/internal/tftp"
)

// startCapture runs tcpdump on lo for UDP port and for TFTP-looking
// datagrams on any port (refusals leave from fresh ports, and tftp-hpa's
// follow-up goes to them), and waits until it captures. stop waits until
// the capture file holds until(packets) (or 60 s pass), then stops tcpdump
// and returns the file.
func startCapture(t *testing.T, port uint16) (stop func(until func([]packet) bool) string) {
	t.Helper()
	// Only 127.0.0.1 to 127.0.0.1, the server's and its clients' address:
	// other packages' tests flood lo with TFTP-like datagrams from other
	// loopback addresses at the same time, and in the capture buffer they
	// crowded out a client's request (the kernel dropped it).
	c := testutil.Tcpdump{Iface: "lo", Buffer: 16384, Filter: []string{
		"udp and src host 127.0.0.1 and dst host 127.0.0.1 and (port " + strconv.Itoa(int(port)) + " or (udp[8] = 0 and udp[9] >= 1 and udp[9] <= 5))"}}.Start(t)
	return func(until func([]packet) bool) string {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && !until(readCapture(t, c.File, port)) {
			time.Sleep(10 * time.Millisecond) // polling the capture file
		}
		c.Stop(t)
		t.Logf("tcpdump: %s", c.Stderr()) // its packet and drop counts, shown when the test fails
		return c.File
	}
}

// packet is one TFTP datagram seen on the wire.
type packet struct {
	fromServer bool
	peer       uint16 // the client's port
	local      uint16 // the server's port: where the client sent it, or where the reply came from
	payload    []byte
}

func readCapture(t *testing.T, file string, server uint16) []packet {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil // not even a header written yet
	}
	// Clients are the ports that sent requests to the server; the rest
	// of the capture is sorted by them: what came to a client is the
	// server's (from whichever port), what a client sent elsewhere is a
	// follow-up to a refusal's port. Other traffic on lo is left out.
	var raw []*layers.UDP
	clients := map[uint16]bool{}
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		udp, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if !ok {
			t.Fatalf("captured a non-UDP packet: %v", pkt)
		}
		raw = append(raw, udp)
		if uint16(udp.DstPort) == server {
			clients[uint16(udp.SrcPort)] = true
		}
	}
	var out []packet
	for _, udp := range raw {
		src, dst := uint16(udp.SrcPort), uint16(udp.DstPort)
		p := packet{payload: udp.Payload}
		switch {
		case dst == server:
			p.peer, p.local = src, dst
		case clients[dst]:
			p.fromServer, p.peer, p.local = true, dst, src
		case clients[src]:
			p.peer, p.local = src, dst
		default:
			continue
		}
		out = append(out, p)
	}
	return out
}

// TestRealClients: tftp-hpa, curl and atftp ask the server (its own
// process) for msblast.exe; each fails, the evidence names each of them by
// address, port, file and mode, and the capture on lo shows that the server
// sent nothing but empty probes (DATA block 0) and ERRORs, from fresh ports
// to requests without options (curl's have options: its refusal leaves from
// the listening port, with no probe), one ERROR per request, each probe after the first only
// for an answer, and never more bytes to a client than it sent: no file
// data, no OACK, no amplification. tftp-hpa answers every probe (it sends
// its request again to the port each came from), so its sightings have
// proof exchange; curl and atftp keep to the first port they hear from, so
// theirs stay datagrams.
func TestRealClients(t *testing.T) {
	for _, tool := range []string{"tftp", "curl", "atftp"} {
		testutil.Need(t, tool)
	}
	// A generous wait for tftp-hpa's follow-up: the machine may be loaded,
	// and the test waits on the capture, not on this clock.
	p := startProc(t, "-exchange-wait", "20s")
	port := strconv.Itoa(int(p.addr.Port()))
	stopCapture := startCapture(t, p.addr.Port())
	dir := t.TempDir()

	runs := []struct {
		name     string
		args     []string
		wantFail bool   // exit status not 0
		wantOut  string // in the output
	}{
		// tftp-hpa prints the error and exits 0, then ACKs the ERROR.
		{"tftp-hpa", []string{"tftp", "127.0.0.1", port, "-m", "binary", "-c", "get", "msblast.exe"}, false, "Error code 1: " + RefusalText},
		{"tftp-hpa netascii path", []string{"tftp", "127.0.0.1", port, "-m", "netascii", "-c", "get", "/MSBLAST.EXE"}, false, "Error code 1"},
		// curl asks with tsize and blksize options.
		{"curl", []string{"curl", "-sS", "--max-time", "20", "tftp://127.0.0.1:" + port + "/msblast.exe", "-o", filepath.Join(dir, "curl.out")}, true, ""},
		{"atftp", []string{"atftp", "-g", "-r", "msblast.exe", "-l", filepath.Join(dir, "atftp.out"), "127.0.0.1", port}, true, ""},
		{"atftp options path", []string{"atftp", "--option", "blksize 1428", "--option", "tsize 0", "-g", "-r", `C:\WINDOWS\system32\msblast.exe`, "-l", filepath.Join(dir, "atftp2.out"), "127.0.0.1", port}, true, ""},
	}
	for _, r := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, r.args[0], r.args[1:]...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%s: timed out\n%s", r.name, out)
		}
		if failed := err != nil; failed != r.wantFail {
			t.Errorf("%s: exit %v, want failure %v\n%s", r.name, err, r.wantFail, out)
		}
		if !strings.Contains(string(out), r.wantOut) {
			t.Errorf("%s: output %q, want %q", r.name, out, r.wantOut)
		}
		t.Logf("%s: %v: %s", r.name, err, strings.TrimSpace(string(out)))
	}
	// Every client's request and the stray ACK are on the wire by now;
	// wait until tcpdump has written them.
	pcap := stopCapture(func(ps []packet) bool {
		reqs, acks := map[uint16]bool{}, 0
		for _, pk := range ps {
			if pk.fromServer || pk.local != p.addr.Port() {
				if !pk.fromServer && tftp.IsReply(pk.payload) {
					acks++ // tftp-hpa's ACK of the refusal, its last packet
				}
				continue
			}
			if _, err := tftp.ParseRequest(pk.payload); err == nil {
				reqs[pk.peer] = true
			}
		}
		return len(reqs) == len(runs) && acks >= 2
	})
	st := p.stop(t)

	// The wire, by client port: what it sent and what the server sent back.
	type peer struct {
		requests       []tftp.Request // to the listening port
		in, out        int            // bytes from the client, bytes to it
		probes, errors int
		answers        int
		ports          map[uint16]bool // the server's ports that sent it something
		answered       map[uint16]bool // of those, the ones it answered on
	}
	peers := map[uint16]*peer{}
	for _, pk := range readCapture(t, pcap, p.addr.Port()) {
		pr := peers[pk.peer]
		if pr == nil {
			pr = &peer{ports: map[uint16]bool{}, answered: map[uint16]bool{}}
			peers[pk.peer] = pr
		}
		if !pk.fromServer {
			pr.in += len(pk.payload)
			if pk.local == p.addr.Port() {
				req, err := tftp.ParseRequest(pk.payload)
				if err != nil {
					t.Errorf("port %d: %q to the listening port", pk.peer, pk.payload)
				}
				pr.requests = append(pr.requests, req)
				continue
			}
			if !pr.ports[pk.local] {
				t.Errorf("port %d: answer to port %d, which sent it nothing", pk.peer, pk.local)
			}
			pr.answers++
			pr.answered[pk.local] = true
			continue
		}
		pr.out += len(pk.payload)
		if pk.local == p.addr.Port() && (len(pr.requests) == 0 || !pr.requests[0].HasOptions()) {
			t.Errorf("port %d: reply from the listening port to a request without options, want a fresh one", pk.peer)
		}
		pr.ports[pk.local] = true
		switch {
		case string(pk.payload) == "\x00\x03\x00\x00":
			pr.probes++
		case binary.BigEndian.Uint16(pk.payload) == tftp.OpError:
			pr.errors++
		default:
			t.Errorf("server sent %q to port %d", pk.payload, pk.peer)
		}
	}
	clients, exchanged := 0, map[uint16]bool{}
	for port, pr := range peers {
		if len(pr.requests) == 0 {
			continue
		}
		clients++
		if pr.errors != len(pr.requests) || pr.probes > len(pr.requests)+pr.answers || pr.out > pr.in {
			t.Errorf("port %d: %d requests (%d bytes), %d answers; the server sent %d probes and %d refusals (%d bytes)",
				port, len(pr.requests), pr.in, pr.answers, pr.probes, pr.errors, pr.out)
		}
		exchanged[port] = len(pr.answered) >= DefaultExchangeRounds // every round's port (the refusal leaves from the last)
	}
	if clients != len(runs) {
		var dump strings.Builder
		for _, pk := range readCapture(t, pcap, p.addr.Port()) {
			fmt.Fprintf(&dump, "\n  peer %d local %d from server %v: %q", pk.peer, pk.local, pk.fromServer, pk.payload)
		}
		t.Fatalf("capture shows requests from %d client ports, want %d; server stats %+v; capture:%s", clients, len(runs), st, dump.String())
	}
	if n := len(slices.DeleteFunc(slices.Collect(maps.Values(exchanged)), func(b bool) bool { return !b })); n != 2 || st.Exchanged != 2 {
		t.Errorf("%d clients answered every round on the wire, the server counted %d: want the two tftp-hpa runs", n, st.Exchanged)
	}

	// The evidence: every client by address, port, file and mode as sent.
	log := readLog(t, p.log)
	for port, pr := range peers {
		for _, req := range pr.requests {
			found := false
			for _, l := range log {
				if l.Port == port && l.File == string(req.File) && l.Mode == string(req.Mode) {
					found = true
					if l.Event != "tftp_refused" || l.Host != "127.0.0.1" || l.Signature != "blaster" || l.Family != "Blaster" ||
						l.Evidence != "strong" || l.Op != "read" || l.Server != p.addr.String() || l.Serial == 0 {
						t.Errorf("evidence line %+v", l)
					}
					want := "datagram"
					if exchanged[port] {
						want = "exchange"
					}
					if l.Proof != want {
						t.Errorf("port %d (every round answered: %v): proof %q, want %q", port, exchanged[port], l.Proof, want)
					}
				}
			}
			if !found {
				t.Errorf("no evidence for port %d file %q mode %q", port, req.File, req.Mode)
			}
		}
	}
}
