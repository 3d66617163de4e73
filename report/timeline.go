package report

import (
	"math"
	"slices"
	"strings"
	"time"
)

// maxTimelineBuckets bounds the timeline's memory: past it, buckets double
// in width and merge, so a year of logs costs what a day does.
const maxTimelineBuckets = 1 << 15

// Timeline counts sightings per family over time, in buckets that start a
// minute wide and widen as the span grows.
type Timeline struct {
	width   int64                       // bucket width, ns
	series  map[uint32]map[int64]uint64 // family id → bucket → sightings
	buckets int
	names   *interner
	min     int64
	max     int64
}

func newTimeline() *Timeline {
	return &Timeline{width: int64(time.Minute), series: make(map[uint32]map[int64]uint64), min: math.MaxInt64, max: math.MinInt64}
}

// add puts a line's count at its first sighting: a folded line's sightings
// lie within the writer's folding window (a second by default).
func (t *Timeline) add(fam uint32, first, last int64, n uint64) {
	if first < t.min {
		t.min = first
	}
	if last > t.max {
		t.max = last
	}
	s := t.series[fam]
	if s == nil {
		s = make(map[int64]uint64)
		t.series[fam] = s
	}
	b := floorDiv(first, t.width)
	if _, ok := s[b]; !ok {
		t.buckets++
	}
	s[b] = addSat(s[b], n)
	for t.buckets > maxTimelineBuckets {
		t.widen()
	}
}

func (t *Timeline) widen() {
	t.width *= 2
	t.buckets = 0
	for fam, s := range t.series {
		m := make(map[int64]uint64, len(s)/2+1)
		for b, n := range s {
			m[floorDiv(b, 2)] = addSat(m[floorDiv(b, 2)], n)
		}
		t.series[fam] = m
		t.buckets += len(m)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Series is one family's sightings per bin.
type Series struct {
	Family string // "" for sightings of no listed signature (tftp_request)
	Total  uint64
	Counts []uint64
}

// Binned is the timeline cut into equal bins for drawing.
type Binned struct {
	First time.Time // the first sighting
	Last  time.Time // the last sighting
	Start time.Time // where the first bin starts: a clock boundary of Width
	End   time.Time // where the last bin ends
	Width time.Duration
	// TailPartial is set when the log ends well before the last bin does:
	// that bin's count covers less time than the others.
	TailPartial bool
	Series      []Series // most sightings first
}

// binWidths are the bin widths a reader counts in; each starts on a
// boundary of its own width (weeks on Mondays, UTC).
var binWidths = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 28 * 24 * time.Hour,
}

const week = 7 * 24 * time.Hour

// monday is 1970-01-05, the first Monday of Unix time: week bins start there.
var monday = int64(4 * 24 * time.Hour)

// Bin cuts the timeline into at most n bins of a clock width (a minute, an
// hour, a day...) starting on a boundary of that width, covering every
// sighting. Timeline buckets wider than a minute (very long logs) go to the
// bin their start falls in.
func (t *Timeline) Bin(n int) Binned {
	if t == nil || len(t.series) == 0 || n < 1 {
		return Binned{}
	}
	var w, origin, start, end int64
	for i := 0; ; i++ {
		if i < len(binWidths) {
			w = int64(binWidths[i])
		} else {
			w = int64(week) * int64(1<<(i-len(binWidths)+3)) // 8, 16, 32... weeks
		}
		if w < t.width {
			continue
		}
		origin = 0
		if w%int64(week) == 0 {
			origin = monday
		}
		start = origin + floorDiv(t.min-origin, w)*w
		end = origin + (floorDiv(t.max-origin, w)+1)*w
		if (end-start)/w <= int64(n) {
			break
		}
	}
	bins := int((end - start) / w)
	out := Binned{First: time.Unix(0, t.min).UTC(), Last: time.Unix(0, t.max).UTC(),
		Start: time.Unix(0, start).UTC(), End: time.Unix(0, end).UTC(), Width: time.Duration(w),
		TailPartial: end-t.max > w/10}
	for fam, s := range t.series {
		sr := Series{Counts: make([]uint64, bins)}
		if t.names != nil {
			sr.Family = t.names.names[fam]
		}
		for b, c := range s {
			i := min(max(floorDiv(b*t.width-start, w), 0), int64(bins)-1)
			sr.Counts[i] = addSat(sr.Counts[i], c)
			sr.Total = addSat(sr.Total, c)
		}
		out.Series = append(out.Series, sr)
	}
	slices.SortFunc(out.Series, func(a, b Series) int {
		if a.Total != b.Total {
			if a.Total > b.Total {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Family, b.Family)
	})
	return out
}
