package signatures

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// ImportFormats are the public list formats Import reads.
var ImportFormats = []string{"hosts", "rpz", "urlhaus-csv"}

// Imported is what a public list gave: its names in list order, each once,
// and how many entries were left out because a signature cannot hold them
// (addresses, RPZ triggers other than names, passthru exceptions).
type Imported struct {
	Domains []Domain
	Skipped int
}

// Import reads a public list in format. name labels errors, which carry
// the line of the first bad entry.
func Import(name string, r io.Reader, format string) (*Imported, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	im := &importer{name: name, seen: map[string]bool{}}
	switch format {
	case "hosts":
		err = im.hosts(data)
	case "rpz":
		err = im.rpz(data)
	case "urlhaus-csv":
		err = im.urlhaus(data)
	default:
		return nil, fmt.Errorf("unknown import format %q (want %s)", format, strings.Join(ImportFormats, ", "))
	}
	if err != nil {
		return nil, err
	}
	return &im.out, nil
}

type importer struct {
	name string
	out  Imported
	seen map[string]bool
}

func (im *importer) errf(line int, format string, args ...any) error {
	return &Error{File: im.name, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func (im *importer) add(line int, raw string, action Action) error {
	name, wild, err := canonicalName(raw)
	if err != nil {
		return im.errf(line, "%q: %v", clipText(raw), err)
	}
	d := Domain{Name: name, Wildcard: wild, Action: action, Line: int32(line)}
	if p := d.Pattern(); !im.seen[p] {
		im.seen[p] = true
		im.out.Domains = append(im.out.Domains, d)
	}
	return nil
}

// localNames are the entries every hosts file starts with.
var localNames = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true, "ip6-mcastprefix": true,
	"ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true, "0.0.0.0": true,
}

// hosts reads "ADDRESS NAME [NAME...]" lines (the blocking lists' form),
// and lines of a bare name (plain domain lists); # starts a comment.
func (im *importer) hosts(data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		names := f
		if _, err := netip.ParseAddr(f[0]); err == nil {
			names = f[1:]
			if len(names) == 0 {
				return im.errf(line, "an address without a name")
			}
		} else if len(f) > 1 {
			return im.errf(line, "%q is not an address: want \"ADDRESS NAME...\" or one name", clipText(f[0]))
		}
		for _, n := range names {
			if localNames[strings.ToLower(n)] {
				continue
			}
			if _, err := netip.ParseAddr(n); err == nil {
				im.out.Skipped++
				continue
			}
			if err := im.add(line, n, Sinkhole); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return im.errf(line+1, "%v", err)
	}
	return nil
}

var zoneLine = regexp.MustCompile(`at line: (\d+):`)

// rpz reads a response policy zone: QNAME triggers become names, with the
// action their record asks for (CNAME . NXDOMAIN, CNAME *. NODATA, local
// data or a rewrite: sinkhole). Other triggers (rpz-ip, rpz-nsdname, …)
// and passthru/drop rules are counted as skipped.
func (im *importer) rpz(data []byte) error {
	zp := dns.NewZoneParser(bytes.NewReader(data), ".", im.name)
	apex := ""
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		owner := strings.ToLower(h.Name)
		if h.Rrtype == dns.TypeSOA {
			if apex == "" {
				apex = owner
			}
			continue
		}
		if apex == "" {
			return im.errf(im.lineOf(data, h.Name), "a record before the zone's SOA: cannot tell the policy zone's name")
		}
		if owner == apex || h.Rrtype == dns.TypeNS {
			continue
		}
		rel, ok := strings.CutSuffix(owner, "."+apex)
		if !ok {
			return im.errf(im.lineOf(data, h.Name), "%s is outside the policy zone %s", h.Name, apex)
		}
		if i := strings.LastIndexByte(rel, '.'); i >= 0 && strings.HasPrefix(rel[i+1:], "rpz-") {
			im.out.Skipped++ // an IP, NSDNAME, NSIP or client-IP trigger
			continue
		}
		var action Action
		switch v := rr.(type) {
		case *dns.CNAME:
			switch t := strings.ToLower(v.Target); {
			case t == ".":
				action = NXDomain
			case t == "*.":
				action = NoData
			case strings.HasPrefix(t, "rpz-"):
				im.out.Skipped++ // passthru, drop, tcp-only: not a listing
				continue
			default:
				action = Sinkhole
			}
		case *dns.A, *dns.AAAA:
			action = Sinkhole
		default:
			im.out.Skipped++
			continue
		}
		if err := im.add(im.lineOf(data, h.Name), strings.TrimSuffix(rel, "."), action); err != nil {
			return err
		}
	}
	if err := zp.Err(); err != nil {
		line := 0
		if m := zoneLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		msg := strings.TrimPrefix(err.Error(), "dns: ")
		msg = strings.TrimPrefix(msg, im.name+": ")
		if i := strings.Index(msg, " at line: "); i >= 0 {
			msg = msg[:i]
		}
		return im.errf(line, "invalid zone: %s", msg)
	}
	if apex == "" {
		return im.errf(0, "no SOA record: not a zone file")
	}
	return nil
}

// lineOf finds the line of a record for an error message; the zone parser
// does not say which line a record came from. Only errors pay for it.
func (im *importer) lineOf(data []byte, owner string) int {
	label := strings.SplitN(strings.TrimSuffix(owner, "."), ".", 2)[0]
	for i, l := range bytes.Split(data, []byte("\n")) {
		if bytes.Contains(bytes.ToLower(l), []byte(strings.ToLower(label))) {
			return i + 1
		}
	}
	return 0
}

// urlhaus reads URLhaus's CSV export ("id","dateadded","url",…, with #
// comment lines): the host of each URL, names only (URLs on bare
// addresses are skipped).
func (im *importer) urlhaus(data []byte) error {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	col := 2
	first := true
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return im.errf(pe.Line, "invalid CSV: %v", pe.Err)
			}
			return im.errf(0, "invalid CSV: %v", err)
		}
		line, _ := r.FieldPos(0)
		if first {
			first = false
			if idx := indexOf(rec, "url"); idx >= 0 {
				col = idx // a header row
				continue
			}
		}
		if len(rec) <= col {
			return im.errf(line, "%d fields: the url is field %d", len(rec), col+1)
		}
		u, err := url.Parse(strings.TrimSpace(rec[col]))
		if err != nil || u.Host == "" {
			return im.errf(line, "%q is not a URL", clipText(rec[col]))
		}
		host := u.Hostname()
		if _, err := netip.ParseAddr(host); err == nil {
			im.out.Skipped++
			continue
		}
		if err := im.add(line, host, Sinkhole); err != nil {
			return err
		}
	}
}

func indexOf(rec []string, s string) int {
	for i, f := range rec {
		if strings.EqualFold(strings.TrimSpace(f), s) {
			return i
		}
	}
	return -1
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// ImportOptions make imported names into a signature entry.
type ImportOptions struct {
	ID       string   // the entry's id
	Family   string   // its family
	Evidence Strength // what a hit on one of its names proves
	Source   string   // where the list came from, written as a comment
	Format   string
}

// WriteImported writes im as one signature entry, the YAML a maintainer
// pastes under signatures:, so that the file's own parser checks it.
func WriteImported(w io.Writer, im *Imported, opt ImportOptions) error {
	if !validID(opt.ID) {
		return fmt.Errorf("id %q must be lowercase letters, digits, '.', '_' or '-' (at most 64)", opt.ID)
	}
	if strings.TrimSpace(opt.Family) == "" || strings.IndexFunc(opt.Family, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return errors.New("family must be a non-empty line of text")
	}
	if len(im.Domains) == 0 {
		return errors.New("the list holds no names")
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# imported from %s (%s): %d names, %d entries skipped\n", strconv.Quote(opt.Source), opt.Format, len(im.Domains), im.Skipped)
	fmt.Fprintf(bw, "  - id: %s\n    family: %s\n    domains:\n", opt.ID, strconv.Quote(opt.Family))
	for _, d := range im.Domains {
		if d.Action == Sinkhole && opt.Evidence == Strong {
			fmt.Fprintf(bw, "      - %q\n", d.Pattern())
			continue
		}
		fmt.Fprintf(bw, "      - {name: %q, action: %s, evidence: %s}\n", d.Pattern(), d.Action, opt.Evidence)
	}
	return bw.Flush()
}
