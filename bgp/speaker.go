// Package bgp announces quarantined addresses to the ISP's routers as host
// routes with a community, through GoBGP as a library: a null route done properly.
package bgp

// The ISP's routers decide what the community means (RFC 7999 BLACKHOLE
// 65535:666 to drop, a walled-garden VRF, an RFC 5635 source-based drop),
// so wormsink never has to touch a router's configuration. Only the routes
// it originates leave it: every route a peer sends is rejected on import,
// so nothing can leak through it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/rs/zerolog"
)

// Neighbor is one BGP peer (--bgp-neighbor ADDR@ASN).
type Neighbor struct {
	Addr netip.Addr
	ASN  uint32
	// Port is the peer's BGP port; 0 means 179.
	Port uint16
}

// Config is what a Speaker needs.
type Config struct {
	ASN       uint32     // our AS (--bgp-asn), required
	RouterID  netip.Addr // --bgp-router-id, an IPv4 address, required
	Neighbors []Neighbor // at least one
	// Communities go on every route (--bgp-community); none is chosen for
	// the ISP.
	Communities []uint32
	// NextHops are the routes' next hops (--bgp-next-hop): the IPv4 one for
	// /32 routes, the IPv6 one for /128 routes. Without one for a family,
	// the session's local address is used for IPv4 and IPv6 addresses are
	// not announced (counted in Stats.Skipped).
	NextHops []netip.Addr
	// ConnectRetry is how long a failed session waits before it tries
	// again; 0 means DefaultConnectRetry.
	ConnectRetry time.Duration
	Log          zerolog.Logger
}

// DefaultConnectRetry is short: a quarantine should reach the routers soon
// after a router comes back.
const DefaultConnectRetry = 5 * time.Second

// Stats are the speaker's numbers, for metrics.
type Stats struct {
	PeersUp   int    // sessions established now
	Announced int    // host routes announced now
	Skipped   uint64 // addresses not announced (an IPv6 address without an IPv6 next hop)
	Errors    uint64 // announcements or withdrawals GoBGP refused
}

// Speaker is the BGP speaker. Sync gives it the set of addresses to
// announce; Serve runs it until the context ends.
type Speaker struct {
	cfg Config
	srv *server.BgpServer

	mu        sync.Mutex
	want      map[netip.Addr]bool
	announced map[netip.Addr]bool
	kick      chan struct{}

	peersUp atomic.Int64
	skipped atomic.Uint64
	errs    atomic.Uint64
}

// New checks cfg and makes a Speaker.
func New(cfg Config) (*Speaker, error) {
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: --bgp-asn is needed")
	}
	if !cfg.RouterID.Is4() {
		return nil, errors.New("bgp: --bgp-router-id must be an IPv4 address")
	}
	if len(cfg.Neighbors) == 0 {
		return nil, errors.New("bgp: at least one --bgp-neighbor is needed")
	}
	if cfg.ConnectRetry <= 0 {
		cfg.ConnectRetry = DefaultConnectRetry
	}
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelError)
	srv := server.NewBgpServer(server.LoggerOption(slog.New(slog.NewTextHandler(io.Discard, nil)), lvl))
	return &Speaker{cfg: cfg, srv: srv, want: map[netip.Addr]bool{}, announced: map[netip.Addr]bool{}, kick: make(chan struct{}, 1)}, nil
}

// Sync sets the addresses to announce: each as a host route, announced
// until it is no longer in a later set. It does not wait.
func (s *Speaker) Sync(addrs []netip.Addr) {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	s.mu.Lock()
	s.want = want
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Stats returns the numbers now.
func (s *Speaker) Stats() Stats {
	s.mu.Lock()
	n := len(s.announced)
	s.mu.Unlock()
	return Stats{PeersUp: int(s.peersUp.Load()), Announced: n, Skipped: s.skipped.Load(), Errors: s.errs.Load()}
}

// Serve starts BGP, connects to the neighbors and keeps the announced
// routes equal to the last Sync, until ctx ends; then it withdraws them
// (a clean stop tells the routers) and stops.
func (s *Speaker) Serve(ctx context.Context) error {
	go s.srv.Serve()
	defer s.srv.Stop()
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: s.cfg.ASN, RouterId: s.cfg.RouterID.String(), ListenPort: -1, // we connect; we never listen
	}}); err != nil {
		return fmt.Errorf("bgp: start: %w", err)
	}
	if err := s.rejectPeerRoutes(ctx); err != nil {
		return fmt.Errorf("bgp: import policy: %w", err)
	}
	for _, n := range s.cfg.Neighbors {
		p := &api.Peer{
			Conf: &api.PeerConf{NeighborAddress: n.Addr.String(), PeerAsn: n.ASN},
			Timers: &api.Timers{Config: &api.TimersConfig{ConnectRetry: uint64(s.cfg.ConnectRetry / time.Second),
				HoldTime: 90, KeepaliveInterval: 30}},
			AfiSafis: []*api.AfiSafi{
				{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
				{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
			},
		}
		if n.Port != 0 {
			p.Transport = &api.Transport{RemotePort: uint32(n.Port)}
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p}); err != nil {
			return fmt.Errorf("bgp: neighbor %s: %w", n.Addr, err)
		}
	}
	s.cfg.Log.Info().Str("event", "bgp_start").Uint32("asn", s.cfg.ASN).Int("neighbors", len(s.cfg.Neighbors)).Msg("BGP speaker started")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.apply()
		select {
		case <-ctx.Done():
			s.Sync(nil)
			s.apply()
			// Give the withdrawals a moment to leave before the sessions close.
			time.Sleep(200 * time.Millisecond)
			return nil
		case <-s.kick:
		case <-tick.C:
			s.countPeers()
		}
	}
}

// rejectPeerRoutes makes sure nothing a peer sends enters our table, so
// nothing but our host routes can ever be sent on. GoBGP applies the global
// import policy to our own routes too, so the policy rejects by neighbor
// rather than by default.
func (s *Speaker) rejectPeerRoutes(ctx context.Context) error {
	var peers []string
	for _, n := range s.cfg.Neighbors {
		peers = append(peers, netip.PrefixFrom(n.Addr, n.Addr.BitLen()).String())
	}
	if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: "wormsink-peers", List: peers}}); err != nil {
		return err
	}
	pol := &api.Policy{Name: "wormsink-reject-peers", Statements: []*api.Statement{{
		Name:       "reject-from-peers",
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: "wormsink-peers"}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_REJECT},
	}}}
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return err
	}
	return s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies: []*api.Policy{{Name: pol.Name}}, DefaultAction: api.RouteAction_ROUTE_ACTION_ACCEPT,
	}})
}

func (s *Speaker) countPeers() {
	n := 0
	s.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.State != nil && p.State.SessionState == api.PeerState_SESSION_STATE_ESTABLISHED {
			n++
		}
	})
	s.peersUp.Store(int64(n))
}

// apply announces what is wanted and not announced, and withdraws what is
// announced and no longer wanted. A route GoBGP refused is tried again at
// the next kick or tick.
func (s *Speaker) apply() {
	s.mu.Lock()
	var add, del []netip.Addr
	for a := range s.want {
		if !s.announced[a] {
			add = append(add, a)
		}
	}
	for a := range s.announced {
		if !s.want[a] {
			del = append(del, a)
		}
	}
	s.mu.Unlock()
	for _, a := range add {
		p, ok := s.path(a)
		if !ok {
			continue
		}
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}}); err != nil {
			s.errs.Add(1)
			s.cfg.Log.Error().Str("event", "bgp_error").Str("prefix", a.String()).Err(err).Msg("bgp: announce failed")
			continue
		}
		s.mu.Lock()
		s.announced[a] = true
		s.mu.Unlock()
	}
	for _, a := range del {
		p, ok := s.path(a)
		if ok {
			if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}}); err != nil {
				s.errs.Add(1)
				s.cfg.Log.Error().Str("event", "bgp_error").Str("prefix", a.String()).Err(err).Msg("bgp: withdraw failed")
				continue
			}
		}
		s.mu.Lock()
		delete(s.announced, a)
		s.mu.Unlock()
	}
}

// path is the host route for a: /32 or /128 with the communities.
func (s *Speaker) path(a netip.Addr) (*apiutil.Path, bool) {
	nlri, err := gbgp.NewIPAddrPrefix(netip.PrefixFrom(a, a.BitLen()))
	if err != nil {
		return nil, false
	}
	attrs := []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(0)}
	if len(s.cfg.Communities) > 0 {
		attrs = append(attrs, gbgp.NewPathAttributeCommunities(s.cfg.Communities))
	}
	nh, ok := s.nextHop(a.Is4())
	if a.Is4() {
		if !ok {
			nh = netip.IPv4Unspecified() // GoBGP puts the session's local address
		}
		h, err := gbgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, false
		}
		attrs = append(attrs, h)
		return &apiutil.Path{Family: gbgp.RF_IPv4_UC, Nlri: nlri, Attrs: attrs}, true
	}
	if !ok {
		s.skipped.Add(1)
		return nil, false
	}
	mp, err := gbgp.NewPathAttributeMpReachNLRI(gbgp.RF_IPv6_UC, []gbgp.PathNLRI{{NLRI: nlri}}, nh)
	if err != nil {
		return nil, false
	}
	attrs = append(attrs, mp)
	return &apiutil.Path{Family: gbgp.RF_IPv6_UC, Nlri: nlri, Attrs: attrs}, true
}

func (s *Speaker) nextHop(v4 bool) (netip.Addr, bool) {
	for _, h := range s.cfg.NextHops {
		if h.Is4() == v4 {
			return h, true
		}
	}
	return netip.Addr{}, false
}

// ParseNeighbor reads --bgp-neighbor: ADDR@ASN, or [ADDR]:PORT@ASN /
// ADDR:PORT@ASN for a peer on another port.
func ParseNeighbor(s string) (Neighbor, error) {
	host, asn, ok := strings.Cut(strings.TrimSpace(s), "@")
	if !ok {
		return Neighbor{}, fmt.Errorf("%q: want ADDR@ASN", cut(s))
	}
	n := Neighbor{}
	as, err := ParseASN(asn)
	if err != nil {
		return Neighbor{}, fmt.Errorf("%q: %v", cut(s), err)
	}
	n.ASN = as
	if a, err := netip.ParseAddr(host); err == nil {
		n.Addr = a.Unmap()
		return n, nil
	}
	ap, err := netip.ParseAddrPort(host)
	if err != nil || ap.Port() == 0 {
		return Neighbor{}, fmt.Errorf("%q: want ADDR@ASN or ADDR:PORT@ASN", cut(s))
	}
	n.Addr, n.Port = ap.Addr().Unmap(), ap.Port()
	return n, nil
}

// ParseASN reads an AS number: plain (4-byte) or asdot (1.10).
func ParseASN(s string) (uint32, error) {
	if hi, lo, ok := strings.Cut(s, "."); ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil || h == 0 && l == 0 {
			return 0, fmt.Errorf("AS %q: not a number", cut(s))
		}
		return uint32(h<<16 | l), nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n == 23456 { // AS_TRANS is never a real AS
		return 0, fmt.Errorf("AS %q: want 1 to 4294967295 (not 23456)", cut(s))
	}
	return uint32(n), nil
}

// Well-known communities by name (RFC 1997, RFC 7999).
var wellKnown = map[string]uint32{
	"blackhole":           0xFFFF029A, // 65535:666
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
}

// ParseCommunity reads --bgp-community: ASN:VALUE (each 0–65535) or a
// well-known name (blackhole, no-export, no-advertise).
func ParseCommunity(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if v, ok := wellKnown[strings.ToLower(s)]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: want ASN:VALUE (e.g. 65535:666) or blackhole, no-export, no-advertise", cut(s))
	}
	return uint32(h<<16 | l), nil
}

// FormatCommunity writes a community as ASN:VALUE.
func FormatCommunity(c uint32) string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// Addresses returns the sorted addresses of set, for tests and logs.
func Addresses(set map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func cut(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
