package wire

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// short renders an event as "role host:port peer sig file mode op proto/dport #packet".
func short(ev evidence.Event) string {
	s := fmt.Sprintf("%s %s:%d peer=%s %s", ev.Role, ev.Host, ev.Port, ev.Peer, ev.Sig)
	if ev.File != "" {
		s += fmt.Sprintf(" %s/%s/%s", ev.File, ev.Mode, ev.Op)
	}
	return s + fmt.Sprintf(" %s/%d #%d", ev.Proto, ev.DstPort, ev.Packet)
}

func scanFile(t *testing.T, path string, opt Options) ([]evidence.Event, Stats) {
	t.Helper()
	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &rec, opt)
	if _, err := m.ScanFile(context.Background(), path); err != nil {
		t.Fatalf("scan %s: %v", path, err)
	}
	got := rec.Events()
	for _, ev := range got {
		// A server's line is strong only from its own reply serving the
		// file; the line the request makes for it is weak and a datagram.
		strong := ev.Evidence == signatures.Strong || ev.Role == evidence.RoleServer
		named := !ev.Named || ev.Evidence == signatures.Weak && ev.Proof == evidence.ProofDatagram
		if ev.Kind != evidence.WireMatch || !strong || !named || ev.PCAP != path || ev.Time.IsZero() ||
			ev.Family == "" || ev.Serial != signatures.Default().Serial() {
			t.Errorf("%s: incomplete event %+v", path, ev)
		}
	}
	return got, m.Stats()
}

func TestCaptures(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		// Real captures: tcpdump while real clients asked a real in.tftpd.
		{"real/tftp-hpa-msblast.pcap", cat(pair("127.0.0.1", "blaster", "msblast.exe/octet/read", 1), served("127.0.0.1", "blaster", "msblast.exe/octet/read", 2))},
		{"real/tftp-hpa-msblast.pcap.gz", cat(pair("127.0.0.1", "blaster", "msblast.exe/octet/read", 1), served("127.0.0.1", "blaster", "msblast.exe/octet/read", 2))},
		{"real/tftp-hpa-netascii-dllhost.pcap", cat(pair("127.0.0.1", "welchia", "dllhost.exe/netascii/read", 1), served("127.0.0.1", "welchia", "dllhost.exe/netascii/read", 2))},
		{"real/curl-options-penis32.pcap", cat(pair("127.0.0.1", "blaster.b", "penis32.exe/octet/read", 1), served("127.0.0.1", "blaster.b", "penis32.exe/octet/read", 2))},
		{"real/atftp-path-msblast.pcap", pair("127.0.0.1", "blaster", "/MSBLAST.EXE/octet/read", 1)}, // in.tftpd refused the path: no line of its own
		{"real/any-sll2-msblast.pcap", cat(pair("127.0.0.1", "blaster", "msblast.exe/octet/read", 1), served("127.0.0.1", "blaster", "msblast.exe/octet/read", 2))},
		{"real/legit-pxe-router.pcap", nil},
		// Crafted.
		{"crafted/vlan-msblast.pcap", pair4("blaster", "msblast.exe/octet/read", 1025, 1)},
		{"crafted/qinq-msblast.pcap", pair4("blaster", "msblast.exe/octet/read", 1025, 1)},
		{"crafted/ipv6-msblast.pcap", pair6("blaster", "msblast.exe/octet/read", 1025, 1)},
		{"crafted/ipv6-frag-msblast.pcap", pair6("blaster", "msblast.exe/octet/read", 1025, 2)},
		{"crafted/frag-tiny-last.pcap", cat(pair4("blaster", "msblast.exe/octet/read", 1025, 2), pair4("blaster.c", "teekids.exe/octet/read", 1026, 5))},
		{"crafted/frag-overlap.pcap", nil},
		{"crafted/from-port-53.pcap", cat(pair4("blaster", "msblast.exe/octet/read", 53, 1),
			pair4("blaster.e", "mslaugh.exe/octet/read", 123, 2), pair4("blaster.f", "enbiei.exe/octet/read", 4789, 3))},
		{"crafted/options-path-case.pcap", cat(
			pair4("blaster", `C:\WINDOWS\system32\MSBlast.EXE/OCTET/read`, 1030, 1),
			pair4("blaster.b", "/tftpboot/Penis32.Exe/Octet/read", 1031, 2),
			pair4("welchia", "svchost.exe/netascii/read", 1032, 3),
			pair4("blaster.d", "mspatch.exe/octet/write", 1033, 4))},
		{"crafted/malformed.pcap", nil},
		{"crafted/legit-tftp.pcap", nil},
		{"crafted/any-port.pcap", nil},
		{"crafted/tcp-4444-command.pcap", []string{"source 10.0.0.9:3306 peer=10.0.0.5 blaster tcp/4444 #1"}},
		{"crafted/welchia-icmp.pcap", []string{"source 10.0.0.9:0 peer=192.0.2.7 welchia icmp/0 #1",
			"source 2001:db8::9:0 peer=2001:db8::5 welchia icmp/0 #4"}},
		{"crafted/null-loopback.pcap", cat(pair4("blaster", "msblast.exe/octet/read", 1060, 1), pair6("blaster", "msblast.exe/octet/read", 1061, 2))},
		{"crafted/raw-ip.pcap", cat(pair4("blaster", "msblast.exe/octet/read", 1062, 1), pair6("blaster", "msblast.exe/octet/read", 1063, 2))},
		{"crafted/linux-sll.pcap", pair4("blaster", "msblast.exe/octet/read", 1064, 1)},
		{"crafted/mixed.pcapng", cat(pair4("blaster", "msblast.exe/octet/read", 1070, 1), pair4("blaster.g", "eschlp.exe/octet/read", 1071, 2))},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, st := scanFile(t, filepath.Join("../testdata/pcap", tt.file), Options{})
			var lines []string
			for _, ev := range got {
				lines = append(lines, short(ev))
			}
			if strings.HasPrefix(tt.file, "real/") {
				// Real captures have random client ports: check them apart.
				for i := range lines {
					if got[i].Role == evidence.RoleRequester && (got[i].Port < 1024 || got[i].Port == 69) {
						t.Errorf("requester port %d is not an ephemeral port", got[i].Port)
					}
					lines[i] = strings.Replace(lines[i], fmt.Sprintf(":%d ", got[i].Port), portMark(got[i]), 1)
					if got[i].Role == evidence.RoleServer { // dst_port: the requester's port
						lines[i] = strings.Replace(lines[i], fmt.Sprintf("/%d #", got[i].DstPort), "/EPHEMERAL #", 1)
					}
				}
			}
			slices.Sort(lines)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(lines, want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
			}
			if st.Packets == 0 || st.Bytes == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func portMark(ev evidence.Event) string {
	switch {
	case ev.Role == evidence.RoleRequester:
		return ":EPHEMERAL "
	case ev.Role == evidence.RoleServer && !ev.Named:
		return ":TID " // the port the server serves from, its pick
	}
	return fmt.Sprintf(":%d ", ev.Port)
}

// served is the line the server's own first DATA (or OACK) makes, packet
// n of a real capture: the server's line from its own packet.
func served(host, sig, file string, packet int) []string {
	return []string{fmt.Sprintf("server %s:TID peer=%s %s %s udp/EPHEMERAL #%d", host, host, sig, file, packet)}
}

// pair is the two lines a worm request on loopback makes (real captures).
func pair(host, sig, file string, packet int) []string {
	return []string{
		fmt.Sprintf("requester %s:EPHEMERAL peer=%s %s %s udp/69 #%d", host, host, sig, file, packet),
		fmt.Sprintf("server %s:69 peer=%s %s %s udp/EPHEMERAL #%d", host, host, sig, file, packet),
	}
}

func pair4(sig, file string, sport, packet int) []string {
	return []string{
		fmt.Sprintf("requester 10.0.0.5:%d peer=10.0.0.9 %s %s udp/69 #%d", sport, sig, file, packet),
		fmt.Sprintf("server 10.0.0.9:69 peer=10.0.0.5 %s %s udp/%d #%d", sig, file, sport, packet),
	}
}

func pair6(sig, file string, sport, packet int) []string {
	return []string{
		fmt.Sprintf("requester 2001:db8::5:%d peer=2001:db8::9 %s %s udp/69 #%d", sport, sig, file, packet),
		fmt.Sprintf("server 2001:db8::9:69 peer=2001:db8::5 %s %s udp/%d #%d", sig, file, sport, packet),
	}
}

func cat(ls ...[]string) []string { return slices.Concat(ls...) }

func TestAnyPort(t *testing.T) {
	path := "../testdata/pcap/crafted/any-port.pcap"
	if got, _ := scanFile(t, path, Options{}); len(got) != 0 {
		t.Fatalf("without --any-port: %v", got)
	}
	got, st := scanFile(t, path, Options{AnyPort: true})
	var lines []string
	for _, ev := range got {
		lines = append(lines, short(ev))
	}
	want := []string{
		"requester 10.0.0.5:1050 peer=10.0.0.9 blaster msblast.exe/octet/read udp/6969 #1",
		"server 10.0.0.9:6969 peer=10.0.0.5 blaster msblast.exe/octet/read udp/1050 #1",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("got %q", lines)
	}
	// The DNS query to 1069 is not a well-formed TFTP request.
	if st.TFTPRequests != 1 {
		t.Fatalf("tftp requests %d, want 1", st.TFTPRequests)
	}
}

// TestLegitNoStrongEvidence: legitimate TFTP makes no evidence at all, but
// the requests are seen (the matcher did parse them).
func TestLegitNoStrongEvidence(t *testing.T) {
	for _, f := range []string{"real/legit-pxe-router.pcap", "crafted/legit-tftp.pcap"} {
		got, st := scanFile(t, "../testdata/pcap/"+f, Options{AnyPort: true})
		if len(got) != 0 {
			t.Errorf("%s: %d events", f, len(got))
		}
		if st.TFTPRequests < 3 {
			t.Errorf("%s: %d tftp requests seen", f, st.TFTPRequests)
		}
	}
}

// TestTruncated cuts a real capture inside its 5th packet: the error names
// the file and packet 5, and the request in packet 1 was still matched.
func TestTruncated(t *testing.T) {
	data, err := os.ReadFile("../testdata/pcap/real/tftp-hpa-msblast.pcap")
	if err != nil {
		t.Fatal(err)
	}
	// Walk the record headers to find where packet 5 starts.
	off := 24
	for i := 0; i < 4; i++ {
		off += 16 + int(binary.LittleEndian.Uint32(data[off+8:]))
	}
	for _, cut := range []int{off + 7, off + 20} { // in the header, in the data
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{})
		n, err := m.Scan(context.Background(), bytes.NewReader(data[:cut]), "cut.pcap")
		if err == nil || !strings.Contains(err.Error(), "cut.pcap: packet 5: truncated") {
			t.Fatalf("cut at %d: err %v", cut, err)
		}
		// The request's two lines, and the server's first DATA.
		if n != 4 || rec.Len() != 3 {
			t.Fatalf("cut at %d: read %d packets, %d events", cut, n, rec.Len())
		}
	}
}

func TestCorrupt(t *testing.T) {
	good, err := os.ReadFile("../testdata/pcap/crafted/vlan-msblast.pcap")
	if err != nil {
		t.Fatal(err)
	}
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint32(huge[24+8:], 0x7fffffff) // caplen of packet 1
	binary.LittleEndian.PutUint32(huge[24+12:], 0x7fffffff)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "x: not a capture file"},
		{"text", []byte("hello, world, this is not a capture file\n"), "x: pcap: Unknown magic"},
		{"short header", good[:10], "x: pcap: truncated"},
		{"huge caplen", huge, "x: packet 1: "},
		{"bad gzip", []byte{0x1f, 0x8b, 1, 2, 3}, "x: "},
		{"pcapng garbage", []byte{0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, "x: pcapng: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
			_, err := m.Scan(context.Background(), bytes.NewReader(tt.data), "x")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeIEEE802_11); err != nil {
		t.Fatal(err)
	}
	m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
	_, err := m.Scan(context.Background(), &buf, "wifi.pcap")
	if err == nil || !strings.Contains(err.Error(), "wifi.pcap: unsupported link type 105") {
		t.Fatalf("err %v", err)
	}
}

// TestHostilePcapng: a block claiming 2 GiB of packet in a tiny file must
// fail on the missing bytes, not allocate the claimed size.
func TestHostilePcapng(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	epb := make([]byte, 28)
	binary.LittleEndian.PutUint32(epb[0:], 6)          // enhanced packet block
	binary.LittleEndian.PutUint32(epb[4:], 0x7ffffff0) // block length
	binary.LittleEndian.PutUint32(epb[20:], 0x7fffff00)
	binary.LittleEndian.PutUint32(epb[24:], 0x7fffff00)
	buf.Write(epb)
	buf.Write(make([]byte, 100))
	m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
	var before, after runtimeMem
	before.read()
	_, err = m.Scan(context.Background(), &buf, "evil.pcapng")
	after.read()
	if err == nil || !strings.Contains(err.Error(), "evil.pcapng: packet 1") {
		t.Fatalf("err %v", err)
	}
	if grew := after.total - before.total; grew > 64<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte file", grew, buf.Len())
	}
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
	_, err := m.ScanFile(ctx, "../testdata/pcap/real/tftp-hpa-msblast.pcap")
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err %v", err)
	}
}

// TestReload: the matcher asks the source for the set on every packet.
func TestReload(t *testing.T) {
	set, err := signatures.Parse("t.yaml", []byte("serial: 7\nsignatures:\n  - id: pxe\n    family: Test\n    tftp_files: [pxelinux.0]\n"))
	if err != nil {
		t.Fatal(err)
	}
	store := signatures.NewStore("", signatures.Default())
	var rec evidencetest.Recorder
	m := NewMatcher(store, &rec, Options{})
	frame := udp4(t, other, infected, 2000, 69, rrq(1, "pxelinux.0", "octet"))
	m.Packet(layers.LinkTypeEthernet, frame, Meta{Time: baseTime})
	if rec.Len() != 0 {
		t.Fatal("matched before the set named the file")
	}
	m.sigs = StaticSet{set}
	if n, got := m.Packet(layers.LinkTypeEthernet, frame, Meta{Time: baseTime}), rec.Events(); n != 2 || got[0].Serial != 7 || got[0].Sig != "pxe" {
		t.Fatalf("n=%d events %+v", n, got)
	}
}

func TestDefragBounds(t *testing.T) {
	dg := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet"))
	t.Run("evicts oldest past the datagram bound", func(t *testing.T) {
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{FragDatagrams: 4})
		// The first piece of the worm request, then 10 unrelated first pieces.
		m.Packet(layers.LinkTypeEthernet, frag4(t, victim, infected, 1, 0, true, dg[:16]), Meta{Time: baseTime})
		for i := 0; i < 10; i++ {
			m.Packet(layers.LinkTypeEthernet, frag4(t, other, infected, uint16(100+i), 0, true, make([]byte, 8)), Meta{Time: baseTime})
		}
		if l := len(m.defrag.live); l > 4 {
			t.Fatalf("%d datagrams held, bound 4", l)
		}
		m.Packet(layers.LinkTypeEthernet, frag4(t, victim, infected, 1, 16, false, dg[16:]), Meta{Time: baseTime})
		if got := rec.Events(); len(got) != 0 || m.Stats().FragEvicted == 0 {
			t.Fatalf("evicted datagram completed: %v %+v", got, m.Stats())
		}
	})
	t.Run("byte bound", func(t *testing.T) {
		m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{FragBytes: 4096})
		for i := 0; i < 50; i++ {
			m.Packet(layers.LinkTypeEthernet, frag4(t, other, infected, uint16(i), 0, true, make([]byte, 1024)), Meta{Time: baseTime})
		}
		if m.defrag.bytes > 4096 {
			t.Fatalf("%d bytes held, bound 4096", m.defrag.bytes)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{FragTimeout: time.Second})
		m.Packet(layers.LinkTypeEthernet, frag4(t, victim, infected, 1, 0, true, dg[:16]), Meta{Time: baseTime})
		m.Packet(layers.LinkTypeEthernet, frag4(t, victim, infected, 1, 16, false, dg[16:]), Meta{Time: baseTime.Add(5 * time.Second)})
		if got := rec.Events(); len(got) != 0 || m.Stats().FragExpired != 1 {
			t.Fatalf("expired datagram completed: %v %+v", got, m.Stats())
		}
	})
	t.Run("too big", func(t *testing.T) {
		m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
		m.Packet(layers.LinkTypeEthernet, frag4(t, victim, infected, 1, 65528, false, make([]byte, 16)), Meta{Time: baseTime})
		if m.Stats().FragDropped != 1 || len(m.defrag.live) != 0 {
			t.Fatalf("%+v", m.Stats())
		}
	})
	t.Run("repeats are harmless", func(t *testing.T) {
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{})
		first := frag4(t, victim, infected, 1, 0, true, dg[:16])
		m.Packet(layers.LinkTypeEthernet, first, Meta{Time: baseTime})
		m.Packet(layers.LinkTypeEthernet, first, Meta{Time: baseTime})
		m.Packet(layers.LinkTypeEthernet, frag4(t, victim, infected, 1, 16, false, dg[16:]), Meta{Time: baseTime})
		if rec.Len() != 2 {
			t.Fatalf("got %d events", rec.Len())
		}
	})
}

// TestNoAllocs: a packet that matches nothing costs no allocation, whatever
// its shape; fragments reuse pooled buffers once warm.
func TestNoAllocs(t *testing.T) {
	frames := map[string]frame{
		"tcp":        {layers.LinkTypeEthernet, tcpFrame(t, 80, []byte("GET / HTTP/1.1\r\n\r\n"))},
		"dns":        {layers.LinkTypeEthernet, udp4(t, other, infected, 5353, 53, []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"))},
		"legit tftp": {layers.LinkTypeEthernet, udp4(t, other, infected, 2000, 69, rrq(1, "pxelinux.0", "octet"))},
		"long name":  {layers.LinkTypeEthernet, udp4(t, other, infected, 2000, 69, rrq(1, strings.Repeat("x", 300)+".bin", "octet"))},
		"icmp":       {layers.LinkTypeEthernet, ser(t, eth(layers.EthernetTypeIPv4), ip4(other, infected, layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload("abcdefgh"))},
		"ipv6":       {layers.LinkTypeRaw, ip6UDP(t, victim6, infected6, 1, 2, []byte("hello"))},
		"garbage":    {layers.LinkTypeEthernet, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00, 0x45}},
		// A server's DATA, looked up among the requests waiting for one.
		"tftp data": {layers.LinkTypeEthernet, udp4(t, infected, other, 50000, 2000, append([]byte{0, 3, 0, 1}, "MZ"...))},
	}
	for name, f := range frames {
		m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
		// A worm request from that port first, so the DATA has its entry
		// (the first DATA takes it; the rest are looked up and miss).
		m.Packet(layers.LinkTypeEthernet, udp4(t, other, infected, 2000, 69, rrq(1, "msblast.exe", "octet")), Meta{Time: baseTime})
		a := testing.AllocsPerRun(200, func() { m.Packet(f.lt, f.data, Meta{Time: baseTime}) })
		// gopacket builds an error value for a frame it cannot decode; that
		// is the only allocation left, and only for broken frames.
		if limit := map[bool]float64{true: 2, false: 0}[name == "garbage"]; a > limit {
			t.Errorf("%s: %.1f allocations per packet, want at most %v", name, a, limit)
		}
	}
}

func tcpFrame(t testing.TB, dport uint16, payload []byte) []byte {
	ip := ip4(other, infected, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(dport), Seq: 1, Ack: 1, ACK: true, PSH: true, Window: 1000}
	tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)}}
	tcp.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(payload))
}

// TestPublicCaptures: legitimate transfers from public captures make no
// evidence with the built-in set, and a signature naming their files finds
// the read, the write and the loopback (DLT_NULL) request with options.
func TestPublicCaptures(t *testing.T) {
	set, err := signatures.Parse("t.yaml", []byte("serial: 1\nsignatures:\n  - id: rfc\n    family: Test\n    tftp_files: [rfc1350.txt, hello.txt]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		file, want string
	}{
		{"spicy-tftp-tftp_rrq.pcap", "requester 192.168.0.253:50618 peer=192.168.0.10 rfc rfc1350.txt/octet/read udp/69 #1"},
		{"spicy-tftp-tftp_wrq.pcap", "requester 192.168.0.1:57509 peer=192.168.0.13 rfc rfc1350.txt/octet/write udp/69 #1"},
		{"spicy-tftp-tftp_oack.pcap", "requester 127.0.0.1:60027 peer=127.0.0.1 rfc hello.txt/octet/read udp/69 #1"},
	} {
		path := "../testdata/pcap/public/" + tt.file
		if got, _ := scanFile(t, path, Options{AnyPort: true}); len(got) != 0 {
			t.Errorf("%s: built-in set: %d events", tt.file, len(got))
		}
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{set}, &rec, Options{})
		if _, err := m.ScanFile(context.Background(), path); err != nil {
			t.Fatal(err)
		}
		got := rec.Events()
		// The server's line: its port is 69 and dst_port is the port at its
		// peer, the requester's (Shadowserver's dst_port for that row).
		// Reads the server served (DATA, OACK) add its own line, from the
		// port it served from.
		served := len(got) == 3 && got[2].Role == evidence.RoleServer && !got[2].Named && got[2].Port != 69 &&
			got[2].Host == got[1].Host && got[2].DstPort == got[0].Port && got[2].Packet == 2
		if len(got) != 2 && !served || short(got[0]) != tt.want || got[1].Role != evidence.RoleServer ||
			got[1].Port != 69 || got[1].DstPort != got[0].Port || got[1].Peer != got[0].Host || !got[1].Named {
			var lines []string
			for _, ev := range got {
				lines = append(lines, short(ev))
			}
			t.Errorf("%s: got %q, want %q and its server line", tt.file, lines, tt.want)
		}
	}
}
