package desk

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Roles.
const (
	RoleAnalyst = "analyst" // works cases
	RoleAdmin   = "admin"   // works cases and manages accounts
	RoleSensor  = "sensor"  // API tokens only: ships evidence, nothing else
)

// DefaultSessionTTL is how long a login lasts.
const DefaultSessionTTL = 12 * time.Hour

// ErrBadLogin is a wrong name or password (which one is not said).
var ErrBadLogin = errors.New("wrong name or password")

// argon2id parameters: OWASP's minimum (19 MiB, 2 passes), so a login
// costs tens of milliseconds, not a machine's memory.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// User is an account.
type User struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
}

// CheckName refuses names that would confuse an audit trail.
func CheckName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("a name is 1 to 64 characters")
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._@-", c)) {
			return fmt.Errorf("name %q: only letters, digits and . _ @ -", name)
		}
	}
	return nil
}

// CheckRole refuses a role that is not one.
func CheckRole(role string) error {
	if role != RoleAnalyst && role != RoleAdmin {
		return fmt.Errorf("role %q: want analyst or admin", role)
	}
	return nil
}

func hashPassword(pw string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func checkPassword(encoded, pw string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 16 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against for unknown names, so that a login for a
// name that does not exist takes as long as one that does. It is made
// when the desk's store opens, not when the program starts: an argon2id
// hash is tens of milliseconds and 19 MiB, which every other subcommand
// (a report of a log) would pay for nothing.
var dummyHash = sync.OnceValue(func() string { return hashPassword("no such user") })

// AddUser creates an account, or sets an existing one's role and password.
func (s *Store) AddUser(ctx context.Context, name, role, password string) error {
	if err := CheckName(name); err != nil {
		return fmt.Errorf("desk: user: %w", err)
	}
	if err := CheckRole(role); err != nil {
		return fmt.Errorf("desk: user: %w", err)
	}
	if len(password) < 10 {
		return errors.New("desk: user: a password has at least 10 characters")
	}
	_, err := s.db.Exec(ctx, `INSERT INTO desk_users (name, role, hash, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET role = excluded.role, hash = excluded.hash`, name, role, hashPassword(password), s.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("desk: user %s: %w", name, err)
	}
	// A new password ends the sessions the old one opened.
	_, err = s.db.Exec(ctx, "DELETE FROM desk_sessions WHERE user_name = ?", name)
	return err
}

// Users lists the accounts.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.Query(ctx, "SELECT name, role, created_at FROM desk_users ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("desk: users: %w", err)
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		var u User
		var c int64
		if err := rows.Scan(&u.Name, &u.Role, &c); err != nil {
			return nil, err
		}
		u.Created = ms(c)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Login checks a name and password.
func (s *Store) Login(ctx context.Context, name, password string) (User, error) {
	var u User
	var hash string
	var c int64
	err := s.db.QueryRow(ctx, "SELECT name, role, hash, created_at FROM desk_users WHERE name = ?", name).Scan(&u.Name, &u.Role, &hash, &c)
	if err != nil {
		if !isNoRows(err) {
			return User{}, fmt.Errorf("desk: login: %w", err)
		}
		checkPassword(dummyHash(), password)
		return User{}, ErrBadLogin
	}
	if !checkPassword(hash, password) {
		return User{}, ErrBadLogin
	}
	u.Created = ms(c)
	return u, nil
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func digest(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// Session is a logged-in browser.
type Session struct {
	User User
	CSRF string // the token every form of this session carries
}

// NewSession opens a session for u; the returned id goes in the cookie and
// only its digest is stored.
func (s *Store) NewSession(ctx context.Context, u User, ttl time.Duration) (id string, sess Session, err error) {
	id, csrf := randomToken(), randomToken()
	now := s.now()
	if _, err := s.db.Exec(ctx, "DELETE FROM desk_sessions WHERE expires_at < ?", now.UnixMilli()); err != nil {
		return "", Session{}, fmt.Errorf("desk: session: %w", err)
	}
	if _, err := s.db.Exec(ctx, "INSERT INTO desk_sessions (id, user_name, csrf, expires_at) VALUES (?, ?, ?, ?)",
		digest(id), u.Name, csrf, now.Add(ttl).UnixMilli()); err != nil {
		return "", Session{}, fmt.Errorf("desk: session: %w", err)
	}
	return id, Session{User: u, CSRF: csrf}, nil
}

// Session returns the live session with cookie value id.
func (s *Store) Session(ctx context.Context, id string) (Session, error) {
	var sess Session
	var exp int64
	err := s.db.QueryRow(ctx, `SELECT u.name, u.role, s.csrf, s.expires_at FROM desk_sessions s JOIN desk_users u ON u.name = s.user_name WHERE s.id = ?`,
		digest(id)).Scan(&sess.User.Name, &sess.User.Role, &sess.CSRF, &exp)
	if err != nil {
		if isNoRows(err) {
			return Session{}, ErrNotFound
		}
		return Session{}, fmt.Errorf("desk: session: %w", err)
	}
	if exp < s.now().UnixMilli() {
		return Session{}, ErrNotFound
	}
	return sess, nil
}

// EndSession logs a session out.
func (s *Store) EndSession(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, "DELETE FROM desk_sessions WHERE id = ?", digest(id))
	return err
}

// AddToken creates an API token named name (a sensor, a ticket system) and
// returns it: it is shown this once, only its digest is kept.
func (s *Store) AddToken(ctx context.Context, name, role string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("desk: token: %w", err)
	}
	if role != RoleSensor {
		if err := CheckRole(role); err != nil {
			return "", fmt.Errorf("desk: token: %w (or sensor)", err)
		}
	}
	tok := "wsd_" + randomToken()
	_, err := s.db.Exec(ctx, `INSERT INTO desk_tokens (hash, name, role, created_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = excluded.role`, digest(tok), name, role, s.now().UnixMilli())
	if err != nil {
		return "", fmt.Errorf("desk: token %s: %w", name, err)
	}
	return tok, nil
}

// Token returns the account an API token stands for.
func (s *Store) Token(ctx context.Context, tok string) (User, error) {
	var u User
	err := s.db.QueryRow(ctx, "SELECT name, role FROM desk_tokens WHERE hash = ?", digest(tok)).Scan(&u.Name, &u.Role)
	if err != nil {
		if isNoRows(err) {
			return User{}, ErrNotFound
		}
		return User{}, fmt.Errorf("desk: token: %w", err)
	}
	return u, nil
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
