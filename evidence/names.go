package evidence

import (
	"math"
	"math/bits"
)

// nameCount counts the distinct names a summary line folds: exactly for
// the first exactNames, then by HyperLogLog (2^hllBits registers, a
// standard error of about 3%), so a host sending a million names costs a
// summary line 1.3 kB and no allocation per name.
type nameCount struct {
	exact [exactNames]uint64
	n     int // distinct hashes in exact; exactNames+1 once past it
	reg   [1 << hllBits]uint8
}

const (
	exactNames = 64
	hllBits    = 10
)

func (c *nameCount) add(h uint64) {
	i := h >> (64 - hllBits)
	if r := uint8(bits.LeadingZeros64(h<<hllBits|1<<(hllBits-1)) + 1); r > c.reg[i] {
		c.reg[i] = r
	}
	if c.n > exactNames {
		return
	}
	for _, x := range c.exact[:c.n] {
		if x == h {
			return
		}
	}
	if c.n < exactNames {
		c.exact[c.n] = h
	}
	c.n++
}

// estimate is the number of distinct names added.
func (c *nameCount) estimate() uint64 {
	if c.n <= exactNames {
		return uint64(c.n)
	}
	const m = float64(1 << hllBits)
	var sum float64
	zeros := 0
	for _, r := range c.reg {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros)) // linear counting is closer for few names
	}
	return max(uint64(e+0.5), exactNames+1)
}
