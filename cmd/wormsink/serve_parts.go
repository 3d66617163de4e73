package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"wormsink/dnsblock"
	"wormsink/signatures"
	"wormsink/sinkhole"
	"wormsink/wire"
)

// The parts of serve. Each add* binds its sockets in newServer (before
// privileges are dropped), registers its metrics and appends a part that
// serves until the context ends.

// addReload appends the part that reloads the signatures on SIGHUP (hup)
// and, every --watch-interval, when the file changed.
func (s *server) addReload(hup <-chan os.Signal) {
	s.add("reload", newLoop(func(ctx context.Context) error {
		if s.cfg.watch > 0 && s.store.Path() != "" {
			watched := make(chan struct{})
			defer func() { <-watched }()
			go func() {
				defer close(watched)
				s.store.Watch(ctx, s.cfg.watch, s.logReload)
			}()
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				r, err := s.store.Reload()
				if errors.Is(err, signatures.ErrUnchanged) {
					s.log.Info().Str("event", "reload").Uint64("old_serial", r.OldSerial).Uint64("new_serial", r.NewSerial).Msg("signature file unchanged")
					continue
				}
				s.logReload(r, err)
			}
		}
	}))
}

// addReopen appends the part that reopens the log file on SIGUSR1, so
// logrotate can move it away (postrotate: kill -USR1).
func (s *server) addReopen(usr1 <-chan os.Signal) {
	s.add("reopen", newLoop(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-usr1:
				if s.logFile == nil {
					s.log.Info().Str("event", "reopen").Msg("log is standard output: nothing to reopen")
					continue
				}
				// Lines folded so far go to the old file, and the new
				// one starts with the line saying it was reopened.
				s.ev.Flush()
				if err := s.logFile.Reopen(); err != nil {
					s.log.Error().Str("event", "reopen_failed").Str("error", err.Error()).Msg("log not reopened; still writing to the old file")
					continue
				}
				s.log.Info().Str("event", "reopen").Str("log", s.cfg.logFile).Msg("log reopened")
			}
		}
	}))
}

// logReload logs and counts one reload attempt.
func (s *server) logReload(r signatures.Reload, err error) {
	if err != nil {
		s.metrics.reloadFailed()
		s.log.Error().Str("event", "reload_failed").Uint64("serial", r.OldSerial).Uint64("offered_serial", r.NewSerial).
			Str("error", err.Error()).Msg("signature reload failed; the set in service is kept")
		return
	}
	s.metrics.reloadOK(r.At)
	s.log.Info().Str("event", "reload").Uint64("old_serial", r.OldSerial).Uint64("new_serial", r.NewSerial).
		Int("names", r.Stats.Domains).Int("tftp_files", r.Stats.TFTPFiles).Int("payload_rules", r.Stats.Payloads).
		Msg("signatures reloaded")
}

// addMetrics binds --metrics-listen and appends the part that serves
// /metrics and /healthz on it.
func (s *server) addMetrics() error {
	if s.cfg.metricsListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.metricsListen)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.closers = append(s.closers, func() { ln.Close() })
	srv := &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.add("metrics", newLoop(func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		select {
		case err := <-served:
			return err // Serve never returns nil
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.shutdown)
		defer cancel()
		srv.Shutdown(sctx)
		<-served
		return nil
	}))
	return nil
}

func (s *server) addDNS() error {
	if s.cfg.dns.Listen == "" {
		return nil
	}
	// Bound now (port 53 may need root); served after privileges are
	// dropped, so no query is parsed as root.
	srv, err := dnsblock.New(s.cfg.dns, s.store, s.ev, s.log)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	s.add("dns", srv)
	m := s.metrics
	m.counterVec("wormsink_dns_queries_total", "DNS queries by outcome.", "outcome", map[string]func() uint64{
		"sinkholed": func() uint64 { return srv.Stats().Sinkholed },
		// A quarantined client's answers: the notice page, or forwarded
		// because the name is allowed.
		"walled_garden":  func() uint64 { return srv.Stats().Gardened },
		"garden_allowed": func() uint64 { return srv.Stats().GardenPassed },
		"forwarded":      func() uint64 { return srv.Stats().Forwarded },
		"cache_hit":      func() uint64 { return srv.Stats().CacheHits },
		"refused":        func() uint64 { return srv.Stats().Refused },
		"servfail":       func() uint64 { return srv.Stats().ServFail },
		"formerr":        func() uint64 { return srv.Stats().FormErr },
		"notimp":         func() uint64 { return srv.Stats().NotImp },
		"dropped":        func() uint64 { return srv.Stats().Dropped },
	})
	m.counter("wormsink_dns_upstream_errors_total", "Upstream attempts that failed or timed out.", func() uint64 { return srv.Stats().UpstreamErrors })
	m.counter("wormsink_dns_upstream_strays_total", "Upstream answers dropped: unknown ID or question mismatch.", func() uint64 { return srv.Stats().UpstreamStrays })
	m.gauge("wormsink_dns_cache_entries", "Answers in the response cache.", func() float64 { return float64(srv.CacheLen()) })
	// Hardening (issue 10): fail-closed answers, overload and the cache's bytes.
	m.counter("wormsink_dns_unchecked_total", "Upstream answers the policy could not check; the client got SERVFAIL.", func() uint64 { return srv.Stats().Unchecked })
	m.counter("wormsink_dns_merged_total", "Forwards that shared an identical query already in progress.", func() uint64 { return srv.Stats().Merged })
	m.counterVec("wormsink_dns_overload_total", "Queries and connections shed under load, by reason.", "reason", map[string]func() uint64{
		"jostled":        func() uint64 { return srv.Stats().Jostled },
		"client_limited": func() uint64 { return srv.Stats().ClientLimited },
		"byte_budget":    func() uint64 { return srv.Stats().BudgetLimited },
		"tcp_evicted":    func() uint64 { return srv.Stats().TCPEvicted },
		"tcp_rejected":   func() uint64 { return srv.Stats().TCPRejected },
	})
	m.gauge("wormsink_dns_tcp_connections", "Client TCP connections held.", func() float64 { return float64(srv.TCPConns()) })
	m.gauge("wormsink_dns_inflight_bytes", "Bytes the forwards in progress hold, counted against their byte budget.", func() float64 { return float64(srv.InflightBytes()) })
	m.gauge("wormsink_dns_cache_bytes", "Bytes of answers held by the response cache (counted against --cache-bytes).", func() float64 { return float64(srv.CacheBytes()) })
	m.reg.MustRegister(latencyCollector{srv: srv, desc: prometheus.NewDesc("wormsink_dns_upstream_latency_seconds",
		"Latency of successful upstream attempts.", nil, nil)})

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

func (s *server) addTFTP() error {
	if s.cfg.tftpListen == "" {
		return nil
	}
	cfg := s.cfg.tftp
	cfg.Listen = s.cfg.tftpListen
	srv, err := sinkhole.New(cfg, s.store, s.ev, s.log)
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	s.add("tftp", srv)
	m := s.metrics
	st := srv.Stats
	m.counterVec("wormsink_tftp_requests_total", "TFTP datagrams by outcome: refused (a signature's file), unknown (another file), write, malformed, stray.", "outcome", map[string]func() uint64{
		"refused":   func() uint64 { return st().Refused },
		"unknown":   func() uint64 { return st().Unknown },
		"write":     func() uint64 { return st().Writes },
		"malformed": func() uint64 { return st().Malformed },
		"stray":     func() uint64 { return st().Stray },
	})
	m.counterVec("wormsink_tftp_rate_limited_total", "TFTP requests recorded but not answered, by limit.", "limit", map[string]func() uint64{
		"source": func() uint64 { return st().SourceLimited },
		"total":  func() uint64 { return st().TotalLimited },
	})
	m.counter("wormsink_tftp_replies_total", "TFTP ERROR replies sent.", func() uint64 { return st().Replies })
	m.counter("wormsink_tftp_replies_truncated_total", "TFTP replies cut to the size of their request.", func() uint64 { return st().Truncated })
	m.counter("wormsink_tftp_panics_total", "Panics recovered in the TFTP server.", func() uint64 { return st().Panics })
	m.counter("wormsink_tftp_socket_errors_total", "TFTP socket read and write errors.", func() uint64 { return st().Errors })
	// proof of the source address
	m.counter("wormsink_tftp_exchanges_total", "TFTP requesters that answered every round's probe from their own address and port, each to the probe's fresh port (proof exchange unless withheld).", func() uint64 { return st().Exchanged })
	m.counter("wormsink_tftp_exchange_probes_total", "TFTP probes sent (an empty DATA block 0 from a fresh port: no byte of any file).", func() uint64 { return st().Probes })
	m.counter("wormsink_tftp_exchange_partial_total", "TFTP requesters that answered some rounds but not all (a client that keeps to the first port it hears from): the sighting stays a datagram.", func() uint64 { return st().Partial })
	m.counter("wormsink_tftp_exchange_withheld_total", "TFTP requesters that answered every round but did not earn proof exchange because a guessed port (a decoy, or another requester's port) was seen near them.", func() uint64 { return st().Withheld })
	m.counter("wormsink_tftp_exchange_guesses_total", "Datagrams on a TFTP refusal's decoy ports, or on a refusal's port from an address other than its requester's: port guesses.", func() uint64 { return st().Guesses })
	m.counter("wormsink_tftp_exchange_busy_total", "TFTP refusals sent from the listening port because every fresh port was in use (the sighting stays a datagram).", func() uint64 { return st().ExchangeBusy })

	return nil
}
func (s *server) addCapture() error {
	if s.cfg.capture == "" {
		return nil
	}
	c, err := wire.NewCapture(s.cfg.capture, wire.CaptureConfig{
		Sigs: s.store, Rec: s.ev, Workers: s.cfg.captureWorkers, RingMB: s.cfg.captureRingMB, Promisc: true,
	})
	if err != nil {
		return fmt.Errorf("capture: %w", captureHint(s.cfg.capture, err))
	}
	st := c.Stats
	s.metrics.counter("wormsink_capture_packets_total", "Frames read from the capture socket.", func() uint64 { return st().Packets })
	s.metrics.counter("wormsink_capture_bytes_total", "Bytes read from the capture socket.", func() uint64 { return st().Bytes })
	s.metrics.counter("wormsink_wire_matches_total", "Evidence events from captured packets.", func() uint64 { return st().Events })
	s.metrics.counter("wormsink_capture_kernel_packets_total", "Frames the kernel filter passed (drops included).", func() uint64 { return st().KernelPackets })
	s.metrics.counter("wormsink_capture_kernel_drops_total", "Frames the kernel dropped because the capture fell behind.", func() uint64 { return st().KernelDrops })
	s.metrics.counter("wormsink_capture_stream_joined_total", "TCP segments to rule ports read together with the bytes carried from their stream's earlier segments.", func() uint64 { return st().StreamJoined })
	s.metrics.counter("wormsink_capture_stream_evicted_total", "TCP streams pushed out of a full reassembly table by others (a command open in one is read as ended).", func() uint64 { return st().StreamEvicted })
	s.metrics.counter("wormsink_capture_stream_lost_total", "Fetch commands longer than a stream's carried tail, whose start was dropped (a longer line is cut at its words and read).", func() uint64 { return st().StreamLost })
	s.metrics.gauge("wormsink_capture_stream_bytes", "Bytes the TCP reassembly tables hold at most, all capture workers together (the bound, whatever the traffic).", func() float64 { return float64(st().StreamBytes) })
	s.add("capture", c)
	return nil
}
