package rpz

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

type kind uint8

const (
	kindSOA kind = iota
	kindAXFR
	kindIXFR
	kindOther
	nKinds
)

// Kinds names the request kinds Stats counts, in index order.
var Kinds = [nKinds]string{"soa", "axfr", "ixfr", "other"}

type result uint8

const (
	resOK          result = iota // SOA answered
	resFull                      // whole zone sent (AXFR, or IXFR from a serial the journal lacks)
	resIncremental               // IXFR deltas sent
	resCurrent                   // IXFR answered with the SOA alone (up to date, or over UDP)
	resRefused                   // outside --rpz-allow, or not a question for the zone
	resNotAuth                   // TSIG missing, unknown key, bad signature or wrong algorithm
	resError                     // malformed request or the transfer broke off
	nResults
)

// Results names the outcomes Stats counts, in index order.
var Results = [nResults]string{"ok", "full", "incremental", "current", "refused", "notauth", "error"}

func rcodeResult(rcode int) result {
	if rcode == dns.RcodeNotAuth {
		return resNotAuth
	}
	return resRefused
}

type stats struct {
	req                     [nKinds][nResults]atomic.Uint64
	notifySent, notifyAcked atomic.Uint64
	notifyGivenUp           atomic.Uint64
	panics                  atomic.Uint64
	transfersLimited        atomic.Uint64
	connRefused             atomic.Uint64
	connRejected            atomic.Uint64
}

func (s *stats) count(k kind, r result) { s.req[k][r].Add(1) }

// Stats is a snapshot of what the primary did; all counters only grow.
type Stats struct {
	Requests      [nKinds][nResults]uint64 // by Kinds and Results index
	NotifySent    uint64                   // NOTIFY messages sent, retries included
	NotifyAcked   uint64                   // NOTIFYs a secondary answered
	NotifyGivenUp uint64                   // serials a secondary never acknowledged
	Panics        uint64

	TransfersLimited uint64 // transfers REFUSED over MaxTransfers or MaxTransfersPerClient
	ConnsRefused     uint64 // TCP connections from outside Allow, reset at once
	ConnsRejected    uint64 // TCP connections over MaxConns or MaxConnsPerClient, closed at once
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	var out Stats
	for k := range s.stats.req {
		for r := range s.stats.req[k] {
			out.Requests[k][r] = s.stats.req[k][r].Load()
		}
	}
	out.NotifySent = s.stats.notifySent.Load()
	out.NotifyAcked = s.stats.notifyAcked.Load()
	out.NotifyGivenUp = s.stats.notifyGivenUp.Load()
	out.Panics = s.stats.panics.Load()
	out.TransfersLimited = s.stats.transfersLimited.Load()
	out.ConnsRefused = s.stats.connRefused.Load()
	out.ConnsRejected = s.stats.connRejected.Load()
	return out
}

// Count returns one counter by its names ("axfr", "incremental"); 0 for
// names it does not know.
func (st Stats) Count(kindName, resultName string) uint64 {
	for k, kn := range Kinds {
		for r, rn := range Results {
			if kn == kindName && rn == resultName {
				return st.Requests[k][r]
			}
		}
	}
	return 0
}
