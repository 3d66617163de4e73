package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
	"wormsink/sinkhole"
	"wormsink/wire"
)

// serveConfig is the effective configuration of serve: flags, then the
// --config file for what the command line left unset.
type serveConfig struct {
	configFile     string
	printConfig    bool
	sigFile        string
	dnsListen      string
	upstreams      stringList
	sinkholeIPs    addrList
	ttl            time.Duration
	cacheSize      int
	allow          prefixList
	tftpListen     string
	tftpSourceRate float64
	tftpTotalRate  float64
	capture        string
	logFile        string
	metricsListen  string
	sensor         string
	user           string
	watch          time.Duration
	shutdown       time.Duration

	// Live capture tuning (issue 15).
	captureWorkers int
	captureRingMB  int
}

var defaultAllow = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"

func serveFlags(e env, c *serveConfig) *flag.FlagSet {
	fs := newFlags(e, "serve", "")
	host, _ := os.Hostname()
	fs.StringVar(&c.configFile, "config", "", "YAML file whose keys are these flag names; flags on the command line win")
	fs.BoolVar(&c.printConfig, "print-config", false, "print the effective configuration and exit")
	fs.StringVar(&c.sigFile, "signatures", "", "signature file, reloaded on SIGHUP and when it changes (default: the built-in set)")
	fs.StringVar(&c.dnsListen, "dns-listen", ":53", `UDP and TCP address of the DNS shim; "" disables it`)
	fs.Var(&c.upstreams, "upstream", "recursive resolvers to forward to, host[:port],... (default: nameservers of /etc/resolv.conf)")
	fs.Var(&c.sinkholeIPs, "sinkhole-ip", "addresses in sinkhole answers, IPv4 for A and IPv6 for AAAA (default: the IP of --tftp-listen)")
	fs.DurationVar(&c.ttl, "ttl", 60*time.Second, "TTL of sinkhole answers")
	fs.IntVar(&c.cacheSize, "cache-size", 100_000, "entries in the response cache for forwarded answers; 0 turns it off")
	c.allow.Set(defaultAllow)
	fs.Var(&c.allow, "allow", "clients allowed to use the DNS shim, CIDR,...; others get REFUSED")
	fs.StringVar(&c.tftpListen, "tftp-listen", ":69", `UDP address of the fake TFTP server; "" disables it`)
	fs.Float64Var(&c.tftpSourceRate, "tftp-source-rate", sinkhole.DefaultSourceRate, "TFTP replies per second to one source (IPv4 address or IPv6 /64); requests over it are logged, not answered; negative: no limit")
	fs.Float64Var(&c.tftpTotalRate, "tftp-total-rate", sinkhole.DefaultTotalRate, "TFTP replies per second to all sources together; negative: no limit")
	fs.StringVar(&c.capture, "capture", "", "watch this live interface for worm traffic (needs CAP_NET_RAW)")
	fs.StringVar(&c.logFile, "log", "-", "evidence and service log, JSON lines; - is stdout")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "HTTP address for Prometheus /metrics and /healthz (default off)")
	fs.StringVar(&c.sensor, "sensor", host, "name recorded in every event")
	fs.StringVar(&c.user, "user", "nobody", "when started as root: user to switch to once every socket is bound")
	fs.DurationVar(&c.watch, "watch-interval", time.Second, "how often the signature file is checked for changes; 0 disables")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 4*time.Second, "how long in-flight work may take to finish on SIGTERM")
	// Live capture tuning (issue 15).
	fs.IntVar(&c.captureWorkers, "capture-workers", runtime.NumCPU(), "--capture: sockets and goroutines reading the interface, fanned out by flow")
	fs.IntVar(&c.captureRingMB, "capture-ring-mb", wire.DefaultRingMB, "--capture: memory of all capture rings together, in MiB")
	return fs
}

func runServe(ctx context.Context, e env, args []string) int {
	var c serveConfig
	fs := serveFlags(e, &c)
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(e, "serve takes no arguments (got %q)", fs.Arg(0))
	}
	if c.configFile != "" {
		if err := applyConfigFile(fs, c.configFile, "config", "print-config"); err != nil {
			return fail(e, "%v", err)
		}
	}
	if err := c.complete(); err != nil {
		return fail(e, "serve: %v", err)
	}
	if c.printConfig {
		fmt.Fprint(e.stdout, printConfig(fs, "config", "print-config"))
		return exitOK
	}
	// Catch SIGHUP before the (possibly long) start: its default action
	// would kill the process, and a reload asked for during the start is
	// carried out right after it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s, err := newServer(e, &c)
	if err != nil {
		return fail(e, "serve: %v", err)
	}
	if err := s.run(ctx, hup); err != nil {
		return fail(e, "serve: %v", err)
	}
	return exitOK
}

// complete derives defaults and checks the configuration before anything
// is bound, so a bad start fails at once with one line.
func (c *serveConfig) complete() error {
	if c.dnsListen == "" && c.tftpListen == "" && c.capture == "" {
		return errors.New("nothing to serve: --dns-listen, --tftp-listen and --capture are all off")
	}
	for _, a := range []struct{ flag, addr string }{{"dns-listen", c.dnsListen}, {"tftp-listen", c.tftpListen}, {"metrics-listen", c.metricsListen}} {
		if a.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("--%s %q: %v", a.flag, a.addr, err)
		}
	}
	if c.captureWorkers < 1 || c.captureWorkers > 1024 {
		return fmt.Errorf("--capture-workers %d: want from 1 to 1024", c.captureWorkers)
	}
	if c.captureRingMB < 1 || c.captureRingMB > 1<<16 {
		return fmt.Errorf("--capture-ring-mb %d: want from 1 to 65536", c.captureRingMB)
	}
	if c.dnsListen == "" {
		return nil
	}
	if c.ttl < time.Second || c.ttl > time.Duration(math.MaxInt32)*time.Second {
		return fmt.Errorf("--ttl %v: want from 1s to %ds", c.ttl, math.MaxInt32)
	}
	if len(c.sinkholeIPs) == 0 && c.tftpListen != "" {
		host, _, _ := net.SplitHostPort(c.tftpListen)
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsUnspecified() {
			c.sinkholeIPs = addrList{ip.Unmap()}
		}
	}
	if len(c.sinkholeIPs) == 0 {
		return errors.New("--sinkhole-ip is needed: --tftp-listen names no address to derive it from")
	}
	if len(c.upstreams) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return fmt.Errorf("--upstream is needed: no nameservers in /etc/resolv.conf (%v)", err)
		}
		for _, s := range cc.Servers {
			c.upstreams = append(c.upstreams, net.JoinHostPort(s, cc.Port))
		}
	}
	for i, u := range c.upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(strings.Trim(u, "[]"), "53")
		}
		c.upstreams[i] = u
		if isSelf(u, c.dnsListen) {
			return fmt.Errorf("--upstream %s is the shim's own address (--dns-listen %s): queries would loop", u, c.dnsListen)
		}
	}
	return nil
}

// isSelf reports whether upstream is the address the shim listens on:
// the same port on the same IP, or on any local address when the shim
// listens on all of them.
func isSelf(upstream, listen string) bool {
	uh, up, err1 := net.SplitHostPort(upstream)
	lh, lp, err2 := net.SplitHostPort(listen)
	if err1 != nil || err2 != nil || up != lp {
		return false
	}
	uip, err := netip.ParseAddr(uh)
	if err != nil {
		return false
	}
	uip = uip.Unmap()
	if lip, err := netip.ParseAddr(lh); err == nil && !lip.IsUnspecified() {
		return lip.Unmap() == uip
	}
	if lh != "" && lh != "0.0.0.0" && lh != "::" {
		return false // a host name: cannot tell
	}
	if uip.IsLoopback() || uip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == uip {
			return true
		}
	}
	return false
}

// server is one running serve: the signature store, the evidence log and
// the listeners, built in newServer and run until the context ends.
type server struct {
	cfg     *serveConfig
	store   *signatures.Store
	out     io.WriteCloser
	ev      *evidence.Writer
	log     zerolog.Logger
	reg     *prometheus.Registry
	metrics *serveMetrics

	metricsLn net.Listener
	parts     []part
	closers   []func() // release what the parts bound, after a failed start
}

// part is one listener of serve, bound in newServer (before privileges are
// dropped) and run by run.
type part struct {
	name string
	run  func(ctx context.Context) error
}

func newServer(e env, c *serveConfig) (_ *server, err error) {
	s := &server{cfg: c, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.closeAll() // whatever was bound before the failure
		}
	}()
	if s.store, err = signatures.Open(c.sigFile); err != nil {
		return nil, err
	}
	if c.logFile == "-" || c.logFile == "" {
		s.out = nopCloser{e.stdout}
	} else {
		f, err := os.OpenFile(c.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("log: %w", err)
		}
		s.out = f
	}
	s.ev = evidence.NewWriter(s.out, evidence.Config{Sensor: c.sensor})
	s.log = s.ev.Service()
	s.metrics = newServeMetrics(s.reg, s.store, s.ev)

	if c.metricsListen != "" {
		if s.metricsLn, err = net.Listen("tcp", c.metricsListen); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	for _, add := range []func() error{s.addDNS, s.addTFTP, s.addCapture} {
		if err := add(); err != nil {
			return nil, err
		}
	}
	if err := dropPrivileges(c.user); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) closeAll() {
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
	if s.metricsLn != nil {
		s.metricsLn.Close()
	}
	if s.ev != nil {
		s.ev.Close()
	}
	if s.out != nil {
		s.out.Close()
	}
}

// run serves until ctx ends (SIGTERM, SIGINT), reloading signatures on
// SIGHUP and when the file changes.
func (s *server) run(ctx context.Context, hup <-chan os.Signal) error {
	// From here on every part owns what it bound and releases it when it
	// returns; the closers are only for a start that failed.
	s.closers = nil
	defer s.closeAll()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	set := s.store.Current()
	st := set.Stats()
	s.log.Info().Str("event", "start").Str("signatures", set.Name()).Uint64("serial", set.Serial()).
		Int("names", st.Domains).Int("tftp_files", st.TFTPFiles).Int("payload_rules", st.Payloads).
		Str("dns", s.cfg.dnsListen).Str("tftp", s.cfg.tftpListen).Str("capture", s.cfg.capture).
		Str("metrics", s.cfg.metricsListen).Int("pid", os.Getpid()).Msg("wormsink serving")

	var wg sync.WaitGroup
	errc := make(chan error, len(s.parts)+1)
	for _, p := range s.parts {
		wg.Add(1)
		go func(p part) {
			defer wg.Done()
			if err := p.run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", p.name, err)
			}
		}(p)
	}
	var httpSrv *http.Server
	if s.metricsLn != nil {
		httpSrv = &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := httpSrv.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
	}
	if s.cfg.watch > 0 && s.store.Path() != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.store.Watch(ctx, s.cfg.watch, s.reported)
		}()
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			r, err := s.store.Reload()
			if errors.Is(err, signatures.ErrUnchanged) {
				s.log.Info().Str("event", "reload").Uint64("old_serial", r.OldSerial).Uint64("new_serial", r.NewSerial).Msg("signature file unchanged")
				continue
			}
			s.reported(r, err)
		case runErr = <-errc:
			break loop
		}
	}
	s.log.Info().Str("event", "stop").Msg("shutting down")
	cancel()
	if httpSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), s.cfg.shutdown)
		httpSrv.Shutdown(sctx)
		scancel()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.shutdown):
		s.log.Warn().Str("event", "stop").Msg("listeners did not stop in time")
	}
	if err := s.ev.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("log: %w", err)
	}
	return runErr
}

// reported logs and counts one reload attempt.
func (s *server) reported(r signatures.Reload, err error) {
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

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// stringList is a flag of comma-separated strings.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = (*l)[:0]
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// prefixList is a flag of comma-separated CIDR prefixes.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	*l = (*l)[:0]
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "/") {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return fmt.Errorf("bad prefix %q", p)
			}
			*l = append(*l, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			return fmt.Errorf("bad prefix %q", p)
		}
		*l = append(*l, pr.Masked())
	}
	return nil
}
