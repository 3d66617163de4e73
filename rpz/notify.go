package rpz

import (
	"context"
	"net"
	"time"

	"github.com/miekg/dns"
)

// notifyAll tells every --rpz-notify secondary of z's serial (RFC 1996),
// each in its own goroutine so one that is down does not delay the rest.
func (s *Server) notifyAll(ctx context.Context, z *zone) {
	for _, addr := range s.cfg.Notify {
		s.notifyWG.Add(1)
		go func() {
			defer s.notifyWG.Done()
			s.notify(ctx, addr, z)
		}()
	}
}

// notify sends one NOTIFY and retries, doubling the wait, until the
// secondary answers, a newer serial supersedes this one, or the attempts
// run out.
func (s *Server) notify(ctx context.Context, addr string, z *zone) {
	c := &dns.Client{Net: "udp", Timeout: s.cfg.NotifyTimeout}
	if src := s.cfg.NotifySource; src.IsValid() {
		// From the primary's own address: BIND ("refused notify from
		// non-primary") and Unbound drop a NOTIFY from any other.
		c.Dialer = &net.Dialer{Timeout: s.cfg.NotifyTimeout, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	}
	wait := s.cfg.NotifyTimeout
	for attempt := 1; attempt <= s.cfg.NotifyAttempts; attempt++ {
		if s.current(z).serial != z.serial {
			return // a newer serial has its own NOTIFY
		}
		m := new(dns.Msg)
		m.SetNotify(z.origin)
		m.Answer = []dns.RR{z.soa()}
		s.stats.notifySent.Add(1)
		r, _, err := c.ExchangeContext(ctx, m, addr)
		if err == nil && r.Opcode == dns.OpcodeNotify && r.Rcode == dns.RcodeSuccess {
			s.stats.notifyAcked.Add(1)
			s.log.Debug().Str("event", "rpz_notify").Str("secondary", addr).Uint32("serial", z.serial).Msg("notify acknowledged")
			return
		}
		why := "no answer"
		if err != nil {
			why = err.Error()
		} else if r != nil {
			why = dns.RcodeToString[r.Rcode]
		}
		if attempt == s.cfg.NotifyAttempts {
			s.stats.notifyGivenUp.Add(1)
			s.log.Warn().Str("event", "rpz_notify_failed").Str("secondary", addr).Uint32("serial", z.serial).
				Int("attempts", attempt).Str("error", why).Msg("secondary never acknowledged NOTIFY; it will find the serial at its SOA refresh")
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait *= 2
	}
}
