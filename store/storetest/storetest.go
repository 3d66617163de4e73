// Package storetest runs a test on both implementations of the store: a fresh
// SQLite file and a fresh database in the test binary's own PostgreSQL cluster.
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"wormsink/internal/testutil"
	"wormsink/store"
)

var (
	pgOnce sync.Once
	pg     *testutil.Postgres
	pgErr  error
)

// Cluster is the test binary's PostgreSQL cluster, started on first use.
func Cluster(t testing.TB) *testutil.Postgres {
	t.Helper()
	pgOnce.Do(func() { pg, pgErr = testutil.StartPostgres() })
	if pgErr != nil {
		t.Fatalf("postgres: %v", pgErr)
	}
	return pg
}

// Main runs the tests and then stops the cluster, if one was started. Call
// it from TestMain: storetest.Main(m).
func Main(m *testing.M) {
	code := m.Run()
	if pg != nil {
		pg.Close()
	}
	os.Exit(code)
}

// Backend is one implementation to run a test on.
type Backend struct {
	Name string // "sqlite" or "postgres"
	URL  string // a fresh, empty database
}

// Backends returns a fresh SQLite file and a fresh PostgreSQL database, for
// tests that open the database themselves (a restart, a second process).
func Backends(t testing.TB) []Backend {
	t.Helper()
	url, err := Cluster(t).NewDatabase()
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	return []Backend{
		{"sqlite", "sqlite:" + filepath.Join(t.TempDir(), "wormsink.db")},
		{"postgres", url},
	}
}

// Each runs fn as a subtest on each backend, with the database open; it is
// closed when the subtest ends.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, b := range Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			fn(t, Open(t, b.URL))
		})
	}
}

// Open opens url and closes it when the test ends.
func Open(t testing.TB, url string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
