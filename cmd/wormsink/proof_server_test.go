package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// requestPcap writes a capture of one UDP datagram src:1027 → dst:69
// carrying a TFTP RRQ for msblast.exe.
func requestPcap(t *testing.T, src, dst string) string {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	udp := &layers.UDP{SrcPort: 1027, DstPort: 69}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	payload := gopacket.Payload("\x00\x01msblast.exe\x00octet\x00")
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, payload); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := pcapgo.NewWriter(&out)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), CaptureLength: len(data), Length: len(data)}, data); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "req.pcap")
	if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestScanServerNotProvenByRequest: a request proves things about its
// sender only. One RRQ 10.1.0.5 → 10.1.0.9:69, scanned with the whole
// network trusted, gives the requester trusted-source and strong evidence
// and the server it named a weak datagram line; X-ARF files the requester
// at 0.9 and never the server. The same with the unspecified source (which
// is never a host itself).
func TestScanServerNotProvenByRequest(t *testing.T) {
	for _, src := range []string{"10.1.0.5", "0.0.0.0"} {
		t.Run(src, func(t *testing.T) {
			pcap := requestPcap(t, src, "10.1.0.9")
			code, out, errOut := runCmd(t, "", "scan", "--trusted-sources", "10.1.0.0/16", pcap)
			if code != exitOK {
				t.Fatalf("scan: exit %d: %s", code, errOut)
			}
			lines := evidenceLines(t, out)
			seen := map[string]bool{}
			for _, l := range lines {
				if l["event"] != "wire_match" {
					continue
				}
				seen[l["role"].(string)] = true
				switch l["role"] {
				case "server":
					if l["host"] != "10.1.0.9" || l["proof"] != "datagram" || l["evidence"] != "weak" {
						t.Errorf("server named by the request: %v", l)
					}
				case "requester":
					wantProof := "datagram"
					if src == "10.1.0.5" {
						wantProof = "trusted-source"
					}
					if l["host"] != src || l["proof"] != wantProof || l["evidence"] != "strong" {
						t.Errorf("requester: %v, want proof %s", l, wantProof)
					}
				}
			}
			// The unspecified address is never a host: no requester line for
			// it, and the server it named is still no more than a weak datagram.
			if !seen["server"] || seen["requester"] != (src != "0.0.0.0") {
				t.Fatalf("lines %v", lines)
			}
			log := filepath.Join(t.TempDir(), "ev.jsonl")
			if err := os.WriteFile(log, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			code, xarf, errOut := runCmd(t, "", "report", "--format", "xarf", "--include-unverified", "--reporter-contact", "abuse@isp.example", log)
			if code != exitOK {
				t.Fatalf("xarf: exit %d: %s", code, errOut)
			}
			for _, m := range regexp.MustCompile(`"source_identifier":"([0-9.]+)".*?"confidence":([0-9.]+)`).FindAllStringSubmatch(xarf, -1) {
				if m[1] == "10.1.0.9" && m[2] != "0.1" {
					t.Errorf("xarf filed the server at %s", m[2])
				}
			}
		})
	}
}
