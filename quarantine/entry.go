package quarantine

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Kind is what a subject is.
type Kind string

const (
	// Subscriber is a customer as attribution names them (RADIUS
	// User-Name, a --subscribers id): their quarantine follows them to
	// every address they are given.
	Subscriber Kind = "subscriber"
	// Address is an address no subscriber is known for.
	Address Kind = "address"
)

// Subject is who is quarantined.
type Subject struct {
	Kind Kind
	ID   string // the subscriber id, or the address in canonical form
}

func (s Subject) String() string { return string(s.Kind) + ":" + s.ID }

// ParseSubject reads a subject as the command line and the store write it:
// "subscriber:ID", "address:IP", a bare IP address (an address subject) or
// a bare subscriber id.
func ParseSubject(s string) (Subject, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Subject{}, errors.New("empty subject")
	}
	if len(s) > 253 {
		return Subject{}, fmt.Errorf("subject of %d bytes: at most 253", len(s))
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c == 0x7f {
			return Subject{}, fmt.Errorf("subject %q contains a space or control character", s)
		}
	}
	if id, ok := strings.CutPrefix(s, "subscriber:"); ok && id != "" {
		return Subject{Subscriber, id}, nil
	}
	if a, ok := strings.CutPrefix(s, "address:"); ok {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return Subject{}, fmt.Errorf("subject %q: not an address", s)
		}
		return AddressSubject(ip), nil
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return AddressSubject(ip), nil
	}
	return Subject{Subscriber, s}, nil
}

// AddressSubject is the subject for an address no subscriber is known for.
func AddressSubject(a netip.Addr) Subject {
	return Subject{Address, a.Unmap().WithZone("").String()}
}

// State is where a subject stands.
type State string

const (
	Quarantined State = "quarantined"
	Released    State = "released"
)

// How a subject was released, as audit rows and metrics name it.
const (
	ReleaseSelf  = "self"  // the customer's "my computer is clean" button
	ReleaseAdmin = "admin" // the abuse team (command line, desk)
	ReleaseAuto  = "auto"  // the quiet period passed
)

// Entry is one subject's quarantine record.
type Entry struct {
	Subject      Subject
	State        State
	Family       string // the family that put it in quarantine
	Signature    string
	Since        time.Time // when it entered the quarantine last
	FirstSeen    time.Time // first sighting that counted
	LastSighting time.Time // last sighting that would quarantine it
	// Addresses are where the quarantine is enforced: the subscriber's own
	// (framed or inside) addresses, never a shared public one.
	Addresses    []netip.Addr
	SelfReleases int       // self-releases used
	ReleasedAt   time.Time // zero while quarantined
	ReleaseKind  string    // ReleaseSelf, ReleaseAdmin, ReleaseAuto
	GraceUntil   time.Time // sightings before this do not quarantine again
}

// AuditRow is one transition or note, as the store keeps it for good.
type AuditRow struct {
	ID      int64
	Subject Subject
	At      time.Time
	Action  string // quarantine, release, note, moved, refused
	Kind    string // for release: self, admin, auto; for quarantine: policy, admin
	Actor   string // who: a user name, "policy", "customer ADDR", "auto"
	Note    string
	// Sightings is what made it happen, as JSON (the sightings that
	// entered it into quarantine).
	Sightings string
}

// Errors callers test for.
var (
	ErrNotQuarantined   = errors.New("not in quarantine")
	ErrNoSelfRelease    = errors.New("no self-release left: the abuse team can release")
	ErrSelfReleaseAbuse = errors.New("self-release only from the quarantined address itself")
)

func formatAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

func parseAddrs(s string) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Fields(s) {
		if a, err := netip.ParseAddr(f); err == nil {
			out = append(out, a)
		}
	}
	return out
}
