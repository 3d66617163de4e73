package report

import (
	"io"
	"slices"
	"sync"
)

// The rows of a report are made on as many cores as the logs were read
// on: with a million hosts, sorting them and formatting their rows is a
// large part of the whole report, and on one core it would be all of the
// report's time once reading is spread.

// rowBlock is how many rows one goroutine formats at a time, and
// parallelSortMin the number of hosts from which sorting them is split
// (variables so that tests can make them small).
var (
	rowBlock        = 2048
	parallelSortMin = 1 << 15
)

// sortHostKeys sorts keys in SortHosts order on n goroutines: the parts
// are sorted apart and merged. Host addresses are distinct, so the order
// is total and the result is the one a single sort gives.
func sortHostKeys(keys []hostKey, n int) {
	cmp := func(x, y hostKey) int {
		return compareHosts(x.evidence, y.evidence, x.proof, y.proof, x.events, y.events, x.addr, y.addr)
	}
	if n < 2 || len(keys) < parallelSortMin {
		slices.SortFunc(keys, cmp)
		return
	}
	n = min(n, 16)
	bounds := make([]int, n+1)
	for i := range bounds {
		bounds[i] = len(keys) * i / n
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { slices.SortFunc(keys[bounds[i]:bounds[i+1]], cmp) })
	}
	wg.Wait()
	// Merge neighbouring runs pairwise until one is left, the merges of
	// one pass side by side.
	tmp := make([]hostKey, len(keys))
	src, dst := keys, tmp
	for len(bounds) > 2 {
		var next []int
		for i := 0; i+1 < len(bounds); i += 2 {
			lo := bounds[i]
			if i+2 >= len(bounds) { // an odd run out: copied as it is
				wg.Go(func() { copy(dst[lo:], src[lo:]) })
				next = append(next, lo)
				continue
			}
			mid, hi := bounds[i+1], bounds[i+2]
			wg.Go(func() { mergeKeys(dst[lo:hi], src[lo:mid], src[mid:hi], cmp) })
			next = append(next, lo)
		}
		next = append(next, len(keys))
		wg.Wait()
		bounds = next
		src, dst = dst, src
	}
	if &src[0] != &keys[0] {
		copy(keys, src)
	}
}

func mergeKeys(dst, a, b []hostKey, cmp func(x, y hostKey) int) {
	i, j, k := 0, 0, 0
	for i < len(a) && j < len(b) {
		if cmp(b[j], a[i]) < 0 {
			dst[k] = b[j]
			j++
		} else {
			dst[k] = a[i]
			i++
		}
		k++
	}
	k += copy(dst[k:], a[i:])
	copy(dst[k:], b[j:])
}

// writeRows writes the report rows, in SortHosts order, as appendRow
// formats each, formatting blocks of rows on the aggregator's workers and
// writing the blocks in order. The bytes are those of formatting every
// row in turn on one core.
func (a *Aggregator) writeRows(w io.Writer, appendRow func(dst []byte, h *HostSummary) []byte) error {
	keys := a.sortedHosts()
	n := max(a.workers, 1)
	if n == 1 || len(keys) <= rowBlock {
		var buf []byte
		for h := range a.rows(keys, true) {
			buf = appendRow(buf, h)
			if len(buf) >= 64<<10 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		_, err := w.Write(buf)
		return err
	}
	// Names are sorted lazily, the first time a row asks: do it now,
	// before the goroutines share the interners.
	a.listExtras()
	for k := range a.names {
		if k != kindSubscriber { // see subsOf
			a.names[k].prepare()
		}
	}
	type block struct {
		buf  []byte
		done chan struct{}
	}
	inFlight := make(chan struct{}, 2*n)
	order := make(chan *block, 2*n)
	go func() {
		defer close(order)
		for lo := 0; lo < len(keys); lo += rowBlock {
			inFlight <- struct{}{}
			b := &block{buf: make([]byte, 0, rowBlock*200), done: make(chan struct{})}
			order <- b
			go func() {
				defer close(b.done)
				sets := newNameSets()
				var row HostSummary
				var subs []string
				for i := range keys[lo:min(lo+rowBlock, len(keys))] {
					a.fillRow(&row, &keys[lo+i], &sets, &subs)
					b.buf = appendRow(b.buf, &row)
				}
			}()
		}
	}()
	var err error
	for b := range order {
		<-b.done
		if err == nil {
			_, err = w.Write(b.buf)
		}
		<-inFlight
	}
	return err
}
