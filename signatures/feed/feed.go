// Package feed follows a minisign-signed signature feed: mirrors, conditional
// GETs, and a file taken only when signed, newer and not expired.
package feed

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"wormsink/signatures"
)

// Defaults of Config.
const (
	DefaultInterval = time.Hour
	MinInterval     = time.Second
	DefaultMaxSize  = 64 << 20
	DefaultTimeout  = time.Minute
	// DefaultMaxBackoff caps how long a failing or rate-limiting mirror is
	// left alone, Retry-After included, so one bad answer cannot silence a
	// mirror for good.
	DefaultMaxBackoff = 24 * time.Hour
	// ExpiryWarning is how long before its expiry the set in service is
	// warned about.
	ExpiryWarning = 24 * time.Hour
)

// Reason says why a check failed; each has its own counter.
type Reason int

const (
	Network   Reason = iota // no answer, or an HTTP error status
	Signature               // not signed by a trusted key, or a trusted comment that does not agree
	Rollback                // serial not above the one in service
	Freeze                  // expired
	Parse                   // the signature file does not parse
	Oversize                // larger than Config.MaxSize
	Write                   // the last-good copy could not be written here
	numReasons
)

// Reasons names the reasons, as metrics and log lines carry them.
var Reasons = [numReasons]string{"network", "signature", "rollback", "freeze", "parse", "oversize", "write"}

func (r Reason) String() string { return Reasons[r] }

// Store is the signature set in service, as the feed needs it: its serial
// (the floor a new file must be above) and the reload that applies a new
// file once it is written. serve passes its SIGHUP reload.
type Store interface {
	signatures.Source
	Reload() (signatures.Reload, error)
}

// Config describes a feed. Zero values mean the documented defaults.
type Config struct {
	URLs []string    // mirrors of the signature file, tried in order; its signature is URL+".minisig"
	Keys []PublicKey // trusted keys; several during a key rotation
	// Path is the last-good copy: each accepted file is written there
	// atomically (with its .minisig beside it). serve reloads from it, so
	// a restart with the feed unreachable starts on it.
	Path     string
	Interval time.Duration // between checks (zero: DefaultInterval); each wait is up to 10% shorter
	MaxSize  int64         // largest file taken (zero: DefaultMaxSize)
	RootCAs  *x509.CertPool
	Timeout  time.Duration // per request (zero: DefaultTimeout)
	// Store is the set in service. Nil: the file at Path is (sigs pull),
	// read for its serial, and nothing is reloaded.
	Store Store
	Log   zerolog.Logger
}

// Stats is what the feed counted.
type Stats struct {
	Checks      uint64
	Applied     uint64
	NotModified uint64
	Failures    [numReasons]uint64
	LastSuccess time.Time // last check that reached a mirror and found the feed good or unchanged
}

// Result is the outcome of one check.
type Result struct {
	Applied   bool   // a new file was written (and reloaded)
	Unchanged bool   // the feed holds what is in service
	Serial    uint64 // serial in service after the check
	URL       string // the mirror that answered
}

// Feed is a running feed client.
type Feed struct {
	cfg     Config
	client  *http.Client
	mirrors []*mirror
	log     zerolog.Logger

	mu       sync.Mutex // one check at a time; guards the mirrors and the fields below
	warnedAt uint64     // serial the expiry warning was logged for
	expired  uint64     // serial the "expired" error was logged for

	// Stats has its own lock: a scrape must not wait for a slow mirror.
	statsMu sync.Mutex
	stats   Stats
	vouched Comment // the trusted comment of the file last taken (or found beside Path at start)
}

type mirror struct {
	url, sigURL, name string
	etag, modified    string
	// validators of the last 200, taken once its file is accepted: a
	// refused file is fetched (and refused, and counted) again next time.
	pendingETag, pendingModified string
	fails                        int
	notBefore                    time.Time
}

// New checks cfg and makes a feed; nothing is fetched until Check or Serve.
func New(cfg Config) (*Feed, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("feed: no URL")
	}
	if len(cfg.Keys) == 0 {
		return nil, errors.New("feed: no public key: a feed is only taken signed")
	}
	if cfg.Path == "" {
		return nil, errors.New("feed: no path for the last-good copy")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < MinInterval {
		return nil, fmt.Errorf("feed: interval %v is below %v", cfg.Interval, MinInterval)
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	f := &Feed{cfg: cfg, log: cfg.Log}
	var names = map[string]string{}
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("feed: URL %q: want http:// or https:// and a host", raw)
		}
		if u.User != nil {
			return nil, fmt.Errorf("feed: URL %q: credentials in a URL end up in logs; not taken", raw)
		}
		name := path.Base(u.Path)
		if name == "." || name == "/" || name == "" {
			return nil, fmt.Errorf("feed: URL %q names no file", raw)
		}
		sig := *u
		sig.Path += ".minisig"
		sig.RawPath = ""
		f.mirrors = append(f.mirrors, &mirror{url: u.String(), sigURL: sig.String(), name: name})
		names[name] = raw
	}
	if len(names) > 1 {
		// The trusted comment names the file; mirrors must agree on it.
		return nil, fmt.Errorf("feed: mirrors name different files (%v): the signed file name must be the same on every mirror", cfg.URLs)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
	tr.DisableCompression = false
	f.client = &http.Client{Transport: tr, Timeout: cfg.Timeout}
	// The last-good copy's signature, kept beside it, still says what
	// expiry the file was signed with after a restart.
	if sig, err := readLimited(cfg.Path+".minisig", MaxSigSize); err == nil {
		if s, err := ParseSignature(sig); err == nil {
			if c, err := ParseComment(s.TrustedComment); err == nil {
				f.vouched = c
			}
		}
	}
	return f, nil
}

func (f *Feed) setVouched(c Comment) {
	f.statsMu.Lock()
	f.vouched = c
	f.statsMu.Unlock()
}

// Expiry is when the set in service expires: its file's expires:, or the
// expiry its signature vouched for when the file has none (zero: never).
func (f *Feed) Expiry() time.Time {
	_, exp := f.serving()
	return exp
}

// LoadCA reads a PEM file of CA certificates for Config.RootCAs.
func LoadCA(file string) (*x509.CertPool, error) {
	data, err := readLimited(file, 1<<20)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return pool, nil
}

// Stats returns a copy of the counters.
func (f *Feed) Stats() Stats {
	f.statsMu.Lock()
	defer f.statsMu.Unlock()
	return f.stats
}

func (f *Feed) count(fn func(*Stats)) {
	f.statsMu.Lock()
	fn(&f.stats)
	f.statsMu.Unlock()
}

// Serve checks the feed at once and then every interval until ctx ends.
// Failures are logged and counted; the set in service stays.
func (f *Feed) Serve(ctx context.Context) error {
	if err := checkWritable(f.cfg.Path); err != nil {
		return err
	}
	for {
		f.Check(ctx)
		wait := f.nextWait(time.Now())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// nextWait is the interval less up to 10% (so many sensors spread out
// and a new file is still seen within one interval), or longer when every
// mirror is backing off.
func (f *Feed) nextWait(now time.Time) time.Duration {
	iv := f.cfg.Interval
	wait := iv - time.Duration(rand.Int64N(int64(iv)/10+1))
	f.mu.Lock()
	defer f.mu.Unlock()
	earliest := time.Time{}
	for _, m := range f.mirrors {
		if !m.notBefore.After(now) {
			return wait
		}
		if earliest.IsZero() || m.notBefore.Before(earliest) {
			earliest = m.notBefore
		}
	}
	return max(wait, earliest.Sub(now))
}

// checkWritable fails early when the last-good copy's directory cannot
// take a new file (serve runs as an unprivileged user).
func checkWritable(p string) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), ".wormsink-feed-check-*")
	if err != nil {
		return fmt.Errorf("feed: the last-good copy %s cannot be written: %w", p, err)
	}
	tmp.Close()
	os.Remove(tmp.Name())
	return nil
}

// refusal is a check that failed for a reason.
type refusal struct {
	reason Reason
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(reason Reason, format string, args ...any) error {
	return &refusal{reason: reason, err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the reason of an error from Check.
func ReasonOf(err error) (Reason, bool) {
	var r *refusal
	if errors.As(err, &r) {
		return r.reason, true
	}
	return 0, false
}

// Check asks the mirrors in order until one gives a good or unchanged
// feed. Each failure is logged and counted; the error returned is the
// last one, when no mirror gave a good answer.
func (f *Feed) Check(ctx context.Context) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count(func(s *Stats) { s.Checks++ })
	var last error
	tried := 0
	for _, m := range f.mirrors {
		now := time.Now()
		if m.notBefore.After(now) {
			continue
		}
		tried++
		res, err := f.checkMirror(ctx, m)
		if err == nil {
			f.count(func(s *Stats) { s.LastSuccess = time.Now() })
			f.warnExpiry()
			return res, nil
		}
		last = err
		if ctx.Err() != nil {
			break // shutting down: not the mirror's failure
		}
		reason, _ := ReasonOf(err)
		f.count(func(s *Stats) { s.Failures[reason]++ })
		ev, event := f.log.Error(), "sigs_refused"
		if reason == Network {
			// Not a refusal of anything: the mirror did not answer.
			ev, event = f.log.Warn(), "sigs_fetch_failed"
		}
		ev.Str("event", event).Str("reason", reason.String()).Str("url", m.url).
			Uint64("serial", f.servingSerial()).Str("error", err.Error()).
			Msg("signature feed check failed; the set in service is kept")
	}
	f.warnExpiry()
	if tried == 0 {
		return Result{Serial: f.servingSerial()}, errors.New("feed: every mirror is backing off")
	}
	return Result{Serial: f.servingSerial()}, last
}

// warnExpiry logs once per serial when the set in service comes within a
// day of its expiry, and once when it has expired.
func (f *Feed) warnExpiry() {
	serial, exp := f.serving()
	if exp.IsZero() {
		return
	}
	left := time.Until(exp)
	switch {
	case left <= 0 && f.expired != serial:
		f.expired = serial
		f.log.Error().Str("event", "sigs_expired").Uint64("serial", serial).Time("expires", exp).
			Msg("the signature set in service has expired and the feed has no newer one; still serving it")
	case left > 0 && left <= ExpiryWarning && f.warnedAt != serial:
		f.warnedAt = serial
		f.log.Warn().Str("event", "sigs_expiring").Uint64("serial", serial).Time("expires", exp).
			Str("left", left.Round(time.Second).String()).Msg("the signature set in service expires within a day")
	}
}

func (f *Feed) servingSerial() uint64 {
	s, _ := f.serving()
	return s
}

// serving is the serial and expiry in service: the store's, or the file's
// at Path without a store (0 when there is none yet).
func (f *Feed) serving() (uint64, time.Time) {
	var set *signatures.Set
	if f.cfg.Store != nil {
		set = f.cfg.Store.Current()
	} else if s, err := signatures.Load(f.cfg.Path); err == nil {
		set = s
	}
	if set == nil {
		return 0, time.Time{}
	}
	exp := set.Expires()
	f.statsMu.Lock()
	if v := f.vouched; exp.IsZero() && v.Serial == set.Serial() {
		exp = v.Expires
	}
	f.statsMu.Unlock()
	return set.Serial(), exp
}

func (f *Feed) checkMirror(ctx context.Context, m *mirror) (Result, error) {
	data, notModified, err := f.get(ctx, m, m.url, true)
	if err != nil {
		return Result{}, err
	}
	if notModified {
		f.count(func(s *Stats) { s.NotModified++ })
		f.log.Debug().Str("event", "sigs_not_modified").Str("url", m.url).Msg("signature feed unchanged")
		return Result{Unchanged: true, Serial: f.servingSerial(), URL: m.url}, nil
	}
	sig, _, err := f.get(ctx, m, m.sigURL, false)
	if err != nil {
		return Result{}, err
	}
	rel, err := Open(f.cfg.Keys, m.name, data, sig, time.Now(), f.cfg.MaxSize)
	if err != nil {
		return Result{}, err
	}
	old, _ := os.ReadFile(f.cfg.Path)
	if bytes.Equal(old, data) {
		// The copy in service, fetched again (after a restart, or from a
		// server without validators): not a rollback.
		m.remember()
		f.setVouched(rel.Comment)
		return Result{Unchanged: true, Serial: rel.Comment.Serial, URL: m.url}, nil
	}
	if in := f.servingSerial(); rel.Comment.Serial <= in {
		return Result{}, refuse(Rollback, "serial %d is not above %d in service", rel.Comment.Serial, in)
	}
	if err := writeAtomic(f.cfg.Path+".minisig", sig); err != nil {
		return Result{}, refuse(Write, "write %s.minisig: %v", f.cfg.Path, err)
	}
	if err := writeAtomic(f.cfg.Path, data); err != nil {
		return Result{}, refuse(Write, "write %s: %v", f.cfg.Path, err)
	}
	m.remember()
	f.setVouched(rel.Comment)
	if f.cfg.Store != nil {
		if _, err := f.cfg.Store.Reload(); err != nil && !errors.Is(err, signatures.ErrUnchanged) {
			return Result{}, refuse(Parse, "written to %s but not reloaded: %v", f.cfg.Path, err)
		}
	}
	f.count(func(s *Stats) { s.Applied++ })
	f.log.Info().Str("event", "sigs_update").Str("url", m.url).Uint64("serial", rel.Comment.Serial).
		Time("expires", rel.Comment.Expires).Str("key", KeyID(rel.KeyID)).Int("bytes", len(data)).
		Msg("signature feed update applied")
	return Result{Applied: true, Serial: rel.Comment.Serial, URL: m.url}, nil
}

func (m *mirror) remember() { m.etag, m.modified = m.pendingETag, m.pendingModified }

// get fetches one URL. conditional sends the mirror's validators and
// keeps the new ones (taken only once the file is accepted).
func (f *Feed) get(ctx context.Context, m *mirror, u string, conditional bool) (data []byte, notModified bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, refuse(Network, "%v", err)
	}
	req.Header.Set("User-Agent", "wormsink-feed")
	if conditional {
		if m.etag != "" {
			req.Header.Set("If-None-Match", m.etag)
		}
		if m.modified != "" {
			req.Header.Set("If-Modified-Since", m.modified)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.backoff(m, 0)
		return nil, false, refuse(Network, "%v", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		m.fails = 0
		return nil, true, nil
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		ra := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		f.backoff(m, ra)
		return nil, false, refuse(Network, "GET %s: %s (next try after %s)", u, resp.Status, m.notBefore.Format(time.RFC3339))
	default:
		return nil, false, refuse(Network, "GET %s: %s", u, resp.Status)
	}
	limit := f.cfg.MaxSize
	if !conditional {
		limit = MaxSigSize
	}
	if resp.ContentLength > limit {
		return nil, false, refuse(Oversize, "GET %s: %d bytes, over the limit of %d", u, resp.ContentLength, limit)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		f.backoff(m, 0)
		return nil, false, refuse(Network, "GET %s: %v", u, err)
	}
	if int64(len(data)) > limit {
		return nil, false, refuse(Oversize, "GET %s: over the limit of %d bytes", u, limit)
	}
	m.fails = 0
	if conditional {
		m.pendingETag, m.pendingModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	}
	return data, false, nil
}

// backoff leaves a failing mirror alone for Retry-After when the server
// gave one, or else for an exponentially growing, jittered time.
func (f *Feed) backoff(m *mirror, retryAfter time.Duration) {
	now := time.Now()
	if retryAfter > 0 {
		m.notBefore = now.Add(min(retryAfter, DefaultMaxBackoff))
		return
	}
	m.fails++
	d := f.cfg.Interval
	for i := 1; i < m.fails && d < DefaultMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, DefaultMaxBackoff)
	d = d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
	if m.fails == 1 {
		return // one failure: the next check tries again
	}
	m.notBefore = now.Add(d)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// writeAtomic replaces p by data through a temporary file in the same
// directory, synced before the rename, so a reader (a reload, a restart
// after a crash) sees the old file or the new one, never half of one.
func writeAtomic(p string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(p)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
