package report

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// MaxLineSize is the longest line a Reader takes; longer ones are skipped
// and counted as malformed.
const MaxLineSize = 1 << 20

// bufSize is the read buffer: small enough to stay in cache while its
// lines are parsed. Longer lines are gathered in Reader.long.
const bufSize = 64 << 10

// ReadStats counts what a Reader saw.
type ReadStats struct {
	Lines     uint64 // lines read, of every kind
	Evidence  uint64 // evidence lines returned
	Sightings uint64 // sum of their counts
	Service   uint64 // service lines skipped
	Malformed uint64 // malformed or foreign lines skipped
	// FirstBad names the first malformed line: "NAME:LINE: reason".
	FirstBad string
}

// Add folds o into s (for a summary over several logs).
func (s *ReadStats) Add(o ReadStats) {
	s.Lines += o.Lines
	s.Evidence += o.Evidence
	s.Sightings = addSat(s.Sightings, o.Sightings)
	s.Service += o.Service
	s.Malformed += o.Malformed
	if s.FirstBad == "" {
		s.FirstBad = o.FirstBad
	}
}

// Reader streams the evidence records of one log, plain or gzip-compressed
// (recognised by its magic bytes, not its name). It skips service lines,
// blank lines and malformed lines, counting the latter: a bad line is never
// fatal. Memory does not grow with the log.
type Reader struct {
	name  string
	br    *bufio.Reader
	gz    *gzip.Reader
	p     Parser
	rec   Sighting
	stats ReadStats
	err   error
	done  bool
	long  []byte // a line longer than the buffer, gathered
}

// NewReader starts reading r; name is used in error messages ("-" for
// stdin is fine). It fails only when r is gzip data with a bad header.
func NewReader(r io.Reader, name string) (*Reader, error) {
	rd := &Reader{name: name}
	// The buffer that sniffs for gzip is the line buffer of a plain log,
	// so plain bytes are copied once.
	src := bufio.NewReaderSize(r, bufSize)
	rd.br = src
	if magic, _ := src.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		rd.gz = gz
		rd.br = bufio.NewReaderSize(gz, bufSize)
	}
	return rd, nil
}

// Next advances to the next evidence record. It returns false at the end of
// the log or on a read error (see Err).
func (r *Reader) Next() bool {
	for !r.done {
		line, err := r.readLine()
		if err != nil {
			r.done = true
			if !errors.Is(err, io.EOF) {
				r.err = fmt.Errorf("%s: after line %d: %w", r.name, r.stats.Lines, err)
			}
			if line == nil {
				return false
			}
		}
		r.stats.Lines++
		if line == nil { // too long
			r.bad(errTooLong)
			continue
		}
		kind, perr := r.p.Parse(line, &r.rec)
		switch kind {
		case LineEvidence:
			r.stats.Evidence++
			r.stats.Sightings = addSat(r.stats.Sightings, r.rec.Count)
			return true
		case LineService:
			r.stats.Service++
		case LineMalformed:
			r.bad(perr)
		}
	}
	return false
}

func (r *Reader) bad(err error) {
	r.stats.Malformed++
	if r.stats.FirstBad == "" {
		r.stats.FirstBad = fmt.Sprintf("%s:%d: %v", r.name, r.stats.Lines, err)
	}
}

// readLine returns the next line without its newline. A line longer than
// MaxLineSize comes back as nil with a nil error after being discarded. At
// the end, a last line without a newline comes back with the error.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		r.long = append(r.long[:0], line...)
		tooLong := false
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = r.br.ReadSlice('\n')
			if len(r.long)+len(line) > MaxLineSize+1 {
				tooLong = true
				r.long = r.long[:0]
			}
			if !tooLong {
				r.long = append(r.long, line...)
			}
		}
		if tooLong {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, nil
		}
		if err == nil {
			return r.long[:len(r.long)-1], nil
		}
		line = r.long
	}
	if len(line) == 0 {
		return nil, err
	}
	return line, err
}

// Sighting returns the current line; it is valid until the next call to
// Next.
func (r *Reader) Sighting() *Sighting { return &r.rec }

// Err returns the read error that ended the log early, if any: for example a
// truncated gzip stream. Everything before it was read and returned.
func (r *Reader) Err() error { return r.err }

// Stats returns the counts so far.
func (r *Reader) Stats() ReadStats { return r.stats }

// Close releases the gzip reader, if any; it does not close the source.
func (r *Reader) Close() error {
	if r.gz != nil {
		return r.gz.Close()
	}
	return nil
}
