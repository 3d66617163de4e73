package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"unsafe"
)

// ParallelReader reads logs on several cores into one report: one
// goroutine reads each log once and cuts it into chunks of whole lines,
// workers parse and aggregate chunks into tables of their own, and
// Aggregator merges the tables. The rows, counts and errors are those of a
// Reader feeding one Aggregator the same logs in order.
type ParallelReader struct {
	workers []*Aggregator
	seq     uint32 // chunks handed out so far, over all logs
}

// NewParallelReader makes a reader with n workers (at least 1) aggregating
// under f, with a timeline when timeline is set.
func NewParallelReader(f Filter, timeline bool, n int) *ParallelReader {
	p := &ParallelReader{}
	for range max(n, 1) {
		a := NewAggregator(f, timeline)
		a.pos = &blocks[aggPos]{}
		p.workers = append(p.workers, a)
	}
	return p
}

// Aggregator merges the workers' tables and returns the result. Call it
// once, after the last Read.
func (p *ParallelReader) Aggregator() *Aggregator {
	a := p.workers[0]
	for _, b := range p.workers[1:] {
		a.merge(b)
	}
	a.workers = len(p.workers)
	p.workers = p.workers[:1]
	return a
}

// parallelChunkSize is the size of the chunks a log is cut into (a
// variable so tests can make them tiny). Small enough that the chunks in
// flight stay in the CPU caches between the read that fills one and the
// worker that parses it: 1 MiB chunks made the report 8% slower.
var parallelChunkSize = 256 << 10

type lineChunk struct {
	seq     uint32
	data    []byte // whole lines, each ending in a newline, but for a log's last
	off     int    // where data starts in a mapped file
	tooLong bool   // stands for one line longer than MaxLineSize, skipped
	stats   ReadStats
	badAt   uint64 // line of the first malformed line, counted in this chunk
	badErr  error
	fault   bool // a mapped chunk's pages faulted (the file shrank): its counts stop there
	done    chan struct{}
}

// Read reads one log (plain or gzip) into the workers' tables; name is
// used in errors as Reader uses it. The stats and error are a Reader's.
//
// A plain regular file (an *os.File) is mapped into memory where the
// system can, and the workers parse its pages where they lie: reading it
// would copy every byte once more, which took a tenth of the report's CPU.
func (p *ParallelReader) Read(ctx context.Context, r io.Reader, name string) (ReadStats, error) {
	if f, ok := r.(*os.File); ok {
		if m := mapFile(f); m != nil {
			defer m.close()
			return p.readMapped(ctx, m, name)
		}
	}
	src := bufio.NewReaderSize(r, bufSize)
	var in io.Reader = src
	if magic, _ := src.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(src)
		if err != nil {
			return ReadStats{}, fmt.Errorf("%s: %w", name, err)
		}
		defer gz.Close()
		in = gz
	}
	return p.read(ctx, name, nil, func(c *lineChunk, free <-chan *lineChunk, send func(*lineChunk)) (bool, error) {
		skipping := false // inside a line longer than MaxLineSize
		for {
			if ctx.Err() != nil {
				send(c)
				return false, ctx.Err()
			}
			k, err := fill(in, c.data[len(c.data):cap(c.data)])
			c.data = c.data[:len(c.data)+k]
			end := err != nil
			var readErr error
			if err != nil && err != io.EOF {
				readErr = err // gzip's unexpected EOF included
			}
			if skipping {
				j := bytes.IndexByte(c.data, '\n')
				if j < 0 {
					c.data = c.data[:0]
					if end {
						return false, readErr
					}
					continue
				}
				skipping = false
				c.data = c.data[:copy(c.data, c.data[j+1:])]
				if !end {
					continue
				}
			}
			if end {
				partial := len(c.data) > 0 && c.data[len(c.data)-1] != '\n'
				send(c)
				return partial, readErr
			}
			j := bytes.LastIndexByte(c.data, '\n')
			if j < 0 {
				if len(c.data) > MaxLineSize+1 {
					// One line, too long: it counts as one malformed line.
					c.data = c.data[:0]
					c.tooLong = true
					send(c)
					c = <-free
					skipping = true
					continue
				}
				grown := make([]byte, len(c.data), 2*cap(c.data))
				copy(grown, c.data)
				c.data = grown
				continue
			}
			next := <-free
			next.data = append(next.data, c.data[j+1:]...)
			c.data = c.data[:j+1]
			send(c)
			c = next
		}
	})
}

// readMapped is Read of a mapped file: its chunks are slices of the
// mapping, cut at newlines. If the file shrinks while it is read, the
// pages past its new end fault: the read stops there with an error, as a
// read of a truncated file would.
func (p *ParallelReader) readMapped(ctx context.Context, m *mapping, name string) (ReadStats, error) {
	data := m.data
	return p.read(ctx, name, m, func(c *lineChunk, free <-chan *lineChunk, send func(*lineChunk)) (partial bool, err error) {
		if m.mapped {
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		}
		defer func() {
			if r := recover(); r != nil {
				if !isFault(r) {
					panic(r)
				}
				partial, err = false, errShrank
			}
		}()
		pos := 0
		for {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			end := pos + parallelChunkSize
			if end >= len(data) {
				c.data, c.off = data[pos:len(data):len(data)], pos
				send(c)
				return data[len(data)-1] != '\n', nil
			}
			j := bytes.LastIndexByte(data[pos:end], '\n')
			if j < 0 {
				// No newline in a whole chunk: the line runs on.
				k := bytes.IndexByte(data[end:], '\n')
				if k < 0 {
					k = len(data) - end
				} else {
					k++ // with its newline
				}
				if end+k-pos <= MaxLineSize+1 {
					j = end + k - pos - 1
				} else {
					// One line, too long: it counts as one malformed line.
					c.tooLong = true
					send(c)
					c = <-free
					if pos = end + k; pos >= len(data) {
						return false, nil
					}
					continue
				}
			}
			c.data, c.off = data[pos:pos+j+1:pos+j+1], pos
			send(c)
			c = <-free
			pos += j + 1
		}
	})
}

// isFault reports whether r, recovered, is a memory fault (with
// debug.SetPanicOnFault): a runtime error with the faulting address.
func isFault(r any) bool {
	_, ok := r.(interface{ Addr() uintptr })
	return ok
}

// errShrank is the read error of a mapped log cut short while it was read.
var errShrank = errors.New("the file shrank while it was read")

// read runs the workers over the chunks cut makes: cut starts with a
// chunk from the pool, fills and sends chunks (taking new ones from
// free), and returns the read's error and whether the data before it
// ends inside a line. With a mapping m the chunks point into it: the
// workers then turn a fault into errShrank, and the pages of the chunks
// done are let go.
func (p *ParallelReader) read(ctx context.Context, name string, m *mapping,
	cut func(c *lineChunk, free <-chan *lineChunk, send func(*lineChunk)) (partial bool, err error)) (ReadStats, error) {
	nw := len(p.workers)
	free := make(chan *lineChunk, 2*nw+2)
	for range cap(free) {
		c := &lineChunk{}
		if m == nil {
			c.data = make([]byte, 0, parallelChunkSize)
		}
		free <- c
	}
	work := make(chan *lineChunk, cap(free))
	order := make(chan *lineChunk, cap(free))
	var wg sync.WaitGroup
	for _, a := range p.workers {
		wg.Go(func() {
			if m != nil && m.mapped {
				defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			}
			cw := &chunkWorker{a: a}
			for c := range work {
				cw.read(c)
			}
		})
	}
	var readErr error // a read error; the line count goes in later
	partial := false  // the data before readErr ends inside a line
	go func() {
		defer close(order)
		defer close(work)
		send := func(c *lineChunk) {
			c.seq = p.seq
			p.seq++
			c.done = make(chan struct{})
			work <- c
			order <- c
		}
		partial, readErr = cut(<-free, free, send)
	}()

	var st ReadStats
	faulted := false // a chunk faulted: the counts stop with it
	for c := range order {
		<-c.done
		if m != nil && len(c.data) > 0 && !faulted {
			m.done(c.off + len(c.data))
		}
		if !faulted {
			if c.stats.Malformed > 0 && st.FirstBad == "" {
				st.FirstBad = fmt.Sprintf("%s:%d: %v", name, st.Lines+c.badAt, c.badErr)
			}
			st.Add(c.stats)
		}
		faulted = faulted || c.fault
		c.data, c.tooLong, c.fault, c.stats, c.badAt, c.badErr = c.data[:0], false, false, ReadStats{}, 0, nil
		if m != nil {
			c.data = nil
		}
		free <- c
	}
	wg.Wait()
	if faulted && readErr == nil {
		readErr, partial = errShrank, false
	}
	if readErr != nil {
		if errors.Is(readErr, context.Canceled) || errors.Is(readErr, context.DeadlineExceeded) {
			return st, fmt.Errorf("%s: interrupted after line %d", name, st.Lines)
		}
		// A Reader counts the lines before the cut-off one.
		lines := st.Lines
		if partial {
			lines--
		}
		return st, fmt.Errorf("%s: after line %d: %w", name, lines, readErr)
	}
	return st, nil
}

// fill reads into b until it is full or the reader fails; unlike
// io.ReadFull it passes the reader's own error on (a truncated gzip stream
// says io.ErrUnexpectedEOF, a clean end io.EOF).
func fill(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// addBatch is how many sightings a worker parses before it adds them: the
// hosts' rows are spread at random over tables larger than the CPU caches,
// and looking a batch up together lets their cache misses overlap.
const addBatch = 16

// chunkWorker is one worker's state: one parser (its guesses of the next
// key and its day cache learnt once, its state in L1), and a sighting and
// an arena for decoded strings per batch slot, since a sighting points
// into its line and its arena until added.
//
// The hosts' state is spread at random over tables larger than the CPU
// caches, two cache misses a line (the index slot, then the row). The
// batches go through a pipeline so that parsing hides them: when a batch
// is full its slots are asked for, a batch later its rows, and a batch
// after that it is added; each stage's lines wait while the next batch
// is parsed.
type chunkWorker struct {
	a      *Aggregator
	p      Parser
	arenas [pipeDepth][addBatch][]byte
	recs   [pipeDepth][addBatch]Sighting
	cur    int // the batch being filled
	n      int // sightings in it
	queued int // full batches before it not yet added, at most pipeDepth-1
}

// pipeDepth is how many batches are in flight: filling, slots asked for,
// rows asked for.
const pipeDepth = 3

// read parses and aggregates a chunk's lines as Reader.Next does.
func (w *chunkWorker) read(c *lineChunk) {
	defer close(c.done)
	defer func() {
		// A mapped file's page past its new end (see readMapped): the
		// batches in the pipeline point into it and are dropped.
		if r := recover(); r != nil {
			if !isFault(r) {
				panic(r)
			}
			c.fault = true
			w.queued, w.n = 0, 0
		}
	}()
	w.a.chunk = c.seq
	st := &c.stats
	bad := func(err error) {
		st.Malformed++
		if c.badErr == nil {
			c.badAt, c.badErr = st.Lines, err
		}
	}
	if c.tooLong {
		st.Lines++
		bad(errTooLong)
		return
	}
	data := c.data
	for len(data) > 0 {
		line := data
		j := bytes.IndexByte(data, '\n')
		if j >= 0 {
			line, data = data[:j], data[j+1:]
		} else {
			data = nil
		}
		st.Lines++
		if j >= 0 && len(line) > MaxLineSize || j < 0 && len(line) > MaxLineSize+1 {
			bad(errTooLong)
			continue
		}
		rec := &w.recs[w.cur][w.n]
		w.p.arena = w.arenas[w.cur][w.n]
		kind, err := w.p.Parse(line, rec)
		w.arenas[w.cur][w.n] = w.p.arena // grown, perhaps
		switch kind {
		case LineEvidence:
			st.Evidence++
			st.Sightings = addSat(st.Sightings, rec.Count)
			if w.n++; w.n == addBatch {
				w.advance()
			}
		case LineService:
			st.Service++
		case LineMalformed:
			bad(err)
		}
	}
	// The chunk's sightings are added before it is done: the merge
	// orders ties by chunk, and they point into its data.
	w.flush()
}

// advance moves the full batch being filled into the pipeline: its slots
// are asked for, the batch before's rows, and the one before that added.
func (w *chunkWorker) advance() {
	a := w.a
	a.prefetchSlots(w.recs[w.cur][:])
	if w.queued >= 1 {
		a.prefetchRows(w.recs[(w.cur+pipeDepth-1)%pipeDepth][:])
	}
	if w.queued == pipeDepth-1 {
		b := &w.recs[(w.cur+1)%pipeDepth] // the oldest
		for k := range b {
			a.Add(&b[k])
		}
		w.queued--
	}
	w.queued++
	w.cur, w.n = (w.cur+1)%pipeDepth, 0
}

// flush adds the batches in the pipeline and the one being filled, in
// order.
func (w *chunkWorker) flush() {
	for q := w.queued; q >= 1; q-- {
		b := &w.recs[(w.cur+pipeDepth-q)%pipeDepth]
		for k := range b {
			w.a.Add(&b[k])
		}
	}
	w.a.addBatch(w.recs[w.cur][:w.n])
	w.queued, w.n = 0, 0
}

// prefetchSlots asks for the index slots of the hosts of rs: the first
// of the two cache misses a sighting's host costs.
func (a *Aggregator) prefetchSlots(rs []Sighting) {
	for k := range rs {
		h := rs[k].Host
		switch {
		case h.Is4():
			if len(a.v4.slots) > 0 {
				prefetch(unsafe.Pointer(&a.v4.slots[a.v4.hash(v4Key(h))]))
			}
		case len(a.v6.slots) > 0 && h.Zone() == "":
			prefetch(unsafe.Pointer(&a.v6.slots[a.v6.hash(v6Key(h))]))
		}
	}
}

// prefetchRows looks up the hosts of rs (their slots asked for a batch
// ago) and asks for their rows: the second miss.
func (a *Aggregator) prefetchRows(rs []Sighting) {
	for k := range rs {
		if i, ok := a.lookup(rs[k].Host); ok {
			prefetch(unsafe.Pointer(a.aggs.at(i)))
			if a.pos != nil {
				prefetch(unsafe.Pointer(a.pos.at(i)))
			}
		}
	}
}
