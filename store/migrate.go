package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// Migration is one step of a component's schema.
type Migration struct {
	// Version numbers a component's migrations from 1 up without gaps; a
	// database at version N gets N+1, N+2, … in order, each in its own
	// transaction.
	Version int
	// SQLite is the step's statements (several, separated by ';').
	SQLite string
	// Postgres is the same step for PostgreSQL; "" means the SQLite text
	// works on both.
	Postgres string
	// Both is the step written once for both dialects, used when SQLite
	// and Postgres are empty: AutoID stands for a table's generated
	// integer primary key, the one column type the two spell differently.
	Both string
}

// AutoID is what a Migration's Both text writes for a generated integer
// primary key column ("id AUTO_ID_PRIMARY_KEY").
const AutoID = "AUTO_ID_PRIMARY_KEY"

// text is the step's statements for dialect d.
func (m Migration) text(d Dialect) string {
	if m.SQLite == "" && m.Postgres == "" {
		if d == Postgres {
			return strings.ReplaceAll(m.Both, AutoID, "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
		}
		return strings.ReplaceAll(m.Both, AutoID, "INTEGER PRIMARY KEY AUTOINCREMENT")
	}
	if d == Postgres && m.Postgres != "" {
		return m.Postgres
	}
	return m.SQLite
}

const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	component  TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	applied_at BIGINT  NOT NULL,
	PRIMARY KEY (component, version)
)`

// Migrate brings component's tables up to the last of ms. It is safe to run
// from several processes at once (they take turns under a lock) and refuses
// a database whose schema is newer than this binary knows, so that an old
// wormsink never writes into tables it does not understand.
func (db *DB) Migrate(ctx context.Context, component string, ms []Migration) error {
	for i, m := range ms {
		if m.Version != i+1 {
			return fmt.Errorf("store: %s: migration %d has version %d (want 1, 2, … without gaps)", component, i+1, m.Version)
		}
	}
	for {
		done, err := db.migrateOne(ctx, component, ms)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next missing migration, if any, in one
// transaction that holds the component's lock; it reports done when the
// schema is current.
func (db *DB) migrateOne(ctx context.Context, component string, ms []Migration) (done bool, err error) {
	err = db.Tx(ctx, func(tx *Tx) error {
		if err := lockSchema(ctx, tx); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?", component).Scan(&have); err != nil {
			return err
		}
		if have > len(ms) {
			return fmt.Errorf("store: %s: schema %s is at version %d, newer than this wormsink knows (%d): upgrade wormsink", db, component, have, len(ms))
		}
		if have == len(ms) {
			done = true
			return nil
		}
		m := ms[have]
		if _, err := tx.Exec(ctx, m.text(db.dialect)); err != nil {
			return fmt.Errorf("store: %s: migrating %s to version %d: %w", db, component, m.Version, err)
		}
		_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
			component, m.Version, time.Now().Unix())
		return err
	})
	return done, err
}

// lockSchema takes the schema lock for the rest of the transaction and
// makes the migrations table if it is not there yet. PostgreSQL needs the
// lock even for CREATE TABLE IF NOT EXISTS (two at once collide on its
// catalog); SQLite's BEGIN IMMEDIATE already serialises writers.
func lockSchema(ctx context.Context, tx *Tx) error {
	if tx.dialect == Postgres {
		h := fnv.New64a()
		h.Write([]byte("wormsink schema"))
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(?)", int64(h.Sum64())); err != nil {
			return err
		}
	}
	_, err := tx.Exec(ctx, migrationsTable)
	return err
}

// Version is the schema version of component in the database (0: none yet).
func (db *DB) Version(ctx context.Context, component string) (int, error) {
	if err := db.Tx(ctx, func(tx *Tx) error { return lockSchema(ctx, tx) }); err != nil {
		return 0, fmt.Errorf("store: %s: %w", db, err)
	}
	var v int
	err := db.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?", component).Scan(&v)
	return v, err
}
