package attribution

import (
	"context"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"wormsink/store"
	"wormsink/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func newAttributor(t *testing.T, db *store.DB, cfg Config) (*Attributor, func()) {
	t.Helper()
	cfg.DB = db
	cfg.Log = zerolog.Nop()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0.Add(time.Hour) }
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Serve(ctx) }()
	return a, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func acct(status AcctStatus, nas, id, user, framed string, at time.Time) AcctEvent {
	ev := AcctEvent{Status: status, At: at}
	ev.Session.NAS = mustAddr(nas)
	ev.Session.ID, ev.Session.Subscriber = id, user
	if framed != "" {
		ev.Session.Framed = mustAddr(framed)
	}
	return ev
}

func TestSessionsAcrossRestart(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, stop := newAttributor(t, db, Config{})
		v6 := acct(AcctStart, "192.0.2.1", "s6", "frank", "", t0)
		v6.Session.FramedV6 = netip.MustParsePrefix("2001:db8:1:1::/64")
		v6.Session.Delegated = netip.MustParsePrefix("2001:db8:2200::/56")
		steps := []AcctEvent{
			v6,
			acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.0.7", t0),
			acct(AcctStop, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(10*time.Minute)),
			acct(AcctStart, "192.0.2.1", "s2", "bob", "100.64.0.7", t0.Add(11*time.Minute)),
			acct(AcctStart, "192.0.2.2", "s3", "carol", "100.64.0.8", t0),
			acct(AcctOn, "192.0.2.2", "", "", "", t0.Add(20*time.Minute)),
		}
		for _, ev := range steps {
			if err := a.Account(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		check := func(a *Attributor, when string) {
			t.Helper()
			checkSubscribers(t, a, when, []subscriberAt{
				{"100.64.0.7", 5 * time.Minute, "alice"},
				{"100.64.0.7", 10*time.Minute + time.Second, ""},
				{"100.64.0.7", 12 * time.Minute, "bob"},
				{"100.64.0.8", 19 * time.Minute, "carol"},
				{"100.64.0.8", 21 * time.Minute, ""},
				{"100.64.0.7", -LogLag - time.Second, ""},
				{"100.64.0.7", -time.Second, "alice"},         // logged within LogLag after
				{"2001:db8:1:1::99", time.Minute, "frank"},    // in the framed /64
				{"2001:db8:2200:ff::1", time.Minute, "frank"}, // in the delegated /56
				{"2001:db8:2201::1", time.Minute, ""},         // beside it
			})
		}
		check(a, "stored")
		stop()
		b, stop2 := newAttributor(t, db, Config{})
		defer stop2()
		check(b, "after a restart")
	})
}

func nat(kind NATEventKind, pub string, port uint16, in string, inPort uint16, start, at time.Time) NATEvent {
	ev := NATEvent{Kind: kind, At: at}
	b := &ev.Binding
	b.Public, b.Inside = mustAddr(pub), mustAddr(in)
	b.PortLo, b.PortHi, b.InsidePort = port, port, inPort
	b.Start, b.Last, b.Source = start, at, FormatULOGD
	if kind == NATClose {
		b.End = at
	}
	return ev
}

func TestNATNeighbours(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		subs := aliceAndBob(t)
		a, stop := newAttributor(t, db, Config{Subscribers: subs})
		feedNAT(t, a,
			nat(NATOpen, "198.51.100.1", 40000, "100.64.0.2", 40000, t0, t0),
			nat(NATOpen, "198.51.100.1", 40001, "100.64.1.2", 5555, t0, t0),
			// The DESTROY's start differs from the NEW's by microseconds.
			nat(NATClose, "198.51.100.1", 40000, "100.64.0.2", 40000, t0.Add(-time.Millisecond), t0.Add(time.Minute)),
			nat(NATOpen, "198.51.100.1", 40000, "100.64.1.2", 6000, t0.Add(2*time.Minute), t0.Add(2*time.Minute)),
		)
		check := func(a *Attributor) {
			t.Helper()
			for _, c := range []struct {
				port uint16
				at   time.Duration
				want string
				in   string
				cand int
			}{
				{40000, 30 * time.Second, "alice", "100.64.0.2:40000", 0},
				{40001, 30 * time.Second, "bob", "100.64.1.2:5555", 0},
				{40000, 90 * time.Second, "", "", 1},
				{40000, 3 * time.Minute, "bob", "100.64.1.2:6000", 0},
				{0, 30 * time.Second, "", "", 2},
				{50000, 30 * time.Second, "", "", 2},
				// A sighting just before a binding's logged start, when none
				// held its port then, is the binding's first packet.
				{40000, 2*time.Minute - time.Second, "bob", "100.64.1.2:6000", 0},
				{40000, 2*time.Minute - LogLag - time.Second, "", "", 1},
				{40001, -time.Second, "bob", "100.64.1.2:5555", 0},
				{40001, -LogLag - time.Second, "", "", 0},
			} {
				got := a.Lookup(mustAddr("198.51.100.1"), c.port, t0.Add(c.at))
				in := ""
				if got.Inside.IsValid() {
					in = got.Inside.String()
				}
				if got.Subscriber != c.want || in != c.in || got.Candidates != c.cand {
					t.Errorf("port %d at +%s: %+v, want %q %q candidates %d", c.port, c.at, got, c.want, c.in, c.cand)
				}
			}
		}
		check(a)
		stop()
		b, stop2 := newAttributor(t, db, Config{Subscribers: subs})
		defer stop2()
		check(b)
	})
}

// TestAddressOnlyLoggedSoonAfter: without a port, a binding logged as
// starting just after the sighting (within LogLag) may already have
// carried it, so the address names candidates, never the one subscriber
// whose binding held the time; with the port, or further before, the
// binding holding the time answers.
func TestAddressOnlyLoggedSoonAfter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, stop := newAttributor(t, db, Config{Subscribers: aliceAndBob(t)})
		defer stop()
		feedNAT(t, a,
			nat(NATOpen, "198.51.100.1", 40000, "100.64.0.2", 40000, t0, t0),
			nat(NATOpen, "198.51.100.1", 40001, "100.64.1.2", 40000, t0.Add(10*time.Second), t0.Add(10*time.Second)),
		)
		for _, c := range []struct {
			port uint16
			at   time.Duration
			want string
			cand int
		}{
			{0, 10*time.Second - time.Millisecond, "", 2},
			{0, 10*time.Second - LogLag, "", 2},
			{0, 10*time.Second - LogLag - time.Second, "alice", 0},
			{0, 11 * time.Second, "", 2},
			{40000, 10*time.Second - time.Millisecond, "alice", 0},
			{40001, 10*time.Second - time.Millisecond, "bob", 0},
		} {
			got := a.Lookup(mustAddr("198.51.100.1"), c.port, t0.Add(c.at))
			if got.Subscriber != c.want || got.Candidates != c.cand {
				t.Errorf("port %d at +%s: %+v, want %q candidates %d", c.port, c.at, got, c.want, c.cand)
			}
		}
	})
}

// A Start is told to OnStart once it is committed, before Account returns
// (so the RADIUS answer follows the hook); other records are not.
func TestOnStart(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		type call struct {
			sub   string
			addrs []netip.Addr
		}
		var calls []call // written by the writer goroutine before Account returns
		a, stop := newAttributor(t, db, Config{OnStart: func(sub string, addrs []netip.Addr) {
			calls = append(calls, call{sub, addrs})
		}})
		defer stop()
		v6 := acct(AcctStart, "192.0.2.1", "s2", "bob", "", t0)
		v6.Session.FramedV6 = netip.MustParsePrefix("2001:db8::7/128")
		for _, ev := range []AcctEvent{
			acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.0.7", t0),
			acct(AcctInterim, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(time.Minute)),
			acct(AcctStop, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(2*time.Minute)),
			acct(AcctStart, "192.0.2.1", "s3", "alice", "100.64.0.9", t0.Add(3*time.Minute)),
			acct(AcctStart, "192.0.2.1", "s4", "", "100.64.0.10", t0.Add(3*time.Minute)), // no subscriber: nobody to follow
			v6,
		} {
			if err := a.Account(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		want := []call{
			{"alice", []netip.Addr{mustAddr("100.64.0.7")}},
			{"alice", []netip.Addr{mustAddr("100.64.0.9")}},
			{"bob", []netip.Addr{mustAddr("2001:db8::7")}},
		}
		if len(calls) != len(want) {
			t.Fatalf("OnStart calls %v, want %v", calls, want)
		}
		for i := range want {
			if calls[i].sub != want[i].sub || len(calls[i].addrs) != 1 || calls[i].addrs[0] != want[i].addrs[0] {
				t.Errorf("call %d: %v, want %v", i, calls[i], want[i])
			}
		}
	})
}

// TestAccountingInOneBatch: a Start, its retransmission, an Interim-Update
// and the Stop of one session, a Stop whose Start was lost and an
// Accounting-Off, all in one transaction.
func TestAccountingInOneBatch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		a, err := New(context.Background(), Config{DB: db, Log: zerolog.Nop(), Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		lost := acct(AcctStop, "192.0.2.1", "s9", "dave", "100.64.0.9", t0.Add(20*time.Minute))
		lost.SessionTime = 10 * time.Minute
		var ops []*op
		for _, ev := range []AcctEvent{
			acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.0.7", t0),
			acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.0.7", t0),
			acct(AcctInterim, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(5*time.Minute)),
			acct(AcctStop, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(10*time.Minute)),
			lost,
			acct(AcctStart, "192.0.2.2", "s2", "erin", "100.64.0.2", t0),
			acct(AcctOff, "192.0.2.2", "", "", "", t0.Add(30*time.Minute)),
		} {
			ev := ev
			ops = append(ops, &op{acct: &ev, done: make(chan error, 1)})
		}
		a.write(context.Background(), ops)
		for _, o := range ops {
			if err := <-o.done; err != nil {
				t.Fatal(err)
			}
		}
		checkSubscribers(t, a, "one batch", []subscriberAt{
			{"100.64.0.7", 9 * time.Minute, "alice"},
			{"100.64.0.7", 10 * time.Minute, ""},
			{"100.64.0.9", 15 * time.Minute, "dave"},
			{"100.64.0.9", 9 * time.Minute, ""},
			{"100.64.0.2", 29 * time.Minute, "erin"},
			{"100.64.0.2", 30 * time.Minute, ""},
		})
		var n int
		db.QueryRow(context.Background(), `SELECT count(*) FROM attribution_sessions`).Scan(&n)
		if n != 3 {
			t.Errorf("%d session rows, want 3", n)
		}
	})
}

// TestHeadSlotIsOneCacheLine: a look-up reads one slot, and a slot that
// straddled two cache lines would cost two misses.
func TestHeadSlotIsOneCacheLine(t *testing.T) {
	if n := unsafe.Sizeof(headSlot{}); n != 64 {
		t.Errorf("headSlot is %d bytes, want 64", n)
	}
}

// TestIndexHeadSlotFollowsChanges: the look-up answers from the copy of the
// newest span kept with its key, so every change to that span (its end, a
// later event, an older span linked in behind it, a newer one before it)
// must show in the answers.
func TestIndexHeadSlotFollowsChanges(t *testing.T) {
	x := NewIndex(24*time.Hour, time.Hour)
	for _, s := range []Session{
		{NAS: mustAddr("192.0.2.1"), ID: "a", Subscriber: "alice", Framed: mustAddr("100.64.0.1"), Start: t0, Last: t0},
		{NAS: mustAddr("192.0.2.1"), ID: "b", Subscriber: "bob", Framed: mustAddr("100.64.0.2"), Start: t0, Last: t0},
	} {
		x.putSession(&s)
	}
	pub := mustAddr("203.0.113.7")
	nat := func(in string, start, last, end time.Time) {
		b := Binding{Public: pub, PortLo: 2000, PortHi: 2000, Inside: mustAddr(in), InsidePort: 3000, Start: start, Last: last, End: end}
		x.putNAT(&b)
	}
	who := func(at time.Time) string { return x.Lookup(pub, 2000, at).Subscriber }
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }

	nat("100.64.0.1", at(10), at(10), time.Time{})
	if got := who(at(65)); got != "alice" {
		t.Fatalf("open binding: %q", got)
	}
	if got := who(at(71)); got != "" {
		t.Fatalf("after the NAT timeout: %q", got)
	}
	nat("100.64.0.1", at(10), at(50), time.Time{}) // a later event
	if got := who(at(100)); got != "alice" {
		t.Errorf("a later event did not extend the binding: %q", got)
	}
	nat("100.64.0.1", at(10), at(20), at(20)) // its end
	if got := who(at(21)); got != "" {
		t.Errorf("after the end: %q", got)
	}
	nat("100.64.0.2", at(30), at(30), time.Time{}) // a newer binding
	if got, old := who(at(31)), who(at(15)); got != "bob" || old != "alice" {
		t.Errorf("newer binding: %q, before it: %q", got, old)
	}
	nat("100.64.0.2", at(1), at(1), at(5)) // an older one, imported late
	if got, mid, old := who(at(2)), who(at(15)), who(at(31)); got != "bob" || mid != "alice" || old != "bob" {
		t.Errorf("late import: at 2 %q, at 15 %q, at 31 %q", got, mid, old)
	}
	// Sessions: a Stop, then the next subscriber on the address.
	s := Session{NAS: mustAddr("192.0.2.1"), ID: "a", Subscriber: "alice", Framed: mustAddr("100.64.0.1"), Start: t0, Last: at(12), Stop: at(12)}
	x.putSession(&s)
	if got := who(at(11)); got != "alice" {
		t.Errorf("before alice's Stop: %q", got)
	}
	if got := x.Lookup(mustAddr("100.64.0.1"), 0, at(13)).Subscriber; got != "" {
		t.Errorf("after alice's Stop: %q", got)
	}
	s = Session{NAS: mustAddr("192.0.2.1"), ID: "c", Subscriber: "carol", Framed: mustAddr("100.64.0.1"), Start: at(14), Last: at(14)}
	x.putSession(&s)
	if got, old := x.Lookup(mustAddr("100.64.0.1"), 0, at(15)).Subscriber, x.Lookup(mustAddr("100.64.0.1"), 0, at(11)).Subscriber; got != "carol" || old != "alice" {
		t.Errorf("carol's session: %q, before it: %q", got, old)
	}
}

// TestLookupAllocatesNothing: every kind of answer the index gives, the
// binding that held the port, one logged just after the sighting, a port
// no binding held (candidates), no port, a session, nothing at all,
// allocates nothing.
func TestLookupAllocatesNothing(t *testing.T) {
	x := NewIndex(24*time.Hour, time.Hour)
	x.putSession(&Session{NAS: mustAddr("192.0.2.1"), ID: "s1", Subscriber: "alice", Framed: mustAddr("100.64.0.2"), Start: t0, Last: t0})
	x.putSession(&Session{NAS: mustAddr("192.0.2.1"), ID: "s2", Subscriber: "bob", Framed: mustAddr("100.64.1.2"), Start: t0, Last: t0})
	for i, in := range []string{"100.64.0.2", "100.64.1.2"} {
		var b Binding
		b.Source, b.Public, b.Inside = FormatULOGD, mustAddr("198.51.100.1"), mustAddr(in)
		b.PortLo, b.PortHi, b.InsidePort = uint16(40000+i), uint16(40000+i), 5555
		b.Start, b.Last = t0.Add(time.Minute), t0.Add(time.Minute)
		x.putNAT(&b)
	}
	pub := mustAddr("198.51.100.1")
	cases := []struct {
		name string
		addr netip.Addr
		port uint16
		at   time.Duration
		want Result
	}{
		{"binding", pub, 40000, 2 * time.Minute, Result{Subscriber: "alice", Inside: netip.MustParseAddrPort("100.64.0.2:5555")}},
		{"logged after", pub, 40001, time.Minute - time.Second, Result{Subscriber: "bob", Inside: netip.MustParseAddrPort("100.64.1.2:5555")}},
		{"other port", pub, 50000, 2 * time.Minute, Result{Candidates: 2}},
		{"no port", pub, 0, 2 * time.Minute, Result{Candidates: 2}},
		{"session", mustAddr("100.64.0.2"), 0, time.Hour, Result{Subscriber: "alice"}},
		{"nothing", mustAddr("192.0.2.99"), 1234, time.Hour, Result{}},
	}
	for _, c := range cases {
		at := t0.Add(c.at)
		if got := x.Lookup(c.addr, c.port, at); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		if n := testing.AllocsPerRun(100, func() { x.Lookup(c.addr, c.port, at) }); n != 0 {
			t.Errorf("%s: %.1f allocations per look-up", c.name, n)
		}
	}
}
