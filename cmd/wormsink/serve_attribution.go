package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"wormsink/attribution"
	"wormsink/evidence"
)

// Attribution: who a sighting is. RADIUS accounting and NAT logs go into
// the store (--db) and an index in front of it; every host line of the
// evidence log is attributed as it is written.
type attributionConfig struct {
	radiusListen   string
	radiusSecrets  string
	sessionTimeout time.Duration
	natTimeout     time.Duration
	natLogs        natLogList
	ipfixListen    string
	ipfixAllow     prefixList
	deterministic  string
	subscribers    string
	retention      time.Duration
	poll           time.Duration

	// Read by completeAttribution, so a bad file fails the start with one line.
	secrets *attribution.Secrets
	det     *attribution.Deterministic
	subs    *attribution.Subscribers
}

func attributionFlags(fs *flag.FlagSet, c *attributionConfig) {
	fs.Var((*listenAddr)(&c.radiusListen), "radius-acct-listen", "UDP address of the RADIUS accounting server (1813 is the usual port): sessions name the subscriber of an address (default off)")
	fs.StringVar(&c.radiusSecrets, "radius-secrets", "", `file of lines "CIDR SECRET": the NAS or proxy networks allowed to send accounting and their shared secrets`)
	fs.DurationVar(&c.sessionTimeout, "radius-session-timeout", attribution.DefaultSessionTimeout, "a session whose Stop was lost ends this long after its last Start or Interim-Update")
	fs.Var(&c.natLogs, "nat-log", "FORMAT:PATH of a NAT log followed as it grows and rotates, FORMAT ulogd-json or junos-pba (repeatable)")
	fs.DurationVar(&c.natTimeout, "nat-timeout", attribution.DefaultNATTimeout, "a NAT binding or port block whose release was lost ends this long after its last event (allocation or interim re-send)")
	fs.Var((*listenAddr)(&c.ipfixListen), "nat-ipfix-listen", "UDP address taking RFC 8158 IPFIX NAT events (default off)")
	c.ipfixAllow.Set("127.0.0.0/8,::1/128")
	fs.Var(&c.ipfixAllow, "nat-ipfix-allow", "IPFIX exporters heard, CIDR,... (a forged NAT event would name the wrong subscriber); others are dropped and counted")
	fs.StringVar(&c.deterministic, "nat-deterministic", "", `deterministic NAT (RFC 7422) rules, lines "INSIDE_CIDR PUBLIC_CIDR LO-HI [FROM [UNTIL]]"`)
	fs.StringVar(&c.subscribers, "subscribers", "", `file of lines "CIDR ID [EMAIL [LANG]]": subscribers with fixed addresses, behind RADIUS sessions (the e-mail is for the desk's notices)`)
	fs.DurationVar(&c.retention, "attribution-retention", attribution.DefaultRetention, "sessions and NAT bindings that ended longer ago are deleted")
	fs.DurationVar(&c.poll, "attribution-poll", attribution.DefaultPoll, "how often sessions and bindings other processes sharing the store (another sensor, an import) stored are read into the index")
}

func (c *attributionConfig) enabled() bool {
	return c.radiusListen != "" || len(c.natLogs) > 0 || c.ipfixListen != "" || c.deterministic != "" || c.subscribers != ""
}

func (c *attributionConfig) complete() error {
	if c.retention <= 0 {
		return fmt.Errorf("--attribution-retention %v: want more than 0 (retention is never unbounded)", c.retention)
	}
	if c.sessionTimeout <= 0 || c.natTimeout <= 0 {
		return errors.New("--radius-session-timeout and --nat-timeout: want more than 0")
	}
	var err error
	if c.radiusListen != "" {
		if c.radiusSecrets == "" {
			return errors.New("--radius-acct-listen needs --radius-secrets")
		}
		if c.secrets, err = attribution.LoadSecrets(c.radiusSecrets); err != nil {
			return fmt.Errorf("--radius-secrets: %v", err)
		}
	}
	if c.deterministic != "" {
		if c.det, err = attribution.LoadDeterministic(c.deterministic); err != nil {
			return fmt.Errorf("--nat-deterministic: %v", err)
		}
	}
	if c.subscribers != "" {
		if c.subs, err = attribution.LoadSubscribers(c.subscribers); err != nil {
			return fmt.Errorf("--subscribers: %v", err)
		}
	}
	return nil
}

// natLogList is the repeatable --nat-log FORMAT:PATH.
type natLogList []attribution.NATLog

func (l *natLogList) String() string {
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = n.Format + ":" + n.Path
	}
	return strings.Join(s, ",")
}

func (l *natLogList) Set(v string) error {
	n, err := attribution.ParseNATLog(v)
	if err != nil {
		return err
	}
	*l = append(*l, n)
	return nil
}

// evidenceAttributor adapts the index to the evidence writer.
type evidenceAttributor struct{ a *attribution.Attributor }

func (e evidenceAttributor) Attribute(host netip.Addr, port uint16, t time.Time) evidence.Attribution {
	r := e.a.Lookup(host, port, t)
	return evidence.Attribution{Subscriber: r.Subscriber, NATInside: r.Inside, Candidates: r.Candidates}
}

// addAttribution opens the store, loads the index and binds the RADIUS
// and IPFIX sockets.
func (s *server) addAttribution() error {
	c := &s.cfg.attribution
	if !c.enabled() {
		return nil
	}
	ctx := context.Background()
	db, err := s.database()
	if err != nil {
		return err
	}
	a, err := attribution.New(ctx, attribution.Config{DB: db, Retention: c.retention, SessionTimeout: c.sessionTimeout,
		NATTimeout: c.natTimeout, Subscribers: c.subs, Deterministic: c.det, Poll: c.poll, Log: s.log, OnStart: s.subscriberStarted})
	if err != nil {
		return err
	}
	sessions, bindings := a.Index().Len()
	s.log.Info().Str("event", "attribution_loaded").Int("sessions", sessions).Int("bindings", bindings).Msg("attribution index loaded from the store")
	s.attributor = evidenceAttributor{a}
	s.ev.SetAttributor(s.attributor)
	s.add("attribution", newLoop(a.Serve))
	m := s.metrics
	m.counter("wormsink_attribution_accounting_total", "RADIUS accounting records stored.", func() uint64 { return a.Stats().AcctRecords })
	m.counter("wormsink_attribution_nat_events_total", "NAT events stored.", func() uint64 { return a.Stats().NATEvents })
	m.counter("wormsink_attribution_nat_unmatched_total", "NAT releases that named no open binding.", func() uint64 { return a.Stats().NATUnmatched })
	m.counter("wormsink_attribution_write_errors_total", "Batches of attribution records the store refused.", func() uint64 { return a.Stats().Errors })
	m.counter("wormsink_attribution_polled_total", "Sessions and NAT bindings read from other processes sharing the store.", func() uint64 { return a.Stats().Polled })
	m.counter("wormsink_attribution_poll_errors_total", "Looks for other processes' writes that failed (retried at the next).", func() uint64 { return a.Stats().PollErrors })

	if c.radiusListen != "" {
		r, err := attribution.NewRADIUS(attribution.RADIUSConfig{Secrets: c.secrets, Log: s.log, Listen: c.radiusListen}, a)
		if err != nil {
			return fmt.Errorf("--radius-acct-listen: %w", err)
		}
		s.add("radius", r)
		m.counterVec("wormsink_radius_requests_total", "RADIUS accounting requests by outcome.", "result", map[string]func() uint64{
			"answered":          func() uint64 { return r.Stats().Answered },
			"unknown_client":    func() uint64 { return r.Stats().UnknownClient },
			"bad_authenticator": func() uint64 { return r.Stats().BadAuthenticator },
			"malformed":         func() uint64 { return r.Stats().Malformed },
			"failed":            func() uint64 { return r.Stats().Failed },
		})
		s.log.Info().Str("event", "radius_listen").Str("addr", r.Addr().String()).Msg("RADIUS accounting server listening")
	}
	for _, l := range c.natLogs {
		st := &attribution.NATLogStats{}
		s.add("nat-log "+l.Path, newLoop(func(ctx context.Context) error { return a.FollowNATLog(ctx, l, st) }))
	}
	if c.ipfixListen != "" {
		if err := s.addIPFIX(a, c.ipfixListen); err != nil {
			return err
		}
	}
	return nil
}

// addIPFIX binds --nat-ipfix-listen.
func (s *server) addIPFIX(a *attribution.Attributor, addr string) error {
	col, err := attribution.NewIPFIX(attribution.IPFIXConfig{Allow: s.cfg.attribution.ipfixAllow, Log: s.log, Listen: addr}, a)
	if err != nil {
		return fmt.Errorf("--nat-ipfix-listen: %w", err)
	}
	s.add("ipfix", col)
	s.metrics.counterVec("wormsink_ipfix_messages_total", "IPFIX messages by outcome.", "result", map[string]func() uint64{
		"ok":        func() uint64 { return col.Stats().Messages },
		"malformed": func() uint64 { return col.Stats().Malformed },
		"refused":   func() uint64 { return col.Stats().Refused },
	})
	return nil
}
