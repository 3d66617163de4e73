package signatures

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"regexp"
	"strings"
)

// ExportFormats lists what Export writes.
var ExportFormats = []string{"rpz", "hosts", "suricata"}

// Export writes the set in format ("rpz", "hosts" or "suricata"). sinkhole
// holds the addresses that sinkhole-action names answer with.
func Export(w io.Writer, s *Set, format string, sinkhole []netip.Addr) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case "rpz":
		err = exportRPZ(bw, s, sinkhole)
	case "hosts":
		err = exportHosts(bw, s, sinkhole)
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

// exportRPZ writes a Response Policy Zone. Owner names are relative, so the
// zone loads under whatever name the resolver's configuration gives it.
// Policy: CNAME . is NXDOMAIN, CNAME *. is NODATA, A/AAAA are local data
// (a name with only A local data answers NODATA for AAAA, as docs/contract.md §2 wants).
func exportRPZ(w *bufio.Writer, s *Set, sinkhole []netip.Addr) error {
	fmt.Fprintf(w, "; wormsink response policy zone, signature serial %d, from %s\n", s.Serial(), s.Name())
	// SOA serials are 32 bits; a longer file serial is taken modulo 2^32,
	// which serial arithmetic (RFC 1982) tolerates.
	fmt.Fprintf(w, "$TTL 60\n@ IN SOA localhost. hostmaster.localhost. %d 3600 600 86400 60\n@ IN NS localhost.\n", uint32(s.Serial()))
	for _, sig := range s.Signatures() {
		if len(sig.Domains) == 0 {
			continue
		}
		fmt.Fprintf(w, "; %s (%s)\n", sig.ID, sig.Family)
		for _, d := range sig.Domains {
			owner := d.Pattern()
			switch {
			case d.Action == NXDomain:
				fmt.Fprintf(w, "%s CNAME .\n", owner)
			case d.Action == NoData || len(sinkhole) == 0:
				fmt.Fprintf(w, "%s CNAME *.\n", owner)
			default:
				for _, ip := range sinkhole {
					typ := "A"
					if ip.Is6() && !ip.Is4In6() {
						typ = "AAAA"
					}
					fmt.Fprintf(w, "%s %s %s\n", owner, typ, ip.Unmap())
				}
			}
		}
	}
	return nil // bufio keeps the first write error for Flush
}

// exportHosts writes a hosts file. Hosts files cannot say NXDOMAIN or
// NODATA, nor list wildcards: blocked names point at 0.0.0.0 and wildcards
// are kept as comments so nothing is silently lost.
func exportHosts(w *bufio.Writer, s *Set, sinkhole []netip.Addr) error {
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
			if d.Action != Sinkhole || len(sinkhole) == 0 {
				fmt.Fprintf(w, "0.0.0.0 %s\n", d.Name)
				continue
			}
			for _, ip := range sinkhole {
				fmt.Fprintf(w, "%s %s\n", ip.Unmap(), d.Name)
			}
		}
	}
	return nil // bufio keeps the first write error for Flush
}

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
			// The content keyword is the fast pattern; the pcre pins the file
			// name to the last path element of a read request.
			fmt.Fprintf(w, "alert udp any any -> any 69 (msg:\"WORMSINK %s TFTP GET %s\"; content:\"|00 01|\"; depth:2; content:\"%s|00|\"; distance:0; nocase; pcre:\"/^\\x00\\x01(?:[^\\x00]*[\\\\\\/])?%s\\x00/i\"; classtype:trojan-activity;%s sid:%d; rev:1; metadata:wormsink_signature %s, wormsink_serial %d;)\n",
				ruleText(sig.Family), ruleText(f), ruleContent([]byte(f)), pcreQuote(f), refs, sid(sig.ID, "tftp", f), sig.ID, s.Serial())
		}
		for _, p := range sig.Payloads {
			port := "any"
			if p.Port != 0 {
				port = fmt.Sprint(p.Port)
			}
			opts := ""
			if p.NoCase {
				opts = " nocase;"
			}
			fmt.Fprintf(w, "alert %s any any -> any %s (msg:\"WORMSINK %s payload %s\"; content:\"%s\";%s classtype:trojan-activity;%s sid:%d; rev:1; metadata:wormsink_signature %s, wormsink_serial %d;)\n",
				p.Proto, port, ruleText(sig.Family), ruleText(sig.ID), ruleContent(p.Contains), opts, refs, sid(sig.ID, "payload", p.Proto.String(), port, p.Source), sig.ID, s.Serial())
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
