// Package signatures is the worm signature set: the file's parser, the
// immutable Set every matcher shares, its reloading Store and its exports.
package signatures

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// Payload is a packet content rule: a content rule (Contains) or a
// command rule (Command).
type Payload struct {
	Proto    Proto
	Port     uint16 // destination port; 0 matches any
	Contains []byte // decoded content (lower case when NoCase)
	NoCase   bool
	// Command, when not empty, makes this a command rule: "tftp" matches
	// the TFTP fetch commands of a TCP payload (telnet, HTTP; see
	// fetch.go) by the name they fetch. The rule of a signature with
	// tftp_files matches a fetched name those list; the rule of a
	// signature without them (which must be weak) matches a fetch that no
	// such rule for the packet's port claims.
	Command string
	Source  string // the content as written in the file ("command tftp" for a command rule)
	// Evidence is what a match proves: Strong (the default) for a pattern
	// only the worm sends, Weak for a generic one (a bare "tftp -g -r").
	Evidence Strength
	Line     int32 // where the rule is in its file
}

// CommandTFTP is the one kind of command rule: TFTP fetch commands.
const CommandTFTP = "tftp"

// anyName reports whether p is a command rule of a signature without
// tftp_files, which matches a fetch no rule of a listing signature claims.
func (p *Payload) anyName(sig *Signature) bool {
	return p.Command != "" && len(sig.TFTPFiles) == 0
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
	msg := e.Msg
	if len(msg) > maxErrorMsg {
		// A message that quotes too much of the file (a library's, an
		// error wrapped whole) is cut all the same.
		msg = fmt.Sprintf("%s… (message cut, %d bytes)", cutUTF8(msg, maxErrorMsg), len(msg))
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, msg)
	}
	return fmt.Sprintf("%s: %s", e.File, msg)
}

// MaxShown is how many bytes of a value from the file an error message
// quotes; a longer value is cut there and its length given.
const MaxShown = 80

// maxErrorMsg bounds a whole message: several values, the field's name
// and what is wanted.
const maxErrorMsg = 512

// shown is a value from the file as an error message quotes it: at most
// MaxShown bytes, then its length.
type shown string

func (s shown) Format(f fmt.State, verb rune) {
	v := cutUTF8(string(s), MaxShown)
	if verb == 'q' {
		v = strconv.Quote(v)
	}
	io.WriteString(f, v)
	if len(s) > MaxShown {
		fmt.Fprintf(f, "… (%d bytes)", len(s))
	}
}

// cutUTF8 cuts s to at most n bytes, not inside a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// lastElement returns the part of a TFTP file name after its last path
// separator; worms ask for C:\WINDOWS\msblast.exe or /msblast.exe alike.
func lastElement(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		return name[i+1:]
	}
	return name
}
