package main

import (
	"flag"
	"fmt"
	"net/netip"
	"time"

	"wormsink/tapin"
)

// dnstapConfig is who may stream dnstap to --dnstap-listen and for how
// long; tapin owns the defaults.
type dnstapConfig struct {
	allow    prefixList
	maxConns int
	idle     time.Duration
}

func dnstapFlags(fs *flag.FlagSet, c *serveConfig) {
	c.dnstap.allow = tapin.DefaultAllow()
	fs.Var(&c.dnstap.allow, "dnstap-allow", "with --dnstap-listen tcp:, the networks resolvers may stream from, CIDR,...; other connections are closed unread and counted")
	fs.IntVar(&c.dnstap.maxConns, "dnstap-max-connections", tapin.DefaultMaxConns, "dnstap connections open at once; more are closed and counted")
	fs.DurationVar(&c.dnstap.idle, "dnstap-idle-timeout", tapin.DefaultIdleTimeout, "close a dnstap stream that sends nothing for this long (the resolver reconnects)")
}

// tapinConfig is the dnstap part's config, checked.
func (c *serveConfig) tapinConfig() (tapin.Config, error) {
	d := c.dnstap
	if d.maxConns < 1 {
		return tapin.Config{}, fmt.Errorf("--dnstap-max-connections %d: want 1 or more", d.maxConns)
	}
	if d.idle < time.Second {
		return tapin.Config{}, fmt.Errorf("--dnstap-idle-timeout %v: want 1s or more", d.idle)
	}
	allow := []netip.Prefix(d.allow)
	if allow == nil {
		allow = []netip.Prefix{} // an empty list allows nobody, not the default
	}
	return tapin.Config{Listen: c.feeds.dnstapListen, Allow: allow, MaxConns: d.maxConns, IdleTimeout: d.idle}, nil
}
