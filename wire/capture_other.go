//go:build !linux

package wire

import (
	"context"
	"errors"
	"wormsink/evidence"
	"wormsink/signatures"
)

// Capture is live capture; it exists on Linux only (AF_PACKET).
type Capture struct{}

// CaptureConfig says how to capture.
type CaptureConfig struct {
	Sigs    signatures.Source
	Rec     evidence.Recorder
	Matcher Options
	Workers int
	RingMB  int
	Promisc bool
}

// DefaultRingMB is the default ring memory of a Capture.
const DefaultRingMB = 64

// CaptureStats are a Capture's counters.
type CaptureStats struct {
	Packets, Bytes, Events, KernelPackets, KernelDrops   uint64
	StreamJoined, StreamEvicted, StreamLost, StreamBytes uint64
}

var errNoCapture = errors.New("live capture needs Linux (AF_PACKET)")

// NewCapture fails: live capture needs Linux.
func NewCapture(iface string, cfg CaptureConfig) (*Capture, error) { return nil, errNoCapture }

// Workers is 0.
func (c *Capture) Workers() int { return 0 }

// Serve fails: live capture needs Linux.
func (c *Capture) Serve(ctx context.Context) error { return errNoCapture }

// Shutdown does nothing.
func (c *Capture) Shutdown(ctx context.Context) error { return nil }

// Stats returns zeros.
func (c *Capture) Stats() CaptureStats { return CaptureStats{} }
