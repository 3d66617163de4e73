package signatures

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"wormsink/internal/yamlline"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds what Parse reads, so a runaway file cannot exhaust memory.
const MaxFileSize = 256 << 20

// maxSignatures follows from the 16-bit signature index in the name table.
const maxSignatures = 1 << 16

// Load reads and compiles the signature file at path. The file is read in
// passes rather than held in memory, so a million-name file costs little
// more than the compiled set.
func Load(path string) (*Set, error) {
	f, err := decodeFile(path)
	if err != nil {
		return nil, err
	}
	return Compile(f)
}

func decodeFile(path string) (*File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if fi.Size() > MaxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	var opened []*os.File
	defer func() {
		for _, f := range opened {
			f.Close()
		}
	}()
	open := func() (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		opened = append(opened, f)
		return io.LimitReader(f, MaxFileSize+1), nil
	}
	return decodeSource(path, open)
}

// Parse decodes and compiles a signature file. name labels error messages.
// Errors are *Error values carrying the line of the first problem.
func Parse(name string, data []byte) (*Set, error) {
	f, err := Decode(name, data)
	if err != nil {
		return nil, err
	}
	return Compile(f)
}

// Decode parses a signature file strictly, without compiling matchers.
func Decode(name string, data []byte) (*File, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)}
	}
	return decodeSource(name, bytesSource(data))
}

func decodeSource(name string, open source) (*File, error) {
	lf, err := prescanPlainLists(open)
	if err != nil {
		return nil, err
	}
	if lf != nil && lf.count > 0 {
		r, err := open()
		if err != nil {
			return nil, err
		}
		d := decoder{name: name, prescanned: lf}
		f, err := d.decode(newBlankReader(r, lf.blanks))
		if err == nil && lf.allDecoded() {
			f.namesPacked = lf.count == countDomains(f)
			return f, nil
		}
		// Whatever went wrong, the plain decoder has the last word: it
		// reports errors exactly as YAML sees the file.
	}
	r, err := open()
	if err != nil {
		return nil, err
	}
	d := decoder{name: name, open: open}
	return d.decode(r)
}

func (l *prescanned) allDecoded() bool {
	for _, pl := range l.lists {
		if !pl.decoded {
			return false
		}
	}
	return true
}

func countDomains(f *File) int {
	n := 0
	for i := range f.Signatures {
		n += len(f.Signatures[i].Domains)
	}
	return n
}

func (d *decoder) decode(r io.Reader) (*File, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(r)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: d.name, Line: 1, Msg: "empty file: serial and signatures are required"}
		}
		return nil, d.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, d.errf(&extra, "more than one YAML document")
	} else if !errors.Is(err, io.EOF) {
		return nil, d.yamlError(err)
	}
	out, err := d.file(&doc)
	if err != nil {
		return nil, err
	}
	out.Name = d.name
	return out, nil
}

type decoder struct {
	name       string
	prescanned *prescanned // plain names taken out before YAML decoding, if any
	open       source      // the file again, to find the line of a YAML syntax error
}

func (d *decoder) errf(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	// A value from the file is quoted cut: an error about a 30 MB value
	// is one short line, not the value again.
	for i, a := range args {
		if s, ok := a.(string); ok && len(s) > MaxShown {
			args[i] = shown(s)
		}
	}
	return &Error{File: d.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// yamlError turns the YAML library's "yaml: line N: msg" into FILE:LINE:
// msg, at the line of the mistake rather than of the block it breaks.
func (d *decoder) yamlError(err error) error {
	var data []byte
	if d.open != nil {
		if r, oerr := d.open(); oerr == nil {
			data, _ = io.ReadAll(r)
		}
	}
	line, msg := yamlline.Locate(data, err)
	return &Error{File: d.name, Line: line, Msg: "invalid YAML: " + msg}
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields walks a mapping, rejecting unknown and repeated keys.
func (d *decoder) fields(n *yaml.Node, what string, known []string, fn func(key string, k, v *yaml.Node) error) error {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return d.errf(n, "%s must be a mapping", what)
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return d.errf(k, "%s: keys must be plain names", what)
		}
		key := k.Value
		if !slices.Contains(known, key) {
			return d.errf(k, "%s: unknown key %q (known: %s)", what, key, strings.Join(known, ", "))
		}
		if prev, dup := seen[key]; dup {
			return d.errf(k, "%s: key %q repeated (first at line %d)", what, key, prev)
		}
		seen[key] = k.Line
		if err := fn(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) str(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", d.errf(n, "%s must be a string", what)
	}
	// Text from a signature file ends up in exported zones, hosts files and
	// IDS rules, often shared between ISPs: a line break there would be an
	// injected record or rule option.
	for i := 0; i < len(n.Value); i++ {
		if c := n.Value[i]; c < 0x20 || c == 0x7f {
			return "", d.errf(n, "%s contains a control character (write bytes as |hex| in contains)", what)
		}
	}
	return n.Value, nil
}

func (d *decoder) strList(n *yaml.Node, what string) ([]string, error) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		// A single string is accepted where a list is expected, under
		// the same rules as an entry of the list.
		s, err := d.str(n, what+" entry")
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, d.errf(n, "%s: empty entry", what)
		}
		return []string{s}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, d.errf(n, "%s must be a list of strings", what)
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, err := d.str(resolve(c), what+" entry")
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, d.errf(c, "%s: empty entry", what)
		}
		out = append(out, s)
	}
	return out, nil
}

func (d *decoder) file(doc *yaml.Node) (*File, error) {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, d.errf(root, "empty file: serial and signatures are required")
		}
		root = root.Content[0]
	}
	f := &File{}
	var haveSerial, haveSigs bool
	var sigsNode *yaml.Node
	err := d.fields(root, "file", []string{"serial", "expires", "signatures"}, func(key string, k, v *yaml.Node) error {
		switch key {
		case "expires":
			t, err := d.expires(v)
			if err != nil {
				return err
			}
			f.Expires = t
		case "serial":
			haveSerial = true
			s, err := d.str(v, "serial")
			if err != nil {
				return err
			}
			serial, err := strconv.ParseUint(s, 10, 64)
			if err != nil || serial == 0 || v.Tag != "!!int" {
				return d.errf(v, "serial must be a positive integer, got %q", s)
			}
			if serial > math.MaxUint32 {
				// The RPZ export carries it as the SOA serial, which is 32
				// bits (RFC 1982); taking it modulo 2^32 would make
				// secondaries see the zone go backwards.
				return d.errf(v, "serial %d is 2^32 or more; it must fit the 32-bit SOA serial (at most %d)", serial, uint64(math.MaxUint32))
			}
			f.Serial = serial
		case "signatures":
			haveSigs = true
			sigsNode = v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !haveSerial {
		return nil, d.errf(root, "serial is required")
	}
	if !haveSigs {
		return nil, d.errf(root, "signatures is required")
	}
	if sigsNode.Kind != yaml.SequenceNode {
		return nil, d.errf(sigsNode, "signatures must be a list")
	}
	if len(sigsNode.Content) > maxSignatures {
		return nil, d.errf(sigsNode, "more than %d signatures", maxSignatures)
	}
	ids := make(map[string]int, len(sigsNode.Content))
	f.Signatures = make([]Signature, 0, len(sigsNode.Content))
	for _, sn := range sigsNode.Content {
		sn = resolve(sn)
		sig, err := d.signature(sn)
		if err != nil {
			return nil, err
		}
		if prev, dup := ids[sig.ID]; dup {
			return nil, d.errf(sn, "duplicate signature id %q (first at line %d)", sig.ID, prev)
		}
		ids[sig.ID] = sn.Line
		f.Signatures = append(f.Signatures, sig)
	}
	return f, nil
}

// expires reads the file's expiry: an RFC 3339 time with its zone, so a
// feed client anywhere reads the same instant. YAML itself reads such a
// value as a timestamp; either tag is taken, the text is what counts.
func (d *decoder) expires(n *yaml.Node) (time.Time, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" && n.Tag != "!!timestamp" {
		return time.Time{}, d.errf(n, "expires must be an RFC 3339 time such as 2027-01-31T00:00:00Z")
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		return time.Time{}, d.errf(n, "expires %q is not an RFC 3339 time such as 2027-01-31T00:00:00Z", n.Value)
	}
	return t, nil
}

var signatureKeys = []string{"id", "family", "aliases", "references", "tftp_files", "domains", "payloads"}

func (d *decoder) signature(n *yaml.Node) (Signature, error) {
	sig := Signature{Line: n.Line}
	err := d.fields(n, "signature", signatureKeys, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "id":
			if sig.ID, err = d.str(v, "id"); err != nil {
				return err
			}
			if !validID(sig.ID) {
				return d.errf(v, "id %q must be lowercase letters, digits, '.', '_' or '-'", sig.ID)
			}
		case "family":
			if sig.Family, err = d.str(v, "family"); err != nil {
				return err
			}
			if strings.TrimSpace(sig.Family) == "" {
				return d.errf(v, "family must not be empty")
			}
		case "aliases":
			sig.Aliases, err = d.strList(v, "aliases")
		case "references":
			sig.References, err = d.strList(v, "references")
		case "tftp_files":
			sig.TFTPFiles, err = d.tftpFiles(v)
		case "domains":
			sig.Domains, err = d.domains(k, v)
		case "payloads":
			sig.Payloads, err = d.payloads(v)
		}
		return err
	})
	if err != nil {
		return sig, err
	}
	if sig.ID == "" {
		return sig, d.errf(n, "signature without id")
	}
	if sig.Family == "" {
		return sig, d.errf(n, "signature %q: family is required", sig.ID)
	}
	if len(sig.TFTPFiles)+len(sig.Domains)+len(sig.Payloads) == 0 {
		return sig, d.errf(n, "signature %q is empty: it needs tftp_files, domains or payloads", sig.ID)
	}
	for _, p := range sig.Payloads {
		if p.anyName(&sig) && p.Evidence != Weak {
			// Any fetched name a signature does not list is what an
			// administrator fetches too: never proof of a worm.
			return sig, &Error{File: d.name, Line: int(p.Line), Msg: fmt.Sprintf("signature %q: a command rule of a signature without tftp_files matches the fetch of any name no listing signature claims; it must say evidence: weak", sig.ID)}
		}
	}
	return sig, nil
}

func validID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (d *decoder) tftpFiles(n *yaml.Node) ([]string, error) {
	files, err := d.strList(n, "tftp_files")
	if err != nil {
		return nil, err
	}
	items := n.Content
	for i, f := range files {
		at := n
		if i < len(items) {
			at = items[i]
		}
		// Matching is on the last path element, so a listed path could never match.
		if strings.ContainsAny(f, `/\`) {
			return nil, d.errf(at, "tftp_files entry %q: give the file name without a path", f)
		}
		if strings.IndexByte(f, 0) >= 0 || len(f) > 255 {
			return nil, d.errf(at, "tftp_files entry %q is not a valid file name", f)
		}
		if isPattern(f) {
			if err := checkPattern(f); err != "" {
				return nil, d.errf(at, "tftp_files entry %q: %s", f, err)
			}
		}
		files[i] = lowerASCII(f)
	}
	return files, nil
}

func (d *decoder) domains(key, n *yaml.Node) ([]Domain, error) {
	var pl *plainList
	if d.prescanned != nil {
		if pl = d.prescanned.lists[key.Line]; pl != nil {
			pl.decoded = true
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return pl.domains, nil // every entry was a plain name
			}
		}
	}
	if n.Kind != yaml.SequenceNode {
		return nil, d.errf(n, "domains must be a list")
	}
	out, err := d.domainNodes(n)
	if err != nil || pl == nil {
		return out, err
	}
	return mergeByLine(pl.domains, out), nil
}

// mergeByLine merges two lists sorted by line into file order.
func mergeByLine(a, b []Domain) []Domain {
	out := make([]Domain, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].Line < b[0].Line {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func (d *decoder) domainNodes(n *yaml.Node) ([]Domain, error) {
	out := make([]Domain, 0, len(n.Content))
	for _, c := range n.Content {
		c = resolve(c)
		dom := Domain{Line: int32(c.Line)}
		if c.Kind == yaml.ScalarNode {
			name, err := d.str(c, "domain")
			if err != nil {
				return nil, err
			}
			if dom.Name, dom.Wildcard, err = canonicalName(name); err != nil {
				return nil, d.errf(c, "domain %q: %v", name, err)
			}
			out = append(out, dom)
			continue
		}
		var haveName bool
		err := d.fields(c, "domain", []string{"name", "action", "evidence"}, func(key string, k, v *yaml.Node) error {
			s, err := d.str(v, key)
			if err != nil {
				return err
			}
			switch key {
			case "name":
				haveName = true
				if dom.Name, dom.Wildcard, err = canonicalName(s); err != nil {
					return d.errf(v, "domain %q: %v", s, err)
				}
			case "action":
				a, ok := parseAction(s)
				if !ok {
					return d.errf(v, "action %q: want sinkhole, nxdomain or nodata", s)
				}
				dom.Action = a
			case "evidence":
				e, ok := ParseStrength(s)
				if !ok {
					return d.errf(v, "evidence %q: want strong or weak", s)
				}
				dom.Evidence = e
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if !haveName {
			return nil, d.errf(c, "domain entry without name")
		}
		out = append(out, dom)
	}
	return out, nil
}

var errNameSyntax = errors.New("not a valid domain name")

// canonicalName validates a listed name and returns it in lower case without
// the trailing dot. A leading "*." marks a wildcard.
func canonicalName(s string) (name string, wildcard bool, err error) {
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		s, wildcard = rest, true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", false, fmt.Errorf("%w: empty", errNameSyntax)
	}
	if len(s) > 253 {
		return "", false, fmt.Errorf("%w: longer than 253 characters", errNameSyntax)
	}
	lower := true
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", false, fmt.Errorf("%w: empty label", errNameSyntax)
			}
			label = 0
			continue
		case c >= 'A' && c <= 'Z':
			lower = false
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '*':
			return "", false, fmt.Errorf("%w: '*' is allowed only as a leading \"*.\"", errNameSyntax)
		case c >= 0x80:
			return "", false, fmt.Errorf("%w: non-ASCII, write it as punycode (xn--)", errNameSyntax)
		default:
			return "", false, fmt.Errorf("%w: character %q", errNameSyntax, c)
		}
		label++
		if label > 63 {
			return "", false, fmt.Errorf("%w: label longer than 63 characters", errNameSyntax)
		}
	}
	if label == 0 {
		return "", false, fmt.Errorf("%w: empty label", errNameSyntax)
	}
	if !lower {
		s = strings.ToLower(s)
	}
	return s, wildcard, nil
}

func (d *decoder) payloads(n *yaml.Node) ([]Payload, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, d.errf(n, "payloads must be a list")
	}
	out := make([]Payload, 0, len(n.Content))
	for _, c := range n.Content {
		c = resolve(c)
		p := Payload{Line: int32(c.Line)}
		var haveContains bool
		var portNode, commandNode, nocaseNode *yaml.Node
		err := d.fields(c, "payload", []string{"proto", "port", "contains", "command", "nocase", "evidence"}, func(key string, k, v *yaml.Node) error {
			s, err := d.str(v, key)
			if err != nil {
				return err
			}
			switch key {
			case "proto":
				switch s {
				case "tcp":
					p.Proto = TCP
				case "udp":
					p.Proto = UDP
				case "icmp":
					p.Proto = ICMP
				default:
					return d.errf(v, "proto %q: want tcp, udp or icmp", s)
				}
			case "port":
				portNode = v
				port, err := strconv.ParseUint(s, 10, 16)
				if err != nil || port == 0 {
					return d.errf(v, "port %q: want a number from 1 to 65535", s)
				}
				p.Port = uint16(port)
			case "contains":
				haveContains = true
				p.Source = s
				b, err := parseContent(s)
				if err != nil {
					return d.errf(v, "contains %q: %v", s, err)
				}
				p.Contains = b
			case "command":
				commandNode = v
				if s != CommandTFTP {
					if len(s) > 40 {
						s = s[:40] + "..."
					}
					return d.errf(v, "command %q: want %s (rules that read TFTP fetch commands)", s, CommandTFTP)
				}
				p.Command = s
				p.Source = "command " + s
			case "nocase":
				nocaseNode = v
				if v.Tag != "!!bool" {
					return d.errf(v, "nocase must be true or false")
				}
				p.NoCase = s == "true" || s == "True" || s == "TRUE"
			case "evidence":
				ev, ok := ParseStrength(s)
				if !ok {
					return d.errf(v, "evidence %q: want strong or weak", s)
				}
				p.Evidence = ev
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if p.Proto == 0 {
			return nil, d.errf(c, "payload without proto")
		}
		switch {
		case haveContains && commandNode != nil:
			return nil, d.errf(commandNode, "payload: contains and command exclude each other (a command rule matches the fetched file name, not bytes)")
		case commandNode != nil:
			if p.Proto != TCP {
				return nil, d.errf(commandNode, "command rules read TCP streams (telnet, HTTP): proto must be tcp")
			}
			if nocaseNode != nil {
				return nil, d.errf(nocaseNode, "nocase makes no sense in a command rule: names are always compared without regard to case")
			}
			out = append(out, p)
			continue
		case !haveContains:
			return nil, d.errf(c, "payload without contains or command")
		}
		if p.Proto == ICMP && portNode != nil {
			return nil, d.errf(portNode, "port makes no sense for icmp")
		}
		if p.NoCase {
			// ASCII only: matching folds ASCII, and bytes.ToLower would
			// rewrite non-UTF-8 bytes of a hex pattern.
			for i, c := range p.Contains {
				p.Contains[i] = lower(c)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// parseContent decodes Snort-style content: literal text with hex bytes
// between pipes, e.g. "tftp -i |20|" or "|00 01|".
func parseContent(s string) ([]byte, error) {
	var out []byte
	for s != "" {
		i := strings.IndexByte(s, '|')
		if i < 0 {
			out = append(out, s...)
			break
		}
		out = append(out, s[:i]...)
		s = s[i+1:]
		j := strings.IndexByte(s, '|')
		if j < 0 {
			return nil, errors.New("unclosed '|' hex block")
		}
		hexPart := strings.Join(strings.Fields(s[:j]), "")
		if hexPart == "" {
			return nil, errors.New("empty '||' hex block")
		}
		b, err := hex.DecodeString(hexPart)
		if err != nil {
			return nil, fmt.Errorf("bad hex in |%s|", s[:j])
		}
		out = append(out, b...)
		s = s[j+1:]
	}
	if len(out) == 0 {
		return nil, errors.New("empty content")
	}
	if len(out) > 1500 {
		return nil, errors.New("content longer than 1500 bytes cannot match one packet")
	}
	return out, nil
}

// lowerASCII lowers ASCII letters only, as matching does.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}
