package quarantine

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"wormsink/evidence"
	"wormsink/signatures"
	"wormsink/store"
	"wormsink/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// clock is a settable time for the engine.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newEngine(t *testing.T, db *store.DB, p *Policy, c *clock) *Engine {
	t.Helper()
	e, err := New(context.Background(), Config{DB: db, Policy: p, Now: c.now, Poll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func strongTCP(host string, c *clock) Sighting {
	return Sighting{Time: c.now(), Kind: evidence.WireMatch, Host: netip.MustParseAddr(host), Port: 4444, Family: "Blaster", Signature: "blaster",
		Evidence: signatures.Strong, Proof: evidence.ProofTCP, Sensor: "s1"}
}

func TestEnterAndSelfRelease(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		c := &clock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
		p := DefaultPolicy()
		p.SelfReleaseMax, p.SelfReleaseGrace = 2, 10*time.Minute
		e := newEngine(t, db, p, c)
		client := netip.MustParseAddr("10.1.0.5")

		// Forged-looking evidence quarantines nobody.
		for _, pr := range []evidence.Proof{evidence.ProofDatagram} {
			s := strongTCP("10.1.0.5", c)
			s.Proof = pr
			if err := e.consider(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		weak := strongTCP("10.1.0.5", c)
		weak.Evidence = signatures.Weak
		e.consider(ctx, weak)
		if _, ok := e.Lookup(client); ok {
			t.Fatal("quarantined on datagram or weak evidence")
		}

		if err := e.consider(ctx, strongTCP("10.1.0.5", c)); err != nil {
			t.Fatal(err)
		}
		ent, ok := e.Lookup(client)
		if !ok || ent.Family != "Blaster" || ent.Subject != AddressSubject(client) {
			t.Fatalf("after strong tcp evidence: %+v, %v", ent, ok)
		}
		if _, ok := e.Lookup(netip.MustParseAddr("10.1.0.6")); ok {
			t.Fatal("the neighbour is quarantined")
		}
		// Self-release from another address is refused.
		if _, err := e.release(ctx, ent.Subject, ReleaseSelf, "x", "", func(cur *Entry) error {
			if !contains(cur.Addresses, netip.MustParseAddr("10.1.0.6")) {
				return ErrSelfReleaseAbuse
			}
			return nil
		}); !errors.Is(err, ErrSelfReleaseAbuse) {
			t.Fatalf("self-release from elsewhere: %v", err)
		}
		for round := 1; round <= 2; round++ {
			if _, err := e.SelfRelease(ctx, client); err != nil {
				t.Fatalf("self-release %d: %v", round, err)
			}
			if _, ok := e.Lookup(client); ok {
				t.Fatalf("self-release %d did not release", round)
			}
			// Within the grace period new evidence does not quarantine again.
			c.add(time.Minute)
			e.consider(ctx, strongTCP("10.1.0.5", c))
			if _, ok := e.Lookup(client); ok {
				t.Fatalf("quarantined again within the grace period (round %d)", round)
			}
			c.add(10 * time.Minute)
			e.consider(ctx, strongTCP("10.1.0.5", c))
			if _, ok := e.Lookup(client); !ok {
				t.Fatalf("not quarantined again after the grace period (round %d)", round)
			}
		}
		if _, err := e.SelfRelease(ctx, client); !errors.Is(err, ErrNoSelfRelease) {
			t.Fatalf("third self-release with max 2: %v", err)
		}
		if _, ok := e.Lookup(client); !ok {
			t.Fatal("released past max")
		}
		if _, err := e.Release(ctx, AddressSubject(client), ReleaseAdmin, "alice", "called the customer"); err != nil {
			t.Fatal(err)
		}
		rows, err := e.Audit(ctx, AddressSubject(client))
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, r := range rows {
			actions = append(actions, r.Action+"/"+r.Kind)
		}
		want := "quarantine/policy release/self quarantine/policy release/self quarantine/policy refused/self release/admin"
		if got := join(actions); got != want {
			t.Fatalf("audit trail:\n got %s\nwant %s", got, want)
		}
		if last := rows[len(rows)-1]; last.Actor != "alice" || last.Note != "called the customer" {
			t.Fatalf("last audit row %+v", last)
		}
		if rows[0].Sightings == "" {
			t.Fatal("the entry's audit row does not say which sighting")
		}
		st := e.Stats()
		if st.Entries != 3 || st.Releases[ReleaseSelf] != 2 || st.Releases[ReleaseAdmin] != 1 || st.InGrace != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func contains(as []netip.Addr, a netip.Addr) bool { return !missing(as, a) }

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

// Two clicks on the release button at once release once.
func TestSelfReleaseRace(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		c := &clock{t: time.Now()}
		e := newEngine(t, db, DefaultPolicy(), c)
		e.consider(ctx, strongTCP("10.2.0.1", c))
		var wg sync.WaitGroup
		var ok, notQ int
		var mu sync.Mutex
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.SelfRelease(ctx, netip.MustParseAddr("10.2.0.1"))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrNotQuarantined):
					notQ++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		ent, err := e.Get(ctx, AddressSubject(netip.MustParseAddr("10.2.0.1")))
		if err != nil {
			t.Fatal(err)
		}
		if ok != 1 || ent.SelfReleases != 1 {
			t.Fatalf("%d releases succeeded, %d self-releases counted; want 1 and 1", ok, ent.SelfReleases)
		}
	})
}

// A subscriber's quarantine follows them; a shared address names nobody.
func TestSubscriberFollowsAndSharedAddress(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		c := &clock{t: time.Now()}
		p := DefaultPolicy()
		p.Never = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
		e := newEngine(t, db, p, c)
		// Behind CGNAT, attribution could not tell who: nobody.
		s := strongTCP("198.51.100.7", c)
		s.Candidates = 3
		e.consider(ctx, s)
		// The public pool, unattributed: never.
		e.consider(ctx, strongTCP("198.51.100.8", c))
		if n := len(e.Snapshot().Entries); n != 0 {
			t.Fatalf("%d quarantined from a shared address", n)
		}
		// Attributed: the subscriber, enforced on their inside address.
		s = strongTCP("198.51.100.7", c)
		s.Subscriber, s.Inside = "alice", netip.MustParseAddr("100.64.1.9")
		e.consider(ctx, s)
		if _, ok := e.Lookup(netip.MustParseAddr("198.51.100.7")); ok {
			t.Fatal("the shared public address is enforced")
		}
		ent, ok := e.Lookup(netip.MustParseAddr("100.64.1.9"))
		if !ok || ent.Subject != (Subject{Subscriber, "alice"}) {
			t.Fatalf("inside address: %+v %v", ent, ok)
		}
		// A new RADIUS Start gives alice another address.
		if err := e.Moved(ctx, "alice", []netip.Addr{netip.MustParseAddr("100.64.7.7")}); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Lookup(netip.MustParseAddr("100.64.7.7")); !ok {
			t.Fatal("the quarantine did not follow the subscriber")
		}
		if _, ok := e.Lookup(netip.MustParseAddr("100.64.1.9")); ok {
			t.Fatal("the old address (someone else's now) is still enforced")
		}
		if st := e.Stats(); st.Ambiguous != 1 || st.Excluded != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Quarantines survive a restart, and another process's changes are seen.
func TestPersistAndShare(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			c := &clock{t: time.Now()}
			db1 := storetest.Open(t, b.URL)
			e1 := newEngine(t, db1, DefaultPolicy(), c)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			go e1.Serve(cctx)
			var seen sync.Map
			e1.Watch(func(s *Snapshot) {
				for a := range s.ByAddr {
					seen.Store(a, true)
				}
			})
			// Another process (the command line) adds one.
			db2 := storetest.Open(t, b.URL)
			e2 := newEngine(t, db2, DefaultPolicy(), c)
			if _, err := e2.Add(ctx, AddressSubject(netip.MustParseAddr("10.3.0.1")), nil, "Blaster", "bob", "by hand"); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				if _, ok := seen.Load(netip.MustParseAddr("10.3.0.1")); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the serving engine never saw the quarantine the command line added")
				}
				time.Sleep(10 * time.Millisecond)
			}
			e1.Observe(strongTCP("10.3.0.2", c))
			for {
				if _, ok := e1.Lookup(netip.MustParseAddr("10.3.0.2")); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("an observed sighting was not acted on")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			db1.Close()
			// Restart: a new engine on a new connection has both.
			e3 := newEngine(t, storetest.Open(t, b.URL), DefaultPolicy(), c)
			for _, a := range []string{"10.3.0.1", "10.3.0.2"} {
				if _, ok := e3.Lookup(netip.MustParseAddr(a)); !ok {
					t.Fatalf("%s lost in the restart", a)
				}
			}
			rows, _ := e3.Audit(ctx, AddressSubject(netip.MustParseAddr("10.3.0.1")))
			if len(rows) != 1 || rows[0].Actor != "bob" || rows[0].Note != "by hand" {
				t.Fatalf("audit after restart: %+v", rows)
			}
		})
	}
}

func TestAutoRelease(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		c := &clock{t: time.Now()}
		p := DefaultPolicy()
		p.AutoRelease = time.Hour
		e := newEngine(t, db, p, c)
		e.consider(ctx, strongTCP("10.4.0.1", c))
		c.add(30 * time.Minute)
		e.consider(ctx, strongTCP("10.4.0.2", c))
		c.add(31 * time.Minute)
		if err := e.autoRelease(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Lookup(netip.MustParseAddr("10.4.0.1")); ok {
			t.Fatal("not released after the quiet period")
		}
		if _, ok := e.Lookup(netip.MustParseAddr("10.4.0.2")); !ok {
			t.Fatal("released before its quiet period")
		}
		if e.Stats().Releases[ReleaseAuto] != 1 {
			t.Fatal("auto release not counted")
		}
	})
}

func snapshot10k() *Snapshot {
	list := make([]Entry, 10000)
	for i := range list {
		list[i].Addresses = []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
	}
	return NewSnapshot(list)
}

func TestSnapshotLookup(t *testing.T) {
	s := snapshot10k()
	for i := range 10000 {
		if _, ok := s.Lookup(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})); !ok {
			t.Fatalf("address %d not found", i)
		}
	}
	if _, ok := s.Lookup(netip.MustParseAddr("::ffff:10.0.0.7")); !ok {
		t.Fatal("a mapped address not found")
	}
	fp := 0
	for i := range 100000 {
		if s.filter[addrHash(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}))/64%uint64(len(s.filter))]&(1<<(addrHash(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}))%64)) != 0 {
			fp++
		}
		if _, ok := s.Lookup(netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)})); ok {
			t.Fatal("a miss found")
		}
	}
	if fp > 3000 {
		t.Fatalf("%d of 100000 misses passed the filter", fp)
	}
	var empty *Snapshot
	if _, ok := empty.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
		t.Fatal("nil snapshot")
	}
}

func BenchmarkLookup10k(b *testing.B) {
	s := snapshot10k()
	miss := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Lookup(miss); ok {
			b.Fatal("hit")
		}
	}
}

func BenchmarkLookupMapOnly10k(b *testing.B) {
	s := snapshot10k()
	miss := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.ByAddr[miss]; ok {
			b.Fatal("hit")
		}
	}
}
