// Package evidencetest gives tests evidence Recorders that keep, count or drop
// what a component records, and one reader of evidence logs checked against the field table.
package evidencetest

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// Lines decodes an evidence log, one JSON object a line (blank lines
// skipped), as encoding/json decodes into a map: strings, float64 numbers,
// bools. Every evidence line (one with a host or a network) is checked
// against the field table (evidence.CheckLine), so a test that reads the
// log also checks the writer kept to the table.
func Lines(log []byte) ([]map[string]any, error) {
	var out []map[string]any
	for n, l := range bytes.Split(log, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			return out, fmt.Errorf("line %d: %q: %w", n+1, l, err)
		}
		if err := evidence.CheckLine(m); err != nil {
			return out, fmt.Errorf("line %d: %q: %w", n+1, l, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Decode is Lines into a struct per line (fields tagged with the keys of
// the field table), for tests that read a few typed fields.
func Decode[T any](log []byte) ([]T, error) {
	var out []T
	for n, l := range bytes.Split(log, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var m map[string]any
		var v T
		if err := json.Unmarshal(l, &m); err != nil {
			return out, fmt.Errorf("line %d: %q: %w", n+1, l, err)
		}
		if err := evidence.CheckLine(m); err != nil {
			return out, fmt.Errorf("line %d: %q: %w", n+1, l, err)
		}
		if err := json.Unmarshal(l, &v); err != nil {
			return out, fmt.Errorf("line %d: %q: %w", n+1, l, err)
		}
		out = append(out, v)
	}
	return out, nil
}
