package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"wormsink/dnsblock"
)

// The listeners of serve. Each add* binds its sockets in newServer (before
// privileges are dropped), registers its metrics and appends a part that
// serves until the context ends.

func (s *server) addDNS() error {
	if s.cfg.dnsListen == "" {
		return nil
	}
	srv, err := dnsblock.New(dnsblock.Config{
		Listen:      s.cfg.dnsListen,
		Upstreams:   s.cfg.upstreams,
		SinkholeIPs: s.cfg.sinkholeIPs,
		TTL:         s.cfg.ttl,
		CacheSize:   s.cfg.cacheSize,
		Allow:       s.cfg.allow,
	}, s.store, s.ev, s.log)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	s.closers = append(s.closers, func() { srv.Shutdown(context.Background()) })
	m := s.metrics
	m.counterVec("wormsink_dns_queries_total", "DNS queries by outcome.", "outcome", map[string]func() uint64{
		"sinkholed": func() uint64 { return srv.Stats().Sinkholed },
		"forwarded": func() uint64 { return srv.Stats().Forwarded },
		"cache_hit": func() uint64 { return srv.Stats().CacheHits },
		"refused":   func() uint64 { return srv.Stats().Refused },
		"servfail":  func() uint64 { return srv.Stats().ServFail },
		"formerr":   func() uint64 { return srv.Stats().FormErr },
		"notimp":    func() uint64 { return srv.Stats().NotImp },
		"dropped":   func() uint64 { return srv.Stats().Dropped },
	})
	m.counter("wormsink_dns_upstream_errors_total", "Upstream attempts that failed or timed out.", func() uint64 { return srv.Stats().UpstreamErrors })
	m.counter("wormsink_dns_upstream_strays_total", "Upstream answers dropped: unknown ID or question mismatch.", func() uint64 { return srv.Stats().UpstreamStrays })
	m.gauge("wormsink_dns_cache_entries", "Answers in the response cache.", func() float64 { return float64(srv.CacheLen()) })
	m.reg.MustRegister(latencyCollector{srv: srv, desc: prometheus.NewDesc("wormsink_dns_upstream_latency_seconds",
		"Latency of successful upstream attempts.", nil, nil)})
	s.parts = append(s.parts, part{name: "dns", run: func(ctx context.Context) error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.shutdown)
		defer cancel()
		return srv.Shutdown(sctx)
	}})
	return nil
}

// latencyCollector turns the shim's per-bucket latency counts into a
// Prometheus histogram at scrape time.
type latencyCollector struct {
	srv  *dnsblock.Server
	desc *prometheus.Desc
}

func (c latencyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c latencyCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	buckets := make(map[float64]uint64, len(dnsblock.LatencyBounds))
	var cum uint64
	for i, b := range dnsblock.LatencyBounds {
		cum += st.UpstreamLatency[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.desc, st.UpstreamLatencyCount(), st.UpstreamLatencySum.Seconds(), buckets)
}

func (s *server) addTFTP() error    { return nil }
func (s *server) addCapture() error { return nil }
