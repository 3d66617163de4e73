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
	s[b] += n
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
			m[floorDiv(b, 2)] += n
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
	First  time.Time // the first sighting
	Last   time.Time // the last sighting
	Start  time.Time // where the first bin starts
	Width  time.Duration
	Series []Series // most sightings first
}

// Bin cuts the timeline into at most n equal bins covering every sighting.
func (t *Timeline) Bin(n int) Binned {
	if t == nil || len(t.series) == 0 || n < 1 {
		return Binned{}
	}
	lo, hi := floorDiv(t.min, t.width), floorDiv(t.max, t.width)
	span := hi - lo + 1 // in buckets
	per := (span + int64(n) - 1) / int64(n)
	bins := int((span + per - 1) / per)
	out := Binned{First: time.Unix(0, t.min).UTC(), Last: time.Unix(0, t.max).UTC(),
		Start: time.Unix(0, lo*t.width).UTC(), Width: time.Duration(per * t.width)}
	for fam, s := range t.series {
		sr := Series{Counts: make([]uint64, bins)}
		if t.names != nil {
			sr.Family = t.names.names[fam]
		}
		for b, c := range s {
			i := (b - lo) / per
			if i < 0 {
				i = 0
			}
			if i >= int64(bins) {
				i = int64(bins) - 1
			}
			sr.Counts[i] += c
			sr.Total += c
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
