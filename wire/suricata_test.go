package wire

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/ip4defrag"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// The Suricata export and scan must flag the same hosts. The engine is not
// packaged in Debian 12, so the rules are read by suricata-update's own rule
// parser (Debian package suricata-update: its parse() must accept every
// rule, and its option tokenizer splits them) and the keywords the export
// uses are evaluated here, packet by packet, over every capture in the tree.

// ruleSplitter prints every rule as JSON, parsed by suricata-update.
const ruleSplitter = `
import json, sys
from suricata.update import rule as R
out = []
for n, line in enumerate(sys.stdin, 1):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    r = R.parse(line)
    if r is None or not r["sid"]:
        sys.exit("line %d: suricata-update does not parse it as a rule: %s" % (n, line))
    opts, lst = R.rule_pattern.match(line).group("options"), []
    while opts:
        i = R.find_opt_end(opts)
        if i < 0:
            sys.exit("line %d: an option does not end with ';'" % n)
        name, _, val = opts[:i].strip().partition(":")
        lst.append([name.strip(), val.strip()])
        opts = opts[i + 1:].strip()
    out.append({"proto": r["proto"], "dport": r["dest_port"], "sid": r["sid"], "options": lst})
json.dump(out, sys.stdout)
`

type ruleStep struct {
	pcre     *regexp.Regexp
	negated  bool // content:! or pcre:!: the payload must not hold it
	content  []byte
	nocase   bool
	depth    int // -1: unset
	distance int
	relative bool
}

type evalRule struct {
	proto   string
	dport   int // -1: any
	sid     int
	sig     string
	tftp    bool // flags both ends, as scan does for a TFTP request
	itype   int  // -1: any
	ipProto int  // the transport protocol number (after IPv6 extension headers); 0: any
	dsizeL  int  // payload length must be below; -1: any
	steps   []ruleStep
}

func parseRules(t *testing.T, rules string) []evalRule {
	t.Helper()
	py := "/usr/bin/python3"
	cmd := exec.Command(py, "-c", ruleSplitter)
	cmd.Stdin = strings.NewReader(rules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("suricata-update's parser (Debian package suricata-update; scripts/deps.sh): %v\n%s", err, stderr.String())
	}
	var raw []struct {
		Proto, Dport string
		Sid          int
		Options      [][2]string
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	var res []evalRule
	for _, r := range raw {
		e := evalRule{proto: r.Proto, dport: -1, sid: r.Sid, itype: -1, dsizeL: -1}
		if r.Dport != "any" {
			p, err := strconv.Atoi(r.Dport)
			if err != nil {
				t.Fatalf("sid %d: port %q", r.Sid, r.Dport)
			}
			e.dport = p
		}
		for _, o := range r.Options {
			name, val := o[0], o[1]
			last := len(e.steps) - 1
			switch name {
			case "msg", "classtype", "reference", "sid", "rev":
				e.tftp = e.tftp || name == "msg" && strings.Contains(val, " TFTP ")
			case "metadata":
				for _, kv := range strings.Split(val, ",") {
					if v, ok := strings.CutPrefix(strings.TrimSpace(kv), "wormsink_signature "); ok {
						e.sig = v
					}
				}
			case "content":
				neg := strings.HasPrefix(val, "!")
				b, err := decodeContent(strings.Trim(strings.TrimPrefix(val, "!"), `"`))
				if err != nil {
					t.Fatalf("sid %d: %v", r.Sid, err)
				}
				e.steps = append(e.steps, ruleStep{content: b, depth: -1, negated: neg})
			case "nocase":
				e.steps[last].nocase = true
			case "depth", "distance":
				if e.steps[last].negated {
					t.Fatalf("sid %d: %s after a negated content is not evaluated here", r.Sid, name)
				}
				n, _ := strconv.Atoi(val)
				if name == "depth" {
					e.steps[last].depth = n
				} else {
					e.steps[last].distance, e.steps[last].relative = n, true
				}
			case "pcre":
				neg := strings.HasPrefix(val, "!")
				re, err := pcreToGo(strings.Trim(strings.TrimPrefix(val, "!"), `"`))
				if err != nil {
					t.Fatalf("sid %d: %v", r.Sid, err)
				}
				e.steps = append(e.steps, ruleStep{pcre: re, negated: neg})
			case "itype":
				e.itype, _ = strconv.Atoi(val)
			case "ip_proto":
				e.ipProto, _ = strconv.Atoi(val)
			case "dsize":
				n, ok := strings.CutPrefix(val, "<")
				if !ok {
					t.Fatalf("sid %d: dsize %q not evaluated here", r.Sid, val)
				}
				e.dsizeL, _ = strconv.Atoi(n)
			default:
				t.Fatalf("sid %d: keyword %q is not evaluated by this test: teach it", r.Sid, name)
			}
		}
		res = append(res, e)
	}
	return res
}

func decodeContent(s string) ([]byte, error) {
	var out []byte
	for s != "" {
		i := strings.IndexByte(s, '|')
		if i < 0 {
			return append(out, s...), nil
		}
		out = append(out, s[:i]...)
		j := strings.IndexByte(s[i+1:], '|')
		if j < 0 {
			return nil, errors.New("unclosed |hex|")
		}
		h, err := hex.DecodeString(strings.ReplaceAll(s[i+1:i+1+j], " ", ""))
		if err != nil {
			return nil, err
		}
		out = append(out, h...)
		s = s[i+2+j:]
	}
	return out, nil
}

func pcreToGo(s string) (*regexp.Regexp, error) {
	end := strings.LastIndexByte(s, '/')
	if !strings.HasPrefix(s, "/") || end <= 0 {
		return nil, fmt.Errorf("pcre %q", s)
	}
	body, flags := s[1:end], s[end+1:]
	prefix := ""
	for _, f := range flags {
		switch f {
		case 'i', 's', 'm':
			prefix += string(f)
		default:
			return nil, fmt.Errorf("pcre flag %q not evaluated here", f)
		}
	}
	if prefix != "" {
		body = "(?" + prefix + ")" + body
	}
	return regexp.Compile(body)
}

// datagram is one transport payload as an IDS sees it after reassembly.
type datagram struct {
	packet       uint64
	src, dst     netip.Addr
	proto        string // udp, tcp, icmp
	ipProto      int    // 1 for ICMPv4, 58 for ICMPv6
	dport, itype int
	payload      []byte
}

func (r *evalRule) matches(d *datagram) bool {
	if r.proto != d.proto || r.dport >= 0 && r.dport != d.dport || r.itype >= 0 && r.itype != d.itype || r.ipProto != 0 && r.ipProto != d.ipProto {
		return false
	}
	if r.dsizeL >= 0 && len(d.payload) >= r.dsizeL {
		return false
	}
	p := d.payload
	pos := 0
	for _, s := range r.steps {
		if s.pcre != nil {
			if s.pcre.Match(p) == s.negated {
				return false
			}
			continue
		}
		if s.negated {
			// Without a position of its own, a negated content is
			// matched anywhere in the payload (Suricata's semantics).
			hay, needle := p, s.content
			if s.nocase {
				hay, needle = bytes.ToLower(hay), bytes.ToLower(needle)
			}
			if bytes.Contains(hay, needle) {
				return false
			}
			continue
		}
		start, stop := 0, len(p)
		if s.relative {
			start = pos + s.distance
		}
		if s.depth >= 0 {
			stop = min(stop, start+s.depth)
		}
		if start > stop {
			return false
		}
		hay, needle := p[start:stop], s.content
		if s.nocase {
			hay, needle = bytes.ToLower(hay), bytes.ToLower(needle)
		}
		i := bytes.Index(hay, needle)
		if i < 0 {
			return false
		}
		pos = start + i + len(needle)
	}
	return true
}

// readDatagrams decodes a capture into datagrams, reassembling IPv4 and
// IPv6 fragments as an IDS does.
func readDatagrams(t *testing.T, path string) []datagram {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		if r, err = gzip.NewReader(r); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	type source interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var src source
	var lt layers.LinkType
	var ng *pcapgo.NgReader
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		if ng, err = pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true}); err != nil {
			t.Fatal(err)
		}
		src, lt = ng, ng.LinkType()
	} else {
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		src, lt = pr, pr.LinkType()
	}
	v4 := ip4defrag.NewIPv4Defragmenter()
	v6 := map[uint32][]*layers.IPv6Fragment{}
	var out []datagram
	for n := uint64(1); ; n++ {
		data, ci, err := src.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if ng != nil { // pcapng: each interface has its own link type
			if ifc, err := ng.Interface(ci.InterfaceIndex); err == nil {
				lt = ifc.LinkType
			}
		}
		first := gopacket.Decoder(lt)
		switch lt {
		case 12, 14, layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
			first = layers.LayerTypeIPv4
			if len(data) > 0 && data[0]>>4 == 6 {
				first = layers.LayerTypeIPv6
			}
		}
		pkt := gopacket.NewPacket(data, first, gopacket.Default)
		var d datagram
		d.packet = n
		var next gopacket.Packet = pkt
		if ip4, ok := pkt.NetworkLayer().(*layers.IPv4); ok {
			d.src, _ = netip.AddrFromSlice(ip4.SrcIP)
			if ip4.Flags&layers.IPv4MoreFragments != 0 || ip4.FragOffset != 0 {
				whole, err := v4.DefragIPv4(ip4)
				if err != nil || whole == nil {
					continue
				}
				next = gopacket.NewPacket(whole.Payload, whole.NextLayerType(), gopacket.Default)
			}
			d.dst, _ = netip.AddrFromSlice(ip4.DstIP)
		} else if ip6, ok := pkt.NetworkLayer().(*layers.IPv6); ok {
			d.src, _ = netip.AddrFromSlice(ip6.SrcIP)
			d.dst, _ = netip.AddrFromSlice(ip6.DstIP)
			if fl := pkt.Layer(layers.LayerTypeIPv6Fragment); fl != nil {
				fr := fl.(*layers.IPv6Fragment)
				frags := append(v6[fr.Identification], fr)
				v6[fr.Identification] = frags
				whole, proto, ok := joinIPv6(frags)
				if !ok {
					continue
				}
				delete(v6, fr.Identification)
				next = gopacket.NewPacket(whole, proto.LayerType(), gopacket.Default)
			}
		} else {
			continue
		}
		switch {
		case next.Layer(layers.LayerTypeUDP) != nil:
			u := next.Layer(layers.LayerTypeUDP).(*layers.UDP)
			d.proto, d.dport, d.payload = "udp", int(u.DstPort), u.Payload
		case next.Layer(layers.LayerTypeTCP) != nil:
			tc := next.Layer(layers.LayerTypeTCP).(*layers.TCP)
			d.proto, d.dport, d.payload = "tcp", int(tc.DstPort), tc.Payload
		case next.Layer(layers.LayerTypeICMPv4) != nil:
			ic := next.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			d.proto, d.ipProto, d.itype, d.payload = "icmp", 1, int(ic.TypeCode.Type()), ic.Payload
		case next.Layer(layers.LayerTypeICMPv6) != nil:
			ic := next.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			d.proto, d.ipProto, d.itype = "icmp", 58, int(ic.TypeCode.Type())
			if len(ic.Payload) >= 4 { // an IDS's ICMPv6 payload starts after the 8-byte header
				d.payload = ic.Payload[4:]
			}
		default:
			continue
		}
		out = append(out, d)
	}
	return out
}

// joinIPv6 reassembles IPv6 fragments once they cover the datagram
// without gaps (the test captures have no overlaps there).
func joinIPv6(frags []*layers.IPv6Fragment) ([]byte, layers.IPProtocol, bool) {
	s := slices.Clone(frags)
	slices.SortFunc(s, func(a, b *layers.IPv6Fragment) int { return int(a.FragmentOffset) - int(b.FragmentOffset) })
	var buf []byte
	for _, f := range s {
		if int(f.FragmentOffset)*8 != len(buf) {
			return nil, 0, false
		}
		buf = append(buf, f.Payload...)
	}
	if s[len(s)-1].MoreFragments {
		return nil, 0, false
	}
	return buf, s[0].NextHeader, true
}

// rulesMiss lists, per capture, the findings (as "#packet host
// signature") that scan makes and the exported rules do not, each with
// the reason. Only command rules may miss, and only what their pcre
// cannot read without decoding (docs/signatures.md); no rule may ever
// flag what scan does not.
var rulesMiss = map[string]map[string]string{
	"crafted/loader-commands.pcap": {
		"#10 10.0.0.9 mirai.tftp-loader":        "a URL-encoded separator (%3B) ends the command",
		"#13 10.0.0.9 mirai.tftp-loader":        "telnet IAC bytes in the packet",
		"#16 10.0.0.9 iot.tftp-dropper.generic": "a URL-encoded separator (%3b) ends the command",
	},
	// Lines split across segments: this evaluator reads each packet
	// alone (Suricata itself matches TCP rules on the reassembled stream).
	"crafted/loader-split.pcap": {
		"#85 10.0.0.9 mirai.tftp-loader":          "split a byte a segment",
		"#186 10.0.0.9 gafgyt.tftp-loader":        "split inside the script's name",
		"#188 10.0.0.9 blaster":                   "split inside tftp -i",
		"#191 10.0.0.9 mirai.tftp-loader":         "split inside %20 and the name",
		"#224 192.0.2.7 iot.tftp-dropper.generic": "typed a byte a segment",
	},
}

func TestSuricataRulesAgreeWithScan(t *testing.T) {
	public, err := signatures.Parse("public.yaml", []byte("serial: 1\nsignatures:\n  - id: rfc\n    family: Test\n    tftp_files: [rfc1350.txt, hello.txt]\n"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../testdata/pcap/*/*.pcap*")
	if len(files) < 20 {
		t.Fatalf("only %d captures", len(files))
	}
	builtin := signatures.Default()
	for _, set := range []*signatures.Set{builtin, public} {
		var rules bytes.Buffer
		if err := signatures.Export(&rules, set, "suricata", nil); err != nil {
			t.Fatal(err)
		}
		parsed := parseRules(t, rules.String())
		if len(parsed) == 0 {
			t.Fatal("no rules")
		}
		flaggedTotal := 0
		for _, path := range files {
			rel, _ := filepath.Rel("../testdata/pcap", path)
			if strings.HasSuffix(path, ".md") {
				continue
			}
			var rec evidencetest.Recorder
			m := NewMatcher(StaticSet{set}, &rec, Options{})
			if _, err := m.ScanFile(context.Background(), path); err != nil {
				t.Fatalf("scan %s: %v", path, err)
			}
			var byScan, byRules []string
			for _, ev := range rec.Events() {
				if ev.Role == evidence.RoleServer && !ev.Named {
					// A server's DATA answering a flagged request: scan
					// follows the request to it, a stateless rule cannot.
					continue
				}
				byScan = append(byScan, fmt.Sprintf("#%d %s %s", ev.Packet, ev.Host, ev.Sig))
			}
			for _, d := range readDatagrams(t, path) {
				for _, r := range parsed {
					if !r.matches(&d) {
						continue
					}
					byRules = append(byRules, fmt.Sprintf("#%d %s %s", d.packet, d.src, r.sig))
					if r.tftp {
						byRules = append(byRules, fmt.Sprintf("#%d %s %s", d.packet, d.dst, r.sig))
					}
				}
			}
			slices.Sort(byScan)
			slices.Sort(byRules)
			byRules = slices.Compact(byRules)
			byScan = slices.Compact(byScan)
			flaggedTotal += len(byScan)
			// The rules never flag more than scan; what they miss is listed.
			var missed []string
			for _, f := range byScan {
				if !slices.Contains(byRules, f) {
					missed = append(missed, f)
				}
			}
			for _, f := range byRules {
				if !slices.Contains(byScan, f) {
					t.Errorf("%s (%s): the rules flag %q, scan does not", rel, set.Name(), f)
				}
			}
			if set != builtin {
				if len(missed) > 0 {
					t.Errorf("%s (%s): the rules miss %q", rel, set.Name(), missed)
				}
				continue
			}
			listed := rulesMiss[rel]
			for _, f := range missed {
				if _, ok := listed[f]; !ok {
					t.Errorf("%s: scan flags %q, the rules do not", rel, f)
				}
			}
			for f, why := range listed {
				if !slices.Contains(missed, f) {
					t.Errorf("%s: %q is listed as missed by the rules (%s), but it is not: drop it from rulesMiss", rel, f, why)
				}
			}
		}
		if flaggedTotal == 0 {
			t.Errorf("%s: no capture flagged anything: the comparison proves nothing", set.Name())
		}
	}
}
