package signatures

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/netip"
	"regexp"
	"strings"
)

// ExportFormats lists what Export writes.
var ExportFormats = []string{"rpz", "hosts", "suricata"}

// ExportOptions tunes an export.
type ExportOptions struct {
	// Sinkhole holds the addresses that sinkhole-action names answer with
	// (rpz, hosts).
	Sinkhole []netip.Addr
	// Zone is the RPZ zone name; empty writes owners relative to whatever
	// origin the resolver gives the zone (see RelativeOriginMax).
	Zone string
	// KeepUnderscore writes RPZ sinkhole names with '_' as A/AAAA data (see
	// RPZOptions).
	KeepUnderscore bool
	// Warn, when set, gets one line per name the export changes or leaves
	// out, so the operator sees it on stderr as well as in the file.
	Warn func(string)
}

// Export writes the set in format ("rpz", "hosts" or "suricata"). sinkhole
// holds the addresses that sinkhole-action names answer with.
func Export(w io.Writer, s *Set, format string, sinkhole []netip.Addr) error {
	return ExportWith(w, s, format, ExportOptions{Sinkhole: sinkhole})
}

// ExportWith writes the set in format with the given options.
func ExportWith(w io.Writer, s *Set, format string, opt ExportOptions) error {
	if opt.Warn == nil {
		opt.Warn = func(string) {}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case "rpz":
		err = exportRPZ(bw, s, opt)
	case "hosts":
		err = exportHosts(bw, s, opt.Sinkhole)
	case "suricata":
		err = exportSuricata(bw, s)
	default:
		return fmt.Errorf("export: unknown format %q (want %s)", format, strings.Join(ExportFormats, ", "))
	}
	if err != nil {
		return fmt.Errorf("export %s: %w", format, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export %s: %w", format, err)
	}
	return nil
}

// exportRPZ writes a Response Policy Zone from RPZRecords. Without a zone
// name the owners are relative, so the zone loads under whatever name the
// resolver's configuration gives it (of up to RelativeOriginMax
// characters); with one, owners are absolute.
func exportRPZ(w *bufio.Writer, s *Set, opt ExportOptions) error {
	if s.Serial() > math.MaxUint32 {
		// The parser refuses such serials; a Set built otherwise must not
		// reach secondaries as a serial that went backwards.
		return fmt.Errorf("serial %d does not fit the 32-bit SOA serial", s.Serial())
	}
	if err := CheckZone(opt.Zone); err != nil {
		return err
	}
	zone := strings.ToLower(strings.TrimSuffix(opt.Zone, "."))
	fmt.Fprintf(w, "; wormsink response policy zone, signature serial %d, from %s\n", s.Serial(), s.Name())
	apex, suffix := "@", ""
	if zone == "" {
		fmt.Fprintf(w, "; owners are relative: load it under a zone name of at most %d characters, or export with --zone\n", RelativeOriginMax)
	} else {
		apex, suffix = zone+".", "."+zone+"."
		fmt.Fprintf(w, "$ORIGIN %s.\n", zone)
	}
	fmt.Fprintf(w, "$TTL %d\n%s IN SOA %s %s %d %d %d %d %d\n%[2]s IN NS %[3]s\n", RPZTTL, apex, RPZNS, RPZMbox, RPZSerial(s),
		RPZRefresh, RPZRetry, RPZExpire, RPZMinTTL)
	var lastSig *Signature
	covering := false
	RPZRecords(s, RPZOptions{Sinkhole: opt.Sinkhole, Zone: zone, KeepUnderscore: opt.KeepUnderscore}, func(r RPZRecord) {
		if r.Covering && !covering {
			covering = true
			w.WriteString("; covering entries: each repeats the action of the longest wildcard above it, so that\n" +
				"; resolvers applying DNS wildcard rules (BIND, Unbound) match as longest-match ones do\n")
		}
		if !r.Covering && r.Signature != lastSig {
			lastSig = r.Signature
			fmt.Fprintf(w, "; %s (%s)\n", r.Signature.ID, r.Signature.Family)
		}
		if r.Skip != "" {
			fmt.Fprintf(w, "; left out %s: %s\n", r.Owner, r.Skip)
			opt.Warn(fmt.Sprintf("rpz: left out %s (signature %s): %s", r.Owner, r.Signature.ID, r.Skip))
			return
		}
		if r.Note != "" && r.Type != "AAAA" {
			fmt.Fprintf(w, "; %s: %s\n", r.Owner, r.Note)
			opt.Warn(fmt.Sprintf("rpz: %s (signature %s): %s", r.Owner, r.Signature.ID, r.Note))
		}
		// WriteString, not Fprintf: this runs once a record, a million
		// times for a big set, and Fprintf's boxing was an eighth of it.
		w.WriteString(r.Owner)
		w.WriteString(suffix)
		w.WriteByte(' ')
		w.WriteString(r.Type)
		w.WriteByte(' ')
		w.WriteString(r.Data)
		if r.Covering {
			w.WriteString(" ; below ")
			w.WriteString(r.Domain.Pattern())
		}
		w.WriteByte('\n')
	})
	return nil // bufio keeps the first write error for Flush
}

// exportHosts writes a hosts file. Hosts files cannot say NXDOMAIN or
// NODATA, nor list wildcards: blocked names point at 0.0.0.0 and :: and
// wildcards are kept as comments so nothing is silently lost. Every listed
// name gets both an IPv4 and an IPv6 line (the unspecified address for a
// family without a sinkhole address): a resolver serving a hosts file, such
// as dnsmasq, forwards the family a name lacks to its upstream and would
// hand out the real address.
func exportHosts(w *bufio.Writer, s *Set, sinkhole []netip.Addr) error {
	var v4, v6 []netip.Addr
	for _, ip := range sinkhole {
		if ip = ip.Unmap(); ip.Is4() {
			v4 = append(v4, ip)
		} else if ip.IsValid() {
			v6 = append(v6, ip)
		}
	}
	if len(v4) == 0 {
		v4 = []netip.Addr{netip.IPv4Unspecified()}
	}
	if len(v6) == 0 {
		v6 = []netip.Addr{netip.IPv6Unspecified()}
	}
	blocked := []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	fmt.Fprintf(w, "# wormsink hosts file, signature serial %d, from %s\n", s.Serial(), s.Name())
	for _, sig := range s.Signatures() {
		if len(sig.Domains) == 0 {
			continue
		}
		fmt.Fprintf(w, "# %s (%s)\n", sig.ID, sig.Family)
		for _, d := range sig.Domains {
			if d.Wildcard {
				fmt.Fprintf(w, "# %s: wildcards cannot be expressed in a hosts file\n", d.Pattern())
				continue
			}
			if d.Action != Sinkhole {
				for _, ip := range blocked {
					fmt.Fprintf(w, "%s %s\n", ip, d.Name)
				}
				continue
			}
			for _, ip := range v4 {
				fmt.Fprintf(w, "%s %s\n", ip, d.Name)
			}
			for _, ip := range v6 {
				fmt.Fprintf(w, "%s %s\n", ip, d.Name)
			}
		}
	}
	return nil // bufio keeps the first write error for Flush
}

// tftpMaxRequest is the largest TFTP request scan's parser accepts
// (tftp.MaxRequest in internal/tftp, a leaf this package does not need).
const tftpMaxRequest = 1472

// sidBase starts wormsink's sids in a range of local rules (1,000,000 and
// up are free for local use) away from common ones.
const (
	sidBase  = 7_100_000
	sidRange = 800_000
)

// exportSuricata writes Suricata (and Snort 2) rules. A sid is derived from
// the signature id and what the rule matches, so it stays the same from one
// release to the next while the rule does.
func exportSuricata(w *bufio.Writer, s *Set) error {
	fmt.Fprintf(w, "# wormsink rules, signature serial %d, from %s\n", s.Serial(), s.Name())
	used := map[uint32]bool{}
	sid := func(parts ...string) uint32 {
		h := fnv.New32a()
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		n := h.Sum32() % sidRange
		for used[n] {
			n = (n + 1) % sidRange
		}
		used[n] = true
		return sidBase + n
	}
	for _, sig := range s.Signatures() {
		refs := ruleRefs(sig.References)
		for _, f := range sig.TFTPFiles {
			// A rule per opcode: read requests fetch the worm, write
			// requests push it, and scan records both. The content keywords
			// are the fast pattern; the pcre then accepts exactly what
			// scan's request parser does: the file as the last path element
			// (any case), a mode of octet, netascii or mail (any case), then
			// option name/value pairs (the last value not empty) and NUL
			// padding up to the end; dsize is its 1472-byte limit.
			content, fileRE := ruleContent([]byte(f))+"|00|", pcreQuote(f)
			if isPattern(f) {
				// A pattern: its longest literal run is the fast pattern
				// (with the NUL when the name ends with it), and the pcre
				// spells the pattern out over the last path element.
				fp := newFilePattern(0, 0, f)
				content = ruleContent([]byte(fp.literal))
				if strings.HasSuffix(f, fp.literal) {
					content += "|00|"
				}
				fileRE = pcreGlob(f)
			}
			for _, op := range []struct{ code, verb, sidKey string }{{"01", "GET", "tftp"}, {"02", "PUT", "tftp-write"}} {
				fmt.Fprintf(w, "alert udp any any -> any 69 (msg:\"WORMSINK %s TFTP %s %s\"; dsize:<%d; content:\"|00 %s|\"; depth:2; content:\"%s\"; distance:0; nocase; pcre:\"/^\\x00\\x%s(?:[^\\x00]*[\\\\\\/])?%s\\x00(?:octet|netascii|mail)\\x00(?:(?:[^\\x00]+\\x00[^\\x00]*\\x00)*[^\\x00]+\\x00[^\\x00]+\\x00)?\\x00*\\z/i\"; classtype:trojan-activity;%s sid:%d; rev:2; metadata:wormsink_signature %s, wormsink_serial %d;)\n",
					ruleText(sig.Family), op.verb, ruleText(f), tftpMaxRequest+1, op.code, content, op.code, fileRE, refs, sid(sig.ID, op.sidKey, f), sig.ID, s.Serial())
			}
		}
		for _, p := range sig.Payloads {
			port := "any"
			if p.Port != 0 {
				port = fmt.Sprint(p.Port)
			}
			if p.Command != "" {
				exportCommandRule(w, s, &sig, &p, port, refs, sid(sig.ID, "payload", p.Proto.String(), port, p.Source))
				continue
			}
			opts := ""
			if p.NoCase {
				opts = " nocase;"
			}
			// ICMP: scan looks only at echo requests (the sender's own
			// bytes; replies mirror someone else's), type 8 in ICMPv4 and
			// 128 in ICMPv6, so one rule per family; "icmp" covers both in
			// Suricata and Snort, ip_proto keeps each rule to its family.
			type variant struct{ itype, sidKey string }
			variants := []variant{{"", ""}}
			if p.Proto == ICMP {
				variants = []variant{{" ip_proto:1; itype:8;", ""}, {" ip_proto:58; itype:128;", "icmp6"}}
			}
			for _, v := range variants {
				parts := []string{sig.ID, "payload", p.Proto.String(), port, p.Source}
				if v.sidKey != "" {
					parts = append(parts, v.sidKey)
				}
				fmt.Fprintf(w, "alert %s any any -> any %s (msg:\"WORMSINK %s payload %s\";%s content:\"%s\";%s classtype:trojan-activity;%s sid:%d; rev:2; metadata:wormsink_signature %s, wormsink_serial %d;)\n",
					p.Proto, port, ruleText(sig.Family), ruleText(sig.ID), v.itype, ruleContent(p.Contains), opts, refs, sid(parts...), sig.ID, s.Serial())
			}
		}
	}
	return nil // bufio keeps the first write error for Flush
}

var cveID = regexp.MustCompile(`^[0-9]{4}-[0-9]{4,}$`)

// ruleRefs renders CVE references; other kinds have no standard
// reference.config type and stay in the signature file.
func ruleRefs(refs []string) string {
	var b strings.Builder
	for _, r := range refs {
		if id, ok := strings.CutPrefix(strings.ToUpper(r), "CVE-"); ok && cveID.MatchString(id) {
			fmt.Fprintf(&b, " reference:cve,%s;", id)
		}
	}
	return b.String()
}

// ruleText makes a string safe inside msg:"...".
func ruleText(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == ';' || c == '\\' || c == '|':
			b.WriteByte('_')
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ruleContent renders bytes for content:"...": printable bytes as they are,
// the rest and the rule language's own metacharacters as |hex|.
func ruleContent(p []byte) string {
	var b strings.Builder
	inHex := false
	for _, c := range p {
		special := c < 0x20 || c > 0x7e || c == '"' || c == ';' || c == '\\' || c == '|' || c == ':'
		if special {
			if !inHex {
				b.WriteByte('|')
				inHex = true
			} else {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%02X", c)
			continue
		}
		if inHex {
			b.WriteByte('|')
			inHex = false
		}
		b.WriteByte(c)
	}
	if inHex {
		b.WriteByte('|')
	}
	return b.String()
}

// pcreQuote escapes a file name for a PCRE inside a rule: everything but
// letters and digits as \xHH, which also keeps ; and " out of the rule.
func pcreQuote(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "\\x%02x", c)
	}
	return b.String()
}

// pcreGlob renders a tftp_files pattern as PCRE: * and ? stand for any
// characters of the last path element (never NUL or a separator), the
// rest is quoted as pcreQuote does.
func pcreGlob(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
			b.WriteString(`[^\x00\x2f\x5c]*`)
		case '?':
			b.WriteString(`[^\x00\x2f\x5c]`)
		default:
			b.WriteString(pcreQuote(p[i : i+1]))
		}
	}
	return b.String()
}

// Command rules in Suricata. A rule's pcre sees the raw payload, so it
// cannot decode as scan does; it matches the fetch commands written
// plainly (words apart by spaces, tabs, '+', %20, ${IFS} or quotes;
// options each a word of its own; no %XX but %20, no $IFS or $1..$9, no
// telnet IAC), which scan reads to the very same names. So the rule
// flags a subset of what scan flags, never more: FuzzCommandRuleExport
// checks that on arbitrary payloads.
const (
	// cmdW is a byte of a word as the pcre reads it: printable ASCII
	// that no decoding layer changes and that ends no word.
	cmdW = `[\x21\x23\x2a\x2c-\x3a\x3d\x3f-\x5f\x61-\x7a\x7e]`
	// cmdW0 is cmdW but '-': a word that is no option.
	cmdW0 = `[\x21\x23\x2a\x2c\x2e-\x3a\x3d\x3f-\x5f\x61-\x7a\x7e]`
	// cmdWNS is cmdW but a path separator (a file pattern's * and ?),
	// cmdWNS0 that and not '-'.
	cmdWNS  = `[\x21\x23\x2a\x2c-\x2e\x30-\x3a\x3d\x3f-\x5b\x5d-\x5f\x61-\x7a\x7e]`
	cmdWNS0 = `[\x21\x23\x2a\x2c\x2e\x30-\x3a\x3d\x3f-\x5b\x5d-\x5f\x61-\x7a\x7e]`
	// cmdNW is a word byte that is not a name byte: the last one before
	// the client's name in /bin/tftp or cmd=tftp.
	cmdNW = `[\x21\x23\x2a\x2c\x2f\x3a\x3d\x3f\x40\x5b-\x5e\x7e]`
	cmdSP = `(?:[\x09\x0b\x0c\x20\x22\x27\x2b]|%20|\x24\x7bIFS\x7d)+`
	// cmdSep ends a command.
	cmdSep   = `[\x00\x0a\x0d\x26\x28\x29\x3b\x3c\x3e\x60\x7b-\x7d]`
	cmdBound = `(?:^|[\x00\x09-\x0d\x20\x22\x27\x2b\x26\x28\x29\x3b\x3c\x3e\x60\x7b-\x7d]|%20|\x24\x7bIFS\x7d)`
	cmdWord  = cmdW0 + cmdW + `*`
	// cmdArg is a word that changes no fetched name: a non-option, an
	// option without a value, or one with its value.
	cmdArg = `(?:` + cmdWord + `|-[gvi46]|-[lbmR]` + cmdSP + cmdWord + `)`
	// cmdHost is a word with a digit, '.' or ':' (never GET).
	cmdHost   = `(?:[\x2e\x30-\x3a]` + cmdW + `*|` + cmdW0 + cmdW + `*[\x2e\x30-\x3a]` + cmdW + `*)`
	cmdEnd    = `(?:` + cmdSP + `)?(?:` + cmdSep + `|\z)`
	cmdClient = `(?:` + cmdW + `*` + cmdNW + `)?[aA]?[tT][fF][tT][pP](?:\x2e[eE][xX][eE])?`
	cmdGet    = `[gG][eE][tT]`
	cmdName   = `(?:` + cmdBound + cmdClient + `)`
	// cmdNameFirst is a client word first in its command: at the start
	// or after a separator, so the command holds no -g from before it
	// (which turns a Windows GET off).
	cmdNameFirst = `(?:(?:^|` + cmdSep + `)(?:` + cmdSP + `)?` + cmdClient + `)`
)

// commandPCRE is the pcre of a command rule whose fetched name matches
// name (a regular expression over one word).
func commandPCRE(name string) string {
	args := `(?:` + cmdSP + cmdArg + `)*`
	busybox := args + cmdSP + `(?:-g` + args + cmdSP + `-r` + cmdSP + name + `|-r` + cmdSP + name + args + cmdSP + `-g)` + args + cmdEnd
	hpa := args + cmdSP + `-c` + cmdSP + cmdGet + cmdSP + name + args + cmdEnd
	winArg := `(?:` + cmdSP + `(?:-[iI]|` + cmdHost + `))*`
	windows := winArg + cmdSP + cmdHost + `(?:` + cmdSP + `-[iI])*` + cmdSP + cmdGet + cmdSP + name + winArg + cmdEnd
	return `(?:` + cmdName + `(?:` + busybox + `|` + hpa + `)|` + cmdNameFirst + windows + `)`
}

// commandNamePCRE renders a signature's tftp_files as one word: an
// optional path, then a last element one of them matches. The word never
// starts with '-', which would make it an option to scan. Letters are
// written as [xX] rather than under a caseless flag, which in some
// engines also folds non-ASCII letters scan does not. An entry with a
// byte the pcre cannot read as it is (a space, quote, '+', '%', '$', a
// separator, a non-ASCII byte: scan decodes or splits on those) is left
// out; ok is false when none is left.
func commandNamePCRE(files []string) (re string, ok bool) {
	var alts []string
	for _, f := range files {
		glob, plain := cmdGlob(f, f[0] != '-')
		if !plain {
			continue
		}
		if f[0] == '-' {
			// Only after a path: as the word's start it is an option.
			alts = append(alts, cmdWord+`[\x2f\x5c]`+glob)
		} else {
			alts = append(alts, `(?:`+cmdWord+`[\x2f\x5c])?`+glob)
		}
	}
	if len(alts) == 0 {
		return "", false
	}
	return `(?:` + strings.Join(alts, "|") + `)`, true
}

// cmdGlobLiteral: the bytes a pattern may hold that the pcre reads as
// they are (cmdW's, but * and ?, which are the pattern's own).
var cmdGlobLiteral = regexp.MustCompile(`^[\x21\x23\x2c-\x3a\x3d\x40-\x5f\x61-\x7a\x7e]$`)

// cmdGlob renders a tftp_files entry over the bytes of cmdW: * and ? over
// those of a last path element; first says the word starts here. plain
// is false when the entry has a byte the pcre cannot read as it is.
func cmdGlob(p string, first bool) (re string, plain bool) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		lead := first && i == 0
		switch c := p[i]; {
		case c == '*':
			if lead {
				b.WriteString(`(?:` + cmdWNS0 + cmdWNS + `*)?`)
			} else {
				b.WriteString(cmdWNS + `*`)
			}
		case c == '?':
			if lead {
				b.WriteString(cmdWNS0)
			} else {
				b.WriteString(cmdWNS)
			}
		case !cmdGlobLiteral.MatchString(p[i : i+1]):
			return "", false
		case c >= 'a' && c <= 'z':
			fmt.Fprintf(&b, "[%c%c]", c, c-'a'+'A')
		case c >= 'A' && c <= 'Z':
			fmt.Fprintf(&b, "[%c%c]", c+'a'-'A', c)
		default:
			b.WriteString(pcreQuote(p[i : i+1]))
		}
	}
	return b.String(), true
}

// exportCommandRule writes a command rule: the comment that says how it
// differs from scan, then the rule.
func exportCommandRule(w *bufio.Writer, s *Set, sig *Signature, p *Payload, port, refs string, sid uint32) {
	// Every command rule: no telnet IAC byte anywhere (an IAC sequence
	// can hide bytes from scan that the pcre would read), and no word of
	// 256 bytes or more (scan keeps 255).
	opts := `content:!"|FF|"; pcre:!"/` + cmdW + `{256}/";`
	name, ok := commandNamePCRE(sig.TFTPFiles)
	what := "the fetch of a name it lists"
	if len(sig.TFTPFiles) == 0 {
		ok = true
		// Any name no signature lists: the pcre takes any word, and the
		// packet must hold no listed name's longest literal part, so the
		// word it takes is no listed name either.
		name = cmdWord
		what = "the fetch of a name no signature lists"
		for _, other := range s.Signatures() {
			for _, f := range other.TFTPFiles {
				lit := f
				if isPattern(f) {
					lit = newFilePattern(0, 0, f).literal
				}
				opts += ` content:!"` + ruleContent([]byte(lit)) + `"; nocase;`
			}
		}
	}
	if !ok {
		fmt.Fprintf(w, "# %s: command rule on %s/%s left out: every name it lists has a byte a pcre cannot read as scan does (space, quote, +, %%, $, a separator, non-ASCII)\n", sig.ID, p.Proto, port)
		return
	}
	fmt.Fprintf(w, "# %s: command rule on %s/%s, %s. Closest to scan that never flags more: it reads only commands written plainly, which scan reads alike; scan also decodes %%XX, $IFS, $1-$9 and telnet, reads option clusters and finds more.\n",
		sig.ID, p.Proto, port, what)
	fmt.Fprintf(w, "alert %s any any -> any %s (msg:\"WORMSINK %s fetch command %s\"; content:\"tftp\"; nocase; %s pcre:\"/%s/\"; classtype:trojan-activity;%s sid:%d; rev:1; metadata:wormsink_signature %s, wormsink_serial %d;)\n",
		p.Proto, port, ruleText(sig.Family), ruleText(sig.ID), opts, commandPCRE(name), refs, sid, sig.ID, s.Serial())
}
