package dnsblock

import (
	"encoding/binary"
	"errors"

	"wormsink/signatures"
)

var (
	errMismatch = errors.New("answer does not match the question")
	// errUncheckable: the answer cannot be checked against the policy, so
	// it must not reach the client (fail closed).
	errUncheckable = errors.New("answer cannot be checked against the policy")
)

// maxCNAMEs bounds the CNAME records of one answer the shim follows; an
// answer with more is not relayed (BIND stops after 16 as well).
const maxCNAMEs = 16

// cnameRR is one CNAME record of an upstream answer, by offsets.
type cnameRR struct {
	owner, target int32 // name offsets
	ttl           int32 // offset of the TTL
	class         uint16
}

// respInfo is what one walk over an upstream answer learns: whether it
// matches the query, how long it may be cached, and whether it names a
// listed name.
type respInfo struct {
	rcode    uint16
	tc       bool
	ttl      uint32 // how long the answer may be cached; 0: not at all
	negative bool   // NXDOMAIN or NODATA: capped as negative answers are
	ttlOffs  []int32
	// check: the answer section holds a name other than the question's (a
	// CNAME, or a record of another owner), which the policy must see on
	// every cache hit; answers owned by the question name alone need only
	// the question checked.
	check bool

	cn  [maxCNAMEs]cnameRR
	ncn int

	// A listed name the answer names.
	hit     signatures.NameMatch
	hitName []byte // the listed name reached, dotted
	hitOff  int    // its offset in the answer
	hitCut  int    // readName's cut for it
	// chain holds the CNAMEs (indexes into cn) from the question name to
	// the hit, in chain order; empty when the hit is the owner or target of
	// a record off the chain.
	chain    [maxCNAMEs]int8
	chainLen int
}

// walkResponse checks an upstream answer against the question it answers
// (qsec is the question section as sent), collects the TTL offsets for the
// cache, and, with set, looks for a listed name among the answer's names:
// first along the CNAME chain from the question name, whatever the order
// of the records, then among every other owner and CNAME target of the
// answer section. scratch holds two names. An answer whose names cannot be
// read in full returns an error: it must not be relayed.
func walkResponse(resp []byte, qsec []byte, set *signatures.Set, info *respInfo, scratch []byte) error {
	offs := info.ttlOffs[:0]
	info.rcode, info.tc, info.ttl, info.ttlOffs, info.check, info.negative = 0, false, 0, offs, false, false
	info.ncn, info.hit, info.hitName, info.chainLen = 0, signatures.NameMatch{}, nil, 0
	if len(resp) < headerLen {
		return errShort
	}
	flags := binary.BigEndian.Uint16(resp[2:])
	if flags&flagQR == 0 || binary.BigEndian.Uint16(resp[4:]) != 1 {
		return errMismatch
	}
	qEnd := headerLen + len(qsec)
	if len(resp) < qEnd || !sameQuestion(resp[headerLen:qEnd], qsec) {
		return errMismatch
	}
	info.rcode = flags & 0xf
	info.tc = flags&flagTC != 0
	an := int(binary.BigEndian.Uint16(resp[6:]))
	ns := int(binary.BigEndian.Uint16(resp[8:]))
	ar := int(binary.BigEndian.Uint16(resp[10:]))

	tmp := scratch[:0:256]
	var offHit signatures.NameMatch // the first hit off the chain
	offHitOff := 0

	minTTL := uint32(1<<32 - 1)
	var soaTTL uint32
	haveSOA, cookie, opt := false, false, false
	off := qEnd
	for i := 0; i < an+ns+ar; i++ {
		owner := off
		var err error
		off, err = skipName(resp, off)
		if err != nil || off+10 > len(resp) {
			return errTrailer
		}
		if err := checkName(resp, owner); err != nil {
			return errUncheckable
		}
		typ := binary.BigEndian.Uint16(resp[off:])
		class := binary.BigEndian.Uint16(resp[off+2:])
		ttl := binary.BigEndian.Uint32(resp[off+4:])
		rdlen := int(binary.BigEndian.Uint16(resp[off+8:]))
		rdata := off + 10
		end := rdata + rdlen
		if end > len(resp) {
			return errTrailer
		}
		if typ == typeOPT {
			if opt || i < an+ns {
				return errOPT
			}
			opt = true
			cookie = hasOption(resp[rdata:end], optCookie)
			off = end
			continue
		}
		if ttl > 1<<31-1 {
			ttl = 0 // RFC 2181 §8: a TTL with the top bit set means zero
		}
		info.ttlOffs = append(info.ttlOffs, int32(off+4))
		if ttl < minTTL {
			minTTL = ttl
		}
		if i < an {
			// Every name of the answer section is looked at: a client or a
			// cache behind the shim may use any of them.
			isQ := owner+2 <= len(resp) && resp[owner] == 0xc0 && resp[owner+1] == headerLen
			if !isQ {
				if isQ, err = nameEqual(resp, owner, headerLen); err != nil {
					return errUncheckable
				}
			}
			if !isQ {
				info.check = true
				if set != nil && offHit.Domain == nil {
					if m, ok := matchAt(set, resp, owner, tmp); ok {
						offHit, offHitOff = m, owner
					}
				}
			}
			if typ == typeCNAME {
				info.check = true
				if info.ncn == maxCNAMEs {
					return errUncheckable
				}
				p, err := skipName(resp, rdata)
				if err != nil || p != end || checkName(resp, rdata) != nil {
					return errUncheckable
				}
				info.cn[info.ncn] = cnameRR{owner: int32(owner), target: int32(rdata), ttl: int32(off + 4), class: class}
				info.ncn++
				if set != nil && offHit.Domain == nil {
					if m, ok := matchAt(set, resp, rdata, tmp); ok {
						offHit, offHitOff = m, rdata
					}
				}
			}
		} else if i < an+ns && typ == typeSOA {
			// RFC 2308 §5: negative answers live min(SOA TTL, SOA MINIMUM).
			p, err := skipName(resp, rdata)
			if err == nil {
				p, err = skipName(resp, p)
			}
			if err != nil || p+20 != end {
				return errTrailer
			}
			soaTTL = min(ttl, binary.BigEndian.Uint32(resp[p+16:]))
			haveSOA = true
		}
		off = end
	}
	if off != len(resp) && !info.tc {
		return errTrailer
	}
	if set != nil && offHit.Domain != nil {
		if err := info.followChain(resp, set, tmp); err != nil {
			return err
		}
		if info.hit.Domain == nil {
			// Listed, but off the chain from the question: the whole answer
			// is replaced by the policy answer for the question.
			info.hit, info.hitOff, info.chainLen = offHit, offHitOff, 0
		}
		name, cut, _ := readName(resp, info.hitOff, scratch[256:256:512])
		info.hitName, info.hitCut = name, cut
	}

	switch {
	case info.tc || cookie:
		// A truncated answer is incomplete; a cookie belongs to one client.
	case info.rcode == rcodeNXDomain || info.rcode == rcodeSuccess && an == 0:
		info.negative = true
		if haveSOA {
			info.ttl = soaTTL
		}
	case info.rcode == rcodeSuccess:
		info.ttl = minTTL
	}
	return nil
}

// followChain follows the CNAMEs from the question name, in whatever order
// the records came, until one's target is listed; a chain that comes back
// to a CNAME already taken ends there (every target has been checked).
func (info *respInfo) followChain(resp []byte, set *signatures.Set, tmp []byte) error {
	var used uint32
	cur := headerLen
	for info.chainLen < info.ncn {
		next := -1
		for i := 0; i < info.ncn; i++ {
			eq, err := nameEqual(resp, int(info.cn[i].owner), cur)
			if err != nil {
				return errUncheckable
			}
			if eq {
				next = i
				break
			}
		}
		if next < 0 || used&(1<<next) != 0 {
			break
		}
		used |= 1 << next
		info.chain[info.chainLen] = int8(next)
		info.chainLen++
		cur = int(info.cn[next].target)
		if m, ok := matchAt(set, resp, cur, tmp); ok {
			info.hit, info.hitOff = m, cur
			return nil
		}
	}
	info.chainLen = 0
	return nil
}

// matchAt matches the name at off of msg against set.
func matchAt(set *signatures.Set, msg []byte, off int, tmp []byte) (signatures.NameMatch, bool) {
	name, cut, err := readName(msg, off, tmp)
	if err != nil {
		return signatures.NameMatch{}, false
	}
	return match(set, name, cut)
}

// match looks a decoded name up: a name with a '.' inside a label can only
// be below a listed wildcard, through the labels right of that label.
func match(set *signatures.Set, name []byte, cut int) (signatures.NameMatch, bool) {
	if cut < 0 {
		return set.MatchName(bstr(name))
	}
	if cut >= len(name) {
		return signatures.NameMatch{}, false
	}
	return set.MatchBelow(bstr(name[cut:]))
}

// hasOption reports whether OPT rdata carries an option with code.
func hasOption(rdata []byte, code uint16) bool {
	for len(rdata) >= 4 {
		c := binary.BigEndian.Uint16(rdata)
		l := int(binary.BigEndian.Uint16(rdata[2:]))
		if c == code {
			return true
		}
		if 4+l > len(rdata) {
			return false
		}
		rdata = rdata[4+l:]
	}
	return false
}
