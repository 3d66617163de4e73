package evidencetest

import (
	"sync"
	"testing"

	"wormsink/evidence"
)

func TestRecorderKeepsEveryEventInOrder(t *testing.T) {
	var r Recorder
	var c Counter
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				r.Record(evidence.Event{Kind: evidence.WireMatch, Packet: uint64(g*1000 + i)})
				c.Record(evidence.Event{})
			}
		}()
	}
	wg.Wait()
	Discard{}.Record(evidence.Event{})
	evs := r.Events()
	if len(evs) != 400 || r.Len() != 400 || c.Count() != 400 {
		t.Fatalf("kept %d (Len %d), counted %d; want 400", len(evs), r.Len(), c.Count())
	}
	last := map[uint64]uint64{}
	for _, ev := range evs {
		g := ev.Packet / 1000
		if prev, ok := last[g]; ok && ev.Packet <= prev {
			t.Fatalf("goroutine %d: packet %d after %d", g, ev.Packet, prev)
		}
		last[g] = ev.Packet
	}
	evs[0].Packet = 99999
	if r.Events()[0].Packet == 99999 {
		t.Error("Events shares its slice with the recorder")
	}
}
