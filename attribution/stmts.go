package attribution

import (
	"context"
	"database/sql"

	"wormsink/store"
)

// writerSetup is what the writer's own SQLite connection is set to: its
// statement journals (a multi-row statement's undo, tens of pages) stay in
// memory instead of spilling to a temporary file page by page, a write
// system call each. Only this connection: on the others it would also put
// large sorts (a report's, the load at start) in memory.
var writerSetup = []string{"PRAGMA temp_store = MEMORY"}

// txRunner runs the writer's transactions: a store.DB, or on SQLite the
// writer's own store.Conn.
type txRunner interface {
	Tx(ctx context.Context, fn func(tx *store.Tx) error) error
}

// maxPrepared bounds the statements a stmtCache keeps; past it they run
// unprepared. The writer's statements are a few texts, the batched ones
// in a few sizes (batched cuts chunks to powers of two).
const maxPrepared = 64

// stmtCache keeps the writer's statements prepared: SQLite otherwise
// parses and plans every statement each time it runs, a good part of a
// small transaction's cost. Only the writer goroutine uses it.
type stmtCache struct {
	db *store.DB
	m  map[string]*sql.Stmt
}

func newStmtCache(db *store.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

// get returns query prepared, or nil when the cache is full or the
// preparation failed (the statement then runs unprepared and reports
// its own error).
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	if st, ok := c.m[query]; ok {
		return st
	}
	if len(c.m) >= maxPrepared {
		return nil
	}
	st, err := c.db.Prepare(ctx, query)
	if err != nil {
		return nil
	}
	c.m[query] = st
	return st
}

func (c *stmtCache) close() {
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// preparedTx runs a transaction's statements through a stmtCache.
type preparedTx struct {
	*store.Tx
	c *stmtCache
}

func (p preparedTx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.c.get(ctx, query); st != nil {
		return p.Tx.Stmt(ctx, st).ExecContext(ctx, args...)
	}
	return p.Tx.Exec(ctx, query, args...)
}

func (p preparedTx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.c.get(ctx, query); st != nil {
		return p.Tx.Stmt(ctx, st).QueryContext(ctx, args...)
	}
	return p.Tx.Query(ctx, query, args...)
}
