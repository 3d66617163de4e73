package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// After a burst of allocation, once the runtime is quiet, the memory is
// collected and handed back without waiting for the 2-minute forced GC;
// once, not again while nothing changes.
func TestTrimMemoryAfterBurst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan time.Time, 10)
	done := make(chan struct{})
	tr := newTrimmer() // its floor: the process before the burst
	go func() {
		defer close(done)
		tr.run(ctx, func() { debug.FreeOSMemory(); calls <- time.Now() })
	}()
	burst := make([][]byte, 0, 96)
	for range 96 {
		burst = append(burst, make([]byte, 1<<20))
	}
	runtime.KeepAlive(burst)
	burst = nil
	end := time.Now()
	select {
	case at := <-calls:
		if took := at.Sub(end); took > trimQuiet+3*trimEvery {
			t.Errorf("memory handed back %v after the burst, want within %v", took, trimQuiet+3*trimEvery)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("memory never handed back after the burst")
	}
	// Nothing changed since: no second collection.
	select {
	case <-calls:
		t.Fatal("collected again with nothing to give back")
	case <-time.After(trimQuiet + 2*trimEvery):
	}
	cancel()
	<-done
}
