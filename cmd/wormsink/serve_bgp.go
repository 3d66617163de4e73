package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"wormsink/bgp"
	"wormsink/quarantine"
)

// BGP: quarantined addresses announced to the ISP's routers as host routes
// with a community (a null route, or a walled-garden VRF, as the routers
// map it).
type bgpConfig struct {
	asn         string
	routerID    string
	neighbors   neighborList
	communities communityList
	nextHops    addrList
}

func bgpFlags(fs *flag.FlagSet, c *bgpConfig) {
	fs.StringVar(&c.asn, "bgp-asn", "", "our AS number: turns on announcing quarantined addresses by BGP (with --quarantine-policy; default off)")
	fs.StringVar(&c.routerID, "bgp-router-id", "", "our BGP router id (an IPv4 address)")
	fs.Var(&c.neighbors, "bgp-neighbor", "a router to announce to, ADDR@ASN (or ADDR:PORT@ASN); repeatable")
	fs.Var(&c.communities, "bgp-community", "community on every announced route, ASN:VALUE or blackhole (RFC 7999 65535:666), no-export; repeatable (default none: the routers' policy decides)")
	fs.Var(&c.nextHops, "bgp-next-hop", "next hop of the announced routes, IP[,IP6]: an IPv4 one for /32 routes, an IPv6 one for /128 routes (default: the session's address for IPv4; IPv6 addresses are then not announced)")
}

func (c *bgpConfig) enabled() bool { return c.asn != "" }

func (c *bgpConfig) config() (bgp.Config, error) {
	asn, err := bgp.ParseASN(c.asn)
	if err != nil {
		return bgp.Config{}, fmt.Errorf("--bgp-asn: %v", err)
	}
	rid, err := netip.ParseAddr(c.routerID)
	if err != nil || !rid.Is4() {
		return bgp.Config{}, fmt.Errorf("--bgp-router-id %q: want an IPv4 address", c.routerID)
	}
	if len(c.neighbors) == 0 {
		return bgp.Config{}, errors.New("--bgp-asn needs at least one --bgp-neighbor")
	}
	return bgp.Config{ASN: asn, RouterID: rid, Neighbors: c.neighbors, Communities: c.communities, NextHops: c.nextHops}, nil
}

// addBGP starts the speaker and feeds it the quarantine; it runs after
// addQuarantine.
func (s *server) addBGP() error {
	c := &s.cfg.bgp
	if !c.enabled() {
		return nil
	}
	if s.quarantine == nil {
		return errors.New("--bgp-asn needs --quarantine-policy: BGP announces the quarantined addresses")
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	cfg.Log = s.log
	sp, err := bgp.New(cfg)
	if err != nil {
		return err
	}
	s.quarantine.Watch(func(snap *quarantine.Snapshot) { sp.Sync(snapshotAddrs(snap)) })
	s.add("bgp", newLoop(sp.Serve))
	m := s.metrics
	m.gauge("wormsink_bgp_sessions_up", "BGP sessions established now.", func() float64 { return float64(sp.Stats().PeersUp) })
	m.gauge("wormsink_bgp_routes_announced", "Host routes of quarantined addresses announced now.", func() float64 { return float64(sp.Stats().Announced) })
	m.counter("wormsink_bgp_errors_total", "Announcements or withdrawals GoBGP refused, and IPv6 addresses not announced for want of an IPv6 --bgp-next-hop.", func() uint64 { st := sp.Stats(); return st.Errors + st.Skipped })
	return nil
}

// neighborList is the repeatable --bgp-neighbor.
type neighborList []bgp.Neighbor

func (l *neighborList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = fmt.Sprintf("%s@%d", n.Addr, n.ASN)
	}
	return strings.Join(s, ",")
}

func (l *neighborList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := bgp.ParseNeighbor(p)
		if err != nil {
			return err
		}
		*l = append(*l, n)
	}
	return nil
}

// communityList is the repeatable --bgp-community.
type communityList []uint32

func (l *communityList) String() string {
	s := make([]string, len(*l))
	for i, c := range *l {
		s[i] = bgp.FormatCommunity(c)
	}
	return strings.Join(s, ",")
}

func (l *communityList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		c, err := bgp.ParseCommunity(p)
		if err != nil {
			return err
		}
		*l = append(*l, c)
	}
	return nil
}
