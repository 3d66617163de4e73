package desk

import "wormsink/store"

// migrations are the desk's tables (store component "desk").
//
// desk_evidence holds each shipped evidence line once: (sensor, log, off)
// is the shipper's idempotency key, so a batch sent again after a lost
// answer inserts nothing new.
var migrations = []store.Migration{{
	Version: 1,
	Both: `
CREATE TABLE desk_cases (
	id          ` + store.AutoID + `,
	subject     TEXT NOT NULL UNIQUE,
	state       TEXT NOT NULL,
	first_seen  BIGINT NOT NULL,
	last_seen   BIGINT NOT NULL,
	families    TEXT NOT NULL DEFAULT '',
	strong      INTEGER NOT NULL DEFAULT 0,
	proof       INTEGER NOT NULL DEFAULT 0,
	addresses   TEXT NOT NULL DEFAULT '',
	sensors     TEXT NOT NULL DEFAULT '',
	sightings   BIGINT NOT NULL DEFAULT 0,
	lines       BIGINT NOT NULL DEFAULT 0,
	rank        BIGINT NOT NULL DEFAULT 0,
	created_at  BIGINT NOT NULL,
	updated_at  BIGINT NOT NULL,
	closed_at   BIGINT NOT NULL DEFAULT 0,
	notified_at BIGINT NOT NULL DEFAULT 0,
	notice      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX desk_cases_rank ON desk_cases (rank DESC, last_seen DESC);
CREATE INDEX desk_cases_state ON desk_cases (state);
CREATE TABLE desk_evidence (
	id      ` + store.AutoID + `,
	sensor  TEXT NOT NULL,
	log     TEXT NOT NULL,
	off     BIGINT NOT NULL,
	case_id BIGINT,
	at      BIGINT NOT NULL,
	line    TEXT NOT NULL,
	UNIQUE (sensor, log, off)
);
CREATE INDEX desk_evidence_case ON desk_evidence (case_id, at);
CREATE TABLE desk_case_addresses (
	address TEXT NOT NULL,
	case_id BIGINT NOT NULL,
	PRIMARY KEY (address, case_id)
);
CREATE TABLE desk_users (
	name       TEXT PRIMARY KEY,
	role       TEXT NOT NULL,
	hash       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE desk_sessions (
	id         TEXT PRIMARY KEY,
	user_name  TEXT NOT NULL,
	csrf       TEXT NOT NULL,
	expires_at BIGINT NOT NULL
);
CREATE TABLE desk_tokens (
	hash       TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	role       TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE desk_audit (
	id         ` + store.AutoID + `,
	case_id    BIGINT NOT NULL,
	at         BIGINT NOT NULL,
	actor      TEXT NOT NULL,
	action     TEXT NOT NULL,
	from_state TEXT NOT NULL DEFAULT '',
	to_state   TEXT NOT NULL DEFAULT '',
	note       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX desk_audit_case ON desk_audit (case_id, id)`,
}, {
	// Several desks on one database share the notices: a desk sends a
	// queued notice only once it has claimed it (notice_owner, until
	// notice_lease), so two desks never both send it, and a desk that dies
	// holding a claim loses it when the lease runs out.
	Version: 2,
	Both: `
ALTER TABLE desk_cases ADD COLUMN notice_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE desk_cases ADD COLUMN notice_lease BIGINT NOT NULL DEFAULT 0`,
}, {
	// Failed logins are counted in the database, per client address and
	// per name in fixed windows, so that several desks on one database
	// limit them together: a guesser gains nothing by spreading attempts.
	Version: 3,
	Both: `
CREATE TABLE desk_login_failures (
	limit_key    TEXT PRIMARY KEY,
	window_start BIGINT NOT NULL,
	failures     BIGINT NOT NULL
)`,
}, {
	// The indexes end in id, as the list and a case's evidence order by
	// it last: otherwise cases with the same rank and last sighting (or
	// lines of the same millisecond) were read in full and sorted, a
	// case page read every line of its case and the list most cases.
	Version: 4,
	Both: `
DROP INDEX desk_cases_rank;
CREATE INDEX desk_cases_rank ON desk_cases (rank DESC, last_seen DESC, id DESC);
DROP INDEX desk_evidence_case;
CREATE INDEX desk_evidence_case ON desk_evidence (case_id, at, id)`,
}, {
	// Every desk looks for notices to send every half minute: a partial
	// index of the few cases with one pending, so the look does not read
	// every case. Its condition is the look's own (pendingNotice), which
	// both databases need to use it.
	Version: 5,
	Both:    `CREATE INDEX desk_cases_pending_notice ON desk_cases (id) WHERE ` + pendingNotice,
}}
