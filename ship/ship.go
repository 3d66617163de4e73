// Package ship sends evidence logs to the desk as they grow, across
// rotation, with their offsets kept on disk: the local log is the spool.
package ship

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of Config.
const (
	DefaultBatchBytes = 1 << 20
	DefaultPoll       = 200 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// RotateGrace is how long a renamed log is still read after its end
	// before the shipper moves to the new file.
	RotateGrace = 2 * time.Second
	// maxLine is the longest line shipped; a longer one (no evidence line
	// is) is skipped so that it cannot stall the log.
	maxLine = 1 << 20
)

// The headers the desk keys lines by (desk.HeaderSensor, …).
const (
	headerSensor = "X-Wormsink-Sensor"
	headerLog    = "X-Wormsink-Log"
	headerOffset = "X-Wormsink-Offset"
)

// Config is what a Shipper needs.
type Config struct {
	// To is the desk's base URL (https://desk.example:8443, or http:// on
	// loopback).
	To string
	// Token is the desk's API token (role sensor).
	Token string
	// Sensor names this shipper's logs at the desk beside the token's
	// name; "" is none (one token per sensor).
	Sensor string
	// Logs are the files to follow.
	Logs []string
	// State is the file that keeps each log's identity and acknowledged
	// offset (required).
	State string
	// BatchBytes bounds one POST; 0 is DefaultBatchBytes.
	BatchBytes int
	// Poll is how often a log at its end is checked for more lines and for
	// rotation; 0 is DefaultPoll.
	Poll time.Duration
	// Client sends the batches; nil is a client with a 30 s timeout.
	Client *http.Client
	Log    zerolog.Logger
}

// Stats count what was shipped.
type Stats struct {
	Lines    uint64 // lines the desk acknowledged
	Batches  uint64
	Failures uint64 // batches that failed and were sent again
}

// Shipper follows the logs and sends their lines.
type Shipper struct {
	cfg                      Config
	mu                       sync.Mutex // the state file
	state                    map[string]position
	lines, batches, failures atomic.Uint64
}

// position is where a log stands: its identity and the offset up to which
// the desk has acknowledged its lines.
type position struct {
	ID  string `json:"id"`
	Off int64  `json:"off"`
	// Done are the identities of the files of this log shipped to their
	// end, newest last (a few): a rotated generation is shipped once.
	Done []string `json:"done,omitempty"`
}

// keepDone is how many finished files a log remembers.
const keepDone = 16

func (p position) done(id string) bool {
	for _, d := range p.Done {
		if d == id {
			return true
		}
	}
	return false
}

func (p *position) finish(id string) {
	if !p.done(id) {
		p.Done = append(p.Done, id)
		if len(p.Done) > keepDone {
			p.Done = p.Done[len(p.Done)-keepDone:]
		}
	}
}

// New reads the state file.
func New(cfg Config) (*Shipper, error) {
	if cfg.To == "" || cfg.Token == "" || cfg.State == "" || len(cfg.Logs) == 0 {
		return nil, errors.New("ship: needs a desk URL, a token, a state file and at least one log")
	}
	if !strings.HasPrefix(cfg.To, "https://") && !strings.HasPrefix(cfg.To, "http://") {
		return nil, fmt.Errorf("ship: %q: want https://HOST:PORT (or http:// on loopback)", cfg.To)
	}
	cfg.To = strings.TrimSuffix(cfg.To, "/")
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = DefaultBatchBytes
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	s := &Shipper{cfg: cfg, state: map[string]position{}}
	b, err := os.ReadFile(cfg.State)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("ship: state: %w", err)
	default:
		if err := json.Unmarshal(b, &s.state); err != nil {
			return nil, fmt.Errorf("ship: state %s: %w", cfg.State, err)
		}
	}
	return s, nil
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	return Stats{Lines: s.lines.Load(), Batches: s.batches.Load(), Failures: s.failures.Load()}
}

// Serve ships until ctx ends.
func (s *Shipper) Serve(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.cfg.Logs))
	for i, path := range s.cfg.Logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.follow(ctx, path)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Shipper) get(path string) position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state[path]
}

// put records an acknowledged position and writes the state file (a new
// file renamed over the old: a crash leaves one or the other).
func (s *Shipper) put(path string, p position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[path] = p
	b, _ := json.Marshal(s.state)
	tmp := s.cfg.State + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return fmt.Errorf("ship: state: %w", err)
	}
	if err := os.Rename(tmp, s.cfg.State); err != nil {
		return fmt.Errorf("ship: state: %w", err)
	}
	return nil
}

// identity names one file for as long as it lives, whatever its name: its
// inode and a digest of its first line (so a file truncated and written
// again, or an inode reused, is a new log). ok is false while the file has
// no complete first line.
func identity(f *os.File) (string, bool) {
	fi, err := f.Stat()
	if err != nil {
		return "", false
	}
	buf := make([]byte, 4096)
	n, _ := f.ReadAt(buf, 0)
	i := bytes.IndexByte(buf[:n], '\n')
	if i < 0 {
		if n < len(buf) {
			return "", false
		}
		i = n // a first line longer than the buffer: its start will do
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	h := sha256.Sum256(buf[:i])
	return strconv.FormatUint(ino, 10) + "-" + hex.EncodeToString(h[:8]), true
}

func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// follow ships path, through rotation, until ctx ends. Before each file
// it ships the rotated generation path.1 if that was not shipped to its
// end yet: the desk or the shipper may have been away across a rotation,
// or two.
func (s *Shipper) follow(ctx context.Context, path string) error {
	for ctx.Err() == nil {
		s.rotated(ctx, path)
		f, err := os.Open(path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				s.cfg.Log.Warn().Str("event", "ship_error").Str("log", path).Err(err).Msg("ship: cannot open the log")
			}
			if !sleep(ctx, s.cfg.Poll) {
				return nil
			}
			continue
		}
		id, ok := identity(f)
		if !ok {
			f.Close()
			if !sleep(ctx, s.cfg.Poll) {
				return nil
			}
			continue
		}
		pos := s.get(path)
		if pos.ID != id {
			pos = position{ID: id, Done: pos.Done}
		}
		if s.drain(ctx, path, f, pos, false) {
			s.finished(path, id)
		}
		f.Close()
	}
	return nil
}

// rotated ships path.1 to its end when it is a file of this log not
// shipped to its end yet.
func (s *Shipper) rotated(ctx context.Context, path string) {
	old, err := os.Open(path + ".1")
	if err != nil {
		return
	}
	defer old.Close()
	id, ok := identity(old)
	pos := s.get(path)
	if !ok || pos.done(id) || sameFile(old, path) {
		return
	}
	if pos.ID != id {
		pos = position{ID: id, Done: pos.Done}
	}
	if s.drain(ctx, path, old, pos, true) {
		s.finished(path, id)
	}
}

func (s *Shipper) finished(path, id string) {
	pos := s.get(path)
	pos.finish(id)
	if err := s.put(path, pos); err != nil {
		s.cfg.Log.Error().Str("event", "ship_error").Err(err).Msg("ship: state not saved")
	}
}

// drain ships f from pos until it is rotated away (path names another
// file, or f was truncated) and read to its end, or until ctx ends. once
// ships to the current end and returns. It reports whether f was shipped
// to its end and is done with.
func (s *Shipper) drain(ctx context.Context, path string, f *os.File, pos position, once bool) bool {
	buf := make([]byte, s.cfg.BatchBytes)
	var renamed time.Time
	for ctx.Err() == nil {
		n, err := f.ReadAt(buf, pos.Off)
		if err != nil && !errors.Is(err, io.EOF) {
			s.cfg.Log.Warn().Str("event", "ship_error").Str("log", path).Err(err).Msg("ship: read")
			return false
		}
		end := bytes.LastIndexByte(buf[:n], '\n') + 1
		if end == 0 && n == len(buf) {
			// One line longer than a batch: skip it to its end.
			skip := int64(n)
			for {
				m, _ := f.ReadAt(buf, pos.Off+skip)
				if i := bytes.IndexByte(buf[:m], '\n'); i >= 0 {
					skip += int64(i + 1)
					break
				}
				if m == 0 {
					return false
				}
				skip += int64(m)
			}
			s.cfg.Log.Warn().Str("event", "ship_error").Str("log", path).Int64("offset", pos.Off).Msg("ship: a line longer than a batch skipped")
			pos.Off += skip
			continue
		}
		if end > 0 {
			if !s.send(ctx, pos, buf[:end]) {
				return false
			}
			pos.Off += int64(end)
			if err := s.put(path, pos); err != nil {
				s.cfg.Log.Error().Str("event", "ship_error").Err(err).Msg("ship: state not saved")
			}
			continue
		}
		if once {
			return true
		}
		// At the end: rotated or truncated?
		if fi, err := f.Stat(); err == nil && fi.Size() < pos.Off {
			return false // truncated: the file is a new log, started again
		}
		if !sameFile(f, path) {
			// Renamed away: its writer may still write to it until it
			// reopens the log (serve does on SIGUSR1, from logrotate's
			// postrotate), so it is read for RotateGrace more.
			if renamed.IsZero() {
				renamed = time.Now()
			}
			if time.Since(renamed) >= RotateGrace {
				return true
			}
		}
		if !sleep(ctx, s.cfg.Poll) {
			return false
		}
	}
	return false
}

// send posts one batch until the desk acknowledges it or ctx ends.
func (s *Shipper) send(ctx context.Context, pos position, body []byte) bool {
	wait := s.cfg.Poll
	for {
		err := s.post(ctx, pos, body)
		if err == nil {
			s.batches.Add(1)
			s.lines.Add(uint64(bytes.Count(body, []byte{'\n'})))
			return true
		}
		s.failures.Add(1)
		if ctx.Err() != nil {
			return false
		}
		s.cfg.Log.Warn().Str("event", "ship_retry").Err(err).Dur("wait", wait).Msg("ship: desk unavailable, retrying")
		if !sleep(ctx, wait) {
			return false
		}
		wait = min(wait*2, DefaultMaxBackoff)
	}
}

func (s *Shipper) post(ctx context.Context, pos position, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.To+"/api/v1/evidence", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.cfg.Sensor != "" {
		req.Header.Set(headerSensor, s.cfg.Sensor)
	}
	req.Header.Set(headerLog, pos.ID)
	req.Header.Set(headerOffset, strconv.FormatInt(pos.Off, 10))
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ship: desk answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// DefaultState is the state file for a log shipped from serve: beside it.
func DefaultState(log string) string {
	return filepath.Join(filepath.Dir(log), "."+filepath.Base(log)+".ship")
}
