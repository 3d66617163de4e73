package attribution

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"wormsink/store"
	"wormsink/store/storetest"
)

// storedSession reads a session's row back from the store.
func storedSession(t *testing.T, db *store.DB, id string) (last, stop time.Duration, framed, framedV6 string) {
	t.Helper()
	var l, s int64
	if err := db.QueryRow(context.Background(), `SELECT last_ms, stop_ms, framed_ip, framed_ipv6_prefix FROM attribution_sessions WHERE session_id = ?`, id).
		Scan(&l, &s, &framed, &framedV6); err != nil {
		t.Fatalf("session %s: %v", id, err)
	}
	if s != 0 {
		stop = time.Duration(s-t0.UnixMilli()) * time.Millisecond
	}
	return time.Duration(l-t0.UnixMilli()) * time.Millisecond, stop, framed, framedV6
}

// TestInterimCoalesced: an Interim-Update that only moves the session's last
// time by less than a sixteenth of the session timeout is answered without a
// write; the index holds its time at once, the store once an update moves
// it further. A Stop is always written, and an Interim-Update of a session
// never started still makes one.
func TestInterimCoalesced(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const timeout = 16 * time.Hour // slack: an hour
		a, stop := newAttributor(t, db, Config{SessionTimeout: timeout})
		defer stop()
		account := func(ev AcctEvent) {
			t.Helper()
			if err := a.Account(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		account(acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.0.7", t0))
		account(acct(AcctInterim, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(10*time.Minute)))
		if last, _, _, _ := storedSession(t, db, "s1"); last != 0 {
			t.Errorf("stored last after an Interim-Update 10 min on: +%v, want +0 (not written)", last)
		}
		// The index has the Interim-Update's time: the session lasts the
		// timeout after it, not after the Start.
		if got := a.Lookup(mustAddr("100.64.0.7"), 0, t0.Add(timeout+5*time.Minute)); got.Subscriber != "alice" {
			t.Errorf("at timeout+5m: %q, want alice (the index's last time is the Interim-Update's)", got.Subscriber)
		}
		account(acct(AcctInterim, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(70*time.Minute)))
		if last, _, _, _ := storedSession(t, db, "s1"); last != 70*time.Minute {
			t.Errorf("stored last after an Interim-Update 70 min on: +%v, want +1h10m", last)
		}
		account(acct(AcctStop, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(71*time.Minute)))
		if last, stopped, _, _ := storedSession(t, db, "s1"); stopped != 71*time.Minute || last != 71*time.Minute {
			t.Errorf("stored after the Stop: last +%v, stop +%v, want both +1h11m", last, stopped)
		}
		if got := a.Lookup(mustAddr("100.64.0.7"), 0, t0.Add(72*time.Minute)); got.Subscriber != "" {
			t.Errorf("after the Stop: %q, want nobody", got.Subscriber)
		}
		// An Interim-Update whose Start never came makes the session.
		lost := acct(AcctInterim, "192.0.2.1", "s2", "bob", "100.64.0.8", t0.Add(30*time.Minute))
		lost.SessionTime = 20 * time.Minute
		account(lost)
		if last, _, framed, _ := storedSession(t, db, "s2"); last != 30*time.Minute || framed != "100.64.0.8" {
			t.Errorf("session of a lost Start: last +%v, framed %q, want +30m and 100.64.0.8", last, framed)
		}
		if got := a.Lookup(mustAddr("100.64.0.8"), 0, t0.Add(15*time.Minute)); got.Subscriber != "bob" {
			t.Errorf("session of a lost Start, 10 min after it began: %q, want bob", got.Subscriber)
		}
	})
}

// TestUpdateFillsAddress: an Interim-Update or a Stop bringing an address
// the session's Start lacked is written however little it moves the time,
// and the address is stored and attributed.
func TestUpdateFillsAddress(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, stop := newAttributor(t, db, Config{SessionTimeout: 16 * time.Hour})
		defer stop()
		for _, ev := range []AcctEvent{
			acct(AcctStart, "192.0.2.1", "s1", "carol", "", t0),
			acct(AcctInterim, "192.0.2.1", "s1", "carol", "100.64.0.9", t0.Add(time.Minute)),
		} {
			if err := a.Account(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if last, _, framed, _ := storedSession(t, db, "s1"); framed != "100.64.0.9" || last != time.Minute {
			t.Errorf("after the Interim-Update: framed %q, last +%v, want 100.64.0.9 and +1m", framed, last)
		}
		if got := a.Lookup(mustAddr("100.64.0.9"), 0, t0.Add(2*time.Minute)); got.Subscriber != "carol" {
			t.Errorf("framed address from the Interim-Update: %q, want carol", got.Subscriber)
		}
		v6 := acct(AcctStop, "192.0.2.1", "s1", "carol", "100.64.0.9", t0.Add(3*time.Minute))
		v6.Session.FramedV6 = netip.MustParsePrefix("2001:db8:9::/64")
		if err := a.Account(ctx, v6); err != nil {
			t.Fatal(err)
		}
		if _, stopped, framed, framedV6 := storedSession(t, db, "s1"); stopped != 3*time.Minute || framed != "100.64.0.9" || framedV6 != "2001:db8:9::/64" {
			t.Errorf("after the Stop: stop +%v, framed %q %q, want +3m, 100.64.0.9, 2001:db8:9::/64", stopped, framed, framedV6)
		}
		if got := a.Lookup(mustAddr("2001:db8:9::1"), 0, t0.Add(2*time.Minute)); got.Subscriber != "carol" {
			t.Errorf("IPv6 prefix from the Stop: %q, want carol", got.Subscriber)
		}
	})
}

// TestStartRetransmittedAfterStop: a Start sent again after its session
// was stopped (a NAS that missed the answer) changes nothing: the row keeps
// its Stop, and so does the index, in this process and after a restart; a
// batch holding it and new Starts stores those too.
func TestStartRetransmittedAfterStop(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, stop := newAttributor(t, db, Config{})
		start := acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.0.7", t0)
		for _, ev := range []AcctEvent{start, acct(AcctStop, "192.0.2.1", "s1", "alice", "100.64.0.7", t0.Add(10*time.Minute))} {
			if err := a.Account(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		// The retransmission shares a batch with two new Starts.
		c, err := a.AccountBatch(ctx, []AcctEvent{
			acct(AcctStart, "192.0.2.1", "s2", "bob", "100.64.0.8", t0.Add(11*time.Minute)),
			start,
			acct(AcctStart, "192.0.2.1", "s3", "carol", "100.64.0.9", t0.Add(11*time.Minute)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		check := func(a *Attributor, when string) {
			t.Helper()
			checkSubscribers(t, a, when, []subscriberAt{
				{"100.64.0.7", 5 * time.Minute, "alice"},
				{"100.64.0.7", 20 * time.Minute, ""},
				{"100.64.0.8", 20 * time.Minute, "bob"},
				{"100.64.0.9", 20 * time.Minute, "carol"},
			})
		}
		check(a, "after the retransmission")
		if _, stopped, _, _ := storedSession(t, db, "s1"); stopped != 10*time.Minute {
			t.Errorf("stored stop after the retransmission: +%v, want +10m", stopped)
		}
		stop()
		a, stop = newAttributor(t, db, Config{})
		defer stop()
		check(a, "after a restart")
	})
}
