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

// policyAnswer writes the answer an action calls for. Without a chain the
// records are owned by the question name; with one (a CNAME chain from the
// upstream answer reached the listed name), prefix is the upstream answer up
// to and including that CNAME, whose records are kept, and the policy
// records are owned by its target at targetOff.
func (h *handler) policyAnswer(dst, msg []byte, q *query, d *signatures.Domain, prefix []byte, chainRRs int, targetOff int) []byte {
	var set *rrset
	rcode := uint16(rcodeSuccess)
	switch {
	case d.Action == signatures.NXDomain:
		rcode = rcodeNXDomain
	case d.Action == signatures.NoData:
	case q.qtype == typeA:
		set = &h.v4
	case q.qtype == typeAAAA:
		set = &h.v6
	}
	an := uint16(chainRRs)
	if set != nil {
		an += set.n
	}
	ar := uint16(0)
	if q.edns {
		ar = 1
	}
	dst = appendHeader(dst[:0], q, rcode, an, 0, ar)
	dst = append(dst, msg[headerLen:q.qEnd]...)
	owner := [2]byte{0xc0, headerLen}
	if prefix != nil {
		// The chain's offsets hold: the question has the same length.
		dst = append(dst, prefix[q.qEnd:]...)
		owner[0] |= byte(targetOff >> 8)
		owner[1] = byte(targetOff)
	}
	if set != nil {
		for i := 0; i < int(set.n); i++ {
			dst = append(dst, owner[:]...)
			dst = append(dst, set.body[i*set.each:(i+1)*set.each]...)
		}
	}
	if q.edns {
		dst = appendOPT(dst, q, 0)
	}
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

// record writes the evidence line of a policy answer. qname is what the
// client asked (dotted, lower case), rule the listed name reached when it
// differs.
func (h *handler) record(set *signatures.Set, m signatures.NameMatch, q *query, client netip.AddrPort, tcp bool, rule []byte) {
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
	if rule == nil && !m.Domain.Wildcard {
		ev.QName = m.Domain.Name
	} else {
		ev.QName = string(q.text)
		if rule == nil {
			ev.Rule = m.Domain.Pattern()
		} else if !m.Domain.Wildcard && string(rule) == m.Domain.Name {
			ev.Rule = m.Domain.Name
		} else {
			ev.Rule = string(rule)
		}
	}
	h.rec.Record(ev)
}

func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}
