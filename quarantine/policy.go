package quarantine

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"wormsink/evidence"
	"wormsink/internal/yamlline"
	"wormsink/signatures"
)

// Defaults of a policy file's keys, and of serve without --quarantine-policy
// file (then nobody is quarantined automatically; the abuse team still can).
const (
	DefaultSelfReleaseMax   = 3
	DefaultSelfReleaseGrace = 30 * time.Minute
	DefaultAutoRelease      = 7 * 24 * time.Hour
	// MaxPolicyBytes bounds what is read of a policy file.
	MaxPolicyBytes = 4 << 20
)

// DefaultProofs are the proofs that put a client in quarantine unless the
// policy says otherwise: each shows that the sender held the address. A
// datagram alone never does, and a policy may not ask for it.
var DefaultProofs = []evidence.Proof{evidence.ProofExchange, evidence.ProofTCP, evidence.ProofTrustedSource}

// Policy is a parsed --quarantine-policy file. The zero value quarantines
// nobody automatically.
type Policy struct {
	// Auto says whether sightings put clients in quarantine at all (a
	// policy file with an enter section).
	Auto bool
	// Enter is the rule for every family without a rule of its own.
	Enter Rule
	// Families are per-family rules, by family name (case-insensitive).
	Families map[string]Rule
	// Allow are the names a quarantined client still resolves: a name
	// matches itself and every name below it; "*.name" only the names
	// below. The signature file's own names never pass, whatever is here.
	Allow []string
	// Never are networks never quarantined: carrier-grade NAT public pools
	// (shared by many customers), the ISP's own servers.
	Never []netip.Prefix
	// SelfReleaseMax is how many times a customer may release themselves
	// ("my computer is clean"); after that only the abuse team can.
	SelfReleaseMax int
	// SelfReleaseGrace is how long after a self-release new sightings do
	// not quarantine again (the customer is cleaning up).
	SelfReleaseGrace time.Duration
	// TFTPExchange lets a TFTP exchange (proof exchange on a tftp_refused
	// or tftp_request line: rounds of fresh ports answered) quarantine.
	// TFTP has no nonce: the rounds' ports are the only secret, as strong
	// as the sensor's rounds make it (see the proof documentation); by
	// default it does not quarantine, while a DNS cookie exchange does.
	TFTPExchange bool
	// AutoRelease releases a subject after this long without a sighting
	// that would quarantine it; 0 never does.
	AutoRelease time.Duration
	// Contact is the ISP's contact text on the notice page.
	Contact string
	// Notices are the notice texts by family (lower case), with "" the
	// text for families without one of their own.
	Notices map[string]Notice
}

// Rule says which sightings of a family quarantine.
type Rule struct {
	Off      bool                // never quarantine for this family
	Evidence signatures.Strength // at least this evidence
	Proofs   []evidence.Proof    // one of these proofs
}

// Notice is what the notice page tells a customer about one family, in the
// customer's words.
type Notice struct {
	Title   string   // "Your computer is infected with the Blaster worm"
	What    string   // what it is and what it does
	Cleanup string   // how to clean it up
	Links   []string // where to read more (removal tools, vendor pages)
}

// DefaultPolicy is the policy with every default and automatic quarantine
// on, as an empty policy file gives.
func DefaultPolicy() *Policy {
	return &Policy{
		Auto:             true,
		Enter:            Rule{Evidence: signatures.Strong, Proofs: slices.Clone(DefaultProofs)},
		Families:         map[string]Rule{},
		SelfReleaseMax:   DefaultSelfReleaseMax,
		SelfReleaseGrace: DefaultSelfReleaseGrace,
		AutoRelease:      DefaultAutoRelease,
		Notices:          map[string]Notice{"": defaultNotice},
	}
}

var defaultNotice = Notice{
	Title:   "A computer on your connection is infected",
	What:    "A device on your Internet connection tried to download a computer worm. Worms spread by themselves to other computers and can be used to attack others or steal data.",
	Cleanup: "Update the operating system of every computer on your connection, run a full scan with an up-to-date antivirus program, and change the passwords you used on an infected computer. Until then, this page replaces the web sites you visit.",
}

// Rule returns the rule for family.
func (p *Policy) Rule(family string) Rule {
	if r, ok := p.Families[strings.ToLower(family)]; ok {
		return r
	}
	return p.Enter
}

// Notice returns the notice text for family.
func (p *Policy) Notice(family string) Notice {
	if n, ok := p.Notices[strings.ToLower(family)]; ok {
		return n
	}
	if n, ok := p.Notices[""]; ok {
		return n
	}
	return defaultNotice
}

// Enters says whether a sighting of kind (an evidence event) puts its
// subject in quarantine.
func (p *Policy) Enters(kind evidence.Kind, family string, ev signatures.Strength, proof evidence.Proof) bool {
	if !p.Auto || proof == evidence.ProofDatagram {
		return false
	}
	if proof == evidence.ProofExchange && !p.TFTPExchange && (kind == evidence.TFTPRefused || kind == evidence.TFTPRequest) {
		return false
	}
	r := p.Rule(family)
	if r.Off || ev > r.Evidence { // Strong is 0: a larger Strength is weaker
		return false
	}
	return slices.Contains(r.Proofs, proof)
}

// Allowed says whether a quarantined client may resolve name normally.
// name is lower case without the trailing dot.
func (p *Policy) Allowed(name string) bool {
	for _, a := range p.Allow {
		if below, ok := strings.CutPrefix(a, "*."); ok {
			if strings.HasSuffix(name, "."+below) {
				return true
			}
			continue
		}
		if name == a || strings.HasSuffix(name, "."+a) {
			return true
		}
	}
	return false
}

// Excluded says whether addr may never be quarantined.
func (p *Policy) Excluded(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range p.Never {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// PolicyError is a mistake in a policy file, at FILE:LINE.
type PolicyError struct {
	File string
	Line int
	Msg  string
}

func (e *PolicyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// LoadPolicy reads and checks a policy file.
func LoadPolicy(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("quarantine policy: %w", err)
	}
	defer f.Close()
	data := make([]byte, MaxPolicyBytes+1)
	n, _ := io.ReadFull(f, data)
	if n > MaxPolicyBytes {
		return nil, &PolicyError{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxPolicyBytes)}
	}
	return ParsePolicy(path, data[:n])
}

// ParsePolicy checks and reads a policy file's text; name is the file name
// its errors carry.
func ParsePolicy(name string, data []byte) (*Policy, error) {
	d := &pdecoder{name: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return DefaultPolicy(), nil // an empty file: every default
		}
		line, msg := yamlline.Locate(data, err)
		return nil, &PolicyError{File: name, Line: line, Msg: "invalid YAML: " + msg}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, d.errf(&extra, "a second YAML document: a policy is one document")
	}
	p := DefaultPolicy()
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return p, nil
	}
	err := d.fields(root, "policy", []string{"enter", "allow", "never", "self_release", "auto_release", "notice"}, func(key string, v *yaml.Node) error {
		switch key {
		case "enter":
			return d.enter(v, p)
		case "allow":
			names, err := d.strList(v, "allow")
			if err != nil {
				return err
			}
			for i, n := range names {
				n = strings.ToLower(strings.TrimSuffix(n, "."))
				if err := checkName(strings.TrimPrefix(n, "*.")); err != nil {
					return d.errf(v, "allow entry %q: %v", cut(names[i]), err)
				}
				p.Allow = append(p.Allow, n)
			}
		case "never":
			nets, err := d.strList(v, "never")
			if err != nil {
				return err
			}
			for _, s := range nets {
				pfx, err := parsePrefix(s)
				if err != nil {
					return d.errf(v, "never: %v", err)
				}
				p.Never = append(p.Never, pfx)
			}
		case "self_release":
			return d.fields(v, "self_release", []string{"max", "grace"}, func(key string, v *yaml.Node) error {
				switch key {
				case "max":
					n, err := strconv.Atoi(v.Value)
					if err != nil || n < 0 || n > 1000 || v.Kind != yaml.ScalarNode {
						return d.errf(v, "self_release.max: want a whole number from 0 to 1000, got %q", cut(v.Value))
					}
					p.SelfReleaseMax = n
				case "grace":
					dur, err := d.duration(v, "self_release.grace")
					if err != nil {
						return err
					}
					p.SelfReleaseGrace = dur
				}
				return nil
			})
		case "auto_release":
			dur, err := d.duration(v, "auto_release")
			if err != nil {
				return err
			}
			p.AutoRelease = dur
		case "notice":
			return d.notices(v, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

type pdecoder struct{ name string }

func (d *pdecoder) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &PolicyError{File: d.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (d *pdecoder) fields(n *yaml.Node, what string, known []string, fn func(key string, v *yaml.Node) error) error {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "%s must be a mapping", what)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		for v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if k.Kind != yaml.ScalarNode {
			return d.errf(k, "%s: keys must be plain names", what)
		}
		if known != nil && !slices.Contains(known, k.Value) {
			return d.errf(k, "%s: unknown key %q (known: %s)", what, cut(k.Value), strings.Join(known, ", "))
		}
		if prev, dup := seen[strings.ToLower(k.Value)]; dup {
			return d.errf(k, "%s: key %q repeated (first at line %d)", what, cut(k.Value), prev)
		}
		seen[strings.ToLower(k.Value)] = k.Line
		if err := fn(k.Value, v); err != nil {
			return err
		}
	}
	return nil
}

func (d *pdecoder) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", d.errf(n, "%s must be a string", what)
	}
	return n.Value, nil
}

// text is a notice text: shown on a web page (escaped there), so line
// breaks are fine, other control characters are not.
func (d *pdecoder) text(n *yaml.Node, what string) (string, error) {
	s, err := d.str(n, what)
	if err != nil {
		return "", err
	}
	for _, c := range []byte(s) {
		if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
			return "", d.errf(n, "%s contains a control character", what)
		}
	}
	return s, nil
}

func (d *pdecoder) strList(n *yaml.Node, what string) ([]string, error) {
	var items []*yaml.Node
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		items = []*yaml.Node{n}
	case n.Kind == yaml.SequenceNode:
		items = n.Content
	default:
		return nil, d.errf(n, "%s must be a list of strings", what)
	}
	out := make([]string, 0, len(items))
	for _, c := range items {
		s, err := d.str(c, what+" entry")
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, d.errf(c, "%s: empty entry", what)
		}
		for _, b := range []byte(s) {
			if b < 0x20 || b == 0x7f {
				return nil, d.errf(c, "%s entry contains a control character", what)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *pdecoder) duration(n *yaml.Node, what string) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, d.errf(n, "%s must be a duration such as 30m or 72h", what)
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil || dur < 0 {
		return 0, d.errf(n, "%s: want a duration such as 30m or 72h, got %q", what, cut(n.Value))
	}
	return dur, nil
}

func (d *pdecoder) enter(n *yaml.Node, p *Policy) error {
	return d.fields(n, "enter", []string{"evidence", "proof", "families", "tftp_exchange"}, func(key string, v *yaml.Node) error {
		switch key {
		case "tftp_exchange":
			b, err := strconv.ParseBool(v.Value)
			if err != nil || v.Kind != yaml.ScalarNode {
				return d.errf(v, "enter.tftp_exchange: want true or false")
			}
			p.TFTPExchange = b
		case "evidence", "proof":
			return d.rulePart(key, v, &p.Enter, "enter")
		case "families":
			return d.fields(v, "enter.families", nil, func(fam string, v *yaml.Node) error {
				r := p.Enter
				r.Proofs = slices.Clone(r.Proofs)
				if v.Kind == yaml.ScalarNode && v.Value == "off" {
					r.Off = true
				} else if err := d.fields(v, "enter.families."+cut(fam), []string{"evidence", "proof", "off"}, func(key string, v *yaml.Node) error {
					if key == "off" {
						b, err := strconv.ParseBool(v.Value)
						if err != nil {
							return d.errf(v, "off: want true or false")
						}
						r.Off = b
						return nil
					}
					return d.rulePart(key, v, &r, "enter.families."+cut(fam))
				}); err != nil {
					return err
				}
				p.Families[strings.ToLower(fam)] = r
				return nil
			})
		}
		return nil
	})
}

func (d *pdecoder) rulePart(key string, v *yaml.Node, r *Rule, where string) error {
	switch key {
	case "evidence":
		s, err := d.str(v, where+".evidence")
		if err != nil {
			return err
		}
		st, ok := signatures.ParseStrength(s)
		if !ok {
			return d.errf(v, "%s.evidence: want strong or weak, got %q", where, cut(s))
		}
		r.Evidence = st
	case "proof":
		names, err := d.strList(v, where+".proof")
		if err != nil {
			return err
		}
		r.Proofs = r.Proofs[:0]
		for _, s := range names {
			pr, ok := evidence.ParseProof(s)
			if !ok {
				return d.errf(v, "%s.proof: unknown proof %q (exchange, tcp, trusted-source)", where, cut(s))
			}
			if pr == evidence.ProofDatagram {
				return d.errf(v, "%s.proof: datagram proves nothing about the sender (anyone can forge it): never a reason to quarantine", where)
			}
			r.Proofs = append(r.Proofs, pr)
		}
	}
	return nil
}

func (d *pdecoder) notices(n *yaml.Node, p *Policy) error {
	return d.fields(n, "notice", []string{"contact", "default", "families"}, func(key string, v *yaml.Node) error {
		switch key {
		case "contact":
			s, err := d.text(v, "notice.contact")
			p.Contact = s
			return err
		case "default":
			nt, err := d.notice(v, "notice.default", defaultNotice)
			p.Notices[""] = nt
			return err
		case "families":
			return d.fields(v, "notice.families", nil, func(fam string, v *yaml.Node) error {
				nt, err := d.notice(v, "notice.families."+cut(fam), p.Notice(""))
				p.Notices[strings.ToLower(fam)] = nt
				return err
			})
		}
		return nil
	})
}

func (d *pdecoder) notice(n *yaml.Node, where string, base Notice) (Notice, error) {
	nt := base
	nt.Links = nil
	err := d.fields(n, where, []string{"title", "what", "cleanup", "links"}, func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "title":
			nt.Title, err = d.text(v, where+".title")
		case "what":
			nt.What, err = d.text(v, where+".what")
		case "cleanup":
			nt.Cleanup, err = d.text(v, where+".cleanup")
		case "links":
			nt.Links, err = d.strList(v, where+".links")
			for _, l := range nt.Links {
				if !strings.HasPrefix(l, "https://") && !strings.HasPrefix(l, "http://") {
					return d.errf(v, "%s.links: %q is not an http(s) URL", where, cut(l))
				}
			}
		}
		return err
	})
	return nt, err
}

func checkName(n string) error {
	if n == "" || len(n) > 253 {
		return fmt.Errorf("not a DNS name")
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("not a DNS name")
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("not a DNS name (character %q)", c)
			}
		}
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix", cut(s))
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write an IPv4 prefix as a.b.c.d/N", cut(s))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", cut(s))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// cut shortens a value echoed in an error message.
func cut(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s… (%d bytes)", s[:80], len(s))
	}
	return s
}
