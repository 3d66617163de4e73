package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"wormsink/evidence"
	"wormsink/signatures"
)

// serveMetrics holds what serve itself counts; the listeners' own counters
// are read through CounterFuncs, so their packages need no Prometheus.
type serveMetrics struct {
	reg        *prometheus.Registry
	reloads    *prometheus.CounterVec
	lastReload atomic.Int64 // unix seconds
}

func newServeMetrics(reg *prometheus.Registry, store *signatures.Store, ev *evidence.Writer) *serveMetrics {
	m := &serveMetrics{reg: reg}
	m.lastReload.Store(time.Now().Unix())
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wormsink_signature_reloads_total", Help: "Signature reload attempts by result (ok, failed).",
	}, []string{"result"})
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	reg.MustRegister(m.reloads)
	m.gauge("wormsink_signature_serial", "Serial of the signature set in service.", func() float64 { return float64(store.Current().Serial()) })
	m.gauge("wormsink_signature_names", "Names listed by the signature set in service.", func() float64 { return float64(store.Current().Stats().Domains) })
	m.gauge("wormsink_signature_last_reload_timestamp_seconds", "When the signature set in service was loaded.", func() float64 { return float64(m.lastReload.Load()) })
	m.counter("wormsink_evidence_sightings_total", "Sightings recorded (sum of counts).", func() uint64 { return ev.Stats().Sightings })
	m.counter("wormsink_evidence_lines_total", "Evidence lines written.", func() uint64 { return ev.Stats().Lines })
	m.counter("wormsink_evidence_folded_total", "Sightings folded into another line's count.", func() uint64 {
		st := ev.Stats()
		if st.Sightings < st.Lines {
			return 0
		}
		return st.Sightings - st.Lines
	})
	m.counter("wormsink_evidence_coarse_total", "Sightings folded per host because the detailed table was full.", func() uint64 { return ev.Stats().Coarse })
	m.counter("wormsink_evidence_overflow_total", "Sightings counted without a host because every table was full.", func() uint64 { return ev.Stats().Overflow })
	m.counter("wormsink_evidence_write_errors_total", "Failed writes of the evidence log.", func() uint64 { return ev.Stats().Errors })
	m.counter("wormsink_evidence_aggregated_total", "Sightings folded into network lines (per event, signature and /24 or /48) because the evidence line budget was spent.", func() uint64 { return ev.Stats().Aggregated })
	m.counter("wormsink_evidence_excluded_total", "Sightings of the machine's own addresses, --exclude networks and non-hosts (unspecified, broadcast, multicast), not recorded.", func() uint64 { return ev.Stats().Excluded })
	m.counter("wormsink_evidence_host_folded_total", "Sightings folded into their host's summary line because it had opened its detailed lines for the event and signature.", func() uint64 { return ev.Stats().HostFolded })
	return m
}

func (m *serveMetrics) gauge(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func (m *serveMetrics) counter(name, help string, f func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) }))
}

// counterVec exposes several counters of one name told apart by one label.
func (m *serveMetrics) counterVec(name, help, label string, values map[string]func() uint64) {
	for v, f := range values {
		f := f
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: name, Help: help, ConstLabels: prometheus.Labels{label: v},
		}, func() float64 { return float64(f()) }))
	}
}

func (m *serveMetrics) reloadOK(at time.Time) {
	m.reloads.WithLabelValues("ok").Inc()
	m.lastReload.Store(at.Unix())
}

func (m *serveMetrics) reloadFailed() { m.reloads.WithLabelValues("failed").Inc() }

func (s *server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		set := s.store.Current()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ok serial %d\n", set.Serial())
	})
	return mux
}
