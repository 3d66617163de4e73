package main

import (
	"context"
	"flag"

	"wormsink/store"
)

// dbFlag is --db, the same on every command that keeps state (serve,
// report, attribution, quarantine, desk).
func dbFlag(fs *flag.FlagSet, url *string) {
	fs.StringVar(url, "db", store.DefaultURL, "database: sqlite:PATH or postgres://USER@HOST/DB (put a PostgreSQL password in a passfile, ?passfile=FILE, never here)")
}

// openDB opens the --db database; each part migrates its own tables.
func openDB(ctx context.Context, url string) (*store.DB, error) {
	return store.Open(ctx, url)
}
