// Package evidencetest gives tests evidence Recorders that keep, count or
// drop what a component records.
package evidencetest

import (
	"sync"
	"sync/atomic"

	"wormsink/evidence"
)

// Recorder keeps every event it is given. It is safe for the component's
// goroutines and the test at once; the zero value is ready.
type Recorder struct {
	mu  sync.Mutex
	evs []evidence.Event
}

// Record keeps ev.
func (r *Recorder) Record(ev evidence.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

// Events returns a copy of the events kept so far, in the order recorded.
func (r *Recorder) Events() []evidence.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]evidence.Event(nil), r.evs...)
}

// Len is the number of events kept so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

// Reset forgets the events kept so far, for a fuzz target that looks at
// one input's events at a time.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.evs = r.evs[:0]
	r.mu.Unlock()
}

// Counter counts events without keeping them, so fuzz targets and
// benchmarks record without allocating. The zero value is ready.
type Counter struct{ n atomic.Uint64 }

// Record counts one event.
func (c *Counter) Record(evidence.Event) { c.n.Add(1) }

// Count is the number of events recorded so far.
func (c *Counter) Count() int { return int(c.n.Load()) }

// Discard drops every event: for benchmarks that measure the component
// alone.
type Discard struct{}

// Record drops the event.
func (Discard) Record(evidence.Event) {}
