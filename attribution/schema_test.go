package attribution

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"wormsink/store"
	"wormsink/store/storetest"
)

// TestOpenSessionIndex: the sessions' NAS index holds only open sessions
// (a Stop takes its row out of it), and Accounting-On/Off, the one look-up
// by NAS, uses it.
func TestOpenSessionIndex(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if _, err := New(ctx, Config{DB: db, Log: zerolog.Nop()}); err != nil {
			t.Fatal(err)
		}
		if db.Dialect() == store.Postgres {
			var def string
			if err := db.QueryRow(ctx, `SELECT indexdef FROM pg_indexes WHERE indexname = 'attribution_sessions_open'`).Scan(&def); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(def, "(nas)") || !strings.Contains(def, "WHERE (stop_ms = 0)") {
				t.Fatalf("attribution_sessions_open is %q, want (nas) WHERE (stop_ms = 0)", def)
			}
			return
		}
		rows, err := db.Query(ctx, `EXPLAIN QUERY PLAN UPDATE attribution_sessions SET stop_ms = ? WHERE nas = ? AND stop_ms = 0 AND start_ms <= ?`, 1, "192.0.2.1", 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if p := strings.Join(plan, "; "); !strings.Contains(p, "USING INDEX attribution_sessions_open") {
			t.Fatalf("Accounting-On/Off plan %q does not use attribution_sessions_open", p)
		}
	})
}
