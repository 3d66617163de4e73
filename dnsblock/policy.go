package dnsblock

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"github.com/miekg/dns"

	"wormsink/evidence"
	"wormsink/signatures"
)

// bstr views b as a string for a call that does not keep it (MatchName,
// map lookups): the conversion would otherwise allocate on every query.
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// rrset is the pre-encoded type, class, TTL, length and data of the
// sinkhole records of one family; only the owner name is written per answer.
type rrset struct {
	n    uint16
	body []byte // n times: type class ttl rdlen rdata
	each int    // bytes per record in body
}

func newRRSet(ips []netip.Addr, v6 bool, ttl uint32) rrset {
	var s rrset
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.Is6() != v6 {
			continue
		}
		typ := uint16(typeA)
		if v6 {
			typ = typeAAAA
		}
		start := len(s.body)
		s.body = binary.BigEndian.AppendUint16(s.body, typ)
		s.body = binary.BigEndian.AppendUint16(s.body, classIN)
		s.body = binary.BigEndian.AppendUint32(s.body, ttl)
		raw := ip.AsSlice()
		s.body = binary.BigEndian.AppendUint16(s.body, uint16(len(raw)))
		s.body = append(s.body, raw...)
		s.each = len(s.body) - start
		s.n++
	}
	return s
}

// Extended DNS Error codes (RFC 8914) carried by policy answers.
const (
	optEDE      = 15
	edeBlocked  = 15 // the sinkhole action
	edeFiltered = 17 // nxdomain and nodata
)

// newPolicySOA pre-encodes the SOA record a policy NXDOMAIN or NODATA
// carries in its authority section after the owner name, so that
// resolvers and stub caches behind the shim keep the negative answer for
// ttl (RFC 2308 §5: min(SOA TTL, MINIMUM)). The names are under .invalid
// (RFC 6761): the zone is synthetic. The serial is patched per answer.
func newPolicySOA(ttl uint32) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, typeSOA)
	b = binary.BigEndian.AppendUint16(b, classIN)
	b = binary.BigEndian.AppendUint32(b, ttl)
	rd := len(b)
	b = append(b, 0, 0)
	b = append(b, 8, 'w', 'o', 'r', 'm', 's', 'i', 'n', 'k', 7, 'i', 'n', 'v', 'a', 'l', 'i', 'd', 0)
	b = append(b, 6, 'p', 'o', 'l', 'i', 'c', 'y', 0xc0, 0) // patched below: pointer to "invalid."
	b = binary.BigEndian.AppendUint32(b, 0)                 // serial, patched per answer
	b = binary.BigEndian.AppendUint32(b, 3600)              // refresh
	b = binary.BigEndian.AppendUint32(b, 600)               // retry
	b = binary.BigEndian.AppendUint32(b, 86400)             // expire
	b = binary.BigEndian.AppendUint32(b, ttl)               // minimum: the negative TTL
	binary.BigEndian.PutUint16(b[rd:], uint16(len(b)-rd-2))
	return b
}

// Offsets within newPolicySOA's bytes: the mname, its "invalid." (which
// the rname points to), the rname's pointer, and the serial.
const (
	soaMName    = 10
	soaInvalid  = soaMName + 9
	soaRNamePtr = soaMName + 18 + 7
	soaSerial   = soaRNamePtr + 2
)

// policyAnswer writes the answer an action calls for. Without info the
// records are owned by the question name; with info (the upstream answer
// resp names the listed name) the CNAME chain from the question to the
// listed name is written first, uncompressed and in chain order, and the
// policy records are owned by its last target. Negative answers carry the
// policy SOA; with EDNS the OPT carries an Extended DNS Error naming the
// signature.
func (h *handler) policyAnswer(dst, msg []byte, q *query, m signatures.NameMatch, serial uint32, resp []byte, info *respInfo) []byte {
	return h.synthAnswer(dst, msg, q, m.Domain.Action, edeBlocked, m.Signature.ID, &h.v4, &h.v6, serial, resp, info)
}

// synthAnswer writes an answer the shim makes up: action's records from v4
// or v6 (a sinkhole), or NXDOMAIN / NODATA, with an Extended DNS Error
// (ede, or Filtered for NXDOMAIN and NODATA) whose text is why.
func (h *handler) synthAnswer(dst, msg []byte, q *query, action signatures.Action, ede uint16, why string, v4, v6 *rrset, serial uint32, resp []byte, info *respInfo) []byte {
	var set *rrset
	rcode := uint16(rcodeSuccess)
	switch {
	case action == signatures.NXDomain:
		rcode, ede = rcodeNXDomain, edeFiltered
	case action == signatures.NoData:
		ede = edeFiltered
	case q.qtype == typeA:
		set = v4
	case q.qtype == typeAAAA:
		set = v6
	}
	chainLen := 0
	if info != nil {
		chainLen = info.chainLen
	}
	an := uint16(chainLen)
	ns := uint16(1)
	if set != nil && set.n > 0 {
		an += set.n
		ns = 0
	}
	ar := uint16(0)
	if q.edns {
		ar = 1
	}
	dst = appendHeader(dst[:0], q, rcode, an, ns, ar)
	dst = append(dst, msg[headerLen:q.qEnd]...)
	owner := headerLen
	for k := 0; k < chainLen; k++ {
		c := &info.cn[info.chain[k]]
		dst = appendPointer(dst, owner)
		dst = binary.BigEndian.AppendUint16(dst, typeCNAME)
		dst = binary.BigEndian.AppendUint16(dst, c.class)
		dst = append(dst, resp[c.ttl:c.ttl+4]...)
		rdlen := len(dst)
		dst = append(dst, 0, 0)
		owner = len(dst)
		dst, _ = appendWireName(dst, resp, int(c.target)) // checked by walkResponse
		binary.BigEndian.PutUint16(dst[rdlen:], uint16(len(dst)-owner))
	}
	if ns == 0 {
		for i := 0; i < int(set.n); i++ {
			dst = appendPointer(dst, owner)
			dst = append(dst, set.body[i*set.each:(i+1)*set.each]...)
		}
	} else {
		dst = appendPointer(dst, owner)
		base := len(dst)
		dst = append(dst, h.soa...)
		binary.BigEndian.PutUint16(dst[base+soaRNamePtr:], 0xc000|uint16(base+soaInvalid))
		binary.BigEndian.PutUint32(dst[base+soaSerial:], serial)
	}
	if q.edns {
		dst = appendOPTEDE(dst, q, ede, why)
	}
	return dst
}

// policyRefused answers a listed name asked in a class the policy has no
// records for (CH, HS, NONE, private ones): REFUSED rather than a forward
// the policy could not check.
func (h *handler) policyRefused(dst, msg []byte, q *query, m signatures.NameMatch) []byte {
	ede := uint16(edeBlocked)
	if m.Domain.Action != signatures.Sinkhole {
		ede = edeFiltered
	}
	if !q.edns {
		return errorAnswer(dst, msg, q, rcodeRefused)
	}
	dst = appendHeader(dst[:0], q, rcodeRefused, 0, 0, 1)
	dst = append(dst, msg[headerLen:q.qEnd]...)
	return appendOPTEDE(dst, q, ede, m.Signature.ID)
}

func appendPointer(dst []byte, off int) []byte {
	return binary.BigEndian.AppendUint16(dst, 0xc000|uint16(off))
}

// appendOPTEDE is appendOPT with one Extended DNS Error option.
func appendOPTEDE(dst []byte, q *query, code uint16, text string) []byte {
	if len(text) > 255 {
		text = text[:255]
	}
	opt := len(dst)
	dst = appendOPT(dst, q, 0)
	rdlen := opt + 9 // after the root name, type, class and TTL; options (a cookie) may follow it
	dst = binary.BigEndian.AppendUint16(dst, optEDE)
	dst = binary.BigEndian.AppendUint16(dst, uint16(2+len(text)))
	dst = binary.BigEndian.AppendUint16(dst, code)
	dst = append(dst, text...)
	binary.BigEndian.PutUint16(dst[rdlen:], uint16(len(dst)-rdlen-2))
	return dst
}

// truncate turns an answer too large for the client's UDP limit into an
// empty one with TC set, so the client retries over TCP.
func truncate(dst []byte, q *query, msg []byte) []byte {
	rcode := binary.BigEndian.Uint16(dst[2:]) & 0xf
	ar := uint16(0)
	if q.edns {
		ar = 1
	}
	dst = appendHeader(dst[:0], q, rcode, 0, 0, ar)
	dst[2] |= flagTC >> 8
	dst = append(dst, msg[headerLen:q.qEnd]...)
	if q.edns {
		dst = appendOPT(dst, q, 0)
	}
	return dst
}

// record writes the evidence line of a policy answer. q and msg are what
// the client asked; info, with the upstream answer resp, says which listed
// name an upstream answer reached when it was not the question name.
func (h *handler) record(set *signatures.Set, m signatures.NameMatch, q *query, msg []byte, client netip.AddrPort, tcp bool, resp []byte, info *respInfo) {
	if h.rec == nil {
		return
	}
	ev := evidence.Event{
		Kind:      evidence.DNSSinkhole,
		Host:      client.Addr().Unmap(),
		Port:      client.Port(),
		Sig:       m.Signature.ID,
		Family:    m.Signature.Family,
		Evidence:  m.Domain.Evidence,
		Serial:    set.Serial(),
		QType:     typeName(q.qtype),
		Transport: "udp",
	}
	// The proof: a TCP query completed a handshake with this
	// address; a valid server cookie came back to it in an earlier answer.
	switch {
	case tcp:
		ev.Transport = "tcp"
		ev.Proof = evidence.ProofTCP
	case q.cookieOK:
		ev.Proof = evidence.ProofExchange
	}
	// The listed name itself costs no allocation; only names below a
	// wildcard or behind a CNAME need their own string.
	switch {
	case info == nil && !m.Domain.Wildcard:
		ev.QName = m.Domain.Name
	case info == nil:
		ev.QName = qnameText(q, msg)
		ev.Rule = m.Domain.Pattern()
	default:
		ev.QName = qnameText(q, msg)
		switch {
		case info.hitCut >= 0:
			ev.Rule = string(appendPresentation(nil, resp, info.hitOff))
		case !m.Domain.Wildcard && string(info.hitName) == m.Domain.Name:
			ev.Rule = m.Domain.Name
		default:
			ev.Rule = string(info.hitName)
		}
	}
	h.rec.Record(ev)
}

// qnameText is the question name for evidence: escaped when a label holds
// a byte the dotted form cannot show.
func qnameText(q *query, msg []byte) string {
	if q.cut >= 0 {
		return string(appendPresentation(nil, msg, headerLen))
	}
	return string(q.text)
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}
