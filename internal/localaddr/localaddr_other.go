//go:build !linux

package localaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

type subscription struct{}

// New reads the addresses the machine holds now. Off Linux there are no
// address events: the set is what it was at start.
func New(cfg Config) (*Set, error) {
	s := &Set{cfg: cfg}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("localaddr: list: %w", err)
	}
	var es []entry
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			es = append(es, entry{addr: p.Addr(), bits: p.Bits()})
		}
	}
	s.swap(s.build(es))
	return s, nil
}

// Serve waits for ctx to end.
func (s *Set) Serve(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Shutdown does nothing off Linux.
func (s *Set) Shutdown(context.Context) error { return nil }
