package attribution

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Deterministic is RFC 7422 deterministic NAT: each inside address owns a
// fixed public address and port range, so the configuration alone names
// it, without logs.
type Deterministic struct {
	rules []detRule
}

// detRule maps the inside network onto the public one: inside address i
// (counted from the network's first address) gets public address
// i / ratio and the ratio-th part of the port range numbered i % ratio,
// where ratio is the number of inside addresses per public address.
type detRule struct {
	inside, public netip.Prefix
	lo, hi         uint16
	ratio          uint32 // inside addresses per public address
	perSub         uint32 // ports per inside address
	from, until    int64  // ms; until 0: no end
}

// LoadDeterministic reads a deterministic NAT file.
func LoadDeterministic(path string) (*Deterministic, error) {
	return loadFile(path, "deterministic", ParseDeterministic)
}

// ParseDeterministic parses lines "INSIDE_CIDR PUBLIC_CIDR LO-HI [FROM
// [UNTIL]]" (times RFC 3339; the rule holds from FROM, inclusive, until
// UNTIL, exclusive). IPv4 only. # starts a comment.
func ParseDeterministic(r io.Reader, name string) (*Deterministic, error) {
	d := &Deterministic{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		r, err := parseDetRule(f)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		for _, o := range d.rules {
			if o.public.Overlaps(r.public) && (r.until == 0 || o.from < r.until) && (o.until == 0 || r.from < o.until) {
				return nil, fmt.Errorf("%s:%d: %s overlaps %s at the same time", name, n, r.public, o.public)
			}
		}
		d.rules = append(d.rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func parseDetRule(f []string) (detRule, error) {
	var r detRule
	if len(f) < 3 || len(f) > 5 {
		return r, fmt.Errorf("want \"INSIDE_CIDR PUBLIC_CIDR LO-HI [FROM [UNTIL]]\"")
	}
	in, err := netip.ParsePrefix(f[0])
	if err != nil || !in.Addr().Is4() {
		return r, fmt.Errorf("bad inside IPv4 CIDR %q", f[0])
	}
	pub, err := netip.ParsePrefix(f[1])
	if err != nil || !pub.Addr().Is4() {
		return r, fmt.Errorf("bad public IPv4 CIDR %q", f[1])
	}
	r.inside, r.public = in.Masked(), pub.Masked()
	if r.inside.Bits() > r.public.Bits() {
		return r, fmt.Errorf("inside %s is smaller than public %s", r.inside, r.public)
	}
	if r.public.Bits()-r.inside.Bits() > 16 {
		return r, fmt.Errorf("more than 65536 inside addresses per public address")
	}
	r.ratio = 1 << (r.public.Bits() - r.inside.Bits())
	los, his, ok := strings.Cut(f[2], "-")
	lo, err1 := strconv.ParseUint(los, 10, 16)
	hi, err2 := strconv.ParseUint(his, 10, 16)
	if !ok || err1 != nil || err2 != nil || lo > hi || lo == 0 {
		return r, fmt.Errorf("bad port range %q (want LO-HI, 1-65535)", f[2])
	}
	r.lo, r.hi = uint16(lo), uint16(hi)
	r.perSub = uint32(hi-lo+1) / r.ratio
	if r.perSub == 0 {
		return r, fmt.Errorf("port range %q has fewer ports than the %d inside addresses per public address", f[2], r.ratio)
	}
	if len(f) >= 4 {
		t, err := time.Parse(time.RFC3339, f[3])
		if err != nil {
			return r, fmt.Errorf("bad FROM time %q (RFC 3339)", f[3])
		}
		r.from = t.UnixMilli()
	}
	if len(f) == 5 {
		t, err := time.Parse(time.RFC3339, f[4])
		if err != nil {
			return r, fmt.Errorf("bad UNTIL time %q (RFC 3339)", f[4])
		}
		r.until = t.UnixMilli()
		if r.until <= r.from {
			return r, fmt.Errorf("UNTIL is not after FROM")
		}
	}
	return r, nil
}

// Rules returns the number of rules.
func (d *Deterministic) Rules() int { return len(d.rules) }

func u32(a netip.Addr) uint32 { return v4key(a) }

func addrFrom(u uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
}

// lookup maps a public address and port at t to the inside address that
// owns it (Result.Inside, without a port), or counts the inside addresses
// sharing the public address when the port is 0 or outside every range.
func (d *Deterministic) lookup(a netip.Addr, port uint16, t int64) (Result, bool) {
	if !a.Is4() {
		return Result{}, false
	}
	for i := range d.rules {
		r := &d.rules[i]
		if !r.public.Contains(a) || t < r.from || (r.until != 0 && t >= r.until) {
			continue
		}
		j := u32(a) - u32(r.public.Addr())
		if port < r.lo || port > r.hi || uint32(port-r.lo)/r.perSub >= r.ratio {
			if r.ratio == 1 && port == 0 {
				return Result{Inside: netip.AddrPortFrom(addrFrom(u32(r.inside.Addr())+j), 0)}, true
			}
			return Result{Candidates: int(r.ratio)}, true
		}
		k := uint32(port-r.lo) / r.perSub
		in := u32(r.inside.Addr()) + j*r.ratio + k
		return Result{Inside: netip.AddrPortFrom(addrFrom(in), 0)}, true
	}
	return Result{}, false
}

// Forward returns the public address and port range inside address a
// owns at t, for the docs and the operator's checks.
func (d *Deterministic) Forward(a netip.Addr, t time.Time) (pub netip.Addr, lo, hi uint16, ok bool) {
	a = a.Unmap()
	ms := t.UnixMilli()
	for i := range d.rules {
		r := &d.rules[i]
		if !r.inside.Contains(a) || ms < r.from || (r.until != 0 && ms >= r.until) {
			continue
		}
		i := u32(a) - u32(r.inside.Addr())
		pub = addrFrom(u32(r.public.Addr()) + i/r.ratio)
		k := i % r.ratio
		lo = r.lo + uint16(k*r.perSub)
		hi = lo + uint16(r.perSub-1)
		return pub, lo, hi, true
	}
	return netip.Addr{}, 0, 0, false
}
