package attribution

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"wormsink/internal/testutil"
	"wormsink/store"
	"wormsink/store/storetest"
)

// Lines as ulogd2 1.x (Debian 12) writes them with NFCT → IP2STR → JSON:
// a NEW and its DESTROY, whose flow.start differs by microseconds.
const (
	ulogdNew     = `{"timestamp": "2026-12-06T20:45:44", "dvc": "Netfilter", "orig.ip.protocol": 17, "orig.l4.sport": 53875, "orig.l4.dport": 5353, "orig.raw.pktlen": 0, "orig.raw.pktcount": 0, "reply.ip.protocol": 17, "reply.l4.sport": 5353, "reply.l4.dport": 53875, "reply.raw.pktlen": 0, "reply.raw.pktcount": 0, "ct.mark": 0, "ct.id": 2157473769, "ct.event": 1, "flow.start.sec": 1796589944, "flow.start.usec": 815015, "oob.family": 2, "oob.protocol": 0, "src_ip": "100.64.0.2", "dest_ip": "198.51.100.2", "reply.ip.saddr.str": "198.51.100.2", "reply.ip.daddr.str": "198.51.100.1"}`
	ulogdDestroy = `{"timestamp": "2026-12-06T20:45:47", "dvc": "Netfilter", "orig.ip.protocol": 17, "orig.l4.sport": 53875, "orig.l4.dport": 5353, "orig.raw.pktlen": 0, "orig.raw.pktcount": 0, "reply.ip.protocol": 17, "reply.l4.sport": 5353, "reply.l4.dport": 53875, "reply.raw.pktlen": 0, "reply.raw.pktcount": 0, "ct.mark": 0, "ct.id": 2157473769, "ct.event": 4, "flow.start.sec": 1796589944, "flow.start.usec": 814883, "flow.end.sec": 1796589947, "flow.end.usec": 774577, "oob.family": 2, "oob.protocol": 0, "src_ip": "100.64.0.2", "dest_ip": "198.51.100.2", "reply.ip.saddr.str": "198.51.100.2", "reply.ip.daddr.str": "198.51.100.1"}`
)

func TestParseULOGD(t *testing.T) {
	ev, err := ParseULOGD([]byte(ulogdNew), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	b := ev.Binding
	if ev.Kind != NATOpen || b.Public != mustAddr("198.51.100.1") || b.PortLo != 53875 || b.Inside != mustAddr("100.64.0.2") ||
		b.InsidePort != 53875 || b.Start.UnixMicro() != 1796589944815015 {
		t.Errorf("NEW: %+v", ev)
	}
	ev, err = ParseULOGD([]byte(ulogdDestroy), time.UTC)
	if err != nil || ev.Kind != NATClose || ev.At.UnixMicro() != 1796589947774577 {
		t.Errorf("DESTROY: %+v %v", ev, err)
	}
	for _, bad := range []string{`{`, `{"ct.event": 1}`, `{"ct.event": 1, "src_ip": "x", "reply.ip.daddr.str": "y", "orig.l4.sport": 1, "reply.l4.dport": 2, "flow.start.sec": 1}`} {
		if _, err := ParseULOGD([]byte(bad), time.UTC); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	// Not translated: no binding.
	same := strings.ReplaceAll(ulogdNew, `"reply.ip.daddr.str": "198.51.100.1"`, `"reply.ip.daddr.str": "100.64.0.2"`)
	if _, err := ParseULOGD([]byte(same), time.UTC); err != ErrSkip {
		t.Errorf("untranslated: %v", err)
	}
}

func TestULOGDImportMatchesDestroy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, stop := newAttributor(t, db, Config{Now: func() time.Time { return time.Unix(1796589950, 0) }})
		defer stop()
		for _, l := range []string{ulogdNew, ulogdDestroy} {
			ev, err := ParseULOGD([]byte(l), time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			feedNAT(t, a, ev) // separate batches, as when the DESTROY comes later
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM attribution_nat WHERE end_ms <> 0`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("closed rows %d (%v), want the NEW's row closed", n, err)
		}
		pub := mustAddr("198.51.100.1")
		if r := a.Lookup(pub, 53875, time.Unix(1796589946, 0)); r.Inside.String() != "100.64.0.2:53875" {
			t.Errorf("during: %+v", r)
		}
		if r := a.Lookup(pub, 53875, time.Unix(1796589948, 0)); r.Inside.IsValid() {
			t.Errorf("after the DESTROY: %+v", r)
		}
	})
}

func TestPBALostReleaseAndInterim(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		subs, _ := ParseSubscribers(stringsReader("100.64.0.10 alice\n100.64.0.11 bob\n100.64.0.12 carol\n"), "subs")
		a, stop := newAttributor(t, db, Config{Subscribers: subs, NATTimeout: time.Hour, Now: func() time.Time { return t0.Add(24 * time.Hour) }})
		defer stop()
		hex := func(d time.Duration) string { return fmt.Sprintf("0x%x", t0.Add(d).Unix()) }
		lines := []string{
			// alice's block: allocated, an interim re-send, the release lost.
			"Dec  6 12:00:00 mx1 (FPC Slot 1, PIC Slot 0) {cgn1}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.10 -> 198.51.100.7:1024-1151 " + hex(0),
			"Dec  6 12:30:00 mx1 (FPC Slot 1, PIC Slot 0) {cgn1}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ACTIVE: 100.64.0.10 -> 198.51.100.7:1024-1151 " + hex(30*time.Minute),
			// bob's block beside it, released (SRX wording, time from the header).
			"2026-12-06T12:00:00Z srx1 RT_NAT: RT_SRC_NAT_PBA_ALLOC: Subscriber 100.64.0.11 used/maximum [1/8] blocks, allocates port block [1152-1279] from 198.51.100.7 in source pool p1 lsys_id: 0",
			"2026-12-06T13:00:00Z srx1 RT_NAT: RT_SRC_NAT_PBA_RELEASE: Subscriber 100.64.0.11 used/maximum [0/8] blocks, releases port block [1152-1279] from 198.51.100.7 in source pool p1 lsys_id: 0",
			// Later carol gets alice's range: the lost release ends at carol's allocation at the latest.
			"Dec  6 15:00:00 mx1 (FPC Slot 1, PIC Slot 0) {cgn1}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.12 -> 198.51.100.7:1024-1151 " + hex(3*time.Hour),
			// An interim re-send for a block whose allocation was lost.
			"Dec  6 16:00:00 mx1 (FPC Slot 1, PIC Slot 0) {cgn1}[jservices-nat]: JSERVICES_NAT_PORT_BLOCK_ACTIVE: 100.64.0.11 -> 198.51.100.8:2048-2175 " + hex(4*time.Hour),
		}
		var evs []NATEvent
		for _, l := range lines {
			ev, err := ParsePBA([]byte(l), time.UTC, t0)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			evs = append(evs, ev)
		}
		feedNAT(t, a, evs...)
		pub := mustAddr("198.51.100.7")
		for _, c := range []struct {
			port uint16
			at   time.Duration
			want string
			cand int
		}{
			{1024, 0, "alice", 0},                                 // first port, at the allocation
			{1151, 0, "alice", 0},                                 // last port of the block
			{1152, 0, "bob", 0},                                   // first port of the next block
			{1100, -time.Second, "", 0},                           // before any allocation
			{1100, 90*time.Minute - time.Millisecond, "alice", 0}, // within the timeout after the interim
			{1100, 90 * time.Minute, "", 0},                       // the timeout after the interim: ended, nothing else open
			{1200, 60*time.Minute - time.Millisecond, "bob", 0},   // before the release
			{1200, 60 * time.Minute, "", 1},                       // at the release: only alice's block is left, and it does not hold the port
			{1100, 3 * time.Hour, "carol", 0},                     // carol's allocation
			{1300, 3 * time.Hour, "", 1},                          // outside every block: a candidate, no guess
			{2100, 4 * time.Hour, "", 0},                          // other address: wrong one asked
		} {
			got := a.Lookup(pub, c.port, t0.Add(c.at))
			if got.Subscriber != c.want || got.Candidates != c.cand {
				t.Errorf("port %d at +%v: %+v, want %q candidates %d", c.port, c.at, got, c.want, c.cand)
			}
		}
		if got := a.Lookup(mustAddr("198.51.100.8"), 2100, t0.Add(4*time.Hour+time.Minute)); got.Subscriber != "bob" {
			t.Errorf("block known only from an interim: %+v", got)
		}
	})
}

func TestDeterministic(t *testing.T) {
	// 1024 inside addresses on 4 public ones: 256 each, 249 ports each
	// (63,977 ports: the last 233 belong to nobody).
	conf := "100.64.0.0/22 198.51.100.0/30 1024-65000 2026-12-06T00:00:00Z 2026-12-07T00:00:00Z\n" +
		"100.64.8.0/24 198.51.100.0/30 1024-65535 2026-12-07T00:00:00Z # renumbered at midnight\n"
	d, err := ParseDeterministic(stringsReader(conf), "det")
	if err != nil {
		t.Fatal(err)
	}
	subs, _ := ParseSubscribers(stringsReader("100.64.0.0/22 old-net\n100.64.1.1 one-one\n100.64.8.0/24 new-net\n"), "subs")
	x := NewIndex(time.Hour, time.Hour)
	x.SetDeterministic(d)
	x.SetStatic(subs)
	day := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		pub    string
		port   uint16
		at     time.Time
		inside string
		sub    string
		cand   int
	}{
		{"198.51.100.0", 1024, day, "100.64.0.0", "old-net", 0},
		{"198.51.100.0", 1272, day, "100.64.0.0", "old-net", 0},                                          // last port of the first range
		{"198.51.100.0", 1273, day, "100.64.0.1", "old-net", 0},                                          // first of the second
		{"198.51.100.1", 1024 + 249, day, "100.64.1.1", "one-one", 0},                                    // second public address, second range
		{"198.51.100.3", 1024 + 256*249 - 1, day, "100.64.3.255", "old-net", 0},                          // last port of the last range
		{"198.51.100.3", 1024 + 256*249, day, "", "", 256},                                               // past the last range
		{"198.51.100.3", 65000, day, "", "", 256},                                                        // the end of the port range, nobody's
		{"198.51.100.0", 1023, day, "", "", 256},                                                         // below the range
		{"198.51.100.0", 0, day, "", "", 256},                                                            // no port
		{"198.51.100.0", 1024, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), "100.64.8.0", "new-net", 0}, // UNTIL is exclusive, FROM inclusive
		{"198.51.100.0", 1024, time.Date(2026, 12, 6, 23, 59, 59, 999e6, time.UTC), "100.64.0.0", "old-net", 0},
		{"198.51.100.0", 1024, time.Date(2026, 12, 5, 23, 59, 59, 0, time.UTC), "", "", 0}, // before every rule
	} {
		got := x.Lookup(mustAddr(c.pub), c.port, c.at)
		in := ""
		if got.Inside.IsValid() {
			in = got.Inside.Addr().String()
		}
		if in != c.inside || got.Subscriber != c.sub || got.Candidates != c.cand {
			t.Errorf("%s:%d at %s: %+v, want %s %q candidates %d", c.pub, c.port, c.at, got, c.inside, c.sub, c.cand)
		}
	}
	pub, lo, hi, ok := d.Forward(mustAddr("100.64.1.1"), day)
	if !ok || pub != mustAddr("198.51.100.1") || lo != 1273 || hi != 1521 {
		t.Errorf("Forward: %s %d-%d %v", pub, lo, hi, ok)
	}
	for _, bad := range []string{
		"100.64.0.0/22 198.51.100.0/30",
		"100.64.0.0/22 198.51.100.0/30 1024-1100",  // fewer ports than inside addresses per public
		"100.64.0.0/30 198.51.100.0/22 1024-65535", // more public than inside
		"100.64.0.0/22 198.51.100.0/30 0-65535",
		"100.64.0.0/22 198.51.100.0/30 1024-65535 yesterday",
		"100.64.0.0/22 198.51.100.0/30 1024-65535\n100.64.4.0/22 198.51.100.2/31 1024-65535", // overlapping public
	} {
		if _, err := ParseDeterministic(stringsReader(bad), "det"); err == nil || !strings.HasPrefix(err.Error(), "det:") {
			t.Errorf("%q: %v, want an error naming det:LINE", bad, err)
		}
	}
}

func TestDetailFile(t *testing.T) {
	detail := "Sun Dec  6 20:52:04 2026\n" +
		"\tUser-Name = \"alice\"\n\tAcct-Status-Type = Start\n\tAcct-Session-Id = \"s1\"\n\tNAS-IP-Address = 192.0.2.10\n" +
		"\tFramed-IP-Address = 127.0.0.5\n\tDelegated-IPv6-Prefix = 2001:db8:5500::/40\n\tTimestamp = 1796590324\n\n" +
		"Sun Dec  6 20:53:04 2026\n\tAcct-Status-Type = Bogus\n\tNAS-IP-Address = 192.0.2.10\n\n" +
		"Sun Dec  6 20:54:04 2026\n\tUser-Name = \"alice\"\n\tAcct-Status-Type = Stop\n\tAcct-Session-Id = \"s1\"\n" +
		"\tNAS-IP-Address = 192.0.2.10\n\tEvent-Timestamp = \"Dec  6 2026 20:54:00 UTC\"\n\tAcct-Delay-Time = 4\n\tTimestamp = 1796590444\n"
	r := NewDetailReader(stringsReader(detail), "detail", time.UTC)
	ev, err := r.Next()
	if err != nil || ev.Status != AcctStart || ev.Session.Subscriber != "alice" || ev.At.Unix() != 1796590324 ||
		ev.Session.Delegated.String() != "2001:db8:5500::/40" {
		t.Fatalf("first: %+v %v", ev, err)
	}
	if _, err := r.Next(); err == nil || !strings.HasPrefix(err.Error(), "detail:10:") {
		t.Errorf("bad record: %v, want detail:10", err)
	}
	ev, err = r.Next()
	if err != nil || ev.Status != AcctStop || ev.At != time.Date(2026, 12, 6, 20, 54, 0, 0, time.UTC) {
		t.Errorf("third: %+v %v", ev, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("end: %v", err)
	}
}

// ipfixMessage builds an IPFIX message with one template (id 256) and
// records of it.
func ipfixMessage(export time.Time, template [][2]uint16, records ...[]byte) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint16(b, 10)
	b = binary.BigEndian.AppendUint16(b, 0) // length, below
	b = binary.BigEndian.AppendUint32(b, uint32(export.Unix()))
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, 7) // observation domain
	b = binary.BigEndian.AppendUint16(b, 2)
	b = binary.BigEndian.AppendUint16(b, uint16(4+4+4*len(template)))
	b = binary.BigEndian.AppendUint16(b, 256)
	b = binary.BigEndian.AppendUint16(b, uint16(len(template)))
	for _, f := range template {
		b = binary.BigEndian.AppendUint16(b, f[0])
		b = binary.BigEndian.AppendUint16(b, f[1])
	}
	var data []byte
	for _, r := range records {
		data = append(data, r...)
	}
	b = binary.BigEndian.AppendUint16(b, 256)
	b = binary.BigEndian.AppendUint16(b, uint16(4+len(data)))
	b = append(b, data...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

var ipfixTemplate = [][2]uint16{{ieObservationTimeMillis, 8}, {ieNATEvent, 1}, {ieSourceIPv4Address, 4}, {ieSourceTransportPort, 2},
	{iePostNATSourceIPv4, 4}, {iePostNAPTSourcePort, 2}, {iePortRangeStart, 2}, {iePortRangeEnd, 2}}

func ipfixRecord(at time.Time, event uint8, in string, inPort uint16, pub string, pubPort, lo, hi uint16) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMilli()))
	b = append(b, event)
	b = append(b, netip.MustParseAddr(in).AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, inPort)
	b = append(b, netip.MustParseAddr(pub).AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, pubPort)
	b = binary.BigEndian.AppendUint16(b, lo)
	return binary.BigEndian.AppendUint16(b, hi)
}

func TestIPFIXCollector(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{Subscribers: aliceAndBob(t)})
		defer stop()
		col, err := NewIPFIX(IPFIXConfig{Log: zerolog.Nop(), Listen: "127.0.0.1:0"}, a)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- col.Serve(ctx) }()
		defer func() {
			cancel()
			if err := <-served; err != ErrServerClosed {
				t.Errorf("Serve after its context ended: %v", err)
			}
		}()
		c, err := net.Dial("udp", col.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		msg := ipfixMessage(t0, ipfixTemplate,
			ipfixRecord(t0, natEventSessionCreate, "100.64.0.2", 5000, "198.51.100.9", 40000, 0, 0),
			ipfixRecord(t0.Add(time.Minute), natEventSessionDelete, "100.64.0.2", 5000, "198.51.100.9", 40000, 0, 0),
			ipfixRecord(t0, natEventPortBlockAllocate, "100.64.1.2", 0, "198.51.100.9", 0, 2048, 2303),
		)
		c.Write(msg)
		c.Write(msg[:30]) // cut short: malformed, counted, the collector goes on
		testutil.WaitFor(t, 10*time.Second, "three NAT events stored", func() bool {
			a.Sync(context.Background())
			return a.Stats().NATEvents >= 3 && col.Stats().Malformed >= 1
		})
		pub := mustAddr("198.51.100.9")
		if r := a.Lookup(pub, 40000, t0.Add(30*time.Second)); r.Subscriber != "alice" || r.Inside.String() != "100.64.0.2:5000" {
			t.Errorf("session: %+v", r)
		}
		if r := a.Lookup(pub, 40000, t0.Add(2*time.Minute)); r.Subscriber != "" {
			t.Errorf("after the delete: %+v", r)
		}
		if r := a.Lookup(pub, 2303, t0.Add(2*time.Minute)); r.Subscriber != "bob" {
			t.Errorf("port block: %+v", r)
		}
	})
}
