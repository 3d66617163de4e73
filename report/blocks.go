package report

// blocks is a growing array in fixed blocks: appending never copies what
// is there, so a table of a million hosts grows without the copies (and
// the page faults on fresh memory) of a doubling slice.
type blocks[T any] struct {
	b [][]T
	n int
}

const (
	blockShift = 12
	blockLen   = 1 << blockShift
)

func (s *blocks[T]) len() int { return s.n }

// at returns element i, which must be below len.
func (s *blocks[T]) at(i uint32) *T { return &s.b[i>>blockShift][i&(blockLen-1)] }

func (s *blocks[T]) push(v T) {
	if s.n&(blockLen-1) == 0 {
		s.b = append(s.b, make([]T, 0, blockLen))
	}
	last := &s.b[len(s.b)-1]
	*last = append(*last, v)
	s.n++
}
