package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"wormsink/signatures"
	"wormsink/signatures/feed"
)

// sigsFeedConfig is the signed signature feed serve follows (--sigs-url).
// The last-good copy is the --signatures file itself: the feed writes each
// file it takes there and reloads it as SIGHUP does, so a restart with the
// feed unreachable starts on it, and the serial rule holds across both.
type sigsFeedConfig struct {
	urls     commaList
	pubkeys  commaList
	interval time.Duration
	ca       string
	maxSize  byteSize

	keys []feed.PublicKey
	cfg  feed.Config
}

func sigsFeedFlags(fs *flag.FlagSet, c *sigsFeedConfig) {
	fs.Var(&c.urls, "sigs-url", "URL of a signed signature feed (its signature at URL.minisig); repeat (or separate with commas) for mirrors, tried in order. Needs --signatures FILE: the last-good copy")
	fs.Var(&c.pubkeys, "sigs-pubkey", "minisign public key the feed must be signed with: base64 (RW…) or a .pub file; repeat during a key rotation")
	fs.DurationVar(&c.interval, "sigs-interval", feed.DefaultInterval, "how often the feed is checked (from 1s; each wait is up to 10% shorter)")
	fs.StringVar(&c.ca, "sigs-ca", "", "PEM file of the CA certificates that sign the feed's HTTPS server (default: the system roots)")
	c.maxSize = feed.DefaultMaxSize
	fs.Var(&c.maxSize, "sigs-max-size", "largest signature file taken from the feed")
}

// completeSigsFeed checks the feed flags and loads the keys and the CA.
func (c *serveConfig) completeSigsFeed() error {
	f := &c.sigsFeed
	if len(f.urls) == 0 {
		if len(f.pubkeys) > 0 || f.ca != "" {
			return errors.New("--sigs-pubkey and --sigs-ca need --sigs-url")
		}
		return nil
	}
	cfg, err := sigsFeedSetup(f.urls, f.pubkeys, f.ca, c.sigFile, f.interval, int64(f.maxSize))
	if err != nil {
		return err
	}
	f.cfg = cfg
	return nil
}

// sigsFeedSetup builds a feed.Config from the flags serve and sigs pull share.
func sigsFeedSetup(urls, pubkeys []string, ca, path string, interval time.Duration, maxSize int64) (feed.Config, error) {
	if path == "" {
		return feed.Config{}, errors.New("--sigs-url needs --signatures FILE: the feed's last-good copy, written on every update and read at start")
	}
	if len(pubkeys) == 0 {
		return feed.Config{}, errors.New("--sigs-url needs --sigs-pubkey: a feed is only taken signed")
	}
	if interval < feed.MinInterval {
		return feed.Config{}, fmt.Errorf("--sigs-interval %v: want at least %v", interval, feed.MinInterval)
	}
	cfg := feed.Config{URLs: urls, Path: path, Interval: interval, MaxSize: maxSize}
	for _, k := range pubkeys {
		pk, err := feed.LoadPublicKey(k)
		if err != nil {
			return cfg, fmt.Errorf("--sigs-pubkey: %v", err)
		}
		cfg.Keys = append(cfg.Keys, pk)
	}
	if ca != "" {
		pool, err := feed.LoadCA(ca)
		if err != nil {
			return cfg, fmt.Errorf("--sigs-ca: %v", err)
		}
		cfg.RootCAs = pool
	}
	if _, err := feed.New(cfg); err != nil {
		return cfg, fmt.Errorf("--sigs-url: %v", strings.TrimPrefix(err.Error(), "feed: "))
	}
	return cfg, nil
}

// openStore opens the signature file. Following a feed, a missing file is
// the first start: one check fetches it before anything serves.
func (s *server) openStore() (*signatures.Store, error) {
	c := s.cfg
	if len(c.sigsFeed.urls) == 0 {
		return signatures.Open(c.sigFile)
	}
	if _, err := os.Stat(c.sigFile); errors.Is(err, os.ErrNotExist) {
		f, err := feed.New(c.sigsFeed.cfg) // no store: the file at the path is what is in service
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), feed.DefaultTimeout)
		defer cancel()
		if _, err := f.Check(ctx); err != nil {
			return nil, fmt.Errorf("--signatures %s does not exist yet and the feed gave no good file: %v", c.sigFile, err)
		}
	}
	return signatures.Open(c.sigFile)
}

// addSigsFeed appends the part that follows the feed. An accepted file is
// applied through reloadFromFeed: the same reload, log line and metrics as
// SIGHUP.
func (s *server) addSigsFeed() error {
	if len(s.cfg.sigsFeed.urls) == 0 {
		return nil
	}
	cfg := s.cfg.sigsFeed.cfg
	cfg.Store = feedStore{s}
	cfg.Log = s.log
	f, err := feed.New(cfg)
	if err != nil {
		return err
	}
	m := s.metrics
	m.gauge("wormsink_sigs_feed_serial", "Serial of the signature set in service, as the feed compares it.", func() float64 { return float64(s.store.Current().Serial()) })
	m.gauge("wormsink_sigs_feed_expiry_timestamp_seconds", "When the signature set in service expires (0: never).", func() float64 {
		if exp := f.Expiry(); !exp.IsZero() {
			return float64(exp.Unix())
		}
		return 0
	})
	m.gauge("wormsink_sigs_feed_last_success_timestamp_seconds", "Last check that reached a mirror and found the feed good or unchanged (0: none yet).", func() float64 {
		if t := f.Stats().LastSuccess; !t.IsZero() {
			return float64(t.Unix())
		}
		return 0
	})
	m.counter("wormsink_sigs_feed_checks_total", "Checks of the signature feed.", func() uint64 { return f.Stats().Checks })
	m.counter("wormsink_sigs_feed_updates_total", "Signature files taken from the feed and applied.", func() uint64 { return f.Stats().Applied })
	m.counter("wormsink_sigs_feed_not_modified_total", "Checks answered 304 Not Modified.", func() uint64 { return f.Stats().NotModified })
	failures := map[string]func() uint64{}
	for i, name := range feed.Reasons {
		failures[name] = func() uint64 { return f.Stats().Failures[i] }
	}
	m.counterVec("wormsink_sigs_feed_failures_total", "Failed feed checks of a mirror by reason (network, signature, rollback, freeze, parse, oversize, write).", "reason", failures)
	s.add("sigs-feed", newLoop(func(ctx context.Context) error {
		s.log.Info().Str("event", "sigs_feed_start").Strs("urls", cfg.URLs).Str("interval", cfg.Interval.String()).
			Str("path", cfg.Path).Msg("following the signature feed")
		return f.Serve(ctx)
	}))
	return nil
}

// feedStore applies a feed update exactly as SIGHUP does.
type feedStore struct{ s *server }

func (fs feedStore) Current() *signatures.Set { return fs.s.store.Current() }

func (fs feedStore) Reload() (signatures.Reload, error) {
	r, err := fs.s.store.Reload()
	if !errors.Is(err, signatures.ErrUnchanged) {
		fs.s.logReload(r, err)
	}
	return r, err
}

// commaList is a repeatable flag; a value may also list several, comma-
// separated, which is how a --config file's YAML list arrives.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

func (l *commaList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	if len(*l) == 0 {
		return errors.New("empty value")
	}
	return nil
}
