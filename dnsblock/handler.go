package dnsblock

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
)

// SetSource yields the signature set in service; Current is called once per
// query, so a reload is seen by the next query and never half-way through one.
type SetSource interface {
	Current() *signatures.Set
}

// Recorder takes evidence; it must not block (evidence.Writer does not).
type Recorder interface {
	Record(evidence.Event)
}

// handler decides every query. The order is fixed and deliberate:
//  1. not a query → dropped; client outside allow → REFUSED (counted, never logged);
//  2. malformed → FORMERR, other opcodes → NOTIMP;
//  3. the policy, before any upstream is asked, so listed names are answered
//     even with every upstream down;
//  4. the cache; 5. the upstreams, whose answer's CNAME chain is checked
//     against the policy once more.
type handler struct {
	src   SetSource
	rec   Recorder
	allow []netip.Prefix
	v4    rrset
	v6    rrset
	cache *cache
	ups   []*upstream
	cfg   Config
	stats counters // what Server.Stats reports
	log   zerolog.Logger

	cookies *cookieJar // server cookies, for proof exchange
}

// scratch is the per-goroutine working memory of the handler, so the
// matching path allocates nothing.
type scratch struct {
	q     query
	name  [256]byte
	names [512]byte
	key   []byte
	info  respInfo
	out   []byte // the answer to the client
	up    []byte // the upstream's answer
}

func newScratch() *scratch {
	return &scratch{key: make([]byte, 0, 300), out: make([]byte, 0, 4096), up: make([]byte, 0, 4096), info: respInfo{ttlOffs: make([]int32, 0, 32)}}
}

var scratchPool = sync.Pool{New: func() any { return newScratch() }}

func (h *handler) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range h.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// answer decides msg from client without asking an upstream. It returns
// the answer (nil: send nothing) or forward=true when the upstreams must be
// asked; s.q then holds the parsed query.
func (h *handler) answer(s *scratch, msg []byte, client netip.AddrPort, tcp bool) (resp []byte, forward bool) {
	q := &s.q
	if len(msg) < headerLen || msg[2]&0x80 != 0 {
		h.stats.dropped.Add(1) // no header, or an answer: replying could start a loop
		return nil, false
	}
	err := parseQuery(msg, q, s.name[:])
	if !h.allowed(client.Addr()) {
		h.stats.refused.Add(1)
		if err != nil {
			return s.bare(msg, rcodeRefused), false
		}
		return errorAnswer(s.out, msg, q, rcodeRefused), false
	}
	if err != nil {
		h.stats.formErr.Add(1)
		return formErr(s.out, msg), false
	}
	if q.opcode != 0 {
		h.stats.notImp.Add(1)
		return errorAnswer(s.out, msg, q, rcodeNotImp), false
	}
	if q.edns && q.ednsVer != 0 {
		// RFC 6891 §6.1.3: BADVERS (16) is extended rcode 1, rcode 0.
		h.stats.formErr.Add(1)
		out := errorAnswer(s.out, msg, q, rcodeSuccess)
		out[len(out)-6] = 1
		return out, false
	}
	// A client cookie gets a server cookie back in every answer from here
	// on; one of ours coming back raises the sighting's proof.
	if q.cookie != nil {
		q.cookieOK = h.cookies.answer(q.cookie, client.Addr(), &q.srvCookie)
		q.cookieOut = true
	}

	set := h.src.Current()
	if set != nil && q.qclass == classIN && q.name != nil {
		if m, ok := set.MatchName(bstr(q.name)); ok {
			h.stats.sinkholed.Add(1)
			h.record(set, m, q, client, tcp, nil)
			return h.fit(h.policyAnswer(s.out, msg, q, m.Domain, nil, 0, 0), q, msg, tcp), false
		}
	}

	if h.cache != nil {
		s.key = appendKey(s.key[:0], q)
		now := h.cache.now()
		if e := h.cache.get(s.key, now); e != nil && (tcp || len(e.wire) <= q.udpLimit()) {
			if e.cnames && set != nil && q.qclass == classIN {
				if err := walkResponse(e.wire, msg[headerLen:q.qEnd], set, &s.info, s.names[:]); err == nil && s.info.hit.Domain != nil {
					return h.chainAnswer(s, msg, e.wire, set, client, tcp), false
				}
			}
			h.stats.cacheHits.Add(1)
			return e.appendHit(s.out, q, now), false
		}
	}
	return nil, true
}

// bare answers with rcode and the header alone (question unreadable).
func (s *scratch) bare(msg []byte, rcode uint16) []byte {
	out := formErr(s.out, msg)
	out[3] = out[3]&0xf0 | byte(rcode)
	return out
}

// fit truncates a UDP answer larger than the client accepts.
func (h *handler) fit(out []byte, q *query, msg []byte, tcp bool) []byte {
	if !tcp && len(out) > q.udpLimit() {
		return truncate(out, q, msg)
	}
	return out
}

// chainAnswer is the policy answer for a listed name that the upstream
// answer resp (walked into s.info) reaches through its CNAME chain.
func (h *handler) chainAnswer(s *scratch, msg, resp []byte, set *signatures.Set, client netip.AddrPort, tcp bool) []byte {
	q, info := &s.q, &s.info
	h.stats.sinkholed.Add(1)
	h.record(set, info.hit, q, client, tcp, info.hitName)
	var out []byte
	if info.targetOff < 0x4000 {
		out = h.policyAnswer(s.out, msg, q, info.hit.Domain, resp[:info.chainEnd], info.chainRRs, info.targetOff)
	} else {
		out = h.policyAnswer(s.out, msg, q, info.hit.Domain, nil, 0, 0)
	}
	return h.fit(out, q, msg, tcp)
}

// forward asks the upstreams for the query in s.q: healthy ones first, in
// configured order, then the ones in their penalty time. Only when none
// answers in time does the client get SERVFAIL.
func (h *handler) forward(s *scratch, msg []byte, client netip.AddrPort, tcp bool) []byte {
	q := &s.q
	start := time.Now()
	deadline := start.Add(h.cfg.Timeout)
	set := h.src.Current()
	var fallback []byte // a SERVFAIL or REFUSED from an upstream, kept in case no other does better
	tried := 0
	for pass := 0; pass < 2; pass++ {
		for _, u := range h.ups {
			now := time.Now()
			if u.healthy(now.UnixNano()) != (pass == 0) {
				continue
			}
			if now.After(deadline) {
				break
			}
			tried++
			until := now.Add(h.cfg.AttemptTimeout)
			if tried == len(h.ups) || until.After(deadline) {
				until = deadline // the last one gets all the time left
			}
			var err error
			if tcp {
				s.up, err = u.exchangeTCP(s.up, msg, q.qEnd, until)
			} else {
				s.up, err = u.exchangeUDP(s.up, msg, q.qEnd, until)
			}
			done := time.Now()
			if err != nil {
				h.stats.upErrors.Add(1)
				if u.failed(done.UnixNano(), h.cfg.HealthMemory) {
					h.log.Warn().Str("event", "dns_upstream_down").Str("upstream", u.addr).Err(err).Msg("upstream failed; trying the others first")
				}
				continue
			}
			h.stats.observe(done.Sub(now))
			if u.succeeded() {
				h.log.Info().Str("event", "dns_upstream_up").Str("upstream", u.addr).Msg("upstream answers again")
			}
			resp := s.up
			rc := binary.BigEndian.Uint16(resp[2:]) & 0xf
			if (rc == rcodeServFail || rc == rcodeRefused) && tried < len(h.ups) {
				fallback = append(fallback[:0], resp...)
				continue
			}
			return h.relay(s, msg, resp, set, client, tcp)
		}
	}
	if fallback != nil {
		return h.relay(s, msg, fallback, set, client, tcp)
	}
	h.stats.servFail.Add(1)
	return errorAnswer(s.out, msg, q, rcodeServFail)
}

// relay returns the upstream's answer as it came, unless its CNAME chain
// reaches a listed name; cacheable answers are stored.
func (h *handler) relay(s *scratch, msg, resp []byte, set *signatures.Set, client netip.AddrPort, tcp bool) []byte {
	q := &s.q
	var walkSet *signatures.Set
	if set != nil && q.qclass == classIN {
		walkSet = set
	}
	if err := walkResponse(resp, msg[headerLen:q.qEnd], walkSet, &s.info, s.names[:]); err != nil {
		// Malformed beyond the question: pass it on untouched, never cache it.
		h.stats.forwarded.Add(1)
		return resp
	}
	// The answer is cached as it came, even when policy rewrites it: the
	// chain is checked again on every hit, against the set then in service.
	if h.cache != nil && s.info.ttl > 0 {
		s.key = appendKey(s.key[:0], q)
		h.cache.put(s.key, resp, &s.info, h.cache.now())
	}
	if s.info.hit.Domain != nil {
		return h.chainAnswer(s, msg, resp, set, client, tcp)
	}
	h.stats.forwarded.Add(1)
	return resp
}
