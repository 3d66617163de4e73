package pktinfo

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func cmsgBytes(level, typ int, data []byte) []byte { return AppendCmsg(nil, level, typ, data) }

// TestOrigDst: the original destination is found after other control
// messages, for IPv4 and IPv6; truncated or foreign messages are refused.
func TestOrigDst(t *testing.T) {
	v4 := []byte{2, 0, 0, 69, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}
	v6 := make([]byte, 28)
	v6[0], v6[2], v6[3] = 10, 0x1a, 0xe1 // port 6881
	copy(v6[8:], net.ParseIP("2001:db8::9"))
	other := cmsgBytes(unix.SOL_IP, unix.IP_PKTINFO, make([]byte, 12))
	for name, tc := range map[string]struct {
		oob  []byte
		want string
	}{
		"v4":             {cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, v4), "10.0.0.9:69"},
		"v4 after other": {append(other, cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, v4)...), "10.0.0.9:69"},
		"v6":             {cmsgBytes(unix.SOL_IPV6, unix.IPV6_ORIGDSTADDR, v6), "[2001:db8::9]:6881"},
		"short":          {cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, v4[:6]), ""},
		"none":           {other, ""},
		"empty":          {nil, ""},
		"cut header":     {cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, v4)[:10], ""},
	} {
		got, ok := OrigDst(tc.oob)
		switch {
		case ok && got.String() != tc.want:
			t.Errorf("%s: %s, want %q", name, got, tc.want)
		case !ok && tc.want != "":
			t.Errorf("%s: not found, want %s", name, tc.want)
		}
	}
}

// TestDstAndReply: the destination is read from either kind of packet
// information, after other messages, and the reply's message names it
// again, of the same kind (IPv6 keeping the interface).
func TestDstAndReply(t *testing.T) {
	in4 := make([]byte, unix.SizeofInet4Pktinfo)
	in4[0] = 3                          // ifindex
	copy(in4[8:], []byte{192, 0, 2, 9}) // the header's destination
	in6 := make([]byte, unix.SizeofInet6Pktinfo)
	copy(in6, net.ParseIP("2001:db8::9"))
	in6[16] = 4 // ifindex
	other := cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, make([]byte, 16))
	for name, tc := range map[string]struct {
		oob  []byte
		want string
	}{
		"v4":             {cmsgBytes(unix.IPPROTO_IP, unix.IP_PKTINFO, in4), "192.0.2.9"},
		"v6 after other": {append(other, cmsgBytes(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6)...), "2001:db8::9"},
		"short":          {cmsgBytes(unix.IPPROTO_IP, unix.IP_PKTINFO, in4[:8]), ""},
		"cut":            {cmsgBytes(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6)[:20], ""},
	} {
		got, ok := Dst(tc.oob)
		if ok != (tc.want != "") || ok && got.String() != tc.want {
			t.Errorf("%s: Dst = %v, %v; want %q", name, got, ok, tc.want)
			continue
		}
		if !ok {
			if r := Reply(nil, tc.oob); len(r) != 0 {
				t.Errorf("%s: a reply message from nothing: %x", name, r)
			}
			continue
		}
		r := Reply(nil, tc.oob)
		m, _, mok := next(r)
		back, bok := find(r)
		if !mok || !bok {
			t.Fatalf("%s: reply message unreadable: %x", name, r)
		}
		if name == "v4" {
			// The reply's in_pktinfo carries the source in spec_dst.
			if m.typ != unix.IP_PKTINFO || netip.AddrFrom4([4]byte(m.data[4:8])).String() != tc.want {
				t.Errorf("%s: reply %x", name, r)
			}
		} else if m.typ != unix.IPV6_PKTINFO || back.dst.String() != tc.want || back.ifindex != 4 {
			t.Errorf("%s: reply %+v", name, back)
		}
	}
}

// TestWildcardAnswersFromAddressAsked: on a real socket bound to the
// wildcard, Dst names the loopback address a datagram was sent to and a
// reply with Append leaves from it.
func TestWildcardAnswersFromAddressAsked(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{}) // dual-stack wildcard
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ok, v6 := Enable(srv)
	if !ok {
		t.Fatal("Enable failed on a wildcard socket")
	}
	port := srv.LocalAddr().(*net.UDPAddr).Port
	cl, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	asked := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(port))
	if _, err := cl.WriteToUDPAddrPort([]byte("q"), asked); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 16), make([]byte, Space)
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, oobn, _, from, err := srv.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	dst, ok := Dst(oob[:oobn])
	if !ok || dst != asked.Addr() {
		t.Fatalf("Dst = %v, %v; want %v", dst, ok, asked.Addr())
	}
	var space [64]byte
	if _, _, err := srv.WriteMsgUDPAddrPort([]byte("a"), Append(space[:0], dst, v6), from); err != nil {
		t.Fatal(err)
	}
	cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, replyFrom, err := cl.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if replyFrom.Addr().Unmap() != asked.Addr() {
		t.Fatalf("reply from %v, want %v", replyFrom, asked.Addr())
	}
}

func itoa(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}

// TestNoAllocs: reading and writing the messages runs per datagram.
func TestNoAllocs(t *testing.T) {
	in4 := make([]byte, unix.SizeofInet4Pktinfo)
	oob := cmsgBytes(unix.IPPROTO_IP, unix.IP_PKTINFO, in4)
	orig := cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, make([]byte, 16))
	dst := make([]byte, 0, 64)
	local := netip.MustParseAddr("192.0.2.1")
	if n := testing.AllocsPerRun(100, func() {
		Dst(oob)
		OrigDst(orig)
		Reply(dst[:0], oob)
		Append(dst[:0], local, true)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// FuzzDst: any control-message bytes are read without a panic; what is
// found reads back through a reply.
func FuzzDst(f *testing.F) {
	f.Add(cmsgBytes(unix.IPPROTO_IP, unix.IP_PKTINFO, make([]byte, 12)))
	f.Add(cmsgBytes(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, make([]byte, 20)))
	f.Add(cmsgBytes(unix.SOL_IP, unix.IP_ORIGDSTADDR, []byte{2, 0, 0, 69, 10, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0}))
	f.Add(cmsgBytes(unix.SOL_IPV6, unix.IPV6_ORIGDSTADDR, make([]byte, 28)))
	f.Fuzz(func(t *testing.T, oob []byte) {
		if ap, ok := OrigDst(oob); ok && !ap.IsValid() {
			t.Fatalf("invalid address reported as found: %v", ap)
		}
		a, ok := Dst(oob)
		if !ok {
			return
		}
		if !a.IsValid() {
			t.Fatalf("invalid address reported as found: %v", a)
		}
		if b, ok := find(Reply(nil, oob)); !ok || b.dst.Unmap() != a && !(b.dst.Is4() && a.Is4()) {
			t.Fatalf("reply names %v, want %v", b.dst, a)
		}
	})
}
