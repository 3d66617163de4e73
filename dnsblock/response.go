package dnsblock

import (
	"encoding/binary"
	"errors"

	"wormsink/signatures"
)

var errMismatch = errors.New("answer does not match the question")

// respInfo is what one walk over an upstream answer learns: whether it
// matches the query, how long it may be cached, and whether its CNAME chain
// reaches a listed name.
type respInfo struct {
	rcode   uint16
	tc      bool
	ttl     uint32 // how long the answer may be cached; 0: not at all
	ttlOffs []int32
	cnames  bool

	// A listed name reached through the CNAME chain.
	hit       signatures.NameMatch
	hitName   []byte // the listed name reached, dotted
	chainEnd  int    // offset after the CNAME whose target is listed
	chainRRs  int    // answer records up to and including it
	targetOff int    // offset of that CNAME's target name
}

// walkResponse checks an upstream answer against the question it answers
// (qsec is the question section as sent, qEnd its end offset in the
// answer), collects the TTL offsets for the cache, and, with set, follows
// the CNAME chain from the question name looking for a listed name. scratch
// holds two names.
func walkResponse(resp []byte, qsec []byte, set *signatures.Set, info *respInfo, scratch []byte) error {
	offs := info.ttlOffs[:0]
	*info = respInfo{ttlOffs: offs}
	if len(resp) < headerLen {
		return errShort
	}
	flags := binary.BigEndian.Uint16(resp[2:])
	if flags&flagQR == 0 || binary.BigEndian.Uint16(resp[4:]) != 1 {
		return errMismatch
	}
	qEnd := headerLen + len(qsec)
	if len(resp) < qEnd || !equalFoldBytes(resp[headerLen:qEnd], qsec) {
		return errMismatch
	}
	info.rcode = flags & 0xf
	info.tc = flags&flagTC != 0
	an := int(binary.BigEndian.Uint16(resp[6:]))
	ns := int(binary.BigEndian.Uint16(resp[8:]))
	ar := int(binary.BigEndian.Uint16(resp[10:]))

	cur := scratch[:0:256]
	cur, _, _ = readName(resp, headerLen, cur) // the question was checked above
	curOK := true
	tgt := scratch[256:256:512]

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
		typ := binary.BigEndian.Uint16(resp[off:])
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
		switch {
		case i < an && typ == typeCNAME:
			info.cnames = true
			if set == nil || !curOK || info.hit.Domain != nil {
				break
			}
			name, _, err := readName(resp, owner, tgt)
			if err != nil {
				return err
			}
			if string(name) != string(cur) {
				break // not the next link of the chain
			}
			t, tok, err := readName(resp, rdata, tgt)
			if err != nil {
				return err
			}
			cur = append(cur[:0], t...)
			curOK = tok
			if !tok {
				break
			}
			if m, ok := set.MatchName(bstr(cur)); ok {
				info.hit = m
				info.hitName = cur
				info.chainEnd = end
				info.chainRRs = i + 1
				info.targetOff = rdata
			}
		case i >= an && i < an+ns && typ == typeSOA:
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

	switch {
	case info.tc || cookie:
		// A truncated answer is incomplete; a cookie belongs to one client.
	case info.rcode == rcodeNXDomain || info.rcode == rcodeSuccess && an == 0:
		if haveSOA {
			info.ttl = soaTTL
		}
	case info.rcode == rcodeSuccess:
		info.ttl = minTTL
	}
	return nil
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
