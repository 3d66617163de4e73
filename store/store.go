// Package store is wormsink's one persistent state (attribution, quarantines,
// cases, audit) on SQLite or PostgreSQL, with versioned migrations per part.
package store

// Each part that keeps state owns its tables as a migration component of
// its own, so parts grow their schema without touching each other's.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite" (pure Go)
)

// DefaultURL is the database serve, report and the other commands use when
// --db is not given: one SQLite file in the service's state directory.
const DefaultURL = "sqlite:/var/lib/wormsink/wormsink.db"

// Dialect is the SQL dialect of a database: the two implementations of the
// store behind the one DB type.
type Dialect int

const (
	// SQLite is one file through modernc.org/sqlite (pure Go, no cgo).
	SQLite Dialect = iota + 1
	// Postgres is a PostgreSQL server through github.com/jackc/pgx/v5.
	Postgres
)

func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// Location is a parsed --db URL.
type Location struct {
	Dialect Dialect
	// Path is the SQLite file (SQLite only).
	Path string
	// DSN is what the driver is opened with: the PostgreSQL URL as given,
	// or the SQLite file URI with the pragmas every connection needs.
	DSN string
}

// ParseURL reads a --db value: sqlite:PATH (a relative PATH is taken from
// the working directory) or postgres://… / postgresql://… (any URL pgx
// takes; put the password in a passfile, not on a command line).
func ParseURL(url string) (Location, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		p := strings.TrimPrefix(url, "sqlite:")
		p = strings.TrimPrefix(p, "//") // sqlite:///var/lib/… as well as sqlite:/var/lib/…
		if p == "" {
			return Location{}, fmt.Errorf("store: %q: no file after sqlite:", url)
		}
		if strings.ContainsAny(p, "?#\x00") {
			return Location{}, fmt.Errorf("store: %q: a SQLite path may not hold '?', '#' or NUL", url)
		}
		if p == ":memory:" {
			return Location{}, fmt.Errorf("store: %q: an in-memory database would lose everything at exit; name a file", url)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return Location{}, fmt.Errorf("store: %q: %w", url, err)
		}
		// busy_timeout: writers from several goroutines (and processes)
		// wait for each other instead of failing; WAL: readers never wait
		// for a writer; _txlock=immediate: a transaction takes the write
		// lock when it begins, so two never deadlock upgrading a read lock.
		dsn := "file:" + abs + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
			"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		return Location{Dialect: SQLite, Path: abs, DSN: dsn}, nil
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return Location{Dialect: Postgres, DSN: url}, nil
	}
	return Location{}, fmt.Errorf("store: %q: want sqlite:PATH or postgres://…", redact(url))
}

// redact cuts a URL that is not understood to its scheme-looking start, so
// that a password in a mistyped URL does not end up in a log.
func redact(url string) string {
	if i := strings.IndexAny(url, "@/"); i > 0 && strings.Contains(url, "@") {
		return url[:i] + "…"
	}
	if len(url) > 64 {
		return url[:64] + "…"
	}
	return url
}

// DB is an open database of either dialect. It is safe for concurrent use.
type DB struct {
	db      *sql.DB
	dialect Dialect
	where   string // for error messages: the file, or the server without credentials
}

// Open opens (and for SQLite creates, readable by its owner and group only)
// the database named by url and checks that it answers. It applies no
// migration: each part calls Migrate for its own tables.
func Open(ctx context.Context, url string) (*DB, error) {
	loc, err := ParseURL(url)
	if err != nil {
		return nil, err
	}
	var db *sql.DB
	where := ""
	switch loc.Dialect {
	case SQLite:
		where = loc.Path
		if err := createPrivate(loc.Path); err != nil {
			return nil, fmt.Errorf("store: %s: %w", where, err)
		}
		db, err = sql.Open("sqlite", loc.DSN)
	case Postgres:
		where = pgWhere(loc.DSN)
		db, err = sql.Open("pgx", loc.DSN)
		if err == nil {
			db.SetMaxOpenConns(16)
			db.SetMaxIdleConns(4)
			db.SetConnMaxIdleTime(5 * time.Minute)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", where, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", where, err)
	}
	return &DB{db: db, dialect: loc.Dialect, where: where}, nil
}

// createPrivate makes the SQLite file (and its directory) before the driver
// does, so that subscriber data is never world-readable.
func createPrivate(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

// pgWhere names a PostgreSQL server for messages: host, port and database,
// never the user's password.
func pgWhere(dsn string) string {
	rest := dsn[strings.Index(dsn, "://")+3:]
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	return "postgres://" + rest
}

// Close closes the database.
func (db *DB) Close() error { return db.db.Close() }

// Dialect says which implementation this is, for the few statements that
// differ (upserts, types in migrations).
func (db *DB) Dialect() Dialect { return db.dialect }

// String names the database without credentials.
func (db *DB) String() string { return db.dialect.String() + ":" + db.where }

// SQL is the underlying handle, for what the methods here do not cover
// (prepared statements on a hot path, bulk copies). Its queries take the
// dialect's own placeholders: use Rebind.
func (db *DB) SQL() *sql.DB { return db.db }

// Exec runs a statement written with '?' placeholders. A statement that
// met a connection the server had already ended (a PostgreSQL restart) is
// run once more on a new one: it was never executed.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	q := db.Rebind(query)
	r, err := db.db.ExecContext(ctx, q, args...)
	if err != nil && connectionEnded(err) {
		r, err = db.db.ExecContext(ctx, q, args...)
	}
	return r, err
}

// Query runs a query written with '?' placeholders (retried once as Exec
// is).
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	q := db.Rebind(query)
	rows, err := db.db.QueryContext(ctx, q, args...)
	if err != nil && connectionEnded(err) {
		rows, err = db.db.QueryContext(ctx, q, args...)
	}
	return rows, err
}

// connectionEnded reports a PostgreSQL connection that the server ended
// before it took the statement.
func connectionEnded(err error) bool {
	var se interface{ SQLState() string }
	if errors.As(err, &se) {
		switch se.SQLState() {
		case "57P01", "57P02", "57P03":
			return true
		}
	}
	return false
}

// QueryRow runs a query written with '?' placeholders that returns one row.
// (Its error comes with Scan, too late to retry: after a PostgreSQL restart
// the first QueryRow on an old connection may fail.)
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.db.QueryRowContext(ctx, db.Rebind(query), args...)
}

// Rebind turns '?' placeholders into the dialect's own: unchanged for
// SQLite, $1, $2, … for PostgreSQL. A '?' inside a quoted string or
// identifier is left alone.
func (db *DB) Rebind(query string) string { return rebind(db.dialect, query) }

func rebind(d Dialect, query string) string {
	if d != Postgres || strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ErrNotFound is what getters of the parts built on the store return for a
// row that does not exist.
var ErrNotFound = errors.New("not found")
