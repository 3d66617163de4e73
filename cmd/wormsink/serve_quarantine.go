package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"net/netip"
	"strings"
	"sync/atomic"

	"wormsink/evidence"
	"wormsink/nftset"
	"wormsink/notice"
	"wormsink/quarantine"
)

// Quarantine: who is in the walled garden, enforced by the DNS shim (and
// the RPZ feed, BGP, nftables), with the notice page.
type quarantineConfig struct {
	policyFile   string
	noticeIPs    addrList
	noticeListen string
	ispName      string
	nftSets      nftTargets

	policy *quarantine.Policy // read by complete
}

func quarantineFlags(fs *flag.FlagSet, c *quarantineConfig) {
	fs.StringVar(&c.policyFile, "quarantine-policy", "", "YAML file: which sightings quarantine a client, the names it may still resolve, self-release and notice texts; turns the quarantine on (default off)")
	fs.Var(&c.noticeIPs, "notice-ip", "the notice page's addresses, IP[,IP6]: a quarantined client's lookups are answered with them")
	fs.Var((*listenAddr)(&c.noticeListen), "notice-listen", "HTTP address of the notice page (any host, any path); plain HTTP: HTTPS cannot be redirected (default off)")
	fs.StringVar(&c.ispName, "notice-isp", "", "the ISP's name on the notice page (default: \"your Internet provider\")")
	fs.Var(&c.nftSets, "nft-set", "FAMILY:TABLE:SET of an existing nftables set (ipv4_addr or ipv6_addr) kept equal to the quarantined addresses, for a Linux BNG's own rules; repeatable")
}

func (c *quarantineConfig) enabled() bool { return c.policyFile != "" }

func (c *quarantineConfig) complete() error {
	if !c.enabled() {
		if len(c.noticeIPs) > 0 || c.noticeListen != "" || len(c.nftSets) > 0 {
			return errors.New("--notice-ip, --notice-listen and --nft-set need --quarantine-policy")
		}
		return nil
	}
	p, err := quarantine.LoadPolicy(c.policyFile)
	if err != nil {
		return fmt.Errorf("--quarantine-policy: %w", err)
	}
	c.policy = p
	return nil
}

// quarantineObserver hands the engine the sightings its policy acts on,
// attributed to their subscriber when attribution runs.
type quarantineObserver struct {
	eng  *quarantine.Engine
	attr evidence.Attributor // nil without attribution
}

func (o quarantineObserver) Observe(ev *evidence.Event) {
	if !o.eng.Policy().Enters(ev.Kind, ev.Family, ev.Evidence, ev.Proof) {
		return
	}
	s := quarantine.Sighting{Time: ev.Time, Kind: ev.Kind, Host: ev.Host, Port: ev.Port, Family: ev.Family, Signature: ev.Sig,
		Evidence: ev.Evidence, Proof: ev.Proof}
	if o.attr != nil {
		a := o.attr.Attribute(ev.Host, ev.Port, ev.Time)
		s.Subscriber, s.Candidates = a.Subscriber, a.Candidates
		if a.NATInside.IsValid() {
			s.Inside = a.NATInside.Addr()
		}
	}
	o.eng.Observe(s)
}

// addQuarantine starts the engine and gives the shim its walled garden;
// it runs before addDNS.
func (s *server) addQuarantine() error {
	c := &s.cfg.quarantine
	if !c.enabled() {
		return nil
	}
	db, err := s.database()
	if err != nil {
		return err
	}
	eng, err := quarantine.New(context.Background(), quarantine.Config{DB: db, Policy: c.policy, Log: s.log})
	if err != nil {
		return err
	}
	s.quarantine = eng
	s.ev.SetObserver(quarantineObserver{eng: eng, attr: s.attributor})
	s.add("quarantine", newLoop(eng.Serve))
	if s.cfg.dns.Listen != "" {
		if len(c.noticeIPs) == 0 {
			return errors.New("--quarantine-policy with the DNS shim needs --notice-ip: the address quarantined clients are sent to")
		}
		s.cfg.dns.Garden = eng
		s.cfg.dns.NoticeIPs = c.noticeIPs
	}
	if c.noticeListen != "" {
		n, err := notice.New(notice.Config{Listen: c.noticeListen, ISP: c.ispName, Log: s.log}, eng)
		if err != nil {
			return fmt.Errorf("--notice-listen: %w", err)
		}
		s.add("notice", n)
	}
	var nftErrors atomic.Uint64
	for _, t := range c.nftSets {
		sy, err := nftset.New(t)
		if err != nil {
			return fmt.Errorf("--nft-set: %w", err)
		}
		eng.Watch(func(snap *quarantine.Snapshot) {
			if err := sy.Sync(snapshotAddrs(snap)); err != nil {
				nftErrors.Add(1)
				s.log.Error().Str("event", "nft_error").Str("set", t.String()).Err(err).Msg("quarantine: nftables set not updated")
			}
		})
	}
	m := s.metrics
	m.counter("wormsink_quarantine_nft_errors_total", "Updates of a --nft-set that failed (retried at the next change).", nftErrors.Load)
	m.gauge("wormsink_quarantine_subjects", "Subscribers and addresses in quarantine now.", func() float64 { return float64(eng.Stats().Quarantined) })
	m.gauge("wormsink_quarantine_addresses", "Addresses the quarantine is enforced on now.", func() float64 { return float64(eng.Stats().Addresses) })
	m.counter("wormsink_quarantine_entries_total", "Entries into quarantine (by policy or by hand).", func() uint64 { return eng.Stats().Entries })
	m.counterVec("wormsink_quarantine_releases_total", "Releases from quarantine by kind (self, admin, auto).", "kind", map[string]func() uint64{
		quarantine.ReleaseSelf:  func() uint64 { return eng.Stats().Releases[quarantine.ReleaseSelf] },
		quarantine.ReleaseAdmin: func() uint64 { return eng.Stats().Releases[quarantine.ReleaseAdmin] },
		quarantine.ReleaseAuto:  func() uint64 { return eng.Stats().Releases[quarantine.ReleaseAuto] },
	})
	m.counterVec("wormsink_quarantine_sightings_ignored_total", "Sightings the policy would act on but did not, by reason (grace, ambiguous subscriber, never network, engine behind).", "reason", map[string]func() uint64{
		"grace":     func() uint64 { return eng.Stats().InGrace },
		"ambiguous": func() uint64 { return eng.Stats().Ambiguous },
		"excluded":  func() uint64 { return eng.Stats().Excluded },
		"dropped":   func() uint64 { return eng.Stats().Dropped },
	})
	return nil
}

// snapshotAddrs lists the addresses a snapshot enforces.
func snapshotAddrs(snap *quarantine.Snapshot) []netip.Addr {
	addrs := make([]netip.Addr, 0, len(snap.ByAddr))
	for a := range snap.ByAddr {
		addrs = append(addrs, a)
	}
	return addrs
}

// nftTargets is the repeatable --nft-set.
type nftTargets []nftset.Target

func (l *nftTargets) String() string {
	s := make([]string, len(*l))
	for i, t := range *l {
		s[i] = t.String()
	}
	return strings.Join(s, ",")
}

func (l *nftTargets) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		t, err := nftset.ParseTarget(p)
		if err != nil {
			return err
		}
		*l = append(*l, t)
	}
	return nil
}
