package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Memory given back after a load. The Go runtime returns freed memory to
// the operating system only after a garbage collection has found it free,
// and an idle process collects only every two minutes: after a burst (a
// flood of large queries, stalled transfers) the memory the burst used
// would stay counted against the machine that long. So when the process
// has not collected for trimQuiet, serve collects and returns what is free
// at once if it holds trimSlack more than after the last such trim, or if
// the goroutines the load held (connections, forwards, transfers) have
// mostly ended since and it holds trimSlack more than its lowest. A busy
// process collects on its own and is left alone.
const (
	trimEvery = time.Second
	trimQuiet = 3 * time.Second
	trimSlack = 32 << 20
)

func (s *server) addMemoryTrim() {
	s.add("memory", newLoop(func(ctx context.Context) error {
		newTrimmer().run(ctx, debug.FreeOSMemory)
		return nil
	}))
}

// trimmer watches the runtime's figures every trimEvery and calls free as
// described above.
type trimmer struct {
	samples            []metrics.Sample
	cycles, floor, gAt uint64
	lowest             uint64
	lastGC             time.Time
}

// newTrimmer takes the process as it is now as its floor.
func newTrimmer() *trimmer {
	t := &trimmer{samples: []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}}
	t.cycles, t.floor, t.gAt = t.read()
	t.lowest, t.lastGC = t.floor, time.Now()
	return t
}

func (t *trimmer) read() (cycles, held, goroutines uint64) {
	metrics.Read(t.samples)
	return t.samples[0].Value.Uint64(), t.samples[1].Value.Uint64() - t.samples[2].Value.Uint64(), t.samples[3].Value.Uint64()
}

// run checks every trimEvery until ctx ends.
func (t *trimmer) run(ctx context.Context, free func()) {
	tk := time.NewTicker(trimEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		c, held, g := t.read()
		if c != t.cycles {
			t.cycles, t.lastGC = c, time.Now()
			continue
		}
		if time.Since(t.lastGC) < trimQuiet {
			continue
		}
		loadEnded := g < t.gAt/2 && t.gAt-g >= 64
		if held > t.floor+trimSlack || loadEnded && held > t.lowest+trimSlack {
			free()
			t.cycles, t.floor, t.gAt = t.read()
			t.lowest = min(t.lowest, t.floor)
			t.lastGC = time.Now()
		}
	}
}
