package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Tx is a transaction; its methods take '?' placeholders like DB's.
type Tx struct {
	tx      *sql.Tx
	dialect Dialect
}

// Exec runs a statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, rebind(tx.dialect, query), args...)
}

// Query runs a query in the transaction.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, rebind(tx.dialect, query), args...)
}

// QueryRow runs a one-row query in the transaction.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, rebind(tx.dialect, query), args...)
}

// Dialect is the database's dialect.
func (tx *Tx) Dialect() Dialect { return tx.dialect }

// MaxTxAttempts is how often Tx runs a transaction that failed only because
// another one got in its way (SQLite busy, PostgreSQL serialization failure
// or deadlock) before it gives the error back.
const MaxTxAttempts = 8

// Tx runs fn in a transaction and commits it when fn returns nil. A
// transaction that loses a race with another writer is rolled back and run
// again (fn must therefore do nothing outside the transaction that cannot be
// repeated); any other error rolls back and is returned as it is.
func (db *DB) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	return retryTx(ctx, db.dialect, func(ctx context.Context) (*sql.Tx, error) { return db.db.BeginTx(ctx, nil) }, fn)
}

// retryTx runs fn in transactions that begin returns until one commits, as
// DB.Tx describes.
func retryTx(ctx context.Context, d Dialect, begin func(context.Context) (*sql.Tx, error), fn func(tx *Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = tx1(ctx, d, begin, fn)
		if err == nil || !Retryable(err) || attempt == MaxTxAttempts {
			return err
		}
		// Back off a little, with jitter, so that two losers do not meet
		// again at once.
		d := time.Duration(attempt*attempt) * time.Millisecond * time.Duration(1+rand.IntN(4))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(d):
		}
	}
}

func tx1(ctx context.Context, d Dialect, begin func(context.Context) (*sql.Tx, error), fn func(tx *Tx) error) (err error) {
	stx, err := begin(ctx)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			stx.Rollback()
			panic(p)
		}
		if err != nil {
			stx.Rollback()
		}
	}()
	if err = fn(&Tx{tx: stx, dialect: d}); err != nil {
		return err
	}
	if err = stx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// Retryable reports whether err is a transaction losing a race with another
// writer, which a second attempt can win.
func Retryable(err error) bool {
	var se interface{ SQLState() string } // pgconn.PgError
	if errors.As(err, &se) {
		switch se.SQLState() {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		case "57P01", "57P02", "57P03":
			// admin_shutdown, crash_shutdown, cannot_connect_now: the
			// server ended (or is restarting) the connection before
			// the work was done; a new connection can do it.
			return true
		}
		return false
	}
	var le interface{ Code() int } // modernc.org/sqlite.Error
	if errors.As(err, &le) {
		switch le.Code() & 0xff { // the primary code of an extended one
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return true
		}
	}
	return false
}

// Prepare prepares a statement written with '?' placeholders on the
// database, for a hot path that runs it often: SQLite parses a statement
// on every run unless it is prepared (pgx keeps its own cache of prepared
// statements). Close it when done; use it in a transaction with Tx.Stmt.
func (db *DB) Prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	return db.db.PrepareContext(ctx, db.Rebind(query))
}

// Stmt is a statement from DB.Prepare as one of the transaction's; it is
// closed with the transaction.
func (tx *Tx) Stmt(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	return tx.tx.StmtContext(ctx, st)
}

// Conn is one connection of a DB kept for one user, for settings that are
// the connection's own (SQLite's PRAGMA temp_store). It is not safe for
// concurrent use. A statement from DB.Prepare used in its transactions
// (Tx.Stmt) is prepared on it once; one prepared on the Conn itself would
// be prepared again in every transaction (database/sql).
type Conn struct {
	c       *sql.Conn
	dialect Dialect
	set     bool // setup ran: the connection is not given back to the pool
}

// Conn takes a connection out of db's pool until Close and runs each of
// setup on it (statements without arguments, such as PRAGMAs).
func (db *DB) Conn(ctx context.Context, setup ...string) (*Conn, error) {
	c, err := db.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", db, err)
	}
	for _, q := range setup {
		if _, err := c.ExecContext(ctx, q); err != nil {
			c.Close()
			return nil, fmt.Errorf("store: %s: %s: %w", db, q, err)
		}
	}
	return &Conn{c: c, dialect: db.dialect, set: len(setup) > 0}, nil
}

// Tx runs fn in a transaction on the connection, as DB.Tx does.
func (c *Conn) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	return retryTx(ctx, c.dialect, func(ctx context.Context) (*sql.Tx, error) { return c.c.BeginTx(ctx, nil) }, fn)
}

// Dialect is the database's dialect.
func (c *Conn) Dialect() Dialect { return c.dialect }

// Close ends the connection: one whose setup changed its settings is closed
// rather than given back to the pool, where others would inherit them.
func (c *Conn) Close() error {
	if c.set {
		// database/sql closes a connection whose Raw reports it bad,
		// instead of giving it back.
		err := c.c.Raw(func(any) error { return driver.ErrBadConn })
		if errors.Is(err, driver.ErrBadConn) {
			return nil
		}
		return err
	}
	return c.c.Close()
}
