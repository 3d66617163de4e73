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

func (s *server) addMemoryTrim() error {
	s.parts = append(s.parts, part{name: "memory", run: func(ctx context.Context) error {
		trimMemory(ctx, debug.FreeOSMemory)
		return nil
	}})
	return nil
}

// trimMemory watches the runtime's figures every trimEvery until ctx ends,
// calling free as described above.
func trimMemory(ctx context.Context, free func()) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	read := func() (cycles, held, goroutines uint64) {
		metrics.Read(samples)
		return samples[0].Value.Uint64(), samples[1].Value.Uint64() - samples[2].Value.Uint64(), samples[3].Value.Uint64()
	}
	cycles, floor, gAt := read()
	lowest := floor
	lastGC := time.Now()
	tk := time.NewTicker(trimEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		c, held, g := read()
		if c != cycles {
			cycles, lastGC = c, time.Now()
			continue
		}
		if time.Since(lastGC) < trimQuiet {
			continue
		}
		loadEnded := g < gAt/2 && gAt-g >= 64
		if held > floor+trimSlack || loadEnded && held > lowest+trimSlack {
			free()
			cycles, floor, gAt = read()
			lowest = min(lowest, floor)
			lastGC = time.Now()
		}
	}
}
