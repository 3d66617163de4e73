package attribution

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"wormsink/internal/testutil"
	"wormsink/store/storetest"
)

// TestSensorsShareStore: two Attributors on one database, each with its
// own connections as two sensors have, see each other's writes within two
// looks: a RADIUS Start into A is attributed by B, a NAT binding B ingests
// resolves on A, and A's Stop ends the session on B. Each reads only the
// rows the other changed, never its own and never everything again.
func TestSensorsShareStore(t *testing.T) {
	for _, be := range storetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			const poll = 200 * time.Millisecond
			// Rows stored before either starts are loaded, not polled.
			pre, stopPre := newAttributor(t, storetest.Open(t, be.URL), Config{Poll: poll})
			if err := pre.Account(context.Background(), acct(AcctStart, "192.0.2.9", "old", "olga", "100.64.1.1", time.Now().Add(-time.Minute))); err != nil {
				t.Fatal(err)
			}
			stopPre()
			a, stopA := newAttributor(t, storetest.Open(t, be.URL), Config{Poll: poll})
			defer stopA()
			b, stopB := newAttributor(t, storetest.Open(t, be.URL), Config{Poll: poll})
			defer stopB()

			_, pc, stopRADIUS := startRADIUS(t, a, "s3cret")
			defer stopRADIUS()
			send := func(status rfc2866.AcctStatusType) {
				t.Helper()
				p := radius.New(radius.CodeAccountingRequest, []byte("s3cret"))
				rfc2865.UserName_SetString(p, "alice")
				rfc2866.AcctSessionID_SetString(p, "s-alice")
				rfc2866.AcctStatusType_Set(p, status)
				rfc2865.NASIPAddress_Set(p, net.IPv4(192, 0, 2, 1))
				rfc2865.FramedIPAddress_Set(p, net.IPv4(100, 64, 7, 7))
				rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer rcancel()
				resp, err := radius.Exchange(rctx, p, pc.LocalAddr().String())
				if err != nil || resp.Code != radius.CodeAccountingResponse {
					t.Fatalf("accounting %v: %v %v", status, resp, err)
				}
			}
			// withinTwoLooks waits for cond and checks that x made at most two
			// looks since the write was answered (the first may have begun
			// just before the commit, the second cannot have), plus one for
			// the test's own delay in seeing it on a loaded machine: a bound
			// counted in looks, not in seconds.
			withinTwoLooks := func(x *Attributor, what string, cond func() bool) {
				t.Helper()
				looks := x.Stats().Polls
				deadline := time.Now().Add(60 * time.Second)
				for !cond() {
					if time.Now().After(deadline) {
						t.Fatalf("waited 60s for %s", what)
					}
					time.Sleep(2 * time.Millisecond) // polling the condition, far more often than the looks
				}
				if n := x.Stats().Polls - looks; n > 3 {
					t.Errorf("%s after %d looks, want at most 2 (3 with the test's delay)", what, n)
				}
			}
			alice := mustAddr("100.64.7.7")

			if got := b.Lookup(mustAddr("100.64.1.1"), 0, time.Now()); got.Subscriber != "olga" {
				t.Fatalf("B did not load what was stored before it started: %+v", got)
			}
			send(rfc2866.AcctStatusType_Value_Start)
			var seenAt time.Time
			withinTwoLooks(b, "A's Start attributed by B", func() bool {
				seenAt = time.Now()
				return b.Lookup(alice, 0, seenAt).Subscriber == "alice"
			})
			if st := b.Stats(); st.Polled != 1 || st.PollErrors != 0 {
				t.Errorf("B read %d rows (%d failed looks) for one Start, want 1", st.Polled, st.PollErrors)
			}

			// A NAT binding ingested by B resolves on A to A's session.
			start := time.Now().Add(-time.Second)
			nat := NATEvent{Kind: NATOpen, At: start, Binding: Binding{Public: mustAddr("203.0.113.5"), PortLo: 40000, PortHi: 40000,
				Inside: alice, InsidePort: 51000, Start: start, Last: start, Source: FormatULOGD}}
			if err := b.NAT(context.Background(), nat); err != nil {
				t.Fatal(err)
			}
			if err := b.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			withinTwoLooks(a, "B's NAT binding resolved by A", func() bool {
				r := a.Lookup(mustAddr("203.0.113.5"), 40000, time.Now())
				return r.Subscriber == "alice" && r.Inside.Port() == 51000
			})
			if st := a.Stats(); st.Polled != 1 {
				t.Errorf("A read %d rows for one binding, want 1 (its own rows are never read back)", st.Polled)
			}

			// A's Stop ends the session on B too.
			send(rfc2866.AcctStatusType_Value_Stop)
			after := time.Now().Add(time.Second)
			withinTwoLooks(b, "A's Stop seen by B", func() bool { return b.Lookup(alice, 0, after).Subscriber == "" })
			if got := b.Lookup(alice, 0, seenAt); got.Subscriber != "alice" {
				t.Errorf("before the Stop: %+v", got)
			}
			if st := b.Stats(); st.Polled != 2 {
				t.Errorf("B read %d rows for a Start and a Stop, want 2", st.Polled)
			}
		})
	}
}

// TestSharedStoreRetention: when another sensor deleted the expired rows
// first, this one's index still drops them at its next prune.
func TestSharedStoreRetention(t *testing.T) {
	for _, be := range storetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			var now atomic.Int64
			now.Store(t0.Add(time.Hour).UnixMilli())
			clock := func() time.Time { return time.UnixMilli(now.Load()) }
			cfg := Config{Poll: 20 * time.Millisecond, PruneInterval: 20 * time.Millisecond, Retention: 24 * time.Hour, Now: clock}
			a, stopA := newAttributor(t, storetest.Open(t, be.URL), cfg)
			defer stopA()
			b, stopB := newAttributor(t, storetest.Open(t, be.URL), cfg)
			defer stopB()
			ev := acct(AcctStart, "192.0.2.1", "s1", "alice", "100.64.3.3", t0)
			if err := a.Account(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			ev.Status, ev.At = AcctStop, t0.Add(time.Minute)
			if err := a.Account(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "B holds A's session and its Stop", func() bool {
				n, _ := b.Index().Len()
				return n == 1 && b.Lookup(mustAddr("100.64.3.3"), 0, t0.Add(2*time.Minute)).Subscriber == ""
			})
			// Past the retention: whichever prunes first deletes the rows, and
			// both indexes drop the session.
			now.Store(t0.Add(48 * time.Hour).UnixMilli())
			waitFor(t, "both indexes dropped the expired session", func() bool {
				na, _ := a.Index().Len()
				nb, _ := b.Index().Len()
				return na == 0 && nb == 0
			})
		})
	}
}

// waitFor polls cond until it holds, failing after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPolledStartTellsOnStart: a Start another sensor took in reaches this
// sensor's OnStart once a poll reads it, so that a quarantine follows the
// subscriber here too; a session already stopped when read and an old
// Start (an import) do not, and neither is told twice.
func TestPolledStartTellsOnStart(t *testing.T) {
	for _, be := range storetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			type call struct {
				sub  string
				addr netip.Addr
			}
			var mu sync.Mutex
			var calls []call
			const poll = 100 * time.Millisecond
			a, stopA := newAttributor(t, storetest.Open(t, be.URL), Config{Poll: poll})
			defer stopA()
			now := time.Now()
			b, stopB := newAttributor(t, storetest.Open(t, be.URL), Config{Poll: poll, Now: time.Now,
				OnStart: func(sub string, addrs []netip.Addr) {
					mu.Lock()
					defer mu.Unlock()
					for _, ad := range addrs {
						calls = append(calls, call{sub, ad})
					}
				}})
			defer stopB()
			stopped := acct(AcctStop, "192.0.2.1", "s-bob", "bob", "100.64.8.9", now)
			stopped.SessionTime = time.Minute // its Start was lost: one record, already stopped
			for _, ev := range []AcctEvent{
				acct(AcctStart, "192.0.2.1", "s-alice", "alice", "100.64.8.8", now),
				stopped,
				acct(AcctStart, "192.0.2.1", "s-olga", "olga", "100.64.8.10", now.Add(-2*DefaultSessionTimeout)),
			} {
				if err := a.Account(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			testutil.WaitFor(t, 20*time.Second, "B reads the three sessions", func() bool { return b.Stats().Polled >= 3 })
			// One more look: what the one that read them tells OnStart is told.
			looks := b.Stats().Polls
			testutil.WaitFor(t, 20*time.Second, "B looks again", func() bool { return b.Stats().Polls > looks+1 })
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != 1 || calls[0] != (call{"alice", mustAddr("100.64.8.8")}) {
				t.Errorf("OnStart calls %v, want alice on 100.64.8.8 once", calls)
			}
			if got := b.Lookup(mustAddr("100.64.8.8"), 0, now.Add(time.Second)); got.Subscriber != "alice" {
				t.Errorf("B attributes %+v", got)
			}
		})
	}
}
