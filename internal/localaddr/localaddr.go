// Package localaddr follows the machine's own addresses as they come and go,
// so that no part of wormsink ever names one of them as a host.
package localaddr

import (
	"net/netip"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// Config tunes a Set. The zero value is usable.
type Config struct {
	// Loopback keeps the loopback addresses (127/8, ::1) in the set too.
	// By default they are left out: traffic on loopback is a local
	// process (an operator's dig, a test), and a listener on a named
	// loopback address is excluded by name instead.
	Loopback bool
	// Log receives a line for each address that comes or goes.
	Log zerolog.Logger
}

// Set is the machine's addresses now, with the directed broadcast address
// of each IPv4 network it is on. Contains is safe for concurrent use, lock
// free and allocation free; Serve keeps the set current.
type Set struct {
	cfg Config
	cur atomic.Pointer[map[netip.Addr]struct{}]
	sub subscription // the platform's address events
}

// SetLog sets where the lines about addresses coming and going go; call
// it before Serve.
func (s *Set) SetLog(l zerolog.Logger) { s.cfg.Log = l }

// Contains reports whether a (IPv4-mapped counts as IPv4) is one of the
// machine's addresses or a broadcast address of its networks.
func (s *Set) Contains(a netip.Addr) bool {
	if s == nil {
		return false
	}
	m := s.cur.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[a.Unmap()]
	return ok
}

// Addrs returns the addresses in the set, for logging and tests.
func (s *Set) Addrs() []netip.Addr {
	m := s.cur.Load()
	if m == nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(*m))
	for a := range *m {
		out = append(out, a)
	}
	return out
}

// entry is one address the machine holds, with its prefix length.
type entry struct {
	addr netip.Addr
	bits int
}

// build makes the set of es: each address, and for an IPv4 network of
// /30 or wider its directed broadcast address, which no host holds.
func (s *Set) build(es []entry) map[netip.Addr]struct{} {
	m := make(map[netip.Addr]struct{}, 2*len(es))
	for _, e := range es {
		a := e.addr.Unmap()
		if !a.IsValid() || a.IsLoopback() && !s.cfg.Loopback {
			continue
		}
		m[a] = struct{}{}
		if a.Is4() && e.bits > 0 && e.bits <= 30 {
			m[broadcast(a, e.bits)] = struct{}{}
		}
	}
	return m
}

// broadcast is the last address of a's /bits network.
func broadcast(a netip.Addr, bits int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-bits) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// swap puts a new set in service and logs what changed.
func (s *Set) swap(m map[netip.Addr]struct{}) {
	old := s.cur.Swap(&m)
	if old == nil {
		return
	}
	for a := range m {
		if _, ok := (*old)[a]; !ok {
			s.cfg.Log.Info().Str("event", "own_address_added").Str("address", a.String()).Msg("own address: never recorded as a host")
		}
	}
	for a := range *old {
		if _, ok := m[a]; !ok {
			s.cfg.Log.Info().Str("event", "own_address_removed").Str("address", a.String()).Msg("no longer an own address")
		}
	}
}
