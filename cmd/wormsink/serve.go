package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"wormsink/dnsblock"
	"wormsink/evidence"
	"wormsink/internal/dnsaddr"
	"wormsink/quarantine"
	"wormsink/signatures"
	"wormsink/sinkhole"
	"wormsink/store"
	"wormsink/wire"
)

// serveConfig is the effective configuration of serve: flags, then the
// --config file for what the command line left unset. The flags fill the
// parts' own configs; each part's package owns its defaults and parsers.
type serveConfig struct {
	configFile    string
	printConfig   bool
	sigFile       string
	dns           dnsblock.Config
	tftpListen    string
	tftp          sinkhole.Config
	capture       string
	logFile       string
	metricsListen string
	sensor        string
	user          string
	watch         time.Duration
	shutdown      time.Duration

	// Transparent TFTP interception (serve_intercept.go).
	tftpIntercept       string
	tftpInterceptPolicy string

	// Evidence an abuse team can act on (issue 11): hosts never recorded,
	// and the line budget that bounds what a flood can write.
	exclude           prefixList
	evidenceLineRate  float64
	evidenceLineBurst int
	evidenceHostLines int

	// proof of the source address
	trustedSources evidence.Networks // networks whose edge drops forged sources

	feeds  feedConfig   // RPZ primary and dnstap input: serve_rpz.go
	dnstap dnstapConfig // who may stream dnstap: serve_dnstap.go

	db         string           // --db: the store, shared by the parts that keep state (serve_store.go)
	quarantine quarantineConfig // walled garden and notice page: serve_quarantine.go
	bgp        bgpConfig        // quarantined addresses announced by BGP: serve_bgp.go
	sigsFeed   sigsFeedConfig   // the signed signature feed: serve_feed.go
	// Live capture tuning (issue 15).
	captureWorkers int
	captureRingMB  int

	attribution attributionConfig // who a sighting is: serve_attribution.go
	ship        shipConfig        // the log sent to the desk: serve_ship.go
}

func serveFlags(e env, c *serveConfig) *flag.FlagSet {
	fs := newFlags(e, "serve", "")
	host, _ := os.Hostname()
	fs.StringVar(&c.configFile, "config", "", "YAML file whose keys are these flag names; flags on the command line win")
	fs.BoolVar(&c.printConfig, "print-config", false, "print the effective configuration and exit")
	fs.StringVar(&c.sigFile, "signatures", "", "signature file, reloaded on SIGHUP and when it changes (default: the built-in set)")
	c.dns.Listen = ":53"
	fs.Var((*listenAddr)(&c.dns.Listen), "dns-listen", `UDP and TCP address of the DNS shim; "" disables it`)
	fs.Var((*upstreamList)(&c.dns.Upstreams), "upstream", "recursive resolvers to forward to, IP[:port],... (port 53 when left out; addresses, not host names) (default: nameservers of /etc/resolv.conf)")
	fs.Var((*addrList)(&c.dns.SinkholeIPs), "sinkhole-ip", "addresses in sinkhole answers, IPv4 for A and IPv6 for AAAA (default: the IP of --tftp-listen)")
	c.dns.TTL = dnsblock.DefaultTTL
	fs.Var((*ttlFlag)(&c.dns.TTL), "ttl", "TTL of sinkhole answers")
	fs.IntVar(&c.dns.CacheSize, "cache-size", dnsblock.DefaultCacheSize, "entries in the response cache for forwarded answers; 0 turns it off")
	c.dns.CacheBytes = dnsblock.DefaultCacheBytes
	fs.Var((*byteSize)(&c.dns.CacheBytes), "cache-bytes", "byte budget of the response cache, counted in answer sizes (64MiB, 512KiB, 1GB or plain bytes)")
	c.dns.Allow = dnsblock.DefaultAllow()
	fs.Var((*prefixList)(&c.dns.Allow), "allow", "clients allowed to use the DNS shim, CIDR,...; others get REFUSED")
	fs.DurationVar(&c.dns.Coalesce, "dns-coalesce", dnsblock.DefaultCoalesce, "after a UDP read that emptied the socket, wait this long (at most 10ms) before reading again so one wake-up answers several; adds at most this much latency, plus the kernel's 50µs timer slack; negative: off")
	c.tftpListen = ":69"
	fs.Var((*listenAddr)(&c.tftpListen), "tftp-listen", `UDP address of the fake TFTP server; "" disables it`)
	fs.Float64Var(&c.tftp.SourceRate, "tftp-source-rate", sinkhole.DefaultSourceRate, "TFTP replies per second to one source (IPv4 address or IPv6 /64); requests over it are logged, not answered; negative: no limit")
	fs.Float64Var(&c.tftp.TotalRate, "tftp-total-rate", sinkhole.DefaultTotalRate, "TFTP replies per second to all sources together; negative: no limit")
	fs.StringVar(&c.capture, "capture", "", "watch this live interface for worm traffic (needs CAP_NET_RAW)")
	fs.StringVar(&c.logFile, "log", "-", "evidence and service log, JSON lines; - is stdout")
	fs.Var((*listenAddr)(&c.metricsListen), "metrics-listen", "HTTP address for Prometheus /metrics and /healthz (default off)")
	fs.StringVar(&c.sensor, "sensor", host, "name recorded in every event")
	fs.StringVar(&c.user, "user", "nobody", "when started as root: user to switch to once every socket is bound")
	fs.DurationVar(&c.watch, "watch-interval", time.Second, "how often the signature file is checked for changes; 0 disables")
	fs.DurationVar(&c.shutdown, "shutdown-timeout", 4*time.Second, "how long in-flight work may take to finish on SIGTERM")
	interceptFlags(fs, c)

	// Evidence an abuse team can act on.
	fs.Var(&c.exclude, "exclude", "never record a host in these networks, CIDR or address,... (the addresses wormsink serves on are always excluded)")
	fs.Float64Var(&c.evidenceLineRate, "evidence-line-rate", evidence.DefaultLineRate, "host lines per second the evidence log may take after its burst; past it sightings are folded into one line per event, signature and /24 or /48; 0: no budget")
	fs.IntVar(&c.evidenceLineBurst, "evidence-line-burst", evidence.DefaultLineBurst, "host lines the evidence log may take at once before --evidence-line-rate applies")
	fs.IntVar(&c.evidenceHostLines, "evidence-host-lines", evidence.DefaultHostLines, "detailed lines one host may open per event and signature a minute; past them its sightings fold into one summary line a second (raise it behind carrier-grade NAT to keep more source ports)")
	// proof of the source address
	fs.IntVar(&c.tftp.Exchanges, "tftp-exchanges", sinkhole.DefaultExchanges, "TFTP requesters put through rounds at once (probes from fresh ports that wait for the client's answers: proof exchange); beyond it refusals leave from the listening port; negative: never")
	fs.DurationVar(&c.tftp.ExchangeWait, "tftp-exchange-wait", sinkhole.DefaultExchangeWait, "how long each round's fresh port waits for the client's answer to its probe")
	fs.IntVar(&c.tftp.ExchangeRounds, "tftp-exchange-rounds", sinkhole.DefaultExchangeRounds, "how many fresh ports in turn a TFTP requester must answer before its sighting has proof exchange (each about 15 bits a forger must guess; 1 to 16)")
	fs.IntVar(&c.tftp.Decoys, "tftp-decoys", sinkhole.DefaultDecoys, "fresh ports kept open beside the rounds' and never told to anyone: a datagram on one is a guess, and a guess withholds proof exchange (negative: none)")
	fs.DurationVar(&c.tftp.GuessHold, "tftp-guess-hold", sinkhole.DefaultGuessHold, "how long a guessed port withholds proof exchange from every refusal (doubles while guesses keep coming back, up to a day)")
	fs.Var(&c.trustedSources, "trusted-sources", "CIDR,... of networks whose edge drops forged source addresses (BCP 38 / uRPF): their hosts' sightings get at least proof trusted-source")
	feedFlags(fs, &c.feeds)
	dnstapFlags(fs, c)
	dbFlag(fs, &c.db)
	quarantineFlags(fs, &c.quarantine)
	bgpFlags(fs, &c.bgp)
	attributionFlags(fs, &c.attribution)
	shipFlags(fs, &c.ship)
	sigsFeedFlags(fs, &c.sigsFeed)

	// Live capture tuning (issue 15).
	fs.IntVar(&c.captureWorkers, "capture-workers", runtime.NumCPU(), "--capture: sockets and goroutines reading the interface, fanned out by flow")
	fs.IntVar(&c.captureRingMB, "capture-ring-mb", wire.DefaultRingMB, "--capture: memory of all capture rings together, in MiB")
	return fs
}

// ownAddresses are the addresses wormsink serves on that the machine's own
// (followed live by internal/localaddr, loopback left out) may not cover:
// the sinkhole addresses its answers send worms to, the addresses its DNS
// and TFTP listeners are bound to, and for a listener on all addresses the
// loopback ones. Traffic to and from them is wormsink's own, so they are
// never recorded as a host, together with --exclude.
func (c *serveConfig) ownAddresses() []netip.Prefix {
	var out []netip.Prefix
	add := func(a netip.Addr) {
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, a := range c.dns.SinkholeIPs {
		add(a)
	}
	all := false
	for _, l := range []string{c.dns.Listen, c.tftpListen} {
		if l == "" {
			continue
		}
		h, _, err := net.SplitHostPort(l)
		ip, perr := netip.ParseAddr(h)
		if err != nil || perr != nil || ip.IsUnspecified() {
			all = true // all addresses, or a name: take every local address
			continue
		}
		add(ip)
	}
	if all {
		// The others come and go with the machine's addresses.
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLoopback() {
				add(p.Addr())
			}
		}
	}
	return append(out, c.exclude...)
}

func runServe(ctx context.Context, e env, args []string) int {
	var c serveConfig
	fs := serveFlags(e, &c)
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(e, "serve: takes no arguments (got %q)", fs.Arg(0))
	}
	if c.configFile != "" {
		if err := applyConfigFile(fs, c.configFile, "config", "print-config"); err != nil {
			return fail(e, "serve: %v", err)
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
	// SIGUSR1 (logrotate's postrotate) reopens the log; its default
	// action would kill the process too.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	s, err := newServer(e, &c, signals{reload: hup, reopen: usr1})
	if err != nil {
		return fail(e, "serve: %v", err)
	}
	if err := s.run(ctx); err != nil {
		return fail(e, "serve: %v", err)
	}
	return exitOK
}

// complete derives the defaults that join two parts (the sinkhole address
// from the TFTP address) or read the machine (resolv.conf) and checks the
// configuration before anything is bound, so a bad start fails at once
// with one line.
func (c *serveConfig) complete() error {
	if err := c.attribution.complete(); err != nil {
		return err
	}
	if c.dns.Listen == "" && c.tftpListen == "" && c.capture == "" && !c.feeds.enabled() && c.tftpIntercept == "" {
		return errors.New("nothing to serve: --dns-listen, --tftp-listen, --tftp-intercept, --capture, --rpz-listen and --dnstap-listen are all off")
	}
	if err := c.completeIntercept(); err != nil {
		return err
	}
	if err := c.completeFeeds(); err != nil {
		return err
	}
	if err := c.completeSigsFeed(); err != nil {
		return err
	}
	if err := c.quarantine.complete(); err != nil {
		return err
	}
	if err := c.completeShip(); err != nil {
		return err
	}
	if c.bgp.enabled() {
		if !c.quarantine.enabled() {
			return errors.New("--bgp-asn needs --quarantine-policy: BGP announces the quarantined addresses")
		}
		if _, err := c.bgp.config(); err != nil {
			return err
		}
	}
	if c.captureWorkers < 1 || c.captureWorkers > 1024 {
		return fmt.Errorf("--capture-workers %d: want from 1 to 1024", c.captureWorkers)
	}
	if c.captureRingMB < 1 || c.captureRingMB > 1<<16 {
		return fmt.Errorf("--capture-ring-mb %d: want from 1 to 65536", c.captureRingMB)
	}
	// Each round waits for an answer on a socket held open: beyond 16
	// rounds (64 bits) or a minute a round (no real client takes that
	// long to answer) they only tie sockets up.
	if r := c.tftp.ExchangeRounds; r < 1 || r > 16 {
		return fmt.Errorf("--tftp-exchange-rounds %d: want 1 to 16", r)
	}
	if w := c.tftp.ExchangeWait; w <= 0 || w > time.Minute {
		return fmt.Errorf("--tftp-exchange-wait %v: want more than 0 and at most 1m", w)
	}
	if c.dns.Listen == "" {
		return nil
	}
	if len(c.dns.SinkholeIPs) == 0 {
		if c.dns.SinkholeIPs = sinkhole.AnswerAddrs(c.tftpListen); len(c.dns.SinkholeIPs) == 0 {
			return errors.New("--sinkhole-ip is needed: --tftp-listen names no address to derive it from")
		}
	}
	if len(c.dns.Upstreams) == 0 {
		ups, err := dnsblock.DefaultUpstreams()
		if err != nil {
			return fmt.Errorf("--upstream is needed: %w", err)
		}
		c.dns.Upstreams = ups
	}
	return nil
}

// server is one running serve: the signature store, the evidence log and
// the listeners, built in newServer and run until the context ends.
type server struct {
	cfg     *serveConfig
	store   *signatures.Store
	out     io.WriteCloser
	logFile *logFile // out, when the log is a file
	ev      *evidence.Writer
	log     zerolog.Logger
	reg     *prometheus.Registry
	metrics *serveMetrics

	parts   []namedPart
	closers []func() // release what the parts bound, after a failed start

	db         *store.DB           // --db, opened by the first part that needs it (database)
	attributor evidence.Attributor // names subscribers; nil without attribution
	quarantine *quarantine.Engine  // nil without --quarantine-policy
}

// signals are the requests serve takes while it runs.
type signals struct {
	reload <-chan os.Signal // SIGHUP: reload the signature file
	reopen <-chan os.Signal // SIGUSR1: reopen the log file
}

// newServer opens the signatures and the log and binds every part.
func newServer(e env, c *serveConfig, sig signals) (_ *server, err error) {
	s := &server{cfg: c, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			s.closeAll() // whatever was bound before the failure
		}
	}()
	if s.store, err = s.openStore(); err != nil {
		return nil, err
	}
	if c.logFile == "-" || c.logFile == "" {
		s.out = nopCloser{e.stdout}
	} else {
		f, err := openLogFile(c.logFile)
		if err != nil {
			return nil, fmt.Errorf("log: %w", err)
		}
		s.out = f
		s.logFile = f
	}
	own, err := s.newOwn()
	if err != nil {
		return nil, err
	}
	s.ev = evidence.NewWriter(s.out, evidence.Config{Sensor: c.sensor,
		LineRate: max(c.evidenceLineRate, 0), LineBurst: c.evidenceLineBurst, HostLines: c.hostLines(), Exclude: c.ownAddresses(),
		Own: own, TrustedSources: c.trustedSources})
	s.log = s.ev.Service()
	s.metrics = newServeMetrics(s.reg, s.store, s.ev)
	s.addOwn(own)

	s.addReload(sig.reload)
	s.addReopen(sig.reopen)
	s.addMemoryTrim()
	// Attribution before the quarantine (which attributes what it acts
	// on), the quarantine before the shim (which enforces it).
	for _, add := range []func() error{s.addMetrics, s.addAttribution, s.addQuarantine, s.addBGP, s.addDNS, s.addTFTP, s.addIntercept, s.addCapture, s.addRPZ, s.addDNSTap, s.addSigsFeed, s.addShip} {
		if err := add(); err != nil {
			return nil, privilegeHint(err)
		}
	}
	if err := dropPrivileges(c.user); err != nil {
		return nil, err
	}
	// Reloads read the file as the user we are now: if that user cannot,
	// every SIGHUP would fail, so refuse to start instead.
	if path := s.store.Path(); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("--signatures %s: not readable after switching to --user %s, so it could never be reloaded: %w", path, c.user, errors.Unwrap(err))
		}
		f.Close()
	}
	return s, nil
}

// closeAll releases what newServer bound, for a server that is not run
// (or has been): the parts that did not serve are shut down, then the
// rest.
func (s *server) closeAll() {
	s.shutdownAll()
	s.parts = nil
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	if s.ev != nil {
		s.ev.Close()
	}
	if s.out != nil {
		s.out.Close()
	}
}

// run serves every part (runParts), logs the start once they all serve,
// and closes the log when they have stopped.
func (s *server) run(ctx context.Context) error {
	// From here on every part owns what it bound and releases it when it
	// stops; the closers are only for a start that failed.
	s.closers = nil
	defer s.closeAll()
	runErr := s.runParts(ctx, func() {
		set := s.store.Current()
		st := set.Stats()
		s.log.Info().Str("event", "start").Str("signatures", set.Name()).Uint64("serial", set.Serial()).
			Int("names", st.Domains).Int("tftp_files", st.TFTPFiles).Int("payload_rules", st.Payloads).
			Str("dns", s.cfg.dns.Listen).Str("tftp", s.cfg.tftpListen).Str("capture", s.cfg.capture).
			Str("metrics", s.cfg.metricsListen).Int("pid", os.Getpid()).Msg("wormsink serving")
	})
	s.parts = nil // stopped
	if err := s.ev.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("log: %w", err)
	}
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	return runErr
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// listenAddr is a host:port flag; "" turns its listener off.
type listenAddr string

func (a *listenAddr) String() string { return string(*a) }

func (a *listenAddr) Set(v string) error {
	if v != "" {
		_, port, err := net.SplitHostPort(v)
		if err != nil {
			var ae *net.AddrError
			if errors.As(err, &ae) {
				err = errors.New(ae.Err) // without the address, which the caller names
			}
			return fmt.Errorf("%q: %v (want host:port)", v, err)
		}
		// A port that is not a number would only fail at bind time, as a
		// runtime error; it is a usage error.
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("%q: port %q is not a number from 0 to 65535", v, port)
		}
	}
	*a = listenAddr(v)
	return nil
}

// upstreamList is the --upstream flag: comma-separated IP[:port], read by
// dnsaddr.
type upstreamList []string

func (l *upstreamList) String() string { return strings.Join(*l, ",") }

func (l *upstreamList) Set(v string) error {
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

// prefixList is a flag of comma-separated CIDR prefixes or addresses
// (--allow, --exclude, --rpz-allow, ...), read by evidence.ParseNetworks as
// --trusted-sources is.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	p, err := evidence.ParseNetworks(v)
	if err != nil {
		return err
	}
	*l = prefixList(p)
	return nil
}

// ttlFlag is the --ttl flag, read by dnsblock.ParseTTL.
type ttlFlag time.Duration

func (t *ttlFlag) String() string { return time.Duration(*t).String() }

func (t *ttlFlag) Set(v string) error {
	d, err := dnsblock.ParseTTL(v)
	if err != nil {
		return err
	}
	*t = ttlFlag(d)
	return nil
}

// byteSize is a flag holding a number of bytes, with an optional binary
// (KiB, MiB, GiB) or decimal (KB, MB, GB) unit.
type byteSize int

func (b *byteSize) String() string { return strconv.Itoa(int(*b)) }

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("want a positive size such as 64MiB, got %q", s)
	}
	*b = byteSize(n * mult)
	return nil
}
