package dnsblock

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"wormsink/internal/dnsaddr"
)

// Defaults for Config.
const (
	DefaultTTL            = 60 * time.Second
	DefaultCacheSize      = 100_000
	DefaultTimeout        = 3 * time.Second
	DefaultAttemptTimeout = 1500 * time.Millisecond
	DefaultHealthMemory   = 5 * time.Second
	DefaultMaxCacheTTL    = 24 * time.Hour
	DefaultMaxNegativeTTL = time.Hour
	DefaultMaxTCPConns    = 512
	DefaultTCPIdle        = 10 * time.Second

	// MaxTTL is the largest TTL a DNS record can carry (RFC 2181: 2^31-1 s).
	MaxTTL = time.Duration(math.MaxInt32) * time.Second
	// DefaultResolvConf is where DefaultUpstreams reads the nameservers.
	DefaultResolvConf = "/etc/resolv.conf"
)

// Defaults for the hardening knobs: memory, connections and forwards in
// progress are bounded so that a hostile client or zone cannot use them up.
const (
	DefaultCacheBytes       = 64 << 20
	DefaultMaxInflight      = 4096
	DefaultJostleTimeout    = 200 * time.Millisecond
	DefaultMaxTCPPerClient  = 64
	DefaultUpstreamTCPConns = 4
	DefaultUpstreamTCPIdle  = 5 * time.Second
	// DefaultReadBuffer is the UDP socket's receive buffer: thousands of
	// queries, so a reader that waits a few milliseconds for its CPU finds
	// them queued rather than dropped (the kernel's default of 208 KB
	// overflowed at 80,000 q/s on a shared core, and every query lost holds
	// a stub's retry timer).
	DefaultReadBuffer = 4 << 20
	// DefaultCoalesce is how long a UDP reader that emptied the socket
	// waits before it reads again, so that one wake-up finds several
	// queries: at 20,000 q/s about ten, at a cost (on average about a
	// quarter of a millisecond more per answer) below a DNS round trip
	// across an access network. At 20,000 q/s 500 µs used less CPU per
	// query than 200 µs in every round, a quarter less at the median, and
	// as much at 80,000 q/s (docs/performance.md); 200 µs used less than
	// 100 µs.
	DefaultCoalesce = 500 * time.Microsecond
	// MaxCoalesce bounds Config.Coalesce: the reader's thread sleeps
	// holding its scheduler slot, so a longer wait would hold up the
	// goroutines queued behind it (forwards, TCP, the garbage collector's
	// stop-the-world) by as much.
	MaxCoalesce = 10 * time.Millisecond
	// DefaultMaxInflightBytes is the byte budget of the forwards in
	// progress: with the garbage collector's headroom, about twice this in
	// memory at most.
	DefaultMaxInflightBytes = 64 << 20
)

// DefaultAllow is who may use the shim when Config.Allow is empty: loopback
// and the private ranges an ISP gives its customers. Everyone else gets
// REFUSED, so the shim is never an open resolver.
func DefaultAllow() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fc00::/7"),
	}
}

// Config is the shim's configuration; the first fields mirror the serve
// serve flags (docs/contract.md §1), the rest are tuning knobs whose zero value means the
// default.
type Config struct {
	// Listen is the UDP and TCP address (--dns-listen), e.g. ":53".
	Listen string
	// Upstreams are the recursive resolvers (--upstream), "host:port" or
	// "host" for port 53, tried in order with failover.
	Upstreams []string
	// SinkholeIPs answer A (IPv4 ones) and AAAA (IPv6 ones) queries for
	// names with the sinkhole action (--sinkhole-ip).
	SinkholeIPs []netip.Addr
	// TTL of sinkhole answers (--ttl); 0 means DefaultTTL.
	TTL time.Duration
	// CacheSize is the number of forwarded answers kept (--cache-size);
	// 0 turns the cache off, a negative value means DefaultCacheSize.
	CacheSize int
	// Allow lists the clients served (--allow); empty means DefaultAllow().
	Allow []netip.Prefix

	// Timeout bounds the time a query may wait for the upstreams before
	// the client gets SERVFAIL.
	Timeout time.Duration
	// AttemptTimeout bounds one upstream's turn before failing over.
	AttemptTimeout time.Duration
	// HealthMemory is how long a failed upstream goes to the back of the line.
	HealthMemory time.Duration
	// MaxCacheTTL and MaxNegativeTTL cap how long answers stay cached.
	MaxCacheTTL    time.Duration
	MaxNegativeTTL time.Duration
	// MaxTCPConns bounds client TCP connections; TCPIdle closes idle ones.
	MaxTCPConns int
	TCPIdle     time.Duration

	// CacheBytes bounds the cache by the size of the answers it holds
	// (--cache-bytes), on top of CacheSize entries; 0 means DefaultCacheBytes.
	CacheBytes int
	// MaxInflight bounds forwarded queries in progress, UDP and TCP
	// together; past it a new query takes the place of the oldest one
	// older than JostleTimeout, or is dropped (UDP) or answered SERVFAIL
	// (TCP), counted, as a resolver under overload does.
	MaxInflight   int
	JostleTimeout time.Duration
	// MaxInflightPerClient caps one client address's share of MaxInflight;
	// 0 means an eighth of it.
	MaxInflightPerClient int
	// MaxInflightBytes bounds the memory the forwards in progress hold:
	// each counts its query, the copy sent upstream, room for the largest
	// answer it may get (the client's EDNS size over UDP, 64 KB over TCP)
	// and its goroutine, until its answer is written. A query past it is
	// dropped (UDP) or answered SERVFAIL (TCP), counted. 0 means
	// DefaultMaxInflightBytes; MaxInflightBytesPerClient, one client
	// address's share, 0 means an eighth of it.
	MaxInflightBytes          int
	MaxInflightBytesPerClient int
	// MaxTCPPerClient caps the TCP connections of one client address.
	MaxTCPPerClient int
	// ReadBuffer is the UDP socket's receive buffer (SO_RCVBUF): kernel
	// memory, bounded, in which a burst waits instead of being dropped. 0
	// means DefaultReadBuffer (the kernel caps it at net.core.rmem_max); a
	// negative value leaves the kernel's default.
	ReadBuffer int
	// Coalesce is interrupt moderation for the UDP readers (--dns-coalesce):
	// after a read that emptied the socket (it found fewer queries than its
	// batch holds), and after answering those queries, the reader waits
	// this long before it reads again, so that queries that arrive
	// meanwhile are read and answered with one system call each way
	// instead of a few per wake-up. It never waits after a full batch, so
	// a rate the waits cannot keep up with is read at once; one reader
	// waits at a time. A query
	// waits at most Coalesce longer for its answer, plus the kernel's timer
	// slack (50 µs by default). 0 means DefaultCoalesce; a negative value
	// turns it off; at most MaxCoalesce. Linux only.
	Coalesce time.Duration
	// UpstreamTCPConns is the number of pipelined TCP connections kept per
	// upstream; UpstreamTCPIdle closes one idle for that long, before the
	// resolver's own idle timeout does.
	UpstreamTCPConns int
	UpstreamTCPIdle  time.Duration

	// Garden is the walled garden (quarantined clients); nil: none.
	Garden Garden
	// NoticeIPs answer a quarantined client's A (IPv4 ones) and AAAA
	// (IPv6 ones) queries: the notice page (--notice-ip). Required with
	// Garden.
	NoticeIPs []netip.Addr
	// GardenTTL is the TTL of those answers; 0 means DefaultGardenTTL.
	GardenTTL time.Duration
}

func (c *Config) setDefaults() {
	orDefault(&c.TTL, DefaultTTL)
	if c.CacheSize < 0 {
		c.CacheSize = DefaultCacheSize
	}
	if len(c.Allow) == 0 {
		c.Allow = DefaultAllow()
	}
	orDefault(&c.Timeout, DefaultTimeout)
	orDefault(&c.AttemptTimeout, DefaultAttemptTimeout)
	orDefault(&c.HealthMemory, DefaultHealthMemory)
	orDefault(&c.MaxCacheTTL, DefaultMaxCacheTTL)
	orDefault(&c.MaxNegativeTTL, DefaultMaxNegativeTTL)
	orDefault(&c.MaxTCPConns, DefaultMaxTCPConns)
	orDefault(&c.TCPIdle, DefaultTCPIdle)
	orDefault(&c.CacheBytes, DefaultCacheBytes)
	orDefault(&c.MaxInflight, DefaultMaxInflight)
	orDefault(&c.JostleTimeout, DefaultJostleTimeout)
	orDefault(&c.MaxInflightPerClient, max(1, c.MaxInflight/8))
	orDefault(&c.MaxInflightBytes, DefaultMaxInflightBytes)
	orDefault(&c.MaxInflightBytesPerClient, max(tcpForwardBytes(512), c.MaxInflightBytes/8))
	orDefault(&c.MaxTCPPerClient, DefaultMaxTCPPerClient)
	if c.ReadBuffer == 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.Coalesce == 0 {
		c.Coalesce = DefaultCoalesce
	}
	orDefault(&c.UpstreamTCPConns, DefaultUpstreamTCPConns)
	orDefault(&c.UpstreamTCPIdle, DefaultUpstreamTCPIdle)
	orDefault(&c.GardenTTL, DefaultGardenTTL)
}

// orDefault sets a tuning knob left at zero (or below) to its default.
func orDefault[T int | time.Duration](p *T, d T) {
	if *p <= 0 {
		*p = d
	}
}

// check rejects what no default can repair; New calls it after setDefaults.
func (c *Config) check() error {
	if c.TTL < time.Second || c.TTL > MaxTTL {
		return fmt.Errorf("TTL %v: want from 1s to %ds", c.TTL, math.MaxInt32)
	}
	if c.Coalesce > MaxCoalesce {
		return fmt.Errorf("coalesce %v: want at most %v (negative: off)", c.Coalesce, MaxCoalesce)
	}
	for _, u := range c.Upstreams {
		if loopsBack(u, c.Listen) {
			return fmt.Errorf("upstream %s is the shim's own address (listen %s): queries would loop", u, c.Listen)
		}
	}
	return nil
}

// ErrNoUpstream is returned by New when no upstream is configured.
var ErrNoUpstream = errors.New("no upstream resolver")

// ErrNoNoticeIP is returned by New for a walled garden without a notice
// address to send quarantined clients to.
var ErrNoNoticeIP = errors.New("a walled garden needs a notice address (--notice-ip)")

// ErrNoSinkholeIP is returned by New without a sinkhole address (docs/contract.md §1:
// an error at start). A family without one answers NODATA.
var ErrNoSinkholeIP = errors.New("no sinkhole address")

// ParseTTL reads a TTL for sinkhole answers: a duration from 1s to MaxTTL.
func ParseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 60s", s)
	}
	if d < time.Second || d > MaxTTL {
		return 0, fmt.Errorf("TTL %v: want from 1s to %ds", d, math.MaxInt32)
	}
	return d, nil
}

// DefaultUpstreams are the nameservers of DefaultResolvConf, the upstreams
// of a shim configured with none.
func DefaultUpstreams() ([]string, error) {
	return ResolvConfUpstreams(DefaultResolvConf)
}

// ResolvConfUpstreams returns the nameservers of a resolv.conf file (the
// default of --upstream), as "ip:53".
func ResolvConfUpstreams(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		host := fields[1]
		if i := strings.IndexByte(host, '%'); i >= 0 {
			host = host[:i] // a zone is meaningless for the dial below
		}
		if u, err := dnsaddr.Parse(host); err == nil {
			out = append(out, u.String())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrNoUpstream)
	}
	return out, nil
}

// loopsBack reports whether upstream is the address the shim listens on:
// the same port on the same IP, or on any local address when the shim
// listens on all of them.
func loopsBack(upstream, listen string) bool {
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
