package wire

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wormsink/internal/evidencetest"
)

// FuzzQuiet: every frame quiet lets the matcher only count decodes
// cleanly to Ethernet, IP and TCP or UDP, makes no evidence, counts no TFTP
// request and leaves the handshake table alone, exactly as if it had been
// decoded.
func FuzzQuiet(f *testing.F) {
	set := port4444Set(f)
	c, s := victim, infected
	c6, s6 := net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")
	tcp6 := func(sport, dport uint16, payload string) []byte {
		ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolTCP, HopLimit: 64, SrcIP: c6, DstIP: s6}
		t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1000}
		t.SetNetworkLayerForChecksum(ip)
		return ser(f, eth(layers.EthernetTypeIPv6), ip, t, gopacket.Payload(payload))
	}
	for _, frame := range [][]byte{
		seg(f, c, s, 1040, 80, "S", 1, 0, ""),
		seg(f, c, s, 1040, 80, "A", 1, 1, "GET / HTTP/1.1\r\n"),
		seg(f, c, s, 1040, 4444, "A", 1, 1, "tftp -i x GET msblast.exe"),
		seg(f, s, c, 4444, 1040, "SA", 1, 2, ""),
		tcp6(1040, 443, "hello"),
		tcp6(1040, 4444, "tftp -i x GET msblast.exe"),
		udp4(f, c, s, 1040, 53, []byte("dns")),
		udp4(f, c, s, 1040, 69, []byte("\x00\x01msblast.exe\x00octet\x00")),
		udp4(f, c, s, 1040, 7000, []byte("\x00\x01msblast.exe\x00octet\x00")),
	} {
		f.Add(frame)
		f.Add(frame[:len(frame)-3])
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !quiet(set, false, frame) {
			return
		}
		if quiet(set, true, frame) && len(frame) > 23 && frame[23] == byte(layers.IPProtocolUDP) && binary.BigEndian.Uint16(frame[12:]) == uint16(layers.EthernetTypeIPv4) {
			t.Fatalf("UDP frame %x quiet with any port", frame)
		}
		var rec evidencetest.Recorder
		m := NewMatcher(StaticSet{set}, &rec, Options{TCPFlows: 64})
		m.decodeAll = true
		n := m.Packet(layers.LinkTypeEthernet, frame, Meta{Time: time.Unix(1e9, 0)})
		st := m.Stats()
		if n != 0 || len(rec.Events()) != 0 || st.Undecodable != 0 || st.UnknownLink != 0 || st.Fragments != 0 || st.TFTPRequests != 0 {
			t.Fatalf("quiet frame %x: %d events, stats %+v", frame, n, st)
		}
		d := m.dec.decoded
		if len(d) != 3 || d[0] != layers.LayerTypeEthernet || (d[1] != layers.LayerTypeIPv4 && d[1] != layers.LayerTypeIPv6) || (d[2] != layers.LayerTypeTCP && d[2] != layers.LayerTypeUDP) {
			t.Fatalf("quiet frame %x decodes to %v", frame, d)
		}
		if m.flows != nil {
			t.Fatalf("quiet frame %x made the handshake table", frame)
		}
	})
}

// Most frames of a mirror port are TCP and UDP no rule looks at: they are
// counted without being decoded, and the others are still decoded.
func TestQuiet(t *testing.T) {
	set := port4444Set(t)
	c, s := victim, infected
	for _, tt := range []struct {
		name  string
		frame []byte
		quiet bool
	}{
		{"web", seg(t, c, s, 1040, 80, "A", 1, 1, "GET /"), true},
		{"rule port", seg(t, c, s, 1040, 4444, "A", 1, 1, "x"), false},
		{"from the rule port", seg(t, s, c, 4444, 1040, "SA", 1, 2, ""), false},
		{"truncated", seg(t, c, s, 1040, 80, "S", 1, 0, "")[:14+20+10], false},
		{"dns", udp4(t, c, s, 1040, 53, []byte("x")), true},
		{"tftp", udp4(t, c, s, 1040, 69, []byte("x")), false},
		{"udp rule port", udp4(t, c, s, 1040, 7000, []byte("x")), false},
		{"bad udp length", func() []byte { f := udp4(t, c, s, 1040, 53, []byte("x")); f[14+20+5] = 5; return f }(), false},
	} {
		if got := quiet(set, false, tt.frame); got != tt.quiet {
			t.Errorf("%s: quiet %v, want %v", tt.name, got, tt.quiet)
		}
	}
}
