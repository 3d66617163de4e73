//go:build !linux

package wire

import (
	"context"
	"errors"
)

// Capture is live capture; it exists on Linux only (AF_PACKET).
type Capture struct{}

// CaptureStats are a Capture's counters.
type CaptureStats struct {
	Packets, Bytes, Events, KernelPackets, KernelDrops uint64
}

var errNoCapture = errors.New("live capture needs Linux (AF_PACKET)")

// NewCapture fails: live capture needs Linux.
func NewCapture(iface string, m *Matcher, promisc bool) (*Capture, error) { return nil, errNoCapture }

// Run fails: live capture needs Linux.
func (c *Capture) Run(ctx context.Context) error { return errNoCapture }

// Close does nothing.
func (c *Capture) Close() error { return nil }

// Stats returns zeros.
func (c *Capture) Stats() CaptureStats { return CaptureStats{} }
