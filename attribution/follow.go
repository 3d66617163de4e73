package attribution

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// DefaultFollowInterval is how often a followed file is checked for new
// lines and for rotation.
const DefaultFollowInterval = 250 * time.Millisecond

// maxLine bounds one log line; longer ones are skipped as errors.
const maxLine = 64 * 1024

// Follow reads the lines of path as it grows, like tail -F, until ctx
// ends: from its beginning (the store ignores records it already holds),
// through rotation (the old file is read to its end before the new one is
// opened; a truncated file is read again from its start) and while the
// file does not exist yet. fn gets each complete line, without its newline,
// and its number in the current file.
func Follow(ctx context.Context, path string, every time.Duration, fn func(line []byte, n int)) error {
	if every <= 0 {
		every = DefaultFollowInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var r lineReader
	for {
		if f == nil {
			nf, err := os.Open(path)
			if err == nil {
				f = nf
				r.reset(f)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("attribution: follow %s: %w", path, err)
			}
		}
		if f != nil {
			if err := r.drain(fn); err != nil {
				return fmt.Errorf("attribution: follow %s: %w", path, err)
			}
			// Rotated or truncated?
			cur, err1 := f.Stat()
			now, err2 := os.Stat(path)
			switch {
			case err1 != nil:
				f.Close()
				f = nil
			case err2 == nil && !os.SameFile(cur, now):
				// Rotated: finish the old file, then open the new one.
				if err := r.drain(fn); err != nil {
					return fmt.Errorf("attribution: follow %s: %w", path, err)
				}
				r.flushPartial(fn)
				f.Close()
				f = nil
				continue
			case err2 == nil && now.Size() < r.off:
				// Truncated (copytruncate): start over.
				if _, err := f.Seek(0, io.SeekStart); err == nil {
					r.reset(f)
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// lineReader reads complete lines and keeps a partial last line until its
// newline arrives.
type lineReader struct {
	f       *os.File
	br      *bufio.Reader
	partial []byte
	off     int64
	n       int
	tooLong bool
}

func (r *lineReader) reset(f *os.File) {
	r.f = f
	if r.br == nil {
		r.br = bufio.NewReaderSize(f, 256*1024)
	} else {
		r.br.Reset(f)
	}
	r.partial = r.partial[:0]
	r.off = 0
	r.n = 0
	r.tooLong = false
}

func (r *lineReader) drain(fn func([]byte, int)) error {
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.off += int64(len(chunk))
		if len(chunk) > 0 {
			if chunk[len(chunk)-1] == '\n' {
				line := chunk[:len(chunk)-1]
				if len(r.partial) > 0 {
					r.partial = append(r.partial, line...)
					line = r.partial
				}
				r.n++
				if !r.tooLong && len(line) <= maxLine {
					fn(bytes.TrimSuffix(line, []byte{'\r'}), r.n)
				} else {
					fn(nil, r.n) // reported as an error by the caller
				}
				r.partial = r.partial[:0]
				r.tooLong = false
			} else if len(r.partial)+len(chunk) <= maxLine {
				r.partial = append(r.partial, chunk...)
			} else {
				r.tooLong = true
				r.partial = r.partial[:0]
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, syscall.EINTR):
		default:
			return err
		}
	}
}

// flushPartial hands over a last line without a newline, at the end of a
// file that will not grow any more.
func (r *lineReader) flushPartial(fn func([]byte, int)) {
	if len(r.partial) > 0 && !r.tooLong {
		r.n++
		fn(r.partial, r.n)
	}
	r.partial = r.partial[:0]
}
