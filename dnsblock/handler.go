package dnsblock

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"wormsink/evidence"
	"wormsink/signatures"
)

// handler decides every query. The order is fixed and deliberate:
//  1. not a query → dropped; client outside allow → REFUSED (counted, never logged);
//  2. malformed → FORMERR, other opcodes → NOTIMP;
//  3. the policy, before any upstream is asked, so listed names are answered
//     even with every upstream down;
//  4. the cache; 5. the upstreams, whose answer's CNAME chain is checked
//     against the policy once more.
type handler struct {
	src   signatures.Source
	rec   evidence.Recorder
	allow []netip.Prefix
	v4    rrset
	v6    rrset
	gv4   rrset // walled-garden answers: the notice addresses
	gv6   rrset
	soa   []byte // newPolicySOA
	cache *cache
	sets  setGenerations // numbers the signature sets, for cacheEntry.unlisted
	ups   []*upstream
	lim   *limiter
	fl    flights
	cfg   Config
	stats counters // what Server.Stats reports
	log   zerolog.Logger

	cookies *cookieJar // server cookies, for proof exchange
}

// setGenerations numbers the signature sets the handler has served, in
// order. A cache entry holds a number rather than the set itself, so an
// entry left unread after a reload does not keep an old set (megabytes)
// alive, and a number is never given to two sets.
type setGenerations struct {
	cur atomic.Pointer[setGeneration]
}

type setGeneration struct {
	set *signatures.Set
	n   uint64
}

// generation is the number of set, which is the set in service; a set
// seen for the first time gets the next number.
func (g *setGenerations) generation(set *signatures.Set) uint64 {
	for {
		c := g.cur.Load()
		if c != nil && c.set == set {
			return c.n
		}
		n := uint64(1)
		if c != nil {
			n = c.n + 1
		}
		if g.cur.CompareAndSwap(c, &setGeneration{set: set, n: n}) {
			return n
		}
	}
}

// scratch is the per-goroutine working memory of the handler, so the
// matching path allocates nothing.
type scratch struct {
	q     query
	name  [256]byte
	names [512]byte
	key   []byte
	fkey  []byte
	info  respInfo
	out   []byte // the answer to the client
	up    []byte // the upstream's answer

	// now, when batch is set, is the cache clock read once for a whole
	// batch of received queries (serveUDPBatch): reading it costs about
	// as much as the rest of a cache hit (time.Since, a vDSO call), and a
	// batch is answered within a millisecond, far below the TTLs' second.
	now   int64
	batch bool
}

// clock is the cache time for the query in hand: the batch's, else read now.
func (s *scratch) clock(c *cache) int64 {
	if s.batch {
		return s.now
	}
	return c.now()
}

func newScratch() *scratch {
	return &scratch{key: make([]byte, 0, 300), fkey: make([]byte, 0, 300), out: make([]byte, 0, 4096), up: make([]byte, 0, 4096), info: respInfo{ttlOffs: make([]int32, 0, 32)}}
}

var scratchPool = sync.Pool{New: func() any { return newScratch() }}

// smallMessage is the size of buffer kept for reuse; a larger one (a large
// answer passed through) goes back to the garbage collector, so the pool
// does not hold 64 KB per scratch once a burst of large answers is over.
// putScratch returns a scratch to the pool holding nothing but its own
// buffers.
const smallMessage = 16 << 10

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	s.q = query{} // it points into the message, which may be 64 KB: the pool must not keep that alive
	if cap(s.up) > smallMessage {
		s.up = make([]byte, 0, 4096)
	}
	if cap(s.out) > smallMessage {
		s.out = make([]byte, 0, 4096)
	}
	scratchPool.Put(s)
}

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

	// The cache is looked up first, but answers only after the policy and
	// the garden: an entry remembers the signature set that found its name
	// unlisted, so the common case (a cached, unlisted name, set unchanged)
	// skips the lookup in the signature table.
	set := h.src.Current()
	var e *cacheEntry
	var now int64
	if h.cache != nil {
		s.key = appendKey(s.key[:0], q)
		now = s.clock(h.cache)
		e = h.cache.get(s.key, now)
	}
	if set != nil {
		gen := h.sets.generation(set)
		if e == nil || e.unlisted.Load() != gen {
			// Every class: a listed name asked in class ANY or CH must
			// not be forwarded unchecked.
			if m, ok := match(set, q.text, q.cut); ok {
				h.stats.sinkholed.Add(1)
				h.record(set, m, q, msg, client, tcp, nil, nil)
				if q.qclass != classIN && q.qclass != classANY {
					return h.policyRefused(s.out, msg, q, m), false
				}
				return h.fit(h.policyAnswer(s.out, msg, q, m, uint32(set.Serial()), nil, nil), q, msg, tcp), false
			}
			if e != nil {
				e.unlisted.Store(gen)
			}
		}
	}

	// A quarantined client: the notice page for every name but the few it
	// may still resolve. After the policy, so its worm lookups are still
	// sinkholed and recorded; before the cache, which serves everyone.
	if resp, ok := h.garden(s, msg, client.Addr(), tcp); ok {
		return resp, false
	}

	if e != nil && (tcp || len(e.wire()) <= q.udpLimit()) {
		if e.check && set != nil {
			err := walkResponse(e.wire(), msg[headerLen:q.qEnd], set, &s.info, s.names[:])
			if err != nil {
				// Cannot happen (it was walked before it was stored),
				// but fail closed all the same.
				return h.unchecked(s, msg), false
			}
			if s.info.hit.Domain != nil {
				return h.chainAnswer(s, msg, e.wire(), set, client, tcp), false
			}
		}
		h.stats.cacheHits.Add(1)
		return e.appendHit(s.out, q, now), false
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
// answer resp (walked into s.info) names.
func (h *handler) chainAnswer(s *scratch, msg, resp []byte, set *signatures.Set, client netip.AddrPort, tcp bool) []byte {
	q, info := &s.q, &s.info
	h.stats.sinkholed.Add(1)
	h.record(set, info.hit, q, msg, client, tcp, resp, info)
	if q.qclass != classIN && q.qclass != classANY {
		return h.policyRefused(s.out, msg, q, info.hit)
	}
	return h.fit(h.policyAnswer(s.out, msg, q, info.hit, uint32(set.Serial()), resp, info), q, msg, tcp)
}

// unchecked is the answer to a query whose upstream answer could not be
// checked against the policy (names that do not decode, too many CNAMEs):
// SERVFAIL, counted, rather than an answer that may hide a listed name.
func (h *handler) unchecked(s *scratch, msg []byte) []byte {
	h.stats.unchecked.Add(1)
	h.stats.servFail.Add(1)
	return errorAnswer(s.out, msg, &s.q, rcodeServFail)
}

// forward answers the query in s.q from the upstreams. Identical queries
// in progress (same question, same flags, same transport) share one
// upstream query; each client's answer is still checked and recorded on
// its own. ctx ends when the query is jostled out by the limiter: a UDP
// client then gets nothing (as from an overloaded resolver), a TCP client
// SERVFAIL.
func (h *handler) forward(ctx context.Context, s *scratch, msg []byte, client netip.AddrPort, tcp bool) []byte {
	q := &s.q
	set := h.src.Current()
	s.fkey = appendKey(s.fkey[:0], q)
	if tcp {
		s.fkey = append(s.fkey, 't')
	}
	fl, lead := h.fl.join(s.fkey)
	var resp []byte
	if lead {
		resp = h.ask(ctx, s, msg, tcp)
		h.fl.land(s.fkey, fl, resp)
	} else {
		h.stats.merged.Add(1)
		select {
		case <-fl.done:
		case <-ctx.Done():
		}
		if fl.resp != nil && ctx.Err() == nil {
			resp = append(s.up[:0], fl.resp...)
			s.up = resp
			copy(resp, msg[:2])
			copy(resp[headerLen:q.qEnd], msg[headerLen:q.qEnd])
		}
	}
	if resp != nil {
		return h.relay(s, msg, resp, set, client, tcp)
	}
	if ctx.Err() != nil {
		h.stats.jostled.Add(1)
		if !tcp {
			return nil
		}
	}
	h.stats.servFail.Add(1)
	return errorAnswer(s.out, msg, q, rcodeServFail)
}

// ask tries the upstreams for the query in s.q: healthy ones first, in
// configured order, then the ones in their penalty time. It returns the
// first usable answer (in s.up), else a SERVFAIL or REFUSED an upstream
// gave, else nil.
func (h *handler) ask(ctx context.Context, s *scratch, msg []byte, tcp bool) []byte {
	q := &s.q
	start := time.Now()
	deadline := start.Add(h.cfg.Timeout)
	var fallback []byte // a SERVFAIL or REFUSED from an upstream, kept in case no other does better
	tried := 0
	for pass := 0; pass < 2; pass++ {
		for _, u := range h.ups {
			now := time.Now()
			if u.healthy(now.UnixNano()) != (pass == 0) {
				continue
			}
			if now.After(deadline) || ctx.Err() != nil {
				break
			}
			tried++
			until := now.Add(h.cfg.AttemptTimeout)
			if tried == len(h.ups) || until.After(deadline) {
				until = deadline // the last one gets all the time left
			}
			var err error
			if tcp {
				s.up, err = u.exchangeTCP(ctx, s.up, msg, q.qEnd, until)
			} else {
				s.up, err = u.exchangeUDP(ctx, s.up, msg, q.qEnd, until, q.udpLimit())
			}
			done := time.Now()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
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
			return resp
		}
	}
	return fallback
}

// relay returns the upstream's answer as it came, unless its CNAME chain
// reaches a listed name; cacheable answers are stored.
func (h *handler) relay(s *scratch, msg, resp []byte, set *signatures.Set, client netip.AddrPort, tcp bool) []byte {
	q := &s.q
	if err := walkResponse(resp, msg[headerLen:q.qEnd], set, &s.info, s.names[:]); err != nil {
		if len(resp) >= headerLen && binary.BigEndian.Uint16(resp[2:])&flagTC != 0 {
			// Cut short by the upstream: the client retries over TCP.
			h.stats.forwarded.Add(1)
			return truncate(append(s.out[:0], resp...), q, msg)
		}
		return h.unchecked(s, msg)
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
	if !tcp && len(resp) > q.udpLimit() {
		// A merged query's answer, sized for another client's EDNS.
		return truncate(append(s.out[:0], resp...), q, msg)
	}
	return resp
}
