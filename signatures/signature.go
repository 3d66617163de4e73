// Package signatures is the worm signature set: the file's parser, the
// immutable Set every matcher shares, its reloading Store and its exports.
package signatures

import (
	"fmt"
	"strings"
	"time"
)

// Action is what the DNS shim does with a listed name.
type Action uint8

const (
	// Sinkhole answers A/AAAA with the sinkhole addresses, NODATA otherwise.
	Sinkhole Action = iota
	// NXDomain answers that the name does not exist.
	NXDomain
	// NoData answers that the name exists but has no records of any type.
	NoData
)

var actionNames = [...]string{Sinkhole: "sinkhole", NXDomain: "nxdomain", NoData: "nodata"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

func parseAction(s string) (Action, bool) {
	for i, n := range actionNames {
		if s == n {
			return Action(i), true
		}
	}
	return 0, false
}

// Strength says how much a sighting proves: Strong means the host is infected,
// Weak means it is worth an analyst's look.
type Strength uint8

const (
	Strong Strength = iota
	Weak
)

func (s Strength) String() string {
	if s == Weak {
		return "weak"
	}
	return "strong"
}

// ParseStrength reads "strong" or "weak".
func ParseStrength(s string) (Strength, bool) {
	switch s {
	case "strong":
		return Strong, true
	case "weak":
		return Weak, true
	}
	return 0, false
}

// Proto is the transport a payload rule applies to.
type Proto uint8

const (
	TCP Proto = iota + 1
	UDP
	// ICMP matches ICMPv4 and ICMPv6 messages alike.
	ICMP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case ICMP:
		return "icmp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Signature is one worm as the file describes it. Names are canonical:
// lower case, without the trailing dot.
type Signature struct {
	ID         string
	Family     string
	Aliases    []string
	References []string
	TFTPFiles  []string
	Domains    []Domain
	Payloads   []Payload
	Line       int // where the entry starts in its file
}

// Domain is one listed name. Wildcard means every name strictly below Name
// (the file wrote "*.Name"), following RPZ semantics.
type Domain struct {
	Name     string
	Wildcard bool
	Action   Action
	Evidence Strength
	Line     int32 // where the entry is in its file
}

// Pattern renders the domain as the file writes it.
func (d Domain) Pattern() string {
	if d.Wildcard {
		return "*." + d.Name
	}
	return d.Name
}

// Payload is a packet content rule.
type Payload struct {
	Proto    Proto
	Port     uint16 // destination port; 0 matches any
	Contains []byte // decoded content (lower case when NoCase)
	NoCase   bool
	Source   string // the content as written in the file
	// Evidence is what a match proves: Strong (the default) for a pattern
	// only the worm sends, Weak for a generic one (a bare "tftp -g -r").
	Evidence Strength
}

// File is a parsed signature file.
type File struct {
	Name   string // path or label used in error messages
	Serial uint64
	// Expires is when the file stops being current (zero: never). A feed
	// refuses an expired file, so a stale copy cannot be replayed forever.
	Expires    time.Time
	Signatures []Signature

	namesPacked bool // every domain name already lives in one shared arena
}

// Error is a problem in a signature file, reported as FILE:LINE: message.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// lastElement returns the part of a TFTP file name after its last path
// separator; worms ask for C:\WINDOWS\msblast.exe or /msblast.exe alike.
func lastElement(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		return name[i+1:]
	}
	return name
}
