package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"wormsink/internal/dnsaddr"
	"wormsink/rpz"
	"wormsink/sinkhole"
	"wormsink/tapin"
)

// feedConfig is the deployment inside the ISP's own resolvers: wormsink as
// the RPZ primary they follow, and their dnstap streams as evidence.
type feedConfig struct {
	rpzListen    string
	rpzZone      string
	rpzJournal   int
	rpzNotify    addrPortList
	rpzAllow     prefixList
	rpzUnsigned  prefixList
	rpzTSIG      string
	rpzTSIGFile  string
	rpzKey       *rpz.Key
	notifySource netip.Addr
	dnstapListen string
}

func feedFlags(fs *flag.FlagSet, c *feedConfig) {
	fs.Var((*listenAddr)(&c.rpzListen), "rpz-listen", "UDP and TCP address of the RPZ primary: SOA, AXFR, IXFR of the signature set (default off)")
	fs.StringVar(&c.rpzZone, "rpz-zone", rpz.DefaultZone, "name of the policy zone the RPZ primary serves")
	fs.IntVar(&c.rpzJournal, "rpz-journal", rpz.DefaultJournal, "serials of changes kept for IXFR; older secondaries get AXFR")
	fs.Var(&c.rpzNotify, "rpz-notify", "secondaries sent a NOTIFY after every new serial, IP[:port],... (port 53 when left out; addresses, not host names)")
	c.rpzAllow.Set("127.0.0.0/8,::1/128")
	fs.Var(&c.rpzAllow, "rpz-allow", "who may query and transfer the policy zone, CIDR,...; others get REFUSED")
	fs.Var((*unicastAddr)(&c.notifySource), "rpz-notify-source", "address NOTIFY leaves from; secondaries accept it only from their primary's address (default: the --rpz-listen address; set it when that is a wildcard)")
	fs.StringVar(&c.rpzTSIG, "rpz-tsig", "", "NAME:ALGORITHM:BASE64SECRET: transfers only to requests signed with this key (hmac-sha256 or stronger); others get NOTAUTH. Visible in ps: prefer --rpz-tsig-file")
	fs.StringVar(&c.rpzTSIGFile, "rpz-tsig-file", "", "file holding the --rpz-tsig key: a NAME:ALGORITHM:BASE64SECRET line or a tsig-keygen key clause; read once at start, before privileges are dropped")
	fs.Var(&c.rpzUnsigned, "rpz-allow-unsigned", "with --rpz-tsig: sources (CIDR,...) that may still transfer unsigned, for resolvers that cannot sign (Unbound)")
	fs.StringVar(&c.dnstapListen, "dnstap-listen", "", "unix:PATH or tcp:ADDR: take resolvers' dnstap streams; client lookups of listed names become dns_lookup evidence (default off)")
}

func (c *feedConfig) enabled() bool { return c.rpzListen != "" || c.dnstapListen != "" }

// completeFeeds checks the feed flags; the RPZ primary needs sinkhole
// addresses for its local data, derived like the shim's.
func (c *serveConfig) completeFeeds() error {
	f := &c.feeds
	if f.dnstapListen != "" {
		if n, a, ok := strings.Cut(f.dnstapListen, ":"); !ok || a == "" || n != "unix" && n != "tcp" {
			return fmt.Errorf("--dnstap-listen %q: want unix:PATH or tcp:ADDR", f.dnstapListen)
		}
	}
	if f.rpzListen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(f.rpzListen); err != nil {
		return fmt.Errorf("--rpz-listen %q: %v", f.rpzListen, err)
	}
	if f.rpzJournal < 0 {
		return fmt.Errorf("--rpz-journal %d: want 0 or more", f.rpzJournal)
	}
	switch {
	case f.rpzTSIG != "" && f.rpzTSIGFile != "":
		return errors.New("--rpz-tsig and --rpz-tsig-file: give one key")
	case f.rpzTSIG != "":
		k, err := rpz.ParseKey(f.rpzTSIG)
		if err != nil {
			return fmt.Errorf("--rpz-tsig: %v", err)
		}
		f.rpzKey = &k
	case f.rpzTSIGFile != "":
		k, err := rpz.ReadKeyFile(f.rpzTSIGFile)
		if err != nil {
			return fmt.Errorf("--rpz-tsig-file: %v", err)
		}
		f.rpzKey = &k
	case len(f.rpzUnsigned) > 0:
		return errors.New("--rpz-allow-unsigned needs --rpz-tsig-file (without a key every allowed source transfers unsigned)")
	}
	if len(c.dns.SinkholeIPs) == 0 {
		if c.dns.SinkholeIPs = sinkhole.AnswerAddrs(c.tftpListen); len(c.dns.SinkholeIPs) == 0 {
			return errors.New("--sinkhole-ip is needed for the policy zone's local data: --tftp-listen names no address to derive it from")
		}
	}
	return nil
}

func (s *server) addRPZ() error {
	f := &s.cfg.feeds
	if f.rpzListen == "" {
		return nil
	}
	notice, passthru, err := s.rpzGarden()
	if err != nil {
		return err
	}
	journal := f.rpzJournal
	if journal == 0 {
		journal = -1 // the flag's 0 means no journal; rpz.Config's 0 means the default
	}
	srv, err := rpz.New(rpz.Config{
		Listen: f.rpzListen, Zone: f.rpzZone, Journal: journal, Notify: f.rpzNotify, NotifySource: f.notifySource,
		Allow: f.rpzAllow, Key: f.rpzKey, Unsigned: f.rpzUnsigned, Sinkhole: s.cfg.dns.SinkholeIPs,
		Notice: notice, Passthru: passthru,
	}, s.store, s.log)
	if err != nil {
		return err
	}
	s.watchRPZGarden(srv)
	for k, kn := range rpz.Kinds {
		for r, rn := range rpz.Results {
			s.metrics.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "wormsink_rpz_requests_total", Help: "Requests to the RPZ primary by type (soa, axfr, ixfr, other) and result.",
				ConstLabels: prometheus.Labels{"type": kn, "result": rn},
			}, func() float64 { return float64(srv.Stats().Requests[k][r]) }))
		}
	}
	s.metrics.counter("wormsink_rpz_notify_sent_total", "NOTIFY messages sent to secondaries, retries included.", func() uint64 { return srv.Stats().NotifySent })
	s.metrics.counter("wormsink_rpz_notify_acknowledged_total", "NOTIFY messages secondaries answered.", func() uint64 { return srv.Stats().NotifyAcked })
	s.metrics.counter("wormsink_rpz_notify_given_up_total", "Serials a secondary never acknowledged after every retry.", func() uint64 { return srv.Stats().NotifyGivenUp })
	s.metrics.gauge("wormsink_rpz_serial", "SOA serial of the policy zone served.", func() float64 { return float64(srv.Serial()) })
	s.metrics.gauge("wormsink_rpz_transfers", "Zone transfers in progress.", func() float64 { return float64(srv.Transfers()) })
	s.metrics.counter("wormsink_rpz_transfers_limited_total", "Transfers refused over the cap on transfers in progress, in all or per client.", func() uint64 { return srv.Stats().TransfersLimited })
	s.metrics.gauge("wormsink_rpz_connections", "TCP connections to the RPZ primary held.", func() float64 { return float64(srv.Conns()) })
	s.metrics.counter("wormsink_rpz_connections_rejected_total", "TCP connections to the RPZ primary closed at once: from outside --rpz-allow, or over the cap in all or per client.", func() uint64 {
		st := srv.Stats()
		return st.ConnsRefused + st.ConnsRejected
	})
	s.add("rpz", srv)
	return nil
}

func (s *server) addDNSTap() error {
	if s.cfg.feeds.dnstapListen == "" {
		return nil
	}
	cfg, err := s.cfg.tapinConfig()
	if err != nil {
		return err
	}
	srv, err := tapin.New(cfg, s.store, s.ev, s.log)
	if err != nil {
		return err
	}
	st := srv.Stats
	s.metrics.counter("wormsink_dnstap_connections_total", "dnstap streams accepted.", func() uint64 { return st().Connections })
	s.metrics.gauge("wormsink_dnstap_connections", "dnstap streams open.", func() float64 { return float64(st().Active) })
	s.metrics.counter("wormsink_dnstap_frames_total", "dnstap data frames read.", func() uint64 { return st().Frames })
	s.metrics.counter("wormsink_dnstap_lookups_total", "Client lookups of listed names recorded as dns_lookup evidence.", func() uint64 { return st().Lookups })
	s.metrics.counter("wormsink_dnstap_skipped_total", "dnstap frames of other message types, or responses to queries already counted.", func() uint64 { return st().Skipped })
	s.metrics.counter("wormsink_dnstap_unparsed_total", "Client messages in dnstap frames whose question could not be read.", func() uint64 { return st().Unparsed })
	s.metrics.counter("wormsink_dnstap_errors_total", "dnstap streams closed for a malformed frame or a failed handshake.", func() uint64 { return st().Errors })
	s.metrics.counterVec("wormsink_dnstap_closed_total", "dnstap connections closed by wormsink, by reason: refused (outside --dnstap-allow), busy (--dnstap-max-connections open), idle (--dnstap-idle-timeout).", "reason", map[string]func() uint64{
		"refused": func() uint64 { return st().Refused },
		"busy":    func() uint64 { return st().Busy },
		"idle":    func() uint64 { return st().Idle },
	})
	s.metrics.counter("wormsink_dnstap_bad_time_total", "dnstap frames dated more than 5 minutes from now: recorded at the time they were received.", func() uint64 { return st().BadTime })
	s.metrics.counter("wormsink_dnstap_not_host_total", "Lookups in dnstap frames from the unspecified, broadcast or multicast address: not recorded.", func() uint64 { return st().NotHost })
	s.log.Info().Str("event", "dnstap_start").Str("listen", s.cfg.feeds.dnstapListen).Msg("taking dnstap streams")
	s.add("dnstap", srv)
	return nil
}

// addrPortList is the --rpz-notify flag: comma-separated IP[:port], read
// by dnsaddr.
type addrPortList []string

func (l *addrPortList) String() string { return strings.Join(*l, ",") }

func (l *addrPortList) Set(v string) error {
	aps, err := dnsaddr.ParseList(v)
	if err != nil {
		return err
	}
	*l = (*l)[:0]
	for _, ap := range aps {
		*l = append(*l, ap.String())
	}
	return nil
}

// unicastAddr is a flag holding one unicast IP address (unset: invalid).
type unicastAddr netip.Addr

func (a *unicastAddr) String() string {
	if !netip.Addr(*a).IsValid() {
		return ""
	}
	return netip.Addr(*a).String()
}

func (a *unicastAddr) Set(v string) error {
	ip, err := netip.ParseAddr(strings.TrimSpace(v))
	if err != nil || ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Errorf("%q: want one unicast IP address of this machine", v)
	}
	*a = unicastAddr(ip.Unmap())
	return nil
}
