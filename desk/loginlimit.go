package desk

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// limiter counts failed logins per key (a client address, a name) in
// fixed windows, in the store: every desk on the database sees every
// other's failures.
type limiter struct {
	st        *Store
	tries     int
	window    time.Duration
	lastPrune atomic.Int64
}

func newLimiter(st *Store, tries int, w time.Duration) *limiter {
	return &limiter{st: st, tries: tries, window: w}
}

// limitKey bounds a key's length: a name is whatever a client sent.
func limitKey(k string) string {
	if len(k) > 200 {
		return k[:200]
	}
	return k
}

// blocked reports whether any of keys has used up its tries in its
// current window.
func (l *limiter) blocked(ctx context.Context, now time.Time, keys ...string) (bool, error) {
	if len(keys) == 0 {
		return false, nil
	}
	args := make([]any, 0, len(keys)+2)
	for _, k := range keys {
		args = append(args, limitKey(k))
	}
	args = append(args, now.Add(-l.window).UnixMilli(), l.tries)
	var n int
	err := l.st.db.QueryRow(ctx, `SELECT COUNT(*) FROM desk_login_failures WHERE limit_key IN (?`+strings.Repeat(", ?", len(keys)-1)+`)
AND window_start > ? AND failures >= ?`, args...).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("desk: login limit: %w", err)
	}
	return n > 0, nil
}

// fail counts one failure on each of keys: one statement per key that
// the database applies atomically, so failures at several desks at once
// all count.
func (l *limiter) fail(ctx context.Context, now time.Time, keys ...string) error {
	ms, old := now.UnixMilli(), now.Add(-l.window).UnixMilli()
	for _, k := range keys {
		if _, err := l.st.db.Exec(ctx, `INSERT INTO desk_login_failures (limit_key, window_start, failures) VALUES (?, ?, 1)
ON CONFLICT (limit_key) DO UPDATE SET
	failures = CASE WHEN desk_login_failures.window_start <= ? THEN 1 ELSE desk_login_failures.failures + 1 END,
	window_start = CASE WHEN desk_login_failures.window_start <= ? THEN ? ELSE desk_login_failures.window_start END`,
			limitKey(k), ms, old, old, ms); err != nil {
			return fmt.Errorf("desk: login limit: %w", err)
		}
	}
	// Forget windows that ended, at most once a window per desk: a flood
	// of made-up names must not grow the table without end.
	if last := l.lastPrune.Load(); ms-last >= l.window.Milliseconds() && l.lastPrune.CompareAndSwap(last, ms) {
		if _, err := l.st.db.Exec(ctx, `DELETE FROM desk_login_failures WHERE window_start <= ?`, old); err != nil {
			return fmt.Errorf("desk: login limit: %w", err)
		}
	}
	return nil
}
