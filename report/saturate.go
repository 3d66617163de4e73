package report

import "math"

// Counts are sums of the lines' "count" fields, which a log (or a forger
// writing one) can make as large as 2^64-1 each: a sum that would wrap
// stays at MaxCount instead, and the report says so (Saturated). Every
// partial sum (a host's, a bin's) is at most the total, so the total
// reaching MaxCount is the one sign needed.
const MaxCount = math.MaxUint64

// addSat returns a+b, or MaxCount when the sum does not fit.
func addSat(a, b uint64) uint64 {
	s := a + b
	if s < a {
		return MaxCount
	}
	return s
}

// sumSources is the saturating sum of a host's or network's sources.
func sumSources(s *[3]uint64) uint64 { return addSat(addSat(s[0], s[1]), s[2]) }

// Saturated reports whether the sightings counted reached MaxCount: some
// sums in the report are then held at MaxCount, below their true value.
func (a *Aggregator) Saturated() bool { return a.kept == MaxCount }
