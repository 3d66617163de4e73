package wire

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"wormsink/evidence"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// answers remembers the worm requests seen, so that the server a request
// named can be judged by its own traffic: a request is the requester's
// packet and proves nothing about the server (its line is weak and a
// datagram, see Matcher.tftp), but the server's reply to the requester's
// address and port is the server's own packet. DATA or an OACK means it
// serves the file: a strong line of its own (not Named), whose proof is
// what that packet's source earns (a datagram, or trusted-source inside
// --trusted-sources). An ERROR refuses the file: it says nothing more
// about the server than the request did, and makes no line.
//
// The table is fixed-size, in buckets of answerWays slots chosen by a
// seeded hash: a flood of requests can only push entries out, never make a
// reply match, and nothing allocates after the first request.
//
// A capture's workers share one table: a TFTP server answers from a fresh
// port, so the reply's 5-tuple is not the request's and the fan-out may
// hand it to another worker than the request. Shared, the table is guarded
// by striped locks (a worker holds one for a slot's read or write), and a
// reply that finds no request keeps a place too (waiting): the workers'
// rings hand over their blocks each at its own pace, so the reply may be
// read before the request it answers, and the request pairs with it then.
type answers struct {
	seed  maphash.Seed
	e     []answerEntry
	locks []sync.Mutex  // shared: one per answerStripe slots; nil for one matcher
	w     []answerReply // shared: replies read before their request
}

// answerReply is a server's DATA or OACK that found no request.
type answerReply struct {
	requester netip.AddrPort
	server    netip.AddrPort
	at        time.Time
}

type answerEntry struct {
	requester netip.AddrPort
	server    netip.Addr
	at        time.Time
	sig       string
	family    string
	file      string
	mode      string
	op        string
	serial    uint64
}

const (
	answerStripes = 64
	answerSlots   = 1 << 12
	// answerWays: a request may take any of the 4 slots of its bucket, so
	// two requests pending at once rarely push each other out.
	answerWays = 4
	// answerWait is how long after a request its server's reply still
	// counts: TFTP servers answer within their first retransmission.
	answerWait = 30 * time.Second
)

func newAnswers() *answers {
	return &answers{seed: maphash.MakeSeed(), e: make([]answerEntry, answerSlots)}
}

// newSharedAnswers is the table a capture's workers share.
func newSharedAnswers() *answers {
	a := newAnswers()
	a.locks = make([]sync.Mutex, answerStripes)
	a.w = make([]answerReply, answerSlots)
	return a
}

// lock takes the lock of bucket b when the table is shared, and returns
// it for the caller to release.
func (a *answers) lock(b int) *sync.Mutex {
	if a.locks == nil {
		return nil
	}
	mu := &a.locks[(b/answerWays)%answerStripes]
	mu.Lock()
	return mu
}

// bucket returns the first slot of the bucket a request and its reply
// share.
func (a *answers) bucket(requester netip.AddrPort, server netip.Addr) int {
	var h maphash.Hash
	h.SetSeed(a.seed)
	b := requester.Addr().As16()
	h.Write(b[:])
	h.WriteByte(byte(requester.Port() >> 8))
	h.WriteByte(byte(requester.Port()))
	b = server.As16()
	h.Write(b[:])
	return int(h.Sum64()&(answerSlots/answerWays-1)) * answerWays
}

// asked notes the worm request ev (a requester's wire_match). In a shared
// table, a reply to it another worker read first is returned, completed:
// its line is due now.
func (a *answers) asked(ev *evidence.Event) (evidence.Event, bool) {
	req := netip.AddrPortFrom(ev.Host, ev.Port)
	b := a.bucket(req, ev.Peer)
	if mu := a.lock(b); mu != nil {
		defer mu.Unlock()
		for i := b; i < b+answerWays; i++ {
			w := &a.w[i]
			if w.requester == req && w.server.Addr() == ev.Peer && !w.at.Before(ev.Time) && w.at.Sub(ev.Time) <= answerWait {
				var pk packet
				pk.src, pk.sport, pk.dst, pk.dport, pk.meta.Time = w.server.Addr(), w.server.Port(), req.Addr(), req.Port(), w.at
				r := replyEvent(&pk)
				r.Sig, r.Family, r.File, r.Mode, r.Op, r.Serial = ev.Sig, ev.Family, ev.File, ev.Mode, ev.Op, ev.Serial
				*w = answerReply{}
				return r, true
			}
		}
	}
	// The same request's slot, else a free or stale one, else the oldest.
	slot := b
	for i := b; i < b+answerWays; i++ {
		e := &a.e[i]
		if e.requester == req && e.server == ev.Peer {
			slot = i
			break
		}
		if e.at.IsZero() || ev.Time.Sub(e.at) > answerWait || e.at.Before(a.e[slot].at) {
			slot = i
		}
	}
	a.e[slot] = answerEntry{requester: req, server: ev.Peer, at: ev.Time,
		sig: ev.Sig, family: ev.Family, file: ev.File, mode: ev.Mode, op: ev.Op, serial: ev.Serial}
	return evidence.Event{}, false
}

// answer completes ev, a reply candidate (the server's packet to the
// requester, its evidence already set by replyEvent), from the request it
// answers, and reports whether there was one. The first reply is the one
// that counts: the entry goes, so a transfer's other blocks add no lines.
func (a *answers) answer(ev *evidence.Event) bool {
	req := netip.AddrPortFrom(ev.Peer, ev.DstPort)
	b := a.bucket(req, ev.Host)
	if mu := a.lock(b); mu != nil {
		defer mu.Unlock()
	}
	for i := b; i < b+answerWays; i++ {
		e := &a.e[i]
		if e.requester != req || e.server != ev.Host || ev.Time.Sub(e.at) > answerWait || ev.Time.Before(e.at) {
			continue
		}
		ev.Sig, ev.Family, ev.File, ev.Mode, ev.Op, ev.Serial = e.sig, e.family, e.file, e.mode, e.op, e.serial
		*e = answerEntry{}
		return true
	}
	if a.w != nil {
		// Wait for the request, keeping the first of a transfer's blocks
		// (the request pairs with one reply): its slot, else a free or
		// stale one, else the oldest.
		srv := netip.AddrPortFrom(ev.Host, ev.Port)
		slot := b
		for i := b; i < b+answerWays; i++ {
			w := &a.w[i]
			if w.requester == req && w.server == srv && ev.Time.Sub(w.at) <= answerWait {
				return false
			}
			if w.at.IsZero() || ev.Time.Sub(w.at) > answerWait || w.at.Before(a.w[slot].at) {
				slot = i
			}
		}
		a.w[slot] = answerReply{requester: req, server: srv, at: ev.Time}
	}
	return false
}

// replyPending marks a reply candidate a parallel scan's worker found: only
// the scanner's one ordered matcher knows the requests it may answer. It
// never leaves the package.
const replyPending evidence.Proof = 254

// replyEvent is the candidate line for a server's DATA or OACK pk: the server is
// its sender (Host), the requester its destination (Peer, DstPort).
func replyEvent(pk *packet) evidence.Event {
	ev := evidence.Event{
		Time:     pk.meta.Time,
		Kind:     evidence.WireMatch,
		Host:     pk.src,
		Port:     pk.sport,
		Peer:     pk.dst,
		Role:     evidence.RoleServer,
		Proto:    "udp",
		DstPort:  pk.dport,
		PCAP:     pk.meta.PCAP,
		Packet:   pk.meta.Packet,
		Evidence: signatures.Strong,
	}
	return ev
}

// serves reports whether p is a server's DATA or OACK: what it sends when
// it serves the file asked.
func serves(p []byte) bool {
	return tftp.IsServerReply(p) && (p[1] == tftp.OpData || p[1] == tftp.OpOACK)
}
