package sockaddr

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAddrPort(t *testing.T) {
	var sa unix.RawSockaddrInet6
	raw := (*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))

	sa.Family = unix.AF_INET
	binary.BigEndian.PutUint16(raw[2:], 1813)
	copy(raw[4:8], []byte{192, 0, 2, 7})
	if got, ok := AddrPort(&sa, unix.SizeofSockaddrInet4); !ok || got != netip.MustParseAddrPort("192.0.2.7:1813") {
		t.Errorf("IPv4: %v %v", got, ok)
	}
	if _, ok := AddrPort(&sa, unix.SizeofSockaddrInet4-1); ok {
		t.Error("a short IPv4 address read")
	}

	sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr("2001:db8::53").As16(), Scope_id: 3}
	binary.BigEndian.PutUint16(raw[2:], 53)
	if got, ok := AddrPort(&sa, unix.SizeofSockaddrInet6); !ok || got != netip.MustParseAddrPort("[2001:db8::53]:53") {
		t.Errorf("IPv6: %v %v", got, ok)
	}
	if _, ok := AddrPort(&sa, unix.SizeofSockaddrInet6-1); ok {
		t.Error("a short IPv6 address read")
	}
	sa.Family = unix.AF_UNIX
	if _, ok := AddrPort(&sa, unix.SizeofSockaddrInet6); ok {
		t.Error("another family read")
	}
}

func FuzzAddrPort(f *testing.F) {
	f.Add([]byte{2, 0, 0, 53, 127, 0, 0, 1}, uint32(16))
	f.Fuzz(func(t *testing.T, b []byte, n uint32) {
		var sa unix.RawSockaddrInet6
		copy((*[unix.SizeofSockaddrInet6]byte)(unsafe.Pointer(&sa))[:], b)
		if a, ok := AddrPort(&sa, n); ok && !a.Addr().IsValid() {
			t.Fatalf("ok with an invalid address %v", a)
		}
	})
}
