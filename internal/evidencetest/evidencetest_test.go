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

func TestLinesChecksTheFieldTable(t *testing.T) {
	good := []byte(`{"time":"2026-12-06T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.1","count":2}` + "\n\n" + `{"level":"info","event":"start","whatever":1}` + "\n")
	ls, err := Lines(good)
	if err != nil || len(ls) != 2 || ls[0]["count"] != float64(2) {
		t.Fatalf("%v %v", ls, err)
	}
	type row struct {
		Host  string `json:"host"`
		Count uint64 `json:"count"`
	}
	rs, err := Decode[row](good)
	if err != nil || len(rs) != 2 || rs[0].Host != "10.0.0.1" || rs[0].Count != 2 {
		t.Fatalf("%v %v", rs, err)
	}
	for _, bad := range []string{
		`{"host":"10.0.0.1","hots":1}`,
		`{"host":"10.0.0.1","count":"2"}`,
		`{"host":`,
	} {
		if _, err := Lines([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
		if _, err := Decode[row]([]byte(bad)); err == nil {
			t.Errorf("Decode %s: no error", bad)
		}
	}
}
