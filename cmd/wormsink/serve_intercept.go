package main

import (
	"flag"
	"fmt"
	"net"

	"wormsink/sinkhole"
)

// Transparent TFTP interception: --tftp-intercept binds the sockets an
// nftables tproxy rule steers customer UDP/69 to.

func interceptFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.StringVar(&c.tftpIntercept, "tftp-intercept", "", `UDP address of the transparent TFTP interceptor that an nftables tproxy rule points at, e.g. :6969 (needs CAP_NET_ADMIN or CAP_NET_RAW); "" disables it`)
	fs.StringVar(&c.tftpInterceptPolicy, "tftp-intercept-policy", "pass", "intercepted requests for files no signature names: pass (on to the server asked) or refuse")
}

func (c *serveConfig) completeIntercept() error {
	if _, err := sinkhole.ParsePolicy(c.tftpInterceptPolicy); err != nil {
		return fmt.Errorf("--tftp-intercept-policy: %v", err)
	}
	if c.tftpIntercept == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.tftpIntercept); err != nil {
		return fmt.Errorf("--tftp-intercept %q: %v", c.tftpIntercept, err)
	}
	return nil
}

func (s *server) addIntercept() error {
	if s.cfg.tftpIntercept == "" {
		return nil
	}
	policy, _ := sinkhole.ParsePolicy(s.cfg.tftpInterceptPolicy)
	cfg := s.cfg.tftp
	cfg.Listen = s.cfg.tftpIntercept
	// Bound now, while the capabilities for IP_TRANSPARENT are there.
	in, err := sinkhole.NewInterceptor(cfg, policy, s.store, s.ev, s.log)
	if err != nil {
		return fmt.Errorf("tftp-intercept: %w", err)
	}
	s.add("tftp-intercept", in)
	m := s.metrics
	st := in.Stats
	m.counterVec("wormsink_tftp_intercept_total", "Intercepted TFTP datagrams by outcome.", "outcome", map[string]func() uint64{
		"refused":   func() uint64 { return st().Refused },
		"passed":    func() uint64 { return st().Passed },
		"malformed": func() uint64 { return st().Malformed },
		"stray":     func() uint64 { return st().Stray },
		"direct":    func() uint64 { return st().Direct },
	})
	m.counterVec("wormsink_tftp_intercept_limited_total", "Intercepted TFTP requests recorded but dropped, by limit.", "limit", map[string]func() uint64{
		"source": func() uint64 { return st().SourceLimited },
		"total":  func() uint64 { return st().TotalLimited },
	})
	m.counterVec("wormsink_tftp_intercept_sent_total", "Datagrams the interceptor sent from another host's address.", "kind", map[string]func() uint64{
		"refusal": func() uint64 { return st().Replies },
		"forward": func() uint64 { return st().Forwarded },
	})
	m.counter("wormsink_tftp_intercept_send_errors_total", "Refusals or forwards the kernel refused.", func() uint64 { return st().SendErrors })

	return nil
}
