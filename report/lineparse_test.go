package report

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
)

// writerLine returns one line as the real writer writes it.
func writerLine(t testing.TB, ev evidence.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := evidence.NewWriter(&buf, evidence.Config{Sensor: "s1"})
	w.Record(ev)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

var at = time.Date(2026, 11, 24, 10, 0, 0, 123e6, time.UTC)

func TestParseWriterLines(t *testing.T) {
	events := []evidence.Event{
		{Time: at, Kind: evidence.DNSSinkhole, Host: netip.MustParseAddr("10.0.0.7"), Port: 5353, Sig: "blaster", Family: "Blaster",
			Evidence: signatures.Weak, Serial: 7, QName: "windowsupdate.com", QType: "A", Transport: "udp"},
		{Time: at, Kind: evidence.TFTPRefused, Host: netip.MustParseAddr("2001:db8::1"), Port: 1069, Sig: "blaster", Family: "Blaster",
			File: "msblast.exe", Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("192.0.2.1:69")},
		{Time: at, Kind: evidence.WireMatch, Host: netip.MustParseAddr("10.1.2.3"), Port: 4444, Sig: "welchia", Family: "Welchia",
			Peer: netip.MustParseAddr("10.9.9.9"), Role: evidence.RoleServer, Proto: "udp", DstPort: 69, PCAP: "x.pcap", Packet: 3},
		{Time: at, Kind: evidence.TFTPRequest, Host: netip.MustParseAddr("10.1.2.4"), Port: 2000, Evidence: signatures.Weak,
			File: "C:\\WINDOWS\\\"odd\"\tname.exe", Mode: "netascii", Op: "read"},
	}
	for _, ev := range events {
		line := writerLine(t, ev)
		var p Parser
		var r Sighting
		kind, err := p.Parse(line, &r)
		if kind != LineEvidence || err != nil {
			t.Fatalf("%s: got %v, %v", line, kind, err)
		}
		if !r.Time.Equal(ev.Time) || !r.Last.Equal(ev.Time) || r.Kind != ev.Kind || r.Host != ev.Host || r.Port != ev.Port ||
			string(r.Sig) != ev.Sig || string(r.Family) != ev.Family || r.Evidence != ev.Evidence || r.Count != 1 ||
			string(r.Sensor) != "s1" || r.Serial != ev.Serial || string(r.File) != ev.File || string(r.QName) != ev.QName ||
			string(r.Proto) != ev.Proto || r.DstPort != ev.DstPort || string(r.Role) != ev.Role {
			t.Errorf("%s:\nparsed %+v", line, r)
		}
		if ev.Srv.IsValid() && string(r.Server) != ev.Srv.String() {
			t.Errorf("server %q, want %v", r.Server, ev.Srv)
		}
	}
}

func TestParseLines(t *testing.T) {
	base := `"time":"2026-11-24T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.1","evidence":"strong"`
	tests := []struct {
		name, line string
		kind       LineKind
		check      func(r *Sighting) bool
	}{
		{"minimal", `{` + base + `}`, LineEvidence, func(r *Sighting) bool { return r.Count == 1 && r.Port == 0 }},
		{"reordered with spaces", " { \"host\" : \"10.0.0.1\" ,\t\"evidence\":\"weak\", \"event\":\"wire_match\",\"time\":\"2026-11-24T10:00:00Z\" }\r", LineEvidence,
			func(r *Sighting) bool { return r.Evidence == signatures.Weak && r.Kind == evidence.WireMatch }},
		{"escaped key and value", `{` + base + `,"fam\u0069ly":"Bl\u00e4ster \"B\"\\","sensor":"a\/b"}`, LineEvidence,
			func(r *Sighting) bool { return string(r.Family) == "Bläster \"B\"\\" && string(r.Sensor) == "a/b" }},
		{"duplicate key, last wins", `{` + base + `,"count":"x","count":5}`, LineEvidence, func(r *Sighting) bool { return r.Count == 5 }},
		{"folded", `{` + base + `,"count":3,"last":"2026-11-24T10:00:02.500Z"}`, LineEvidence,
			func(r *Sighting) bool { return r.Count == 3 && r.Last.Sub(r.Time) == 2500*time.Millisecond }},
		{"offset time", `{"time":"2026-11-24T12:00:00+02:00","event":"tftp_refused","host":"::1","evidence":"strong"}`, LineEvidence,
			func(r *Sighting) bool { return r.Time.Equal(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) }},
		{"nested unknown", `{` + base + `,"x":{"a":[1,2.5e3,true,null,{"b":"c"}]},"y":[]}`, LineEvidence, nil},
		{"count zero is one", `{` + base + `,"count":0}`, LineEvidence, func(r *Sighting) bool { return r.Count == 1 }},
		{"service", `{"level":"info","sensor":"s","event":"start","time":"2026-11-24T10:00:00.000Z"}`, LineService, nil},
		{"blank", "  \t", LineBlank, nil},
		{"empty", "", LineBlank, nil},
		{"not json", `hello`, LineMalformed, nil},
		{"array", `[1,2]`, LineMalformed, nil},
		{"torn", `{` + base, LineMalformed, nil},
		{"trailing garbage", `{` + base + `} x`, LineMalformed, nil},
		{"trailing comma", `{` + base + `,}`, LineMalformed, nil},
		{"foreign object", `{"foo":1}`, LineMalformed, nil},
		{"unknown event", `{"time":"2026-11-24T10:00:00.000Z","event":"dns_other","host":"10.0.0.1","evidence":"strong"}`, LineMalformed, nil},
		{"bad host", `{"time":"2026-11-24T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.256","evidence":"strong"}`, LineMalformed, nil},
		{"leading zero host", `{"time":"2026-11-24T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.01","evidence":"strong"}`, LineMalformed, nil},
		{"bad day", `{"time":"2026-02-30T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.1","evidence":"strong"}`, LineMalformed, nil},
		{"ancient time", `{"time":"0001-01-01T00:00:00Z","event":"dns_sinkhole","host":"10.0.0.1","evidence":"strong"}`, LineMalformed, nil},
		{"far future last", `{` + base + `,"count":2,"last":"9999-01-01T00:00:00Z"}`, LineMalformed, nil},
		{"bad evidence", `{"time":"2026-11-24T10:00:00.000Z","event":"dns_sinkhole","host":"10.0.0.1","evidence":"maybe"}`, LineMalformed, nil},
		{"port too big", `{` + base + `,"port":65536}`, LineMalformed, nil},
		{"negative count", `{` + base + `,"count":-1}`, LineMalformed, nil},
		{"fraction count", `{` + base + `,"count":1.5}`, LineMalformed, nil},
		{"number host", `{"time":"2026-11-24T10:00:00.000Z","event":"dns_sinkhole","host":1,"evidence":"strong"}`, LineMalformed, nil},
		{"control char", "{" + base + ",\"family\":\"a\x01b\"}", LineMalformed, nil},
		{"bad escape", `{` + base + `,"family":"a\qb"}`, LineMalformed, nil},
		{"no level no host", `{"event":"start","time":"2026-11-24T10:00:00.000Z"}`, LineMalformed, nil},
		{"invalid utf8 keeps its bytes", "{" + base + ",\"family\":\"a\xffb\"}", LineEvidence,
			func(r *Sighting) bool { return string(r.Family) == `a\xffb` }},
		{"invalid utf8 with escapes", "{" + base + ",\"family\":\"\\\\\xff\\u00e9\\\"\xc3\"}", LineEvidence,
			func(r *Sighting) bool { return string(r.Family) == `\\\xffé"\xc3` }},
		{"network line", `{"time":"2026-11-24T10:00:00.000Z","event":"tftp_refused","network":"10.1.2.0/24","evidence":"strong","count":7}`, LineEvidence,
			func(r *Sighting) bool {
				return r.Network.String() == "10.1.2.0/24" && !r.Host.IsValid() && r.Count == 7
			}},
		{"ipv6 network line", `{"time":"2026-11-24T10:00:00.000Z","event":"dns_sinkhole","network":"2001:db8:1::/48","evidence":"weak"}`, LineEvidence,
			func(r *Sighting) bool { return r.Network.Bits() == 48 }},
		{"network unmasked", `{"time":"2026-11-24T10:00:00.000Z","event":"tftp_refused","network":"10.1.2.3/24","evidence":"strong"}`, LineMalformed, nil},
		{"network and host", `{` + base + `,"network":"10.0.0.0/24"}`, LineMalformed, nil},
		{"network not a string", `{"time":"2026-11-24T10:00:00.000Z","event":"tftp_refused","network":24,"evidence":"strong"}`, LineMalformed, nil},
		{"lone surrogate falls back", `{` + base + `,"family":"a\ud800b"}`, LineEvidence,
			func(r *Sighting) bool { return string(r.Family) == "a\uFFFDb" }},
		{"surrogate pair", `{` + base + `,"family":"\ud83d\ude00"}`, LineEvidence,
			func(r *Sighting) bool { return string(r.Family) == "😀" }},
		{"deep nesting falls back", `{` + base + `,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, LineEvidence, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parser
			var r Sighting
			kind, err := p.Parse([]byte(tt.line), &r)
			if kind != tt.kind {
				t.Fatalf("kind %v (%v), want %v", kind, err, tt.kind)
			}
			if kind == LineMalformed && !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if kind != LineMalformed && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if tt.check != nil && !tt.check(&r) {
				t.Errorf("record %+v", r)
			}
			// The reference reading agrees.
			var q Parser
			var r2 Sighting
			kind2, _ := q.parseSlow([]byte(tt.line), &r2)
			if kind2 != kind || (kind == LineEvidence && !sameSighting(&r, &r2)) {
				t.Errorf("encoding/json reads %v %+v", kind2, r2)
			}
		})
	}
}

func sameSighting(a, b *Sighting) bool {
	return a.Time.Equal(b.Time) && a.Last.Equal(b.Last) && a.Kind == b.Kind && a.Host == b.Host && a.Port == b.Port &&
		bytes.Equal(a.Sig, b.Sig) && bytes.Equal(a.Family, b.Family) && a.Evidence == b.Evidence && a.Count == b.Count &&
		bytes.Equal(a.Sensor, b.Sensor) && a.Serial == b.Serial &&
		bytes.Equal(a.QName, b.QName) && bytes.Equal(a.QType, b.QType) && bytes.Equal(a.Transport, b.Transport) &&
		bytes.Equal(a.File, b.File) && bytes.Equal(a.Op, b.Op) && bytes.Equal(a.Server, b.Server) &&
		bytes.Equal(a.Peer, b.Peer) && bytes.Equal(a.Role, b.Role) && bytes.Equal(a.Proto, b.Proto) && a.DstPort == b.DstPort &&
		a.Proof == b.Proof
}

// FuzzParseLine checks the hand-rolled scanner against encoding/json: the
// same kind for every input, and the same record for evidence lines. It also
// proves no input panics.
func FuzzParseLine(f *testing.F) {
	f.Add(string(writerLine(f, evidence.Event{Time: at, Kind: evidence.DNSSinkhole, Host: netip.MustParseAddr("10.0.0.7"), Port: 53, Sig: "b", Family: "B",
		QName: "x.example", QType: "A", Transport: "udp"})))
	f.Add(string(writerLine(f, evidence.Event{Time: at, Kind: evidence.TFTPRefused, Host: netip.MustParseAddr("2001:db8::1"), Port: 1069, Sig: "b", Family: "B",
		File: "a\"b\\c", Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("[::1]:69"), Count: 4, Proof: evidence.ProofExchange})))
	f.Add(`{"time":"2026-11-24T10:00:00Z","event":"dns_sinkhole","host":"1.2.3.4","evidence":"weak","proof":"tcp"}`)
	f.Add(`{"time":"2026-11-24T10:00:00Z","event":"dns_sinkhole","host":"1.2.3.4","evidence":"weak","proof":"trusted-sourc\u0065"}`)
	f.Add(`{"time":"2026-11-24T10:00:00Z","event":"dns_sinkhole","host":"1.2.3.4","evidence":"weak","proof":"TCP"}`)
	f.Add(`{"level":"info","event":"start"}`)
	f.Add(`{"time":"2026-11-24T10:00:00Z","event":"wire_match","host":"1.2.3.4","evidence":"weak","x":[{"y":null}],"count":2,"last":"2026-11-24T10:00:01.5Z"}`)
	f.Add(`{"ho\u0073t":"1.2.3.4","time":"2026-11-24T10:00:00+01:00","event":"tftp_request","evidence":"strong","family":"\ud800"}`)
	f.Add("{\"a\":\"\xff\"}")
	f.Add("{\"time\":\"2026-11-24T10:00:00Z\",\"event\":\"tftp_refused\",\"host\":\"10.0.0.2\",\"evidence\":\"strong\",\"family\":\"W\xfe\\u0072m\"}")
	f.Add(`{"time":"2026-11-24T10:00:00Z","event":"tftp_refused","network":"10.0.0.0/24","evidence":"strong","count":3}`)
	f.Add(`{"port":1e2,"count":01}`)
	f.Fuzz(func(t *testing.T, line string) {
		var p Parser
		// Twice: the second time the parser expects the keys it saw.
		for range 2 {
			checkParse(t, &p, line)
		}
	})
}

// checkParse parses line with p and with encoding/json.
func checkParse(t *testing.T, p *Parser, line string) {
	t.Helper()
	var q Parser
	var r1, r2 Sighting
	k1, err1 := p.Parse([]byte(line), &r1)
	k2, _ := q.parseSlow([]byte(line), &r2)
	if k1 != k2 {
		t.Fatalf("fast %v (%v), encoding/json %v for %q", k1, err1, k2, line)
	}
	if k1 == LineEvidence && !sameSighting(&r1, &r2) {
		t.Fatalf("records differ for %q:\nfast %+v\njson %+v", line, r1, r2)
	}
	if k1 == LineMalformed && !errors.Is(err1, ErrMalformed) {
		t.Fatalf("error %v does not wrap ErrMalformed", err1)
	}
}

// FuzzParseAfter: a line read after another (whose keys the parser then
// expects) reads as encoding/json reads it.
func FuzzParseAfter(f *testing.F) {
	tftp, dns := seedLines(f)
	f.Add(tftp, dns)
	f.Add(dns, tftp)
	f.Add(tftp, strings.Replace(tftp, `"host":`, `"host" :`, 1))
	f.Add(tftp, strings.Replace(tftp, `"port":`, `"po\u0072t":`, 1))
	f.Add(tftp, strings.Replace(tftp, `"file":"msblast.exe"`, `"file":"msblast.exe","file":1`, 1))
	f.Add(tftp, tftp[:40])
	f.Fuzz(func(t *testing.T, first, line string) {
		var p Parser
		checkParse(t, &p, first)
		checkParse(t, &p, line)
		checkParse(t, &p, line)
	})
}

// FuzzParseTime checks the fast time parser against time.Parse.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-11-24T10:00:00.123Z", "2026-11-24T10:00:00Z", "2024-02-29T23:59:59.999999999Z",
		"2023-02-29T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T10:00:60Z", "0000-01-01T00:00:00Z", "2026-11-24T10:00:00.Z",
		"2026-11-24T10:00:00.1234567890Z", "2026-11-24T10:00:00+05:30", "2026-11-24t10:00:00z", "1970-01-01T00:00:00,5Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := time.Parse(time.RFC3339Nano, s)
		got, ok := parseTime([]byte(s))
		if ok != (err == nil) {
			t.Fatalf("%q: fast ok=%v, time.Parse err=%v", s, ok, err)
		}
		if ok && !got.Equal(want) {
			t.Fatalf("%q: fast %v, time.Parse %v", s, got, want)
		}
		if ft, fok := fastTime([]byte(s)); fok && (err != nil || !ft.Equal(want)) {
			t.Fatalf("%q: fast path %v accepted, time.Parse %v %v", s, ft, want, err)
		}
		// With the date cached from s itself, and from a time on another
		// day (the cache must not answer for a date it does not hold).
		for _, before := range []string{s, "2026-11-24T10:00:00Z"} {
			var c dayCache
			c.parse([]byte(before))
			if ct, cok := c.parse([]byte(s)); cok != (err == nil) || cok && !ct.Equal(want) {
				t.Fatalf("%q after %q: cached %v %v, time.Parse %v %v", s, before, ct, cok, want, err)
			}
		}
	})
}

// FuzzParseAddr checks the IPv4 and IPv6 fast paths against netip.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "255.255.255.255", "256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "::1", "1..2.3", "0.0.0.0", "::ffff:1.2.3.4",
		"2001:db8::1", "2001:DB8:0:0:0:0:0:1", "::", ":::", "1::", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "12345::", "1:::2",
		"::1:", "fe80::1%eth0", "abc", "a:b", "1:2:3:4:5:6:7:8", "::1.2.3.4x", ":1::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := netip.ParseAddr(s)
		got, ok := parseAddr([]byte(s))
		if ok != (err == nil) || (ok && got != want) {
			t.Fatalf("%q: fast %v %v, netip %v %v", s, got, ok, want, err)
		}
	})
}

func TestParseAllocs(t *testing.T) {
	line := writerLine(t, evidence.Event{Time: at, Kind: evidence.DNSSinkhole, Host: netip.MustParseAddr("10.0.0.7"), Port: 53, Sig: "blaster", Family: "Blaster",
		QName: "windowsupdate.com", QType: "A", Transport: "udp"})
	escaped := []byte(strings.Replace(string(line), `"Blaster"`, `"Bl\u0061ster\n"`, 1))
	var p Parser
	var r Sighting
	line6 := bytes.Replace(line, []byte(`"10.0.0.7"`), []byte(`"2001:db8:85a3::8a2e:370:7334"`), 1)
	for _, l := range [][]byte{line, line6, escaped, []byte(`{"level":"info","event":"start"}`), []byte(`{"foo":1}`)} {
		p.Parse(l, &r) // warm the arena
		if n := testing.AllocsPerRun(100, func() { p.Parse(l, &r) }); n != 0 {
			t.Errorf("%s: %v allocations per line, want 0", l, n)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	line := writerLine(b, evidence.Event{Time: at, Kind: evidence.TFTPRefused, Host: netip.MustParseAddr("10.20.30.40"), Port: 40000, Sig: "blaster", Family: "Blaster",
		File: "msblast.exe", Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("192.0.2.1:69"), Serial: 2026112501})
	var p Parser
	var r Sighting
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if k, err := p.Parse(line, &r); k != LineEvidence {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseMixed reads lines of every event in turn, with hosts,
// ports and names that vary, as a log interleaves them: the parser's
// expectation of the next key is right most of the time, not always.
func BenchmarkParseMixed(b *testing.B) {
	var lines [][]byte
	for i := range 64 {
		h := netip.AddrFrom4([4]byte{10, byte(i), byte(i * 7), byte(i * 13)})
		ev := evidence.Event{Time: at.Add(time.Duration(i) * time.Second), Host: h, Port: uint16(1024 + i*997), Sig: []string{"blaster", "mirai.tftp-loader", "welchia"}[i%3],
			Family: []string{"Blaster", "Mirai", "Welchia"}[i%3], Serial: 2026112501, Proof: evidence.Proof(i % 2)}
		switch i % 3 {
		case 0:
			ev.Kind, ev.File, ev.Mode, ev.Op, ev.Srv = evidence.TFTPRefused, "msblast.exe", "octet", "read", netip.MustParseAddrPort("192.0.2.69:69")
		case 1:
			ev.Kind, ev.QName, ev.QType, ev.Transport = evidence.DNSSinkhole, "tftp.mirai.example", "A", "udp"
		default:
			ev.Kind, ev.Peer, ev.Role, ev.Proto, ev.DstPort, ev.File, ev.Mode, ev.Op = evidence.WireMatch, netip.MustParseAddr("10.9.9.9"), evidence.RoleRequester, "udp", 69, "penis32.exe", "octet", "read"
		}
		lines = append(lines, writerLine(b, ev))
	}
	var p Parser
	var r Sighting
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if k, err := p.Parse(lines[i%len(lines)], &r); k != LineEvidence {
			b.Fatal(err)
		}
		i++
	}
}

// FuzzUintField: a number field reads as strconv reads its digits, within
// the field's bound.
func FuzzUintField(f *testing.F) {
	for _, s := range []string{"0", "65535", "65536", "18446744073709551615", "18446744073709551616", "9999999999999999999", "99999999999999999999", "-1", "1.5", "1e3", ""} {
		f.Add(s, uint64(math.MaxUint16))
		f.Add(s, uint64(math.MaxUint64))
	}
	f.Fuzz(func(t *testing.T, s string, max uint64) {
		var fl fields
		fl.typ[evidence.FieldPort], fl.val[evidence.FieldPort] = tNumber, []byte(s)
		got, ok := uintField(&fl, evidence.FieldPort, max)
		want, err := strconv.ParseUint(s, 10, 64)
		wantOK := err == nil && want <= max && s != "" && s[0] != '+'
		if ok != wantOK || ok && got != want {
			t.Fatalf("%q (max %d): %d %v, strconv %d %v", s, max, got, ok, want, err)
		}
	})
}

// TestFieldOf: the key table finds every field by its name, and nothing
// else, as the field table's own map does.
func TestFieldOf(t *testing.T) {
	for _, f := range evidence.Fields() {
		if got := fieldOf([]byte(f.Name())); got != f {
			t.Errorf("%q: %v", f.Name(), got)
		}
		if keyTable[keyHash([]byte(f.Name()))] == keyCollide {
			t.Errorf("%q shares its key table slot: pick another multiplier in keyHash", f.Name())
		}
		for _, k := range []string{f.Name() + "x", "x" + f.Name(), f.Name()[:len(f.Name())-1], strings.ToUpper(f.Name())} {
			if got, want := fieldOf([]byte(k)), evidence.FieldByName(k); got != want {
				t.Errorf("%q: %v, want %v", k, got, want)
			}
		}
	}
	for _, k := range []string{"", "x", "msg", "sernsor", "rlle"} {
		if got := fieldOf([]byte(k)); got != evidence.FieldNone {
			t.Errorf("%q: %v, want none", k, got)
		}
	}
}

// seedLines are a TFTP and a DNS line as the evidence writer writes them:
// the fuzz targets' seeds, each read after the other.
func seedLines(f *testing.F) (tftp, dns string) {
	tftp = string(writerLine(f, evidence.Event{Time: at, Kind: evidence.TFTPRefused, Host: netip.MustParseAddr("10.0.0.9"), Port: 1069, Sig: "b", Family: "B",
		File: "msblast.exe", Mode: "octet", Op: "read", Srv: netip.MustParseAddrPort("192.0.2.1:69"), Serial: 7}))
	dns = string(writerLine(f, evidence.Event{Time: at, Kind: evidence.DNSSinkhole, Host: netip.MustParseAddr("10.0.0.7"), Port: 53, Sig: "b", Family: "B",
		QName: "x.example", QType: "A", Transport: "udp"}))
	return tftp, dns
}

// BenchmarkParseAddr reads dotted quads of every shape (octets of one to
// three digits, at random), as a log's hosts come.
func BenchmarkParseAddr(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	addrs := make([][]byte, 4096)
	for i := range addrs {
		addrs[i] = []byte(netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}).String())
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := parseAddr(addrs[i&4095]); !ok {
			b.Fatal(string(addrs[i&4095]))
		}
		i++
	}
}
