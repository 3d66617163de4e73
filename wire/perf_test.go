package wire

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

var (
	perfOut     = flag.String("perf-out", "", "write the mixed performance capture here (scripts/perf-wire.sh)")
	perfPackets = flag.Int("perf-packets", 2_000_000, "packets in the performance capture")
)

// writeMixed writes n packets of mixed traffic, mostly not TFTP, and
// returns how many worm requests it holds. The mix: TCP data and ACKs with
// timestamps, DNS, QUIC-sized UDP, IPv6, VLAN-tagged frames, pings, ARP,
// legitimate TFTP, fragments, and one msblast.exe request in 10,000.
func writeMixed(t testing.TB, path string, n int) int {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	vlan := func(inner []byte) []byte {
		out := append([]byte{}, inner[:12]...)
		out = append(out, 0x81, 0x00, 0x00, 0x64)
		return append(out, inner[12:]...)
	}
	dg := udpBytes(t, 1025, 69, rrq(1, "pxelinux.0", "octet", "blksize", "1408"))
	pool := [][]byte{
		tcpFrame(t, 443, bytes.Repeat([]byte{0x17}, 1400)),
		tcpFrame(t, 443, nil),
		tcpFrame(t, 80, bytes.Repeat([]byte("x"), 600)),
		tcpFrame(t, 4444, []byte("dir\r\n")),
		udp4(t, other, infected, 5353, 53, []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")),
		udp4(t, other, infected, 50000, 443, bytes.Repeat([]byte{0x40}, 1200)),
		ser(t, eth(layers.EthernetTypeIPv6), ip6(victim6, infected6, layers.IPProtocolNoNextHeader), gopacket.Payload(bytes.Repeat([]byte{1}, 500))),
		vlan(tcpFrame(t, 443, bytes.Repeat([]byte{0x17}, 1000))),
		ser(t, eth(layers.EthernetTypeIPv4), ip4(other, infected, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0)}, gopacket.Payload(bytes.Repeat([]byte("abcdefgh"), 7))),
	}
	weights := []int{35, 20, 10, 1, 15, 10, 4, 3, 2}
	var cum []int
	total := 0
	for _, wt := range weights {
		total += wt
		cum = append(cum, total)
	}
	rare := [][]byte{
		udp4(t, other, infected, 2000, 69, rrq(1, "pxelinux.0", "octet")),
		frag4(t, other, infected, 77, 0, true, dg[:16]),
		frag4(t, other, infected, 77, 16, false, dg[16:]),
	}
	worm := udp4(t, victim, infected, 1025, 69, rrq(1, "msblast.exe", "octet"))
	rng := rand.New(rand.NewPCG(1, 2))
	ts := baseTime
	worms := 0
	for i := 0; i < n; i++ {
		var data []byte
		switch {
		case i%10000 == 5000:
			data = worm
			worms++
		case i%1000 == 7:
			data = rare[(i/1000)%len(rare)]
		default:
			r := rng.IntN(total)
			for j, c := range cum {
				if r < c {
					data = pool[j]
					break
				}
			}
		}
		ts = ts.Add(time.Duration(rng.IntN(20)) * time.Microsecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return worms
}

// TestMixedCapture makes a mixed capture (small, or the big one with
// -perf-out) and checks the scan finds exactly the worm requests in it.
func TestMixedCapture(t *testing.T) {
	path, n := filepath.Join(t.TempDir(), "mixed.pcap"), 50_000
	if *perfOut != "" {
		path, n = *perfOut, *perfPackets
	}
	worms := writeMixed(t, path, n)
	var got evidencetest.Counter
	m := NewMatcher(StaticSet{signatures.Default()}, &got, Options{})
	read, err := m.ScanFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if read != uint64(n) || got.Count() != 2*worms || st.Undecodable != 0 || st.Reassembled == 0 {
		t.Fatalf("read %d of %d, %d events for %d worm requests, stats %+v", read, n, got.Count(), worms, st)
	}
	t.Logf("%s: %d packets, %d bytes, %d worm requests", path, n, st.Bytes, worms)
}
