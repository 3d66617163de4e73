package wire

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// blockHead is the room kept in front of each block for the start of a
// record cut off at the end of the block before (64 KiB covers the
// largest frames of a loopback or GRO capture; a longer one is put
// together in a buffer of its own).
const blockHead = 64<<10 + 16

// blockCutter reads an uncompressed pcap file that can be read at any
// offset (a regular file) in blocks of chunkBytes at fixed offsets: each
// worker reads its next block itself, in parallel with the others, so
// the bytes land in the cache of the core that will match them, then
// waits for its turn to cut it into records, since where a block's first
// record starts depends on every block before. The records, their numbers
// and the errors are cutRecords', as for readPlain.
type blockCutter struct {
	ctx  context.Context
	p    *chunkPipe
	ra   io.ReaderAt
	h    *pcapHeader
	base int64        // where the first record starts
	next atomic.Int64 // blocks handed out

	mu    sync.Mutex
	cond  *sync.Cond
	turn  atomic.Int64 // the block to be cut next; changed under mu
	carry []byte       // the start of a record cut off at the end of the last block
	done  atomic.Bool  // the file has ended, cleanly or not: p.order is closed; set under mu
}

func newBlockCutter(ctx context.Context, p *chunkPipe, ra io.ReaderAt, h *pcapHeader) *blockCutter {
	b := &blockCutter{ctx: ctx, p: p, ra: ra, h: h, base: 24}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// work reads, cuts and matches blocks with m until the file ends.
func (b *blockCutter) work(m *Matcher, rec *chunkRecorder) {
	for {
		c := <-b.p.free
		k := b.next.Add(1) - 1
		n, rerr := b.ra.ReadAt(c.buf[blockHead:], b.base+k*int64(len(c.buf)-blockHead))
		// The turn before is a few microseconds of cutting: yield for it a
		// while before sleeping (waking a sleeping CPU takes longer).
		for spin := 0; spin < 100 && b.turn.Load() != k && !b.done.Load(); spin++ {
			runtime.Gosched()
		}
		b.mu.Lock()
		for b.turn.Load() != k && !b.done.Load() {
			b.cond.Wait()
		}
		if b.done.Load() {
			b.mu.Unlock()
			b.p.free <- c
			return
		}
		sent := b.cut(c, n, rerr)
		b.turn.Add(1)
		b.cond.Broadcast()
		b.mu.Unlock()
		if !sent {
			b.p.free <- c
			continue
		}
		matchChunk(m, rec, c)
	}
}

// cut cuts the block read into c (n bytes, then rerr), after the carry,
// into records, and queues c when it holds any. Called in turn, under mu.
func (b *blockCutter) cut(c *scanChunk, n int, rerr error) (sent bool) {
	p, h := b.p, b.h
	data := c.buf[blockHead : blockHead+n]
	if len(b.carry) > 0 {
		if len(b.carry) <= blockHead {
			start := blockHead - len(b.carry)
			copy(c.buf[start:], b.carry)
			data = c.buf[start : blockHead+n]
		} else {
			data = append(append(make([]byte, 0, len(b.carry)+n), b.carry...), data...)
		}
		b.carry = b.carry[:0]
	}
	c.data = data
	if rerr != nil && rerr != io.EOF {
		return b.finish(c, fmt.Errorf("%s: packet %d: %w", p.name, p.n+1, rerr))
	}
	pos, err := p.cutRecords(b.ctx, h, c, 0, math.MaxInt)
	if err != nil {
		return b.finish(c, err)
	}
	if rerr != nil { // the end of the file
		return b.finish(c, p.endErr(len(data)-pos))
	}
	b.carry = append(b.carry, data[pos:]...)
	if len(c.pkts) == 0 {
		return false
	}
	c.name = p.name
	p.order <- c
	return true
}

// finish ends the scan with err (nil: a clean end), queueing c if it
// holds records.
func (b *blockCutter) finish(c *scanChunk, err error) (sent bool) {
	b.p.err = err
	b.done.Store(true)
	if sent = len(c.pkts) > 0; sent {
		c.name = b.p.name
		b.p.order <- c
	}
	close(b.p.order)
	return sent
}
