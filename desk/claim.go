package desk

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Notice states a desk may take up; the status text of a notice on its
// way starts with one of them.
const (
	noticeQueued   = "queued"
	noticeRetrying = "retrying"
)

// pendingNotice is the SQL condition of a notice still to be sent.
const pendingNotice = `(notice = 'queued' OR notice LIKE 'retrying%')`

// queueNotice marks case id's notice queued, unless one is queued or on
// its way already, or one was delivered after sentAfter: one UPDATE, so of
// two desks queueing the same case at once only one succeeds.
func (s *Store) queueNotice(ctx context.Context, id int64, sentAfter time.Time) (bool, error) {
	return s.queueNoticeOn(ctx, s.db, id, sentAfter)
}

// execer is a database or a transaction.
type execer interface {
	Exec(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) queueNoticeOn(ctx context.Context, db execer, id int64, sentAfter time.Time) (bool, error) {
	r, err := db.Exec(ctx, `UPDATE desk_cases SET notice = ?, notice_owner = '', notice_lease = 0, updated_at = ?
WHERE id = ? AND NOT `+pendingNotice+` AND notified_at <= ?`, noticeQueued, s.now().UnixMilli(), id, sentAfter.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("desk: queue notice of case %d: %w", id, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// claimNotice makes owner the sender of case id's notice until until, if
// the notice is still to be sent and nobody else holds a live claim on it.
// It is one UPDATE whose condition the database checks under the row's
// lock: of two desks claiming at once, one wins.
func (s *Store) claimNotice(ctx context.Context, id int64, owner string, until time.Time) (bool, error) {
	now := s.now()
	r, err := s.db.Exec(ctx, `UPDATE desk_cases SET notice_owner = ?, notice_lease = ?
WHERE id = ? AND `+pendingNotice+` AND (notice_owner = '' OR notice_owner = ? OR notice_lease < ?)`,
		owner, until.UnixMilli(), id, owner, now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("desk: claim notice of case %d: %w", id, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// noticeStatus records owner's notice status on case id, if owner still
// holds the claim: with done the claim ends, else it lasts until until.
// sent also sets the case's notified time.
func (s *Store) noticeStatus(ctx context.Context, id int64, owner, status string, sent, done bool, until time.Time) (bool, error) {
	now := s.now().UnixMilli()
	newOwner, lease := owner, until.UnixMilli()
	if done {
		newOwner, lease = "", 0
	}
	notified := "notified_at"
	args := []any{status, now, newOwner, lease}
	if sent {
		notified = "?"
		args = append(args, now)
	}
	args = append(args, id, owner)
	r, err := s.db.Exec(ctx, `UPDATE desk_cases SET notice = ?, updated_at = ?, notice_owner = ?, notice_lease = ?, notified_at = `+notified+`
WHERE id = ? AND notice_owner = ?`, args...)
	if err != nil {
		return false, fmt.Errorf("desk: notice status of case %d: %w", id, err)
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// claimable lists the cases whose notice is still to be sent and not
// claimed by a live desk, oldest first.
// claimableSQL lists notices to send that nobody holds a live claim on;
// the partial index desk_cases_pending_notice serves it.
const claimableSQL = `SELECT id FROM desk_cases WHERE ` + pendingNotice + ` AND (notice_owner = '' OR notice_lease < ?) ORDER BY id LIMIT ?`

func (s *Store) claimable(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.db.Query(ctx, claimableSQL, s.now().UnixMilli(), limit)
	if err != nil {
		return nil, fmt.Errorf("desk: notices to send: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
