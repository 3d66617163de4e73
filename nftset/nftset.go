// Package nftset keeps an nftables set equal to the quarantined addresses, for a
// Linux BNG or router whose own rules redirect or drop what comes from them.
package nftset

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/google/nftables"
)

// Target names a set: FAMILY:TABLE:SET (--nft-set), FAMILY one of ip, ip6,
// inet. The set must exist (the ISP's ruleset owns it, with its type:
// ipv4_addr or ipv6_addr); wormsink owns its elements.
type Target struct {
	Family nftables.TableFamily
	Table  string
	Set    string
}

func (t Target) String() string {
	return familyName[t.Family] + ":" + t.Table + ":" + t.Set
}

var familyName = map[nftables.TableFamily]string{
	nftables.TableFamilyIPv4: "ip", nftables.TableFamilyIPv6: "ip6", nftables.TableFamilyINet: "inet",
}

// ParseTarget reads FAMILY:TABLE:SET.
func ParseTarget(s string) (Target, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 || f[1] == "" || f[2] == "" {
		return Target{}, fmt.Errorf("%q: want FAMILY:TABLE:SET, e.g. inet:bng:quarantine", cut(s))
	}
	var t Target
	switch f[0] {
	case "ip":
		t.Family = nftables.TableFamilyIPv4
	case "ip6":
		t.Family = nftables.TableFamilyIPv6
	case "inet":
		t.Family = nftables.TableFamilyINet
	default:
		return Target{}, fmt.Errorf("%q: family %q: want ip, ip6 or inet", cut(s), cut(f[0]))
	}
	for _, name := range f[1:] {
		if len(name) > 255 || strings.ContainsAny(name, " \t\n\"'\\;{}") {
			return Target{}, fmt.Errorf("%q: %q is not a table or set name", cut(s), cut(name))
		}
	}
	t.Table, t.Set = f[1], f[2]
	return t, nil
}

// Syncer keeps the set's elements equal to the addresses of the last Sync
// of its type (IPv4 addresses into an ipv4_addr set, IPv6 ones into an
// ipv6_addr set).
type Syncer struct {
	target Target
	opts   []nftables.ConnOption
	mu     sync.Mutex
}

// New checks that the set exists and holds addresses.
func New(t Target, opts ...nftables.ConnOption) (*Syncer, error) {
	s := &Syncer{target: t, opts: opts}
	_, set, err := s.open()
	if err != nil {
		return nil, err
	}
	if set.KeyType.Name != nftables.TypeIPAddr.Name && set.KeyType.Name != nftables.TypeIP6Addr.Name {
		return nil, fmt.Errorf("nftables set %s has type %s: want ipv4_addr or ipv6_addr", t, set.KeyType.Name)
	}
	return s, nil
}

func (s *Syncer) open() (*nftables.Conn, *nftables.Set, error) {
	c, err := nftables.New(s.opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("nftables: %w", err)
	}
	set, err := c.GetSetByName(&nftables.Table{Name: s.target.Table, Family: s.target.Family}, s.target.Set)
	if err != nil {
		return nil, nil, fmt.Errorf("nftables set %s: %w (create it first, e.g. nft add set %s %s %s '{ type ipv4_addr; }')",
			s.target, err, familyName[s.target.Family], s.target.Table, s.target.Set)
	}
	return c, set, nil
}

// Sync makes the set hold exactly the addresses of its type among addrs:
// it adds what is missing and deletes what is no longer quarantined (the
// set is wormsink's: an element added by hand does not outlive a sync).
func (s *Syncer) Sync(addrs []netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, set, err := s.open()
	if err != nil {
		return err
	}
	v6 := set.KeyType.Name == nftables.TypeIP6Addr.Name
	want := map[netip.Addr]bool{}
	for _, a := range addrs {
		if a = a.Unmap(); a.Is6() == v6 {
			want[a] = true
		}
	}
	have, err := c.GetSetElements(set)
	if err != nil {
		return fmt.Errorf("nftables set %s: %w", s.target, err)
	}
	var del []nftables.SetElement
	for _, e := range have {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok || e.IntervalEnd {
			continue
		}
		if want[a] {
			delete(want, a)
			continue
		}
		del = append(del, nftables.SetElement{Key: e.Key})
	}
	var add []nftables.SetElement
	for a := range want {
		add = append(add, nftables.SetElement{Key: a.AsSlice()})
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	if len(del) > 0 {
		if err := c.SetDeleteElements(set, del); err != nil {
			return err
		}
	}
	if len(add) > 0 {
		if err := c.SetAddElements(set, add); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables set %s: %w", s.target, err)
	}
	return nil
}

func cut(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
