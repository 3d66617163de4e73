package desk

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"wormsink/evidence"
	"wormsink/store"
	"wormsink/store/storetest"
)

// The size BenchmarkPages seeds: make perf-desk-pages sets 10 M sightings
// and 100,000 cases; the defaults keep make bench short.
var (
	pagesSightings = flag.Int("desk-pages.sightings", 200_000, "evidence lines BenchmarkPages seeds")
	pagesCases     = flag.Int("desk-pages.cases", 20_000, "cases BenchmarkPages seeds")
	pagesDB        = flag.String("desk-pages.db", "sqlite,postgres", "the backends BenchmarkPages runs on")
)

// seedSubject is case i's subject (ids count from 1 in a fresh database):
// even cases are subscribers, odd ones addresses.
func seedSubject(i int) string {
	if i%2 == 0 {
		return fmt.Sprintf("subscriber:cust-%d", i)
	}
	return "address:" + seedAddr(i)
}

func seedAddr(i int) string { return fmt.Sprintf("10.%d.%d.%d", i/62500%250, i/250%250, i%250+1) }

// seedCaseOf spreads the lines over the cases the way sightings arrive:
// interleaved in time, one case in a hundred lines being case 1 (a heavy
// case: a tenth of a million lines at 10 M) and the rest spread evenly.
func seedCaseOf(j, cases int) int {
	if j%100 == 0 {
		return 1
	}
	return 2 + (j*7919)%(cases-1)
}

var seedFamilies = []string{"blaster", "sasser", "conficker", "slammer"}

// seedDesk bulk-loads cases and evidence lines straight into the desk's
// tables (as Ingest would leave them, but far faster: COPY on PostgreSQL,
// large transactions of one prepared insert on SQLite), for measuring the
// pages at a size ingest would take hours to reach.
func seedDesk(ctx context.Context, db *store.DB, cases, sightings int) error {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	span := int64(30 * 24 * time.Hour / time.Millisecond) // a month of sightings
	atOf := func(j int) int64 { return t0 + int64(j)*span/int64(max(sightings, 1)) }
	caseRow := func(i int) []any {
		fam := seedFamilies[i%len(seedFamilies)]
		proof := evidence.ProofTCP
		if i%7 == 0 {
			proof = evidence.ProofDatagram
		}
		strong := i%3 != 0
		st := 0
		if strong {
			st = 1
		}
		addrs := seedAddr(i)
		if i%2 == 0 {
			addrs = joinSet([]string{seedAddr(i), seedAddr(i + cases)})
		}
		lines := int64(sightings / cases)
		// Last seen in the seeded month, many cases at the same
		// second, as a busy day has them.
		last := t0 + span - int64(i%5000)*1000
		return []any{seedSubject(i), States[i%len(States)], t0, last, fam, st, int(proof), addrs,
			"s" + fmt.Sprint(i%20), lines, lines, rankOf(strong, proof), t0, t0}
	}
	caseCols := []string{"subject", "state", "first_seen", "last_seen", "families", "strong", "proof", "addresses", "sensors", "sightings", "lines", "rank", "created_at", "updated_at"}
	evCols := []string{"sensor", "log", "off", "case_id", "at", "line"}
	evRow := func(j int) []any {
		c := seedCaseOf(j, cases)
		at := atOf(j)
		sensor := "s" + fmt.Sprint(j%20)
		line := fmt.Sprintf(`{"time":%q,"event":"dns_sinkhole","host":%q,"port":%d,"signature":"sig-%s","family":%q,"evidence":"strong","proof":"tcp","count":1,"sensor":%q}`,
			time.UnixMilli(at).UTC().Format("2006-01-02T15:04:05.000Z"), seedAddr(c), 1024+j%60000, seedFamilies[c%4], seedFamilies[c%4], sensor)
		return []any{sensor, "seed", int64(j) * 256, int64(c), at, line}
	}
	addrRows := func(yield func([]any) bool) {
		for i := 1; i <= cases; i++ {
			if !yield([]any{seedAddr(i), int64(i)}) {
				return
			}
			if i%2 == 0 && !yield([]any{seedAddr(i + cases), int64(i)}) {
				return
			}
		}
	}
	// The index by case is built after the load, from sorted rows, not
	// row by row in the lines' order (the same index in the end).
	if _, err := db.Exec(ctx, "DROP INDEX desk_evidence_case"); err != nil {
		return err
	}
	reindex := func() error {
		_, err := db.Exec(ctx, "CREATE INDEX desk_evidence_case ON desk_evidence (case_id, at, id)")
		return err
	}
	if db.Dialect() == store.Postgres {
		conn, err := db.SQL().Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		return conn.Raw(func(dc any) error {
			pc := dc.(*stdlib.Conn).Conn()
			copyRows := func(table string, cols []string, n int, row func(int) []any) error {
				i := 0
				_, err := pc.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
					if i >= n {
						return nil, nil
					}
					i++
					return row(i), nil
				}))
				return err
			}
			if err := copyRows("desk_cases", caseCols, cases, caseRow); err != nil {
				return fmt.Errorf("copy cases: %w", err)
			}
			var addrs [][]any
			addrRows(func(r []any) bool { addrs = append(addrs, r); return true })
			if _, err := pc.CopyFrom(ctx, pgx.Identifier{"desk_case_addresses"}, []string{"address", "case_id"}, pgx.CopyFromRows(addrs)); err != nil {
				return fmt.Errorf("copy addresses: %w", err)
			}
			if err := copyRows("desk_evidence", evCols, sightings, func(i int) []any { return evRow(i - 1) }); err != nil {
				return fmt.Errorf("copy evidence: %w", err)
			}
			if _, err := pc.Exec(ctx, "CREATE INDEX desk_evidence_case ON desk_evidence (case_id, at, id)"); err != nil {
				return err
			}
			// As autovacuum would soon after such a load.
			_, err := pc.Exec(ctx, "ANALYZE")
			return err
		})
	}
	// SQLite: one prepared insert, 200,000 rows a transaction.
	insert := func(table string, cols []string, n int, row func(int) []any) error {
		q := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
		for from := 0; from < n; from += 200_000 {
			err := func() error {
				tx, err := db.SQL().BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				// A big page cache for the load: the indexes are written
				// out of order.
				if _, err := tx.ExecContext(ctx, "PRAGMA cache_size = -262144"); err != nil {
					return err
				}
				st, err := tx.PrepareContext(ctx, q)
				if err != nil {
					return err
				}
				for i := from; i < min(n, from+200_000); i++ {
					if _, err := st.ExecContext(ctx, row(i)...); err != nil {
						return err
					}
				}
				return tx.Commit()
			}()
			if err != nil {
				return fmt.Errorf("seed %s: %w", table, err)
			}
		}
		return nil
	}
	if err := insert("desk_cases", caseCols, cases, func(i int) []any { return caseRow(i + 1) }); err != nil {
		return err
	}
	var addrs [][]any
	addrRows(func(r []any) bool { addrs = append(addrs, r); return true })
	if err := insert("desk_case_addresses", []string{"address", "case_id"}, len(addrs), func(i int) []any { return addrs[i] }); err != nil {
		return err
	}
	if err := insert("desk_evidence", evCols, sightings, evRow); err != nil {
		return err
	}
	return reindex()
}

// BenchmarkPages measures the server time of the pages an analyst works
// from (the handlers through httptest, a logged-in session, no network)
// on a desk seeded with -desk-pages.cases cases and -desk-pages.sightings
// evidence lines, on SQLite and PostgreSQL: the first page of the list,
// the page of a typical case and of the heaviest one (a hundredth of all
// lines), and a search by subscriber and by address.
func BenchmarkPages(b *testing.B) {
	for _, be := range storetest.Backends(b) {
		if !strings.Contains(*pagesDB, be.Name) {
			continue
		}
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			db := storetest.Open(b, be.URL)
			st, err := Open(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			cases, sightings := *pagesCases, *pagesSightings
			start := time.Now()
			if err := seedDesk(ctx, db, cases, sightings); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: seeded %d cases and %d evidence lines in %s", be.Name, cases, sightings, time.Since(start).Round(time.Second))
			srv, err := New(Config{Store: st, Addr: "127.0.0.1:0"})
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			if err := st.AddUser(ctx, "bob", RoleAnalyst, testPassword); err != nil {
				b.Fatal(err)
			}
			u, err := st.Login(ctx, "bob", testPassword)
			if err != nil {
				b.Fatal(err)
			}
			sid, _, err := st.NewSession(ctx, u, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			tok, err := st.AddToken(ctx, "bench", RoleAnalyst)
			if err != nil {
				b.Fatal(err)
			}
			typical := cases / 2 // even: a subscriber
			for _, p := range []struct{ name, path, want string }{
				{"list", "/", "WS-0"},
				{"case", fmt.Sprintf("/cases/%d", typical), Ticket(int64(typical))},
				{"case-heaviest", "/cases/1", Ticket(1)},
				{"search-subscriber", fmt.Sprintf("/?q=cust-%d", typical), Ticket(int64(typical))},
				{"search-address", "/?q=" + seedAddr(typical+cases), Ticket(int64(typical))},
				{"api-list", "/api/v1/cases", "WS-0"},
				{"stats", "/stats", "</html>"},
			} {
				b.Run(p.name, func(b *testing.B) {
					get := func() {
						req := httptest.NewRequest("GET", p.path, nil)
						if strings.HasPrefix(p.path, "/api/") {
							req.Header.Set("Authorization", "Bearer "+tok)
						} else {
							req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
						}
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, req)
						if rec.Code != 200 || !strings.Contains(rec.Body.String(), p.want) {
							b.Fatalf("GET %s: %d, want 200 with %s", p.path, rec.Code, p.want)
						}
					}
					get() // warm the caches once, as a desk in use has them
					b.ReportAllocs()
					b.ResetTimer()
					var worst time.Duration
					for i := 0; i < b.N; i++ {
						t := time.Now()
						get()
						worst = max(worst, time.Since(t))
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
					b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
				})
			}
		})
	}
}
