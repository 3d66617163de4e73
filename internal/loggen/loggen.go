// Package loggen writes evidence logs in the shapes other sensors and tools produce, without
// the evidence writer, for `make perf-report` and report's tests to measure and compare on.
package loggen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// Order is how the sensors' lines follow one another in the log.
type Order uint8

const (
	// Concat is each sensor's log, in time order, one after the other.
	Concat Order = iota
	// Interleaved mixes the sensors' lines line by line; each sensor's own
	// lines stay in time order, but the sensors' clocks disagree.
	Interleaved
	// Shuffled puts every line at a random time over Config.Days.
	Shuffled
)

// ParseOrder reads an Order by its name.
func ParseOrder(s string) (Order, error) {
	switch s {
	case "concat":
		return Concat, nil
	case "interleaved":
		return Interleaved, nil
	case "shuffled":
		return Shuffled, nil
	}
	return 0, fmt.Errorf("loggen: order %q: want concat, interleaved or shuffled", s)
}

// Config says what log to write. The zero value of each field takes the
// default documented beside it.
type Config struct {
	Lines   int // evidence lines; 0: 1000
	Hosts   int // distinct hosts; 0: 100
	Sensors int // sensors; 0: 1
	// IPv6 is the share of hosts that are IPv6 addresses, 0 to 1.
	IPv6 float64
	// MinLen and MaxLen bound the length a line aims at, in bytes; a line
	// is padded to a length drawn between them by lengthening its name
	// (qname or file, at most evidence.MaxStringLen bytes). 0: 200 and 330.
	MinLen, MaxLen int
	// Attributed is the share of host lines carrying attribution
	// (subscriber and nat_inside, or subscriber_candidates), 0 to 1.
	Attributed float64
	// Summary is the share of lines that fold several sightings: count
	// above 1, last, and on some of them names. 0 to 1.
	Summary float64
	// Networks is the share of network lines (no host), 0 to 1.
	Networks float64
	// LongNames gives sensors long names (edge-sinkhole-007.region-2.isp.example)
	// and wire_match lines a capture file and packet now and then.
	LongNames bool
	// Sparse is the share of lines that leave out what is optional (port,
	// proof, a count of 1, serial, the request's details), as older
	// sensors and other tools write them, 0 to 1.
	Sparse float64
	// Roam is the share of a host's lines seen by a sensor other than its
	// own, 0 to 1.
	Roam  float64
	Order Order
	Days  int // the span of the sightings' times; 0: 1
	Seed  uint64
	// Start is when the first day starts; zero: 2026-11-24T00:00:00Z.
	Start time.Time
	// Kinds lists the events to mix; empty: dns_sinkhole, tftp_refused
	// and wire_match, with a few tftp_request and dns_lookup lines.
	Kinds []evidence.Kind
}

func (c *Config) defaults() {
	if c.Lines <= 0 {
		c.Lines = 1000
	}
	if c.Hosts <= 0 {
		c.Hosts = 100
	}
	if c.Sensors <= 0 {
		c.Sensors = 1
	}
	if c.MinLen <= 0 {
		c.MinLen = 200
	}
	if c.MaxLen < c.MinLen {
		c.MaxLen = max(c.MinLen, 330)
	}
	if c.Days <= 0 {
		c.Days = 1
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	}
}

// Write writes the log cfg describes to w. The same Config writes the
// same bytes.
func Write(w io.Writer, cfg Config) error {
	cfg.defaults()
	g := newGen(cfg)
	bw := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	span := time.Duration(cfg.Days) * 24 * time.Hour
	switch cfg.Order {
	case Concat:
		for s := range cfg.Sensors {
			n := cfg.Lines / cfg.Sensors
			if s == 0 {
				n += cfg.Lines % cfg.Sensors
			}
			step := span / time.Duration(max(n, 1))
			at := cfg.Start.Add(time.Duration(g.rng.Int64N(int64(time.Hour))))
			for range n {
				at = at.Add(time.Duration(g.rng.Int64N(int64(2*step) + 1)))
				line = g.line(line[:0], s, at)
				if _, err := bw.Write(line); err != nil {
					return err
				}
			}
		}
	case Interleaved:
		clocks := make([]time.Time, cfg.Sensors)
		for s := range clocks {
			// Each sensor's clock starts anywhere in the first tenth of
			// the span: the merged log jumps back and forth in time.
			clocks[s] = cfg.Start.Add(time.Duration(g.rng.Int64N(int64(span/10) + 1)))
		}
		step := span * 9 / 10 / time.Duration(max(cfg.Lines/cfg.Sensors, 1))
		for range cfg.Lines {
			s := g.rng.IntN(cfg.Sensors)
			clocks[s] = clocks[s].Add(time.Duration(g.rng.Int64N(int64(2*step) + 1)))
			line = g.line(line[:0], s, clocks[s])
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
	case Shuffled:
		for range cfg.Lines {
			at := cfg.Start.Add(time.Duration(g.rng.Int64N(int64(span))))
			line = g.line(line[:0], g.rng.IntN(cfg.Sensors), at)
			if _, err := bw.Write(line); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

type gen struct {
	cfg     Config
	rng     *rand.Rand
	sigs    []signatures.Signature
	sensors []string
	kinds   []evidence.Kind
}

func newGen(cfg Config) *gen {
	g := &gen{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6c6f6767656e)), sigs: signatures.Default().Signatures()}
	for s := range cfg.Sensors {
		// Sensor names of several lengths, as operators name them.
		switch {
		case !cfg.LongNames:
			g.sensors = append(g.sensors, fmt.Sprintf("sensor-%d", s+1))
		case s%3 == 0:
			g.sensors = append(g.sensors, fmt.Sprintf("s%d", s))
		case s%3 == 1:
			g.sensors = append(g.sensors, fmt.Sprintf("sensor-%02d.pop%d", s, s%7))
		default:
			g.sensors = append(g.sensors, fmt.Sprintf("edge-sinkhole-%03d.region-%d.isp.example", s, s%5))
		}
	}
	g.kinds = cfg.Kinds
	if len(g.kinds) == 0 {
		g.kinds = []evidence.Kind{
			evidence.DNSSinkhole, evidence.DNSSinkhole, evidence.DNSSinkhole, evidence.DNSSinkhole,
			evidence.TFTPRefused, evidence.TFTPRefused, evidence.TFTPRefused,
			evidence.WireMatch, evidence.WireMatch, evidence.TFTPRequest, evidence.DNSLookup,
		}
	}
	return g
}

// host returns host number h's address: spread over the whole address
// space (not one /8 counted up), IPv6 for cfg.IPv6 of the hosts.
func (g *gen) host(h int) netip.Addr {
	x := uint64(h)*0x9E3779B97F4A7C15 ^ g.cfg.Seed
	x ^= x >> 29
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 32
	if float64(uint64(h)*0x2545F4914F6CDD1D>>40)/float64(1<<24) < g.cfg.IPv6 {
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		for i := 4; i < 16; i++ {
			b[i] = byte(x >> (8 * (i % 8)))
		}
		if h%2 == 0 {
			// Half the customers have SLAAC-like addresses, half ::N.
			b[8], b[9], b[10], b[11], b[12], b[13] = 0, 0, 0, 0, 0, 0
		}
		return netip.AddrFrom16(b)
	}
	a := [4]byte{byte(1 + x%223), byte(x >> 8), byte(x >> 16), byte(x >> 24)}
	if a[3] == 0 || a[3] == 255 {
		a[3] = 7
	}
	return netip.AddrFrom4(a)
}

const letters = "abcdefghijklmnopqrstuvwxyz0123456789"

// line appends one evidence line of sensor s at time at, ending in a
// newline, with the keys in the order the evidence writer uses.
func (g *gen) line(b []byte, s int, at time.Time) []byte {
	c, rng := &g.cfg, g.rng
	target := c.MinLen + rng.IntN(c.MaxLen-c.MinLen+1)
	// Skewed hosts: a tenth of them make half the sightings.
	h := rng.IntN(c.Hosts)
	if rng.IntN(2) == 0 {
		h = rng.IntN(max(c.Hosts/10, 1))
	}
	if c.Roam < 1 && rng.Float64() >= c.Roam {
		s = h % c.Sensors // the host's own sensor
	}
	host := g.host(h)
	sig := &g.sigs[rng.IntN(len(g.sigs))]
	kind := g.kinds[rng.IntN(len(g.kinds))]
	network := rng.Float64() < c.Networks
	sparse := rng.Float64() < c.Sparse
	start := len(b)

	b = append(b, `{"time":"`...)
	b = at.UTC().AppendFormat(b, evidence.TimeFormat)
	b = append(b, `","event":"`...)
	b = append(b, kind...)
	if network {
		b = append(b, `","network":"`...)
		b = evidence.NetworkOf(host).AppendTo(b)
		b = append(b, '"')
	} else {
		b = append(b, `","host":"`...)
		b = host.AppendTo(b)
		b = append(b, '"')
		if !sparse {
			b = append(b, `,"port":`...)
			b = strconv.AppendUint(b, uint64(1024+rng.IntN(64000)), 10)
		}
		if rng.Float64() < c.Attributed {
			if rng.IntN(8) == 0 {
				b = append(b, `,"subscriber_candidates":`...)
				b = strconv.AppendUint(b, uint64(2+rng.IntN(3)), 10)
			} else {
				b = append(b, `,"subscriber":"`...)
				b = fmt.Appendf(b, "cust-%07d@bras%d.isp.example", h, h%13)
				b = append(b, `","nat_inside":"100.`...)
				b = fmt.Appendf(b, "%d.%d.%d:%d", 64+h%64, h>>8&255, h&255, 1024+rng.IntN(60000))
				b = append(b, '"')
			}
		}
	}
	sigID, family := sig.ID, sig.Family
	if kind == evidence.TFTPRequest {
		sigID, family = "", "" // a file no signature names
	}
	if sigID != "" {
		b = append(b, `,"signature":"`...)
		b = append(b, sigID...)
		b = append(b, `","family":"`...)
		b = append(b, family...)
		b = append(b, '"')
	}
	ev := "strong"
	if rng.IntN(4) == 0 {
		ev = "weak"
	}
	b = append(b, `,"evidence":"`...)
	b = append(b, ev...)
	b = append(b, '"')
	if !sparse {
		b = append(b, `,"proof":"`...)
		b = append(b, [...]string{"datagram", "datagram", "exchange", "tcp", "trusted-source"}[rng.IntN(5)]...)
		b = append(b, '"')
	}
	if rng.Float64() < c.Summary {
		n := 2 + rng.IntN(5000)
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, uint64(n), 10)
		b = append(b, `,"last":"`...)
		b = at.Add(time.Duration(1+rng.IntN(60_000))*time.Millisecond).UTC().AppendFormat(b, evidence.TimeFormat)
		b = append(b, '"')
		if !network && rng.IntN(2) == 0 {
			b = append(b, `,"names":`...)
			b = strconv.AppendUint(b, uint64(1+rng.IntN(n)), 10)
		}
	} else if !sparse {
		b = append(b, `,"count":1`...)
	}
	b = append(b, `,"sensor":"`...)
	b = append(b, g.sensors[s]...)
	b = append(b, '"')
	if !sparse {
		b = append(b, `,"serial":2026112501`...)
	}
	if network {
		return append(b, "}\n"...)
	}

	// The name is last written but sized first: the line's tail is known
	// but for the name, which pads the line to its target.
	var tail []byte
	var nameKey string
	switch kind {
	case evidence.DNSSinkhole, evidence.DNSLookup:
		nameKey = `,"qname":"`
		tail = append(tail, `","qtype":"`...)
		tail = append(tail, [...]string{"A", "A", "AAAA", "TXT", "MX"}[rng.IntN(5)]...)
		tail = append(tail, '"')
		if !sparse {
			tail = append(tail, `,"transport":"`...)
			tail = append(tail, [...]string{"udp", "udp", "udp", "tcp"}[rng.IntN(4)]...)
			tail = append(tail, '"')
		}
		if !sparse && rng.IntN(6) == 0 {
			tail = append(tail, `,"rule":"*.`...)
			tail = append(tail, g.domain(sig)...)
			tail = append(tail, '"')
		}
		if kind == evidence.DNSLookup {
			tail = append(tail, `,"resolver":"unbound-`...)
			tail = strconv.AppendUint(tail, uint64(s%4), 10)
			tail = append(tail, '"')
		}
	case evidence.TFTPRefused, evidence.TFTPRequest:
		nameKey = `,"file":"`
		if sparse {
			tail = append(tail, '"')
			break
		}
		tail = append(tail, `","mode":"octet","op":"read","server":"192.0.2.69:69"`...)
		if rng.IntN(5) == 0 {
			tail = append(tail, `,"intercepted":true,"role":"server","peer":"`...)
			tail = g.host(rng.IntN(c.Hosts)).AppendTo(tail)
			tail = append(tail, '"')
		}
		if rng.IntN(10) == 0 {
			tail = append(tail, `,"passed":true`...)
		}
	default: // wire_match
		b = append(b, `,"peer":"`...)
		b = g.host(rng.IntN(c.Hosts)).AppendTo(b)
		b = append(b, `","role":"`...)
		b = append(b, [...]string{evidence.RoleRequester, evidence.RoleServer, evidence.RoleSource}[rng.IntN(3)]...)
		b = append(b, '"')
		if !sparse {
			b = append(b, `,"proto":"udp","dst_port":69`...)
		}
		nameKey = `,"file":"`
		if sparse {
			tail = append(tail, '"')
			break
		}
		tail = append(tail, `","mode":"octet","op":"read"`...)
		if c.LongNames && rng.IntN(4) == 0 {
			tail = append(tail, `,"pcap":"/var/spool/wormsink/capture-`...)
			tail = strconv.AppendUint(tail, uint64(rng.IntN(1000)), 10)
			tail = append(tail, `.pcap","packet":`...)
			tail = strconv.AppendUint(tail, uint64(1+rng.IntN(1_000_000)), 10)
		}
	}
	b = append(b, nameKey...)
	room := target - (len(b) - start) - len(tail) - 2 // "}\n"
	if nameKey == `,"qname":"` {
		b = g.qname(b, sig, room)
	} else {
		b = g.file(b, sig, room)
	}
	b = append(b, tail...)
	return append(b, "}\n"...)
}

// domain returns one of the signature's names, or a plausible one.
func (g *gen) domain(sig *signatures.Signature) string {
	if len(sig.Domains) > 0 {
		return sig.Domains[g.rng.IntN(len(sig.Domains))].Name
	}
	return "windowsupdate.com"
}

// qname appends a name that fills about room bytes: the signature's name
// under random labels (a DGA's, a wildcard's).
func (g *gen) qname(b []byte, sig *signatures.Signature, room int) []byte {
	d := g.domain(sig)
	n := min(room, evidence.MaxStringLen) - len(d)
	for n > 1 {
		l := min(n-1, 1+g.rng.IntN(40))
		for range l {
			b = append(b, letters[g.rng.IntN(len(letters))])
		}
		b = append(b, '.')
		n -= l + 1
	}
	return append(b, d...)
}

// file appends a file name that fills about room bytes: the signature's
// file, under a path when there is room, now and then with a backslash
// or a byte that is not UTF-8 (written escaped, as the evidence writer
// does).
func (g *gen) file(b []byte, sig *signatures.Signature, room int) []byte {
	f := "msblast.exe"
	if len(sig.TFTPFiles) > 0 {
		f = sig.TFTPFiles[g.rng.IntN(len(sig.TFTPFiles))]
	}
	n := min(room, evidence.MaxStringLen) - len(f)
	if n > 12 {
		switch g.rng.IntN(50) {
		case 0:
			b = append(b, `C:\\WINDOWS\\system32\\`...) // JSON for C:\WINDOWS\system32\
			n -= 24
		case 1:
			b = append(b, `\\x9f`...) // a byte that is not UTF-8, escaped
			n -= 5
		case 2:
			b = append(b, "été/"...) // UTF-8 as it is
			n -= 6
		}
	}
	for n > 1 {
		l := min(n-1, 1+g.rng.IntN(30))
		for range l {
			b = append(b, letters[g.rng.IntN(len(letters))])
		}
		b = append(b, '/')
		n -= l + 1
	}
	return append(b, f...)
}

// Variant is a named Config: one shape of log `make perf-report` measures.
type Variant struct {
	Name string
	Note string // what it stands for
	Config
}

// Variants returns the shapes measured, each for lines lines: the issue's
// mix first, then each way a log can depart from it.
func Variants(lines int) []Variant {
	v := []Variant{
		{Name: "mix", Note: "200-330 B, 100k hosts, 3 sensors concatenated",
			Config: Config{Hosts: 100_000, Sensors: 3, MinLen: 200, MaxLen: 330, Sparse: 0.3, Order: Concat}},
		{Name: "short", Note: "150-250 B (optional fields left out), 100k hosts",
			Config: Config{Hosts: 100_000, Sensors: 3, MinLen: 150, MaxLen: 220, Sparse: 0.7, Order: Concat}},
		{Name: "long", Note: "330-400 B, attribution, summaries, 100k hosts",
			Config: Config{Hosts: 100_000, Sensors: 3, MinLen: 330, MaxLen: 400, Attributed: 1, Summary: 0.3, LongNames: true, Order: Concat}},
		{Name: "wide", Note: "150-400 B, 30% IPv6, some attribution, 16 sensors interleaved",
			Config: Config{Hosts: 100_000, Sensors: 16, MinLen: 150, MaxLen: 400, IPv6: 0.3, Attributed: 0.3, Summary: 0.1, Sparse: 0.2, Networks: 0.001, Roam: 0.2, LongNames: true, Order: Interleaved}},
		{Name: "ipv6", Note: "200-330 B, 100k IPv6 hosts",
			Config: Config{Hosts: 100_000, Sensors: 3, MinLen: 200, MaxLen: 330, IPv6: 1, Order: Concat}},
		{Name: "hosts1m", Note: "200-330 B, 1M hosts, 20% IPv6, attribution",
			Config: Config{Hosts: 1_000_000, Sensors: 3, MinLen: 200, MaxLen: 330, IPv6: 0.2, Attributed: 0.5, Order: Concat}},
		{Name: "sensors", Note: "150-400 B, 64 sensors, hosts roaming, shuffled over 7 days",
			Config: Config{Hosts: 100_000, Sensors: 64, MinLen: 150, MaxLen: 400, Attributed: 0.3, Summary: 0.1, Roam: 0.5, LongNames: true, Order: Shuffled, Days: 7}},
	}
	for i := range v {
		v[i].Lines = lines
		v[i].Seed = uint64(i + 1)
	}
	return v
}
