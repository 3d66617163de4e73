package sinkhole

import (
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"wormsink/evidence"
	"wormsink/internal/tftp"
	"wormsink/signatures"
)

// This file is the one request path the fake server and the interceptor
// share: a datagram becomes a parsed request (or a counted non-request),
// the request becomes its evidence and the verdict (a signature's file or
// not), the limits decide whether it gets an answer, and the answer is the
// same ERROR from both, never larger than the request.

// tally counts what both front ends count the same way.
type tally struct {
	received, malformed, stray  atomic.Uint64
	sourceLimited, totalLimited atomic.Uint64
	replies, truncated          atomic.Uint64
	panics, errors              atomic.Uint64
}

// parse reads one datagram as a request, counting it and what it is when
// it is none: a TFTP reply (the ACK tftp-hpa sends after an ERROR) is stray,
// anything else malformed.
func (t *tally) parse(p []byte) (tftp.Request, bool) {
	t.received.Add(1)
	req, err := tftp.ParseRequest(p)
	if err != nil {
		if tftp.IsReply(p) {
			t.stray.Add(1)
		} else {
			t.malformed.Add(1)
		}
		return req, false
	}
	return req, true
}

// requestEvent makes the evidence of a request from client to srv: weak
// tftp_request until match finds a signature's file. names, when not nil,
// interns the file name and mode (worms ask for the same few names, so the
// evidence then costs no allocation). The event claims nothing about the
// proof: one datagram proves nothing.
func requestEvent(req *tftp.Request, client, srv netip.AddrPort, names *interner) evidence.Event {
	return evidence.Event{
		Time:     time.Now(),
		Kind:     evidence.TFTPRequest,
		Host:     client.Addr().Unmap(),
		Port:     client.Port(),
		Evidence: signatures.Weak,
		File:     names.intern(req.File),
		Mode:     names.intern(req.Mode),
		Op:       req.OpName(),
		Srv:      netip.AddrPortFrom(srv.Addr().Unmap(), srv.Port()),
	}
}

// match makes ev a strong tftp_refused when set names the requested file,
// and reports whether it did.
func match(set *signatures.Set, ev *evidence.Event, file []byte) bool {
	if set == nil {
		return false
	}
	ev.Serial = set.Serial()
	// The name is only looked at during the call: no copy needed.
	m, ok := set.MatchFile(unsafe.String(unsafe.SliceData(file), len(file)))
	if ok {
		ev.Kind, ev.Sig, ev.Family, ev.Evidence = evidence.TFTPRefused, m.Signature.ID, m.Signature.Family, signatures.Strong
	}
	return ok
}

// serverEvent is the line for the server a refused request named (the
// interceptor's view of a worm fetch): the host it asked may be the
// infector. The request is the client's packet, not the server's (which
// may not even exist: the interceptor answers for it), so the line is weak
// and a datagram (Named), and an address that cannot be a host (the
// unspecified address) gets none.
func serverEvent(req evidence.Event) (evidence.Event, bool) {
	srv := req.Srv.Addr()
	if !srv.IsValid() || srv.IsUnspecified() {
		return evidence.Event{}, false
	}
	ev := req
	ev.Host, ev.Port, ev.Role, ev.Peer = srv, req.Srv.Port(), evidence.RoleServer, req.Host
	ev.Evidence, ev.Proof, ev.Named = signatures.Weak, evidence.ProofDatagram, true
	return ev, true
}

// appendRefusal appends the refusal of a request reqLen bytes long: the
// ERROR both front ends send (pin/tftp's rendering of a handler error:
// code 1, the fixed text), cut so it is never larger than the request.
func appendRefusal(dst []byte, reqLen int) (out []byte, cut bool) {
	full := tftp.AppendError(dst, tftp.ErrNotFound, RefusalText)
	out, ok := tftp.FitError(full, reqLen)
	if !ok {
		return nil, false // a well-formed request is never shorter than 5 bytes
	}
	return out, len(out) < len(full)
}

// limits are the per-source and overall rate limits on answers. They are
// not safe for concurrent use: the server's read loop is their only user,
// the interceptor's loops share them under a lock.
type limits struct {
	sources *sourceTable
	perSrc  gcra
	total   gcra
	totTAT  int64
}

func newLimits(cfg Config) limits {
	return limits{
		sources: newSourceTable(cfg.Sources),
		perSrc:  newGCRA(cfg.SourceRate, cfg.SourceBurst),
		total:   newGCRA(cfg.TotalRate, cfg.TotalBurst),
	}
}

// allow takes a token for src at now (nanoseconds), counting a refusal in t.
func (l *limits) allow(src netip.Addr, now int64, t *tally) bool {
	if !l.perSrc.allow(l.sources.bucket(src), now) {
		t.sourceLimited.Add(1)
		return false
	}
	if !l.total.allow(&l.totTAT, now) {
		t.totalLimited.Add(1)
		return false
	}
	return true
}

// interner hands out one string per distinct name; it is bounded, and a
// nil interner copies every time.
type interner struct{ m map[string]string }

const maxNames = 4096

func newInterner() *interner { return &interner{m: make(map[string]string)} }

func (n *interner) intern(b []byte) string {
	if n == nil {
		return string(b)
	}
	if s, ok := n.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(n.m) < maxNames {
		n.m[s] = s
	}
	return s
}
