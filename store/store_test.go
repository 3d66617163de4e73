package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"wormsink/store"
	"wormsink/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var counterV1 = []store.Migration{
	{Version: 1, SQLite: `CREATE TABLE counter (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
		CREATE TABLE blobs (id INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB NOT NULL)`,
		Postgres: `CREATE TABLE counter (name TEXT PRIMARY KEY, n BIGINT NOT NULL);
		CREATE TABLE blobs (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, b BYTEA NOT NULL)`},
}

var counterV2 = append(counterV1[:1:1], store.Migration{Version: 2, SQLite: `ALTER TABLE counter ADD COLUMN note TEXT NOT NULL DEFAULT ''`})

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		if v, err := db.Version(ctx, "counter"); err != nil || v != 0 {
			t.Fatalf("fresh database: version %d, %v; want 0", v, err)
		}
		if err := db.Migrate(ctx, "counter", counterV1); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, "counter", counterV2); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, "counter", counterV2); err != nil { // again: nothing to do
			t.Fatal(err)
		}
		if v, _ := db.Version(ctx, "counter"); v != 2 {
			t.Fatalf("version %d, want 2", v)
		}
		if _, err := db.Exec(ctx, "INSERT INTO counter (name, n, note) VALUES (?, ?, ?)", "a", 1, "it's a '?'"); err != nil {
			t.Fatal(err)
		}
		var note string
		if err := db.QueryRow(ctx, "SELECT note FROM counter WHERE name = ? AND note <> '?'", "a").Scan(&note); err != nil || note != "it's a '?'" {
			t.Fatalf("note %q, %v", note, err)
		}
		// A binary that knows only version 1 must not write into a version 2 schema.
		err := db.Migrate(ctx, "counter", counterV1)
		if err == nil || !strings.Contains(err.Error(), "newer than this wormsink knows") {
			t.Fatalf("old binary on a new schema: %v", err)
		}
		// Components do not see each other's versions.
		if v, _ := db.Version(ctx, "other"); v != 0 {
			t.Fatalf("other component at %d", v)
		}
		bad := []store.Migration{{Version: 2, SQLite: "SELECT 1"}}
		if err := db.Migrate(ctx, "gap", bad); err == nil {
			t.Fatal("a list starting at version 2 was taken")
		}
		// One text for both dialects, the generated key spelled AutoID.
		both := []store.Migration{{Version: 1, Both: "CREATE TABLE rows (id " + store.AutoID + ", v TEXT NOT NULL)"}}
		if err := db.Migrate(ctx, "both", both); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"a", "b"} {
			if _, err := db.Exec(ctx, "INSERT INTO rows (v) VALUES (?)", v); err != nil {
				t.Fatal(err)
			}
		}
		var maxID int
		if err := db.QueryRow(ctx, "SELECT MAX(id) FROM rows").Scan(&maxID); err != nil || maxID != 2 {
			t.Fatalf("generated ids: max %d, %v", maxID, err)
		}
		// A failing step leaves the schema where it was.
		broken := []store.Migration{{Version: 1, SQLite: "CREATE TABLE ok1 (a INTEGER); CREATE TABLE (nonsense"}}
		if err := db.Migrate(ctx, "broken", broken); err == nil {
			t.Fatal("a broken migration was applied")
		}
		if v, _ := db.Version(ctx, "broken"); v != 0 {
			t.Fatalf("broken migration left version %d", v)
		}
	})
}

// Several processes start at once against one database: each migration
// runs once.
func TestMigrateConcurrent(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 6)
			for range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					db, err := store.Open(ctx, b.URL)
					if err != nil {
						errs <- err
						return
					}
					defer db.Close()
					errs <- db.Migrate(ctx, "counter", counterV2)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			db := storetest.Open(t, b.URL)
			var n int
			if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE component = ?", "counter").Scan(&n); err != nil || n != 2 {
				t.Fatalf("%d migration rows, %v; want 2", n, err)
			}
		})
	}
}

// Writers racing on one row: every increment counts (busy and
// serialization failures are retried, not lost).
func TestTxConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		if err := db.Migrate(ctx, "counter", counterV1); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, "INSERT INTO counter (name, n) VALUES ('c', 0)"); err != nil {
			t.Fatal(err)
		}
		const workers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					err := db.Tx(ctx, func(tx *store.Tx) error {
						var n int64
						if err := tx.QueryRow(ctx, "SELECT n FROM counter WHERE name = ?", "c").Scan(&n); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, "UPDATE counter SET n = ? WHERE name = ? AND n = ?", n+1, "c", n)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var n int64
		if err := db.QueryRow(ctx, "SELECT n FROM counter WHERE name = 'c'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		// A lost update (two transactions reading the same n) shows as a
		// total below workers*each on a database that does not serialise
		// them; SQLite's immediate transactions and the retry must not.
		if db.Dialect() == store.SQLite && n != workers*each {
			t.Fatalf("counter %d, want %d", n, workers*each)
		}
		if n == 0 || n > workers*each {
			t.Fatalf("counter %d out of range", n)
		}
	})
}

func TestTxRollback(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		if err := db.Migrate(ctx, "counter", counterV1); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		err := db.Tx(ctx, func(tx *store.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO blobs (b) VALUES (?)", []byte{0, 1, 2}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx returned %v, want boom", err)
		}
		var n int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM blobs").Scan(&n)
		if n != 0 {
			t.Fatalf("%d rows after a rolled-back transaction", n)
		}
	})
}

// What was written is there after the database and the process restart.
func TestPersistAcrossRestart(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			db, err := store.Open(ctx, b.URL)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx, "counter", counterV1); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, "INSERT INTO blobs (b) VALUES (?)", []byte{0xff, 0, 0x7f}); err != nil {
				t.Fatal(err)
			}
			if b.Name == "postgres" {
				// The same handle keeps working across a server restart.
				if err := storetest.Cluster(t).Restart(); err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec(ctx, "INSERT INTO blobs (b) VALUES (?)", []byte{1}); err != nil {
					t.Fatalf("after a PostgreSQL restart: %v", err)
				}
			} else if _, err := db.Exec(ctx, "INSERT INTO blobs (b) VALUES (?)", []byte{1}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			db = storetest.Open(t, b.URL)
			if err := db.Migrate(ctx, "counter", counterV1); err != nil {
				t.Fatal(err)
			}
			var got []byte
			if err := db.QueryRow(ctx, "SELECT b FROM blobs ORDER BY id LIMIT 1").Scan(&got); err != nil || string(got) != "\xff\x00\x7f" {
				t.Fatalf("read back %x, %v", got, err)
			}
		})
	}
}

func TestSQLiteFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "w.db")
	db := storetest.Open(t, "sqlite:"+path)
	if db.Dialect() != store.SQLite {
		t.Fatalf("dialect %v", db.Dialect())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		t.Fatalf("database file mode %v: readable by others", fi.Mode().Perm())
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		dialect store.Dialect
		err     string
	}{
		{"sqlite:/var/lib/wormsink/wormsink.db", store.SQLite, ""},
		{"sqlite:///var/lib/wormsink/wormsink.db", store.SQLite, ""},
		{"sqlite:rel.db", store.SQLite, ""},
		{"postgres://u@127.0.0.1:5432/w?sslmode=disable", store.Postgres, ""},
		{"postgresql://127.0.0.1/w", store.Postgres, ""},
		{"sqlite:", 0, "no file"},
		{"sqlite::memory:", 0, "in-memory"},
		{"sqlite:/a?mode=ro", 0, "may not hold"},
		{"mysql://u:secret@h/db", 0, "want sqlite:PATH"},
		{"", 0, "want sqlite:PATH"},
	} {
		loc, err := store.ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("%q: error shows the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil || loc.Dialect != tc.dialect {
			t.Errorf("%q: %v, %v", tc.in, loc.Dialect, err)
		}
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	port := storetest.Cluster(t).Port
	_ = port
	_, err := store.Open(context.Background(), "postgres://wormsink:hunter2@127.0.0.1:1/nope?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("opened a server that is not there")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"sqlite:/x.db", "postgres://u:p@h/db", "sqlite:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := store.ParseURL(s)
		if err == nil && loc.Dialect != store.SQLite && loc.Dialect != store.Postgres {
			t.Fatalf("%q: no dialect", s)
		}
		if err != nil && strings.Contains(s, "@") {
			if i := strings.Index(s, "://"); i >= 0 {
				if j := strings.LastIndexByte(s, '@'); j > i+3 {
					cred := s[i+3 : j]
					if k := strings.IndexByte(cred, ':'); k >= 0 && len(cred[k+1:]) > 3 && strings.Contains(err.Error(), cred[k+1:]) {
						t.Fatalf("%q: error shows the password: %v", s, err)
					}
				}
			}
		}
	})
}

func TestRebind(t *testing.T) {
	db := storetest.Open(t, storetest.Backends(t)[1].URL)
	for in, want := range map[string]string{
		"SELECT ? , ?":                    "SELECT $1 , $2",
		"SELECT '?' , ?":                  "SELECT '?' , $1",
		`SELECT "a?" FROM t WHERE x = ?`:  `SELECT "a?" FROM t WHERE x = $1`,
		"SELECT 'it''s ?' WHERE a=? OR ?": "SELECT 'it''s ?' WHERE a=$1 OR $2",
		"no placeholders":                 "no placeholders",
	} {
		if got := db.Rebind(in); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

// A Conn's setup applies to its own transactions, and the connection is
// not given back to the pool when closed: nobody else inherits it.
func TestConnSettingsStayOwn(t *testing.T) {
	ctx := context.Background()
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		if err := db.Migrate(ctx, "counter", counterV1); err != nil {
			t.Fatal(err)
		}
		set, show, want := "PRAGMA temp_store = MEMORY", "PRAGMA temp_store", "2"
		if db.Dialect() == store.Postgres {
			set, show, want = "SET work_mem = '7MB'", "SHOW work_mem", "7MB"
		}
		setting := func(q interface {
			QueryRow(context.Context, string, ...any) *sql.Row
		}) string {
			var v string
			if err := q.QueryRow(ctx, show).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		before := setting(db)
		if before == want {
			t.Fatalf("the pool already has %s = %s", show, want)
		}
		c, err := db.Conn(ctx, set)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			err := c.Tx(ctx, func(tx *store.Tx) error {
				if got := setting(tx); got != want {
					t.Errorf("transaction %d on the Conn: %s = %s, want %s", i, show, got, want)
				}
				_, err := tx.Exec(ctx, "INSERT INTO counter (name, n) VALUES (?, ?)", fmt.Sprint("c", i), i)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if got := setting(db); got != before {
				t.Fatalf("after Close the pool's connection has %s = %s (want %s): the Conn went back to the pool", show, got, before)
			}
		}
		var n int
		db.QueryRow(ctx, "SELECT COUNT(*) FROM counter").Scan(&n)
		if n != 3 {
			t.Fatalf("%d rows committed through the Conn, want 3", n)
		}
	})
}
