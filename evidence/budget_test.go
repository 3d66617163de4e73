package evidence

import (
	"bytes"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestWriterLineBudget: past the line budget, sightings fold into one
// network line per event, signature and /24 or /48, which names no host;
// every sighting is still counted.
func TestWriterLineBudget(t *testing.T) {
	var buf bytes.Buffer
	const burst, rate = 50, 100.0
	w := NewWriter(&buf, Config{LineRate: rate, LineBurst: burst})
	start := time.Now()
	const n = 20_000
	for i := 0; i < n; i++ {
		// 2,000 hosts in 8 IPv4 /24s and 2 IPv6 /48s, each many times.
		h := i % 2000
		var addr netip.Addr
		if h < 1600 {
			addr = netip.AddrFrom4([4]byte{127, 1, byte(h / 200), byte(h % 200)})
		} else {
			addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(h % 2), 0, 0, 0, 0, 0, 0, 0, 0, byte(h >> 8), byte(h)})
		}
		sig := "blaster"
		if i%3 == 0 {
			sig = "welchia"
		}
		w.Record(Event{Kind: TFTPRefused, Host: addr, Port: uint16(1024 + i%7), Sig: sig, File: "msblast.exe", Mode: "octet", Op: "read"})
	}
	elapsed := time.Since(start)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var hostLines, netLines int
	var total, netTotal float64
	nets := map[string]bool{}
	for _, l := range lines(t, buf.Bytes()) {
		c, _ := l["count"].(float64)
		total += c
		switch {
		case l["host"] != nil && l["network"] == nil:
			hostLines++
		case l["network"] != nil && l["host"] == nil:
			netLines++
			netTotal += c
			nets[l["network"].(string)+" "+l["signature"].(string)] = true
			if l["event"] != "tftp_refused" || l["port"] != nil || l["file"] != nil {
				t.Errorf("network line %v", l)
			}
		default:
			t.Errorf("line %v", l)
		}
	}
	if total != n {
		t.Errorf("counts add up to %v, want %d", total, n)
	}
	if max := burst + rate*elapsed.Seconds() + 1; float64(hostLines) > max {
		t.Errorf("%d host lines in %v, budget %.0f", hostLines, elapsed, max)
	}
	// 10 networks, two signatures each; at most a few windows apart.
	if len(nets) != 20 || netLines > 60 {
		t.Errorf("%d network lines over %d (network, signature) pairs: %v", netLines, len(nets), nets)
	}
	for k := range nets {
		if !strings.HasPrefix(k, "127.1.") && !strings.HasPrefix(k, "2001:db8:") || !strings.Contains(k, "/24 ") && !strings.Contains(k, "/48 ") {
			t.Errorf("network %q", k)
		}
	}
	if st := w.Stats(); st.Aggregated != uint64(netTotal) || st.Sightings != n {
		t.Errorf("stats %+v, network lines count %v", st, netTotal)
	}
}

// TestWriterExcludes: the sinkhole's own addresses and excluded ranges are
// never written as a host; they are counted apart.
func TestWriterExcludes(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{Exclude: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}})
	peer := netip.MustParseAddr("198.51.100.7")
	for _, h := range []string{"192.0.2.1", "::ffff:192.0.2.1", "10.9.200.1", "2001:db8::5", "192.0.2.2", "10.10.0.1"} {
		w.Record(Event{Kind: WireMatch, Host: netip.MustParseAddr(h), Peer: peer, Role: RoleServer, Proto: "udp", DstPort: 69, Sig: "blaster"})
	}
	w.Close()
	var hosts []string
	for _, l := range evidenceLines(t, buf.Bytes()) {
		hosts = append(hosts, l["host"].(string))
	}
	if strings.Join(hosts, ",") != "192.0.2.2,10.10.0.1" {
		t.Errorf("hosts %v", hosts)
	}
	if st := w.Stats(); st.Excluded != 4 || st.Sightings != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestWriterCutsLongValues: an attacker-chosen value is at most
// MaxStringLen bytes as written, and its original length is recorded.
func TestWriterCutsLongValues(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{})
	at := time.Now()
	long := strings.Repeat("A", 300) + ".exe"
	badLong := strings.Repeat("\xff", 200) // 800 bytes once escaped
	utf := strings.Repeat("é", 200)        // 400 bytes; must not be split inside a character
	w.Record(Event{Time: at, Kind: TFTPRequest, Host: host, Port: 1, File: long, Mode: strings.Repeat("m", 1000), Op: "read"})
	w.Record(Event{Time: at, Kind: TFTPRequest, Host: host, Port: 2, File: badLong, Mode: "octet", Op: "read"})
	w.Record(Event{Time: at, Kind: TFTPRequest, Host: host, Port: 3, File: utf, Mode: "octet", Op: "read"})
	w.Record(Event{Time: at, Kind: DNSSinkhole, Host: host, Port: 4, QName: strings.Repeat("a.", 200), QType: "A", Transport: "udp"})
	w.Record(Event{Time: at, Kind: TFTPRequest, Host: host, Port: 5, File: strings.Repeat("b", 255), Mode: "octet", Op: "read"})
	w.Close()
	ls := evidenceLines(t, buf.Bytes())
	if len(ls) != 5 {
		t.Fatalf("%d lines", len(ls))
	}
	check := func(l line, field string, orig string) {
		t.Helper()
		v := l[field].(string)
		if len(v) > MaxStringLen || !utf8.ValidString(v) {
			t.Errorf("%s: %d bytes %q", field, len(v), v)
		}
		if !strings.HasPrefix(orig, Unescape(v)) {
			t.Errorf("%s: %q is no prefix of the original", field, v)
		}
		if l[field+"_len"] != float64(len(orig)) {
			t.Errorf("%s_len = %v, want %d", field, l[field+"_len"], len(orig))
		}
	}
	check(ls[0], "file", long)
	check(ls[0], "mode", strings.Repeat("m", 1000))
	check(ls[1], "file", badLong)
	check(ls[2], "file", utf)
	check(ls[3], "qname", strings.Repeat("a.", 200))
	if ls[4]["file"] != strings.Repeat("b", 255) || ls[4]["file_len"] != nil || ls[1]["mode_len"] != nil {
		t.Errorf("a value of exactly %d bytes was cut: %v", MaxStringLen, ls[4])
	}
	if len(ls[2]["file"].(string)) != 254 {
		t.Errorf("é cut to %d bytes, want 254", len(ls[2]["file"].(string)))
	}
}

// TestWriterKeepsEveryByte: names that differ only in bytes that are not
// UTF-8 log differently, and unescape to what was sent.
func TestWriterKeepsEveryByte(t *testing.T) {
	names := []string{"msblast\xff.exe", "msblast\xfe.exe", "msblast\ufffd.exe", `msblast\xff.exe`, `msblast\\xff.exe`,
		"msblast\\\xff.exe", `C:\WINDOWS\msblast.exe`, `C:\x\y`, "end\\", "\xc3", "\xc3\xa9"}
	var buf bytes.Buffer
	w := NewWriter(&buf, Config{})
	for i, n := range names {
		w.Record(Event{Kind: TFTPRequest, Host: host, Port: uint16(i), File: n, QName: n, Mode: "octet", Op: "read"})
	}
	w.Close()
	seen := map[string]string{}
	for _, l := range evidenceLines(t, buf.Bytes()) {
		v := l["file"].(string)
		orig := names[int(l["port"].(float64))]
		if Unescape(v) != orig {
			t.Errorf("%q logged as %q, which unescapes to %q", orig, v, Unescape(v))
		}
		if prev, ok := seen[v]; ok {
			t.Errorf("%q and %q both logged as %q", prev, orig, v)
		}
		seen[v] = orig
	}
	if len(seen) != len(names) {
		t.Errorf("%d distinct names logged, want %d", len(seen), len(names))
	}
	if !bytes.Contains(buf.Bytes(), []byte(`"file":"msblast\\xff.exe"`)) || !bytes.Contains(buf.Bytes(), []byte(`"file":"C:\\WINDOWS\\msblast.exe"`)) {
		t.Errorf("escapes not as documented:\n%s", buf.String())
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain": "plain", `C:\WINDOWS\a.exe`: `C:\WINDOWS\a.exe`, "\xff": `\xff`, `\x41`: `\\x41`, `a\\b`: `a\\\b`,
		"a\\\xff": `a\\\xff`, "é": "é", "\xc3": `\xc3`, `\`: `\`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { Escape(`C:\WINDOWS\system32\msblast.exe`) }); n != 0 {
		t.Errorf("Escape of a clean name: %v allocations", n)
	}
}

// FuzzEscape: Escape gives valid UTF-8 that Unescape turns back into the
// input, and a cut escape is valid, short enough and unescapes to a prefix.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "a", "\xff", `\x41`, "\\\xff", `C:\x\`, "é\xc3", "\\\\x", "\xed\xa0\x80"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		e := Escape(s)
		if !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q is not UTF-8", s, e)
		}
		if u := Unescape(e); u != s {
			t.Fatalf("Escape(%q) = %q unescapes to %q", s, e, u)
		}
		if max < 0 {
			max = -max
		}
		max %= 300
		c, cut := escapeCut(s, max)
		if len(c) > max || !utf8.ValidString(c) || !strings.HasPrefix(e, c) || cut != (c != e) {
			t.Fatalf("escapeCut(%q, %d) = %q, %v; full %q", s, max, c, cut, e)
		}
		if !strings.HasPrefix(s, Unescape(c)) {
			t.Fatalf("escapeCut(%q, %d) = %q unescapes to no prefix", s, max, c)
		}
	})
}

// BenchmarkRecordFlood: the line budget is spent and every sighting comes
// from another (forged) source, so each folds into its network's line.
func BenchmarkRecordFlood(b *testing.B) {
	w := NewWriter(io.Discard, Config{LineRate: 1, LineBurst: 1})
	defer w.Close()
	ev := Event{Time: time.Now(), Kind: TFTPRefused, Port: 1, Sig: "blaster", File: "msblast.exe", Mode: "octet", Op: "read"}
	for i := 0; i < 1<<16; i++ { // open the network lines first
		ev.Host = netip.AddrFrom4([4]byte{127, byte(i >> 8), byte(i), 1})
		w.Record(ev)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		ev.Host = netip.AddrFrom4([4]byte{127, byte(i >> 8), byte(i), byte(i >> 16)})
		w.Record(ev)
	}
}
