package wire

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"

	"wormsink/evidence"
	"wormsink/internal/lifecycle"
	"wormsink/signatures"
)

// Capture watches one interface live (pure Go, no libpcap): one AF_PACKET
// socket per worker, each with a TPACKET_V3 memory-mapped ring, joined in
// a PACKET_FANOUT group that hashes by flow, and each running its own
// Matcher. The kernel filter (see Filter) runs on every socket, so only
// candidate packets are copied into the rings. Its counters are safe to
// read from any goroutine, for metrics.
type Capture struct {
	iface   string
	sigs    signatures.Source
	anyPort bool
	workers []*captureWorker

	filterMu  sync.Mutex
	filterFor *signatures.Set // the set the kernel filters were built from

	gate lifecycle.Gate // Serve against Shutdown
}

// CaptureConfig says how to capture.
type CaptureConfig struct {
	Sigs signatures.Source
	// Rec takes every worker's evidence: it must be safe for concurrent use
	// (an *evidence.Writer is).
	Rec     evidence.Recorder
	Matcher Options
	// Workers is the number of sockets and goroutines reading them; 0 means
	// one per CPU.
	Workers int
	// RingMB is the memory of all rings together, in MiB, split evenly
	// between the workers; 0 means DefaultRingMB.
	RingMB int
	// Promisc puts the interface in promiscuous mode (a mirror port needs
	// it).
	Promisc bool
}

// DefaultRingMB is the default ring memory of a Capture. Only frames the
// kernel filter passes take room in it, so a few tens of MiB absorb long
// bursts of candidates.
const DefaultRingMB = 64

// ringBlock is the TPACKET_V3 block size: the kernel fills a block with
// frames and hands it over whole, or when ringTimeout passes with the
// block partly filled, so a quiet link spends a block per timeout: many
// small blocks beat a few big ones. A block must hold the largest frame,
// including an IPv4 datagram the fan-out's defragmentation reassembled
// (64 KiB).
const (
	ringBlock   = 128 << 10
	ringFrame   = 1 << 11
	ringTimeout = 20 * time.Millisecond
	pollTimeout = 100 * time.Millisecond
)

// CaptureStats are a Capture's counters, summed over its workers; all of
// them only grow.
type CaptureStats struct {
	Packets       uint64 // frames read from the rings
	Bytes         uint64 // their captured bytes
	Events        uint64 // evidence events recorded
	KernelPackets uint64 // frames the kernel filter passed to the sockets (drops included)
	KernelDrops   uint64 // of those, dropped because a ring was full

	StreamJoined  uint64 // TCP segments read together with their stream's carried bytes
	StreamEvicted uint64 // streams pushed out of a full reassembly table
	StreamLost    uint64 // commands longer than the carried tail (their start dropped)
	StreamBytes   uint64 // what the reassembly tables hold at most (carried tails and held segments), all workers together
}

// captureWorker is one socket, its ring and its matcher.
type captureWorker struct {
	h *afpacket.TPacket
	m *Matcher

	// Written by the worker alone; padded so workers do not share a cache
	// line.
	packets, bytes, events atomic.Uint64
	joined, evicted, lost  atomic.Uint64 // the matcher's stream counters
	_                      [16]byte

	mu     sync.Mutex // guards the socket's life against stats reads
	closed bool
	kernel afpacket.SocketStatsV3
}

var fanoutSeq atomic.Uint32

// NewCapture opens iface for capture. It needs CAP_NET_RAW, so serve calls
// it before dropping privileges. Serve captures; Shutdown stops it, or
// releases the sockets when Serve is never called.
func NewCapture(iface string, cfg CaptureConfig) (*Capture, error) {
	n := cfg.Workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	ringMB := cfg.RingMB
	if ringMB <= 0 {
		ringMB = DefaultRingMB
	}
	blocks := max(ringMB*(1<<20)/ringBlock/n, 8)
	c := &Capture{iface: iface, sigs: cfg.Sigs, anyPort: cfg.Matcher.AnyPort}
	set := cfg.Sigs.Current()
	prog, err := Filter(set, c.anyPort)
	if err != nil {
		return nil, fmt.Errorf("%s: filter: %w", iface, err)
	}
	c.filterFor = set
	// One fan-out group per Capture; the id only has to differ from other
	// groups on the same interface.
	group := uint16(os.Getpid()) + uint16(fanoutSeq.Add(1))*7919
	// One table of worm requests for all workers: a server's reply comes
	// from a fresh port, so it may hash to another worker than its request.
	pending := newSharedAnswers()
	for i := range n {
		h, err := afpacket.NewTPacket(
			afpacket.OptInterface(iface),
			afpacket.TPacketVersion3,
			afpacket.OptBlockSize(ringBlock),
			afpacket.OptFrameSize(ringFrame),
			afpacket.OptNumBlocks(blocks),
			afpacket.OptBlockTimeout(ringTimeout),
			afpacket.OptPollTimeout(pollTimeout),
		)
		if err != nil {
			c.closeWorkers()
			return nil, fmt.Errorf("%s: socket %d: %w", iface, i, err)
		}
		w := &captureWorker{h: h, m: NewMatcher(cfg.Sigs, cfg.Rec, cfg.Matcher)}
		w.m.answers = pending
		c.workers = append(c.workers, w)
		if err := h.SetBPF(prog); err != nil {
			c.closeWorkers()
			return nil, fmt.Errorf("%s: attach filter: %w", iface, err)
		}
		// Hash by flow, IPv4 fragments reassembled by the kernel first, so
		// a datagram's pieces meet in one worker. (IPv6 fragments carry no
		// ports, so they hash on the addresses alone, all to one worker.)
		if n > 1 {
			if err := h.SetFanout(afpacket.FanoutHashWithDefrag, group); err != nil {
				c.closeWorkers()
				return nil, fmt.Errorf("%s: fan-out group %d: %w", iface, group, err)
			}
		}
		if cfg.Promisc && i == 0 {
			if err := h.SetPromiscuous(true); err != nil {
				c.closeWorkers()
				return nil, fmt.Errorf("%s: promiscuous mode: %w", iface, err)
			}
		}
	}
	return c, nil
}

// Workers is the number of sockets reading the interface.
func (c *Capture) Workers() int { return len(c.workers) }

// refilter installs the kernel filter for the set in service on every
// socket, when it changed since the last one.
func (c *Capture) refilter() error {
	c.filterMu.Lock()
	defer c.filterMu.Unlock()
	set := c.sigs.Current()
	if set == c.filterFor {
		return nil
	}
	prog, err := Filter(set, c.anyPort)
	if err != nil {
		return fmt.Errorf("%s: filter: %w", c.iface, err)
	}
	for _, w := range c.workers {
		w.mu.Lock()
		if !w.closed {
			err = w.h.SetBPF(prog)
		}
		w.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: attach filter: %w", c.iface, err)
		}
	}
	c.filterFor = set
	return nil
}

// Serve captures until ctx is done or Shutdown is called, then closes the
// sockets and returns ErrCaptureClosed. A read error before that is
// returned. Serve must be called at most once.
func (c *Capture) Serve(ctx context.Context) error {
	ctx, end, err := c.gate.Begin(ctx, ErrCaptureClosed)
	if err != nil {
		return err
	}
	defer end()
	ctx, cancel := context.WithCancel(ctx) // a failing worker stops the others
	defer cancel()
	errs := make(chan error, len(c.workers)+1)
	var wg sync.WaitGroup
	for _, w := range c.workers {
		wg.Go(func() {
			if err := w.run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", c.iface, err)
				cancel()
			}
		})
	}
	wg.Go(func() {
		// Once a second: fold the kernel counters (they reset on read) and
		// follow signature reloads into the kernel filters, even when no
		// packet passes the old ones.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				for _, w := range c.workers {
					w.pollKernel()
				}
				if err := c.refilter(); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}
	})
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ErrCaptureClosed
	}
}

// run reads one ring until ctx is done, then closes its socket (only the
// reader may: the ring is unmapped on close).
func (w *captureWorker) run(ctx context.Context) error {
	defer w.close()
	// The capture's end ends its streams, as a capture file's end does: a
	// command still open is read as complete, before the recorder closes.
	defer w.endAll()
	m := w.m
	for {
		data, ci, err := w.h.ZeroCopyReadPacketData()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, afpacket.ErrTimeout) {
				// A quiet ring: streams left open end when idle even
				// though no segment comes to look for them.
				w.endIdle(time.Now())
				continue
			}
			return err
		}
		// Only candidates get here: a counter update per packet is cheap
		// next to the matching, and keeps the metrics current.
		w.packets.Add(1)
		w.bytes.Add(uint64(len(data)))
		if n := m.Packet(layers.LinkTypeEthernet, data, Meta{Time: ci.Timestamp}); n > 0 {
			w.events.Add(uint64(n))
		}
		if st := &m.stats; st.StreamJoined != w.joined.Load() || st.StreamEvicted != w.evicted.Load() || st.StreamLost != w.lost.Load() {
			w.joined.Store(st.StreamJoined)
			w.evicted.Store(st.StreamEvicted)
			w.lost.Store(st.StreamLost)
		}
		// A busy ring never times out: look at ctx and idle streams now
		// and then.
		if w.packets.Load()&0xff == 0 {
			if ctx.Err() != nil {
				return nil
			}
			w.endIdle(ci.Timestamp)
		}
	}
}

// endIdle ends the worker's streams idle at now (see streams).
func (w *captureWorker) endIdle(now time.Time) {
	if n := w.m.tickStreams(now); n > 0 {
		w.events.Add(uint64(n))
	}
}

// endAll ends every stream of the worker (see Matcher.flushStreams).
func (w *captureWorker) endAll() {
	if n := w.m.flushStreams(""); n > 0 {
		w.events.Add(uint64(n))
	}
}

func (w *captureWorker) close() {
	w.pollKernel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		w.h.Close()
	}
}

// pollKernel folds the socket's kernel counters (afpacket sums them).
func (w *captureWorker) pollKernel() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if _, st, err := w.h.SocketStats(); err == nil {
		w.kernel = st
	}
}

// Shutdown stops Serve and waits until every socket is closed (within
// pollTimeout), or for ctx. Before Serve it closes the sockets itself.
func (c *Capture) Shutdown(ctx context.Context) error {
	serving, err := c.gate.Shutdown(ctx)
	if !serving {
		c.closeWorkers()
	}
	return err
}

// closeWorkers releases the sockets of a Capture that never served.
func (c *Capture) closeWorkers() {
	for _, w := range c.workers {
		w.close()
	}
}

// Stats returns the counters. It asks the kernel for its drop counts, so
// call it at scrape time rather than per packet.
func (c *Capture) Stats() CaptureStats {
	var s CaptureStats
	for _, w := range c.workers {
		w.pollKernel()
		w.mu.Lock()
		s.KernelPackets += uint64(w.kernel.Packets())
		s.KernelDrops += uint64(w.kernel.Drops())
		w.mu.Unlock()
		s.Packets += w.packets.Load()
		s.Bytes += w.bytes.Load()
		s.Events += w.events.Load()
		s.StreamJoined += w.joined.Load()
		s.StreamEvicted += w.evicted.Load()
		s.StreamLost += w.lost.Load()
		s.StreamBytes += uint64(2 * w.m.streamFlows * w.m.streamTail)
	}
	return s
}
