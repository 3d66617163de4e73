package wire

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/signatures"
)

// Capture watches one interface live through an AF_PACKET socket (pure Go,
// no libpcap) and feeds every frame the kernel filter passes to a Matcher.
// Its counters are safe to read from any goroutine, for metrics.
type Capture struct {
	iface string
	m     *Matcher
	h     *pcapgo.EthernetHandle

	filterFor *signatures.Set // the set the kernel filter was built from
	anyPort   bool

	packets, bytes, events atomic.Uint64

	statsMu       sync.Mutex // PACKET_STATISTICS resets on read: sum here
	kernelPackets uint64
	kernelDrops   uint64
}

// CaptureStats are a Capture's counters; all of them only grow.
type CaptureStats struct {
	Packets       uint64 // frames read from the socket
	Bytes         uint64 // their captured bytes
	Events        uint64 // evidence events recorded
	KernelPackets uint64 // frames the kernel filter passed to the socket
	KernelDrops   uint64 // of those, dropped because the socket buffer was full
}

// NewCapture opens iface for capture with m. It needs CAP_NET_RAW. The
// interface is put in promiscuous mode when promisc is set (a mirror port
// needs it). Call Run to start, Close if Run is never called.
func NewCapture(iface string, m *Matcher, promisc bool) (*Capture, error) {
	h, err := pcapgo.NewEthernetHandle(iface)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", iface, err)
	}
	c := &Capture{iface: iface, m: m, h: h, anyPort: m.anyPort}
	if promisc {
		if err := h.SetPromiscuous(true); err != nil {
			h.Close()
			return nil, fmt.Errorf("%s: promiscuous mode: %w", iface, err)
		}
	}
	if err := c.refilter(); err != nil {
		h.Close()
		return nil, err
	}
	return c, nil
}

// refilter installs the kernel filter for the set in service, when it
// changed since the last one.
func (c *Capture) refilter() error {
	set := c.m.sigs.Current()
	if set == c.filterFor {
		return nil
	}
	prog, err := Filter(set, c.anyPort)
	if err != nil {
		return fmt.Errorf("%s: filter: %w", c.iface, err)
	}
	if err := c.h.SetBPF(prog); err != nil {
		return fmt.Errorf("%s: attach filter: %w", c.iface, err)
	}
	c.filterFor = set
	return nil
}

// Run captures until ctx is done, then closes the socket and returns nil.
// A read error before that is returned. Run must be called at most once.
func (c *Capture) Run(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	filterErr := make(chan error, 1)
	go func() {
		// Closing the socket wakes the blocked read.
		defer c.h.Close()
		// Once a second: fold the kernel counters (they reset on read) and
		// follow signature reloads into the kernel filter, even when no
		// packet passes the old one.
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-t.C:
				c.pollKernel()
				if err := c.refilter(); err != nil {
					filterErr <- err
					return
				}
			}
		}
	}()
	for {
		data, ci, err := c.h.ZeroCopyReadPacketData()
		if err != nil {
			c.pollKernel()
			if ctx.Err() != nil {
				return nil
			}
			select {
			case ferr := <-filterErr:
				return ferr
			default:
			}
			return fmt.Errorf("%s: %w", c.iface, err)
		}
		c.packets.Add(1)
		c.bytes.Add(uint64(len(data)))
		if n := c.m.Packet(layers.LinkTypeEthernet, data, Meta{Time: ci.Timestamp}); n > 0 {
			c.events.Add(uint64(n))
		}
	}
}

// Close releases the socket of a Capture that was never Run.
func (c *Capture) Close() error { return c.h.Close() }

func (c *Capture) pollKernel() {
	st, err := c.h.Stats()
	if err != nil || st == nil {
		return
	}
	c.statsMu.Lock()
	c.kernelPackets += uint64(st.Packets)
	c.kernelDrops += uint64(st.Drops)
	c.statsMu.Unlock()
}

// Stats returns the counters. It asks the kernel for its drop count, so
// call it at scrape time rather than per packet.
func (c *Capture) Stats() CaptureStats {
	c.pollKernel()
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	return CaptureStats{
		Packets:       c.packets.Load(),
		Bytes:         c.bytes.Load(),
		Events:        c.events.Load(),
		KernelPackets: c.kernelPackets,
		KernelDrops:   c.kernelDrops,
	}
}
