package localaddr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

type subscription struct {
	updates chan netlink.AddrUpdate
	done    chan struct{}
}

// New subscribes to the kernel's address events and reads the addresses
// the machine holds now, in that order, so no change between the two is
// missed. Run Serve to follow the events; Shutdown (or the end of Serve's
// context) unsubscribes.
func New(cfg Config) (*Set, error) {
	s := &Set{cfg: cfg}
	if err := s.subscribe(); err != nil {
		return nil, err
	}
	if err := s.reload(); err != nil {
		close(s.sub.done)
		return nil, err
	}
	return s, nil
}

func (s *Set) subscribe() error {
	done := make(chan struct{})
	s.sub = subscription{updates: make(chan netlink.AddrUpdate, 256), done: done}
	err := netlink.AddrSubscribeWithOptions(s.sub.updates, s.sub.done, netlink.AddrSubscribeOptions{
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			select {
			case <-done:
				return // closed on purpose: the socket's end is no error
			default:
			}
			s.cfg.Log.Warn().Str("event", "own_address_error").Str("error", err.Error()).Msg("address events")
		},
	})
	if err != nil {
		return fmt.Errorf("localaddr: subscribe: %w", err)
	}
	return nil
}

// reload reads every address the machine holds and puts the set in service.
func (s *Set) reload() error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("localaddr: list: %w", err)
	}
	es := make([]entry, 0, len(addrs))
	for _, a := range addrs {
		if e, ok := fromIPNet(a.IPNet); ok {
			es = append(es, e)
		}
		if b, ok := netip.AddrFromSlice(a.Broadcast); ok {
			es = append(es, entry{addr: b, bits: b.BitLen()})
		}
	}
	s.swap(s.build(es))
	return nil
}

func fromIPNet(n *net.IPNet) (entry, bool) {
	if n == nil {
		return entry{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return entry{}, false
	}
	ones, _ := n.Mask.Size()
	return entry{addr: a.Unmap(), bits: ones}, true
}

// Serve follows the address events until ctx ends. Every event re-reads
// the whole list (events are rare), so a missed or reordered one cannot
// leave the set wrong; an address that comes is added at once, before the
// re-read. If the kernel drops events (a full socket buffer), Serve
// subscribes again and re-reads.
func (s *Set) Serve(ctx context.Context) error {
	defer s.Shutdown(context.Background())
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-s.sub.updates:
			if !ok {
				// The subscription failed; start another, then re-read.
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(100 * time.Millisecond):
				}
				if err := s.subscribe(); err != nil {
					return err
				}
			} else if u.NewAddr {
				if e, ok := fromIPNet(&u.LinkAddress); ok {
					s.add(e)
				}
			}
			if err := s.reload(); err != nil {
				s.cfg.Log.Warn().Str("event", "own_address_error").Str("error", err.Error()).Msg("address list")
			}
		}
	}
}

// add puts one more address in service without waiting for the re-read.
func (s *Set) add(e entry) {
	old := s.cur.Load()
	es := make([]entry, 0, 1)
	es = append(es, e)
	m := s.build(es)
	if old != nil {
		for a := range *old {
			m[a] = struct{}{}
		}
	}
	s.swap(m)
}

// Shutdown stops following the events; the set keeps its last contents.
func (s *Set) Shutdown(context.Context) error {
	select {
	case <-s.sub.done:
	default:
		close(s.sub.done)
	}
	return nil
}
