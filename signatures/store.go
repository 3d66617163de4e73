package signatures

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// ErrSerialDecreased is returned when a reload offers a file whose serial is
// lower than the one in service: an older release must never replace a newer.
var ErrSerialDecreased = errors.New("serial went down")

// ErrUnchanged is returned by a reload that found the same content in service.
var ErrUnchanged = errors.New("file unchanged")

// Reload describes one reload attempt.
type Reload struct {
	OldSerial uint64
	NewSerial uint64 // serial of the file offered (0 when it did not parse)
	Stats     Stats
	At        time.Time
}

// Store holds the set in service and swaps in a new one only when it parsed,
// compiled and did not go back in serial. Readers call Current on every
// query; it is one atomic load.
type Store struct {
	path string
	cur  atomic.Pointer[Set]

	mu     sync.Mutex // serialises reloads
	digest [sha256.Size]byte
	stat   fileStat

	subMu sync.Mutex
	subs  []chan struct{}
}

type fileStat struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// NewStore serves set. With a path, Reload re-reads that file.
func NewStore(path string, set *Set) *Store {
	s := &Store{path: path}
	s.cur.Store(set)
	return s
}

// Open loads path into a new Store; an empty path serves the built-in set.
func Open(path string) (*Store, error) {
	if path == "" {
		return NewStore("", Default()), nil
	}
	digest, st, err := hashFile(path)
	if err != nil {
		return nil, err
	}
	set, err := Load(path)
	if err != nil {
		return nil, err
	}
	s := NewStore(path, set)
	s.digest, s.stat = digest, st
	return s, nil
}

// Current returns the set in service.
func (s *Store) Current() *Set { return s.cur.Load() }

// Path is the file the store reloads from ("" for the built-in set).
func (s *Store) Path() string { return s.path }

// Reload re-reads the file. On any error the set in service is kept; the
// returned Reload still tells which serials were involved.
func (s *Store) Reload() (Reload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	r := Reload{OldSerial: old.Serial(), At: time.Now()}
	if s.path == "" {
		return r, ErrUnchanged
	}
	digest, st, err := hashFile(s.path)
	if err != nil {
		// Remember what the file looks like anyway, so Watch does not
		// retry an unreadable file on every tick until it changes again.
		if st, serr := statFile(s.path); serr == nil {
			s.stat = st
		}
		return r, err
	}
	s.stat = st
	if digest == s.digest {
		r.NewSerial, r.Stats = old.Serial(), old.Stats()
		return r, ErrUnchanged
	}
	set, err := Load(s.path)
	if err != nil {
		return r, err
	}
	r.NewSerial, r.Stats = set.Serial(), set.Stats()
	if set.Serial() < old.Serial() {
		return r, fmt.Errorf("%s: serial %d is lower than %d in service: %w", s.path, set.Serial(), old.Serial(), ErrSerialDecreased)
	}
	s.cur.Store(set)
	s.digest = digest
	s.announce()
	return r, nil
}

// Subscribe returns a channel that receives a value after every reload that
// swapped in a new set, whichever way it was asked for (SIGHUP, Watch). It
// holds one pending value, so a slow reader sees a burst of reloads as one
// and reads the newest set with Current. cancel stops the deliveries.
func (s *Store) Subscribe() (changed <-chan struct{}, cancel func()) {
	ch := make(chan struct{}, 1)
	s.subMu.Lock()
	s.subs = append(s.subs, ch)
	s.subMu.Unlock()
	return ch, func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		for i, c := range s.subs {
			if c == ch {
				s.subs = append(s.subs[:i], s.subs[i+1:]...)
				return
			}
		}
	}
}

func (s *Store) announce() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, c := range s.subs {
		select {
		case c <- struct{}{}:
		default: // one is already pending
		}
	}
}

// changed reports whether the file's size, mtime or inode moved since the
// last read; cheap enough to poll every second.
func (s *Store) changed() bool {
	st, err := statFile(s.path)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return st != s.stat
}

// Watch polls the file every interval and reloads it when it changed,
// reporting each attempt to report. It returns when ctx ends. Polling, not
// inotify, because operators and config managers replace files by rename and
// through symlink swaps, which inotify watches lose track of.
func (s *Store) Watch(ctx context.Context, interval time.Duration, report func(Reload, error)) {
	if s.path == "" {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !s.changed() {
				continue
			}
			r, err := s.Reload()
			if errors.Is(err, ErrUnchanged) {
				continue
			}
			report(r, err)
		}
	}
}

// hashFile digests the file, so a reload can skip a file whose content
// did not change, without holding the file in memory.
func hashFile(path string) ([sha256.Size]byte, fileStat, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, fileStat{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return sum, fileStat{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, MaxFileSize+1)); err != nil {
		return sum, fileStat{}, err // it names the path
	}
	h.Sum(sum[:0])
	return sum, toFileStat(fi), nil
}

func statFile(path string) (fileStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}, err
	}
	return toFileStat(fi), nil
}
