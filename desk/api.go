package desk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"wormsink/report"
	"wormsink/store"
)

type userKey struct{}

func userOf(ctx context.Context) User { u, _ := ctx.Value(userKey{}).(User); return u }

// apiAuth lets a request with a valid Bearer token through; roles lists
// the roles allowed.
func (s *Server) apiAuth(h http.HandlerFunc, roles ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="wormsink desk"`)
			apiError(w, http.StatusUnauthorized, "authentication required: Authorization: Bearer TOKEN")
			return
		}
		ip := clientIP(r)
		if blocked, err := s.limiter.blocked(r.Context(), time.Now(), "ip:"+ip); err != nil {
			s.internal(w, r, err)
			return
		} else if blocked {
			apiError(w, http.StatusTooManyRequests, "too many failed attempts: wait a minute")
			return
		}
		u, err := s.st.Token(r.Context(), tok)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				if err := s.limiter.fail(r.Context(), time.Now(), "ip:"+ip); err != nil {
					s.internal(w, r, err)
					return
				}
				apiError(w, http.StatusUnauthorized, "unknown token")
				return
			}
			s.internal(w, r, err)
			return
		}
		if !slices.Contains(roles, u.Role) {
			apiError(w, http.StatusForbidden, "the token's role ("+u.Role+") may not do this")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
	}
}

func (s *Server) apiRoutes(mux *http.ServeMux) {
	staff := []string{RoleAnalyst, RoleAdmin}
	mux.HandleFunc("POST /api/v1/evidence", s.apiAuth(s.apiEvidence, RoleSensor, RoleAdmin))
	mux.HandleFunc("GET /api/v1/cases", s.apiAuth(s.apiCases, staff...))
	mux.HandleFunc("GET /api/v1/cases/{id}", s.apiAuth(s.apiCase, staff...))
	mux.HandleFunc("POST /api/v1/cases/{id}/{action}", s.apiAuth(s.apiAct, staff...))
	mux.HandleFunc("GET /api/v1/stats", s.apiAuth(s.apiStats, staff...))
	mux.HandleFunc("GET /api/v1/users", s.apiAuth(s.apiUsers, RoleAdmin))
	mux.HandleFunc("POST /api/v1/users", s.apiAuth(s.apiAddUser, RoleAdmin))
	mux.HandleFunc("/api/", s.apiAuth(func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such API call")
	}, RoleSensor, RoleAnalyst, RoleAdmin))
}

func apiError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	enc.Encode(v)
}

// internal logs err and tells the client only that something failed: the
// text of a database error is not theirs to read.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Log.Error().Str("event", "desk_error").Str("path", r.URL.Path).Err(err).Msg("desk: request failed")
	if strings.HasPrefix(r.URL.Path, "/api/") {
		apiError(w, http.StatusServiceUnavailable, "the desk could not do this now; try again")
		return
	}
	http.Error(w, "The desk could not do this now; try again.", http.StatusServiceUnavailable)
}

// Headers a shipper sends with a batch: which log the lines are from and
// the byte offset of the first, so that each line has its key.
const (
	HeaderSensor = "X-Wormsink-Sensor"
	HeaderLog    = "X-Wormsink-Log"
	HeaderOffset = "X-Wormsink-Offset"
)

// SplitBatch cuts an NDJSON body into lines keyed from base: each line's
// offset is base plus its position in the body. A batch without a log
// identity (a hand-made POST) keys each line by its content instead.
func SplitBatch(body []byte, sensor, log string, base int64) []Line {
	var out []Line
	for pos := 0; pos < len(body); {
		end := bytes.IndexByte(body[pos:], '\n')
		next := pos + end + 1
		if end < 0 {
			end, next = len(body)-pos, len(body)
		}
		text := bytes.TrimSuffix(body[pos:pos+end], []byte("\r"))
		l := Line{Sensor: sensor, Log: log, Off: base + int64(pos), Text: text}
		if log == "" {
			h := sha256.Sum256(text)
			l.Log, l.Off = "line:"+hex.EncodeToString(h[:16]), 0
		}
		if len(bytes.TrimSpace(text)) > 0 {
			out = append(out, l)
		}
		pos = next
	}
	return out
}

func (s *Server) apiEvidence(w http.ResponseWriter, r *http.Request) {
	u := userOf(r.Context())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, DefaultMaxBatch))
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a batch is at most %d bytes", DefaultMaxBatch))
		return
	}
	// The key's sensor is the token's name: one sensor cannot claim (and
	// so suppress) another's lines.
	sensor := u.Name
	if h := r.Header.Get(HeaderSensor); h != "" {
		if err := CheckName(h); err != nil {
			apiError(w, http.StatusBadRequest, HeaderSensor+": "+err.Error())
			return
		}
		sensor += "/" + h
	}
	log := r.Header.Get(HeaderLog)
	if len(log) > 200 {
		apiError(w, http.StatusBadRequest, HeaderLog+": at most 200 bytes")
		return
	}
	var base int64
	if h := r.Header.Get(HeaderOffset); h != "" {
		base, err = strconv.ParseInt(h, 10, 64)
		if err != nil || base < 0 || log == "" {
			apiError(w, http.StatusBadRequest, HeaderOffset+": a byte offset, with "+HeaderLog)
			return
		}
	}
	lines := SplitBatch(body, sensor, log, base)
	for i := range lines {
		if len(lines[i].Text) > report.MaxLineSize {
			lines[i].Text = []byte("(line too long)")
		}
	}
	res, err := s.st.Ingest(r.Context(), lines)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// filterOf reads the case list's query parameters.
func filterOf(r *http.Request) (Filter, error) {
	q := r.URL.Query()
	f := Filter{Family: q.Get("family"), Proof: q.Get("proof"), State: q.Get("state"), Sensor: q.Get("sensor"), Q: q.Get("q")}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(p.name)
		if v == "" {
			continue
		}
		t, err := parseWhen(v)
		if err != nil {
			return f, fmt.Errorf("%s: %v", p.name, err)
		}
		*p.to = t
	}
	for _, p := range []struct {
		name string
		to   *int
	}{{"limit", &f.Limit}, {"offset", &f.Offset}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 10000 {
				return f, fmt.Errorf("%s: a number from 0 to 10000", p.name)
			}
			*p.to = n
		}
	}
	return f, nil
}

// parseWhen reads a time as RFC 3339, a date, or the HTML datetime-local
// form (taken as UTC).
func parseWhen(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 or YYYY-MM-DD", v)
}

func (s *Server) apiCases(w http.ResponseWriter, r *http.Request) {
	f, err := filterOf(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	cs, err := s.st.List(r.Context(), f)
	if err != nil {
		if strings.Contains(err.Error(), "want") {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cases": cs})
}

// CaseDetail is a case with its evidence and trail.
type CaseDetail struct {
	Case
	Evidence []EvidenceLine `json:"evidence"`
	Audit    []AuditRow     `json:"audit"`
}

func (s *Server) detail(ctx context.Context, id int64, lines int) (CaseDetail, error) {
	c, err := s.st.Get(ctx, id)
	if err != nil {
		return CaseDetail{}, err
	}
	d := CaseDetail{Case: c}
	if d.Evidence, err = s.st.Evidence(ctx, id, lines); err != nil {
		return d, err
	}
	d.Audit, err = s.st.Audit(ctx, id)
	return d, err
}

func caseID(r *http.Request) (int64, bool) {
	v := r.PathValue("id")
	if id, ok := ParseTicket(v); ok {
		return id, true
	}
	id, err := strconv.ParseInt(v, 10, 64)
	return id, err == nil && id > 0
}

func (s *Server) apiCase(w http.ResponseWriter, r *http.Request) {
	id, ok := caseID(r)
	if !ok {
		apiError(w, http.StatusNotFound, "no such case")
		return
	}
	d, err := s.detail(r.Context(), id, 200)
	if errors.Is(err, ErrNotFound) {
		apiError(w, http.StatusNotFound, "no such case")
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// act takes an action for a user and tells the webhook and the notifier.
func (s *Server) act(ctx context.Context, id int64, action string, u User, note string) (Transition, error) {
	if len(note) > 4000 {
		return Transition{}, fmt.Errorf("desk: a note is at most 4000 bytes: %w", ErrTransition)
	}
	// The notice is queued in the transaction that records the action: a
	// click refused (another desk's click came first, the case moved on)
	// queues nothing, and a notice queued is always in the audit trail.
	var apply func(tx *store.Tx, c Case) error
	if action == ActNotify && s.cfg.Notifier != nil {
		apply = func(tx *store.Tx, c Case) error { return s.cfg.Notifier.queueIn(ctx, tx, c) }
	}
	tr, err := s.st.act(ctx, s.cfg.Quarantine, id, action, u.Name, note, apply)
	if err != nil {
		return tr, err
	}
	if apply != nil {
		s.cfg.Notifier.enqueue(id)
	}
	s.cfg.Log.Info().Str("event", "desk_case").Int64("case", id).Str("action", action).Str("actor", u.Name).Str("to", tr.To).Msg("desk: case " + action)
	if s.hook != nil {
		s.hook.send(tr)
	}
	return tr, nil
}

// actError maps an action's error to a status and a message for the user.
func actError(err error) (int, string) {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "no such case"
	case errors.Is(err, ErrTransition), errors.Is(err, ErrForgeable), errors.Is(err, ErrNoContact), errors.Is(err, ErrTooSoon):
		return http.StatusConflict, strings.TrimPrefix(err.Error(), "desk: ")
	case strings.Contains(err.Error(), "never quarantines"):
		return http.StatusConflict, "the policy never quarantines this network"
	}
	return 0, ""
}

func (s *Server) apiAct(w http.ResponseWriter, r *http.Request) {
	id, ok := caseID(r)
	action := r.PathValue("action")
	if !ok || !slices.Contains(Actions, action) {
		apiError(w, http.StatusNotFound, "no such case or action (notify, quarantine, release, close, note)")
		return
	}
	var body struct {
		Note string `json:"note"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			apiError(w, http.StatusBadRequest, "body: want {\"note\": \"…\"}")
			return
		}
	}
	tr, err := s.act(r.Context(), id, action, userOf(r.Context()), body.Note)
	if err != nil {
		if code, msg := actError(err); code != 0 {
			apiError(w, code, msg)
			return
		}
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tr)
}

func (s *Server) apiStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.st.Stats(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) apiUsers(w http.ResponseWriter, r *http.Request) {
	us, err := s.st.Users(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": us})
}

func (s *Server) apiAddUser(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name, Role, Password string
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&body); err != nil {
		apiError(w, http.StatusBadRequest, `body: want {"name": …, "role": "analyst"|"admin", "password": …}`)
		return
	}
	if err := s.st.AddUser(r.Context(), body.Name, body.Role, body.Password); err != nil {
		apiError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), "desk: "))
		return
	}
	s.cfg.Log.Info().Str("event", "desk_user").Str("user", body.Name).Str("role", body.Role).Str("actor", userOf(r.Context()).Name).Msg("desk: user set")
	writeJSON(w, http.StatusCreated, User{Name: body.Name, Role: body.Role})
}
