package desk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"wormsink/quarantine"
	"wormsink/store"
	"wormsink/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// evLine is an evidence line as the writer makes it.
func evLine(at time.Time, host, family, strength, proof, sensor, subscriber string) []byte {
	sub := ""
	if subscriber != "" {
		sub = fmt.Sprintf(`"subscriber":%q,`, subscriber)
	}
	return fmt.Appendf(nil, `{"time":%q,"event":"dns_sinkhole","host":%q,"port":40000,%s"signature":"sig-%s","family":%q,"evidence":%q,"proof":%q,"count":1,"sensor":%q}`,
		at.UTC().Format("2006-01-02T15:04:05.000Z"), host, sub, family, family, strength, proof, sensor)
}

func openStore(t *testing.T, db *store.DB) *Store {
	t.Helper()
	s, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIngestStoresEachLineOnceAndFoldsCases(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := openStore(t, db)
		t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		batch := []Line{
			{"s1", "log-a", 0, evLine(t0, "10.0.0.1", "blaster", "strong", "tcp", "s1", "")},
			{"s1", "log-a", 200, evLine(t0.Add(time.Minute), "10.0.0.1", "sasser", "weak", "datagram", "s1", "")},
			{"s1", "log-a", 400, evLine(t0, "10.0.0.2", "blaster", "strong", "datagram", "s1", "cust-7")},
			{"s1", "log-a", 600, evLine(t0.Add(time.Hour), "10.0.0.3", "blaster", "strong", "exchange", "s1", "cust-7")},
			{"s1", "log-a", 800, []byte(`{"time":"2026-12-01T10:00:00.000Z","event":"start","level":"info"}`)},
			{"s1", "log-a", 900, []byte(`not json`)},
		}
		res, err := s.Ingest(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != 4 || res.Duplicate != 0 || res.Skipped != 1 || res.Malformed != 1 {
			t.Fatalf("first batch: %+v", res)
		}
		// The same batch again (a shipper whose answer was lost) and one
		// more line from another sensor at the same offset.
		res, err = s.Ingest(ctx, append(batch, Line{"s2", "log-a", 0, evLine(t0, "10.0.0.1", "blaster", "strong", "tcp", "s2", "")}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != 1 || res.Duplicate != 4 {
			t.Fatalf("second batch: %+v", res)
		}
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Lines != 5 || st.Cases != 2 || st.Open != 2 || st.ByState[StateNew] != 2 {
			t.Fatalf("stats: %+v", st)
		}
		cs, err := s.List(ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 2 {
			t.Fatalf("cases: %+v", cs)
		}
		byS := map[string]Case{}
		for _, c := range cs {
			byS[c.Subject] = c
		}
		a := byS["address:10.0.0.1"]
		if a.Lines != 3 || a.Evidence != "strong" || a.Proof != "tcp" || fmt.Sprint(a.Families) != "[blaster sasser]" || fmt.Sprint(a.Sensors) != "[s1 s2]" {
			t.Errorf("address case: %+v", a)
		}
		c := byS["subscriber:cust-7"]
		if c.Lines != 2 || c.Proof != "exchange" || fmt.Sprint(c.Addresses) != "[10.0.0.2 10.0.0.3]" || !c.FirstSeen.Equal(t0) || !c.LastSeen.Equal(t0.Add(time.Hour)) {
			t.Errorf("subscriber case: %+v", c)
		}
		// Filters and search.
		for _, tc := range []struct {
			f    Filter
			want int
		}{
			{Filter{Family: "sasser"}, 1},
			{Filter{Family: "blaster"}, 2},
			{Filter{Family: "blast"}, 0},
			{Filter{Proof: "exchange"}, 2},
			{Filter{Proof: "tcp"}, 1},
			{Filter{Sensor: "s2"}, 1},
			{Filter{State: "open"}, 2},
			{Filter{State: StateClosed}, 0},
			{Filter{Q: "cust-7"}, 1},
			{Filter{Q: "10.0.0.3"}, 1},
			{Filter{Q: "10.0.0.1"}, 1},
			{Filter{Q: a.Ticket}, 1},
			{Filter{Since: t0.Add(30 * time.Minute)}, 1},
			{Filter{Until: t0}, 0},
		} {
			got, err := s.List(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("filter %+v: %d cases, want %d", tc.f, len(got), tc.want)
			}
		}
		ev, err := s.Evidence(ctx, c.ID, 10)
		if err != nil || len(ev) != 2 {
			t.Fatalf("evidence: %v %+v", err, ev)
		}
	})
}

func TestCaseLifecycleThroughTheQuarantineEngine(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := openStore(t, db)
		eng, err := quarantine.New(ctx, quarantine.Config{DB: db})
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now().Add(-time.Hour).UTC()
		if _, err := s.Ingest(ctx, []Line{
			{"s1", "l", 0, evLine(t0, "10.0.0.9", "blaster", "strong", "tcp", "s1", "")},
			{"s1", "l", 100, evLine(t0, "10.0.0.8", "blaster", "strong", "datagram", "s1", "")},
		}); err != nil {
			t.Fatal(err)
		}
		cs, _ := s.List(ctx, Filter{Q: "10.0.0.9"})
		forged, _ := s.List(ctx, Filter{Q: "10.0.0.8"})
		id, fid := cs[0].ID, forged[0].ID
		if _, err := s.Act(ctx, eng, fid, ActQuarantine, "alice", "x"); !errors.Is(err, ErrForgeable) {
			t.Fatalf("quarantine of forgeable evidence: %v", err)
		}
		if _, err := s.Act(ctx, eng, id, ActRelease, "alice", ""); !errors.Is(err, ErrTransition) {
			t.Fatalf("release of a new case: %v", err)
		}
		tr, err := s.Act(ctx, eng, id, ActQuarantine, "alice", "worm on port 135")
		if err != nil {
			t.Fatal(err)
		}
		if tr.From != StateNew || tr.To != StateQuarantined {
			t.Fatalf("transition %+v", tr)
		}
		if _, ok := eng.Lookup(netip.MustParseAddr("10.0.0.9")); !ok {
			t.Fatal("the engine does not enforce the quarantine")
		}
		if _, err := s.Act(ctx, eng, id, ActClose, "alice", ""); !errors.Is(err, ErrTransition) {
			t.Fatalf("close of a quarantined case: %v", err)
		}
		if _, err := s.Act(ctx, eng, id, ActRelease, "bob", "cleaned"); err != nil {
			t.Fatal(err)
		}
		if _, ok := eng.Lookup(netip.MustParseAddr("10.0.0.9")); ok {
			t.Fatal("still enforced after release")
		}
		if _, err := s.Act(ctx, eng, id, ActClose, "bob", "done"); err != nil {
			t.Fatal(err)
		}
		// A weak sighting does not reopen; a strong, unforgeable one does.
		s.Ingest(ctx, []Line{{"s1", "l", 200, evLine(time.Now(), "10.0.0.9", "blaster", "weak", "tcp", "s1", "")}})
		if c, _ := s.Get(ctx, id); c.State != StateClosed {
			t.Fatalf("weak sighting: state %s", c.State)
		}
		s.Ingest(ctx, []Line{{"s1", "l", 300, evLine(time.Now().Add(time.Second), "10.0.0.9", "blaster", "strong", "datagram", "s1", "")}})
		if c, _ := s.Get(ctx, id); c.State != StateClosed {
			t.Fatalf("forgeable sighting: state %s", c.State)
		}
		s.Ingest(ctx, []Line{{"s1", "l", 400, evLine(time.Now().Add(time.Second), "10.0.0.9", "blaster", "strong", "tcp", "s1", "")}})
		if c, _ := s.Get(ctx, id); c.State != StateNew {
			t.Fatalf("strong sighting after close: state %s", c.State)
		}
		audit, err := s.Audit(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range audit {
			got = append(got, a.Actor+":"+a.Action)
		}
		if fmt.Sprint(got) != "[desk:open alice:quarantine bob:release bob:close desk:reopen]" {
			t.Fatalf("audit: %v", got)
		}
	})
}

func TestAccounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := openStore(t, db)
		if err := s.AddUser(ctx, "alice", RoleAdmin, "short"); err == nil {
			t.Fatal("a short password was taken")
		}
		if err := s.AddUser(ctx, "al ice", RoleAdmin, "long enough pw"); err == nil {
			t.Fatal("a name with a space was taken")
		}
		if err := s.AddUser(ctx, "alice", RoleAdmin, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Login(ctx, "alice", "wrong password!"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("wrong password: %v", err)
		}
		if _, err := s.Login(ctx, "mallory", "correct horse battery"); !errors.Is(err, ErrBadLogin) {
			t.Fatalf("unknown user: %v", err)
		}
		u, err := s.Login(ctx, "alice", "correct horse battery")
		if err != nil || u.Role != RoleAdmin {
			t.Fatalf("login: %v %+v", err, u)
		}
		id, sess, err := s.NewSession(ctx, u, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Session(ctx, id)
		if err != nil || got.User.Name != "alice" || got.CSRF != sess.CSRF {
			t.Fatalf("session: %v %+v", err, got)
		}
		var stored int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM desk_sessions WHERE id = ?", id).Scan(&stored)
		if stored != 0 {
			t.Fatal("the session id is stored in the clear")
		}
		expired, _, _ := s.NewSession(ctx, u, -time.Second)
		if _, err := s.Session(ctx, expired); !errors.Is(err, ErrNotFound) {
			t.Fatalf("expired session: %v", err)
		}
		if err := s.EndSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Session(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ended session: %v", err)
		}
		tok, err := s.AddToken(ctx, "sensor-1", RoleAnalyst)
		if err != nil {
			t.Fatal(err)
		}
		db.QueryRow(ctx, "SELECT COUNT(*) FROM desk_tokens WHERE hash = ?", tok).Scan(&stored)
		if stored != 0 {
			t.Fatal("the token is stored in the clear")
		}
		if u, err := s.Token(ctx, tok); err != nil || u.Name != "sensor-1" || u.Role != RoleAnalyst {
			t.Fatalf("token: %v %+v", err, u)
		}
		if _, err := s.Token(ctx, tok+"x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("wrong token: %v", err)
		}
	})
}

// TestIngestFoldsLargeBatches: batches larger than one statement's chunk
// (cases, evidence lines), half of the second batch sent before, fold every
// stored line into its case once, and the ticket numbers have no gaps (an
// insert that meets an existing case would take a number and lose it).
func TestIngestFoldsLargeBatches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		s := openStore(t, db)
		t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		const hosts = 1200
		batch := func(from, n int) []Line {
			var ls []Line
			for i := from; i < from+n; i++ {
				h := i % hosts
				host := fmt.Sprintf("10.1.%d.%d", h/250, h%250+1)
				ls = append(ls, Line{"s1", "log", int64(i) * 300, evLine(t0.Add(time.Duration(i)*time.Second), host, "blaster", "strong", "tcp", "s1", "")})
			}
			return ls
		}
		res, err := s.Ingest(ctx, batch(0, 2500))
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != 2500 || res.Duplicate != 0 {
			t.Fatalf("first batch: %+v", res)
		}
		res, err = s.Ingest(ctx, batch(1250, 2500)) // 1,250 lines again, 1,250 new
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != 1250 || res.Duplicate != 1250 {
			t.Fatalf("second batch: %+v", res)
		}
		var cases, maxID, lines, evidence, opens, mismatched int64
		if err := db.QueryRow(ctx, "SELECT COUNT(*), MAX(id), SUM(lines) FROM desk_cases").Scan(&cases, &maxID, &lines); err != nil {
			t.Fatal(err)
		}
		db.QueryRow(ctx, "SELECT COUNT(*) FROM desk_evidence").Scan(&evidence)
		db.QueryRow(ctx, "SELECT COUNT(*) FROM desk_audit WHERE action = 'open'").Scan(&opens)
		db.QueryRow(ctx, `SELECT COUNT(*) FROM desk_cases c WHERE c.lines <> (SELECT COUNT(*) FROM desk_evidence e WHERE e.case_id = c.id)
OR c.sightings <> c.lines`).Scan(&mismatched)
		if cases != hosts || maxID != hosts || lines != 3750 || evidence != 3750 || opens != hosts || mismatched != 0 {
			t.Fatalf("%d cases (highest id %d, want %d without gaps), %d lines counted of %d stored, %d opened, %d cases disagree with their evidence",
				cases, maxID, hosts, lines, evidence, opens, mismatched)
		}
		c, err := s.Get(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		// Host 0's lines: 0, 1200, 2400 in the first batch, 3600 in the second.
		if c.Lines != 4 || !c.FirstSeen.Equal(t0) || !c.LastSeen.Equal(t0.Add(3600*time.Second)) || fmt.Sprint(c.Addresses) != "[10.1.0.1]" {
			t.Fatalf("case 1: %+v", c)
		}
		// A new host's case takes the next ticket number.
		if _, err := s.Ingest(ctx, []Line{{"s1", "log", 1 << 30, evLine(t0, "192.0.2.99", "blaster", "strong", "tcp", "s1", "")}}); err != nil {
			t.Fatal(err)
		}
		if cs, err := s.List(ctx, Filter{Q: "192.0.2.99"}); err != nil || len(cs) != 1 || cs[0].ID != hosts+1 {
			t.Fatalf("the next case: %v %+v, want ticket %s", err, cs, Ticket(hosts+1))
		}
	})
}
