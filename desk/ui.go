package desk

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"wormsink/evidence"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"join": func(s []string) string { return strings.Join(s, ", ") },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"dur": func(s float64) string {
		if s == 0 {
			return "–"
		}
		return time.Duration(s * float64(time.Second)).Round(time.Minute).String()
	},
}).ParseFS(webFS, "web/*.html"))

const loginCookie = "wormsink_desk_login"

// page is what every page's template sees.
type page struct {
	Title    string
	User     User
	CSRF     string
	Msg, Err string
	Done     string // the action a message reports on, for a class name
	Filtered bool
	Next     string
	// per page
	F                        Filter
	Since, Until             string
	Cases                    []Case
	Families, Proofs, States []string
	Actions                  []string
	More                     string
	C                        Case
	Acts                     []actButton
	Chart                    *chartData
	Audit                    []AuditRow
	Evidence                 []EvidenceLine
	S                        Stats
	Users                    []User
}

type actButton struct {
	Name string
	OK   bool
}

type sessKey struct{}

func (s *Server) uiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /static/desk.css", func(w http.ResponseWriter, r *http.Request) {
		b, _ := webFS.ReadFile("web/desk.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(b)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.session(s.logout, false))
	mux.HandleFunc("GET /{$}", s.session(s.casesPage, false))
	mux.HandleFunc("POST /cases/bulk", s.session(s.bulk, false))
	mux.HandleFunc("GET /cases/{id}", s.session(s.casePage, false))
	mux.HandleFunc("POST /cases/{id}/act", s.session(s.caseAct, false))
	mux.HandleFunc("GET /stats", s.session(s.statsPage, false))
	mux.HandleFunc("GET /users", s.session(s.usersPage, true))
	mux.HandleFunc("POST /users", s.session(s.addUser, true))
	mux.HandleFunc("/", s.session(func(w http.ResponseWriter, r *http.Request, _ Session) {
		http.Error(w, "Not found.", http.StatusNotFound)
	}, false))
}

func (s *Server) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: r.TLS != nil || s.cfg.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// session lets a request with a live login session through; a POST must
// carry the session's CSRF token. adminOnly refuses analysts.
func (s *Server) session(h func(http.ResponseWriter, *http.Request, Session), adminOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess Session
		ck, err := r.Cookie(sessionCookie)
		if err == nil && ck.Value != "" {
			sess, err = s.st.Session(r.Context(), ck.Value)
		} else {
			err = ErrNotFound
		}
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				s.internal(w, r, err)
				return
			}
			if r.Method == http.MethodGet {
				next := r.URL.RequestURI()
				http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
				return
			}
			http.Error(w, "Log in first.", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil || !constantEqual(r.PostForm.Get("csrf"), sess.CSRF) {
				http.Error(w, "This form is stale or was not sent by the desk (CSRF token missing or wrong): reload the page and try again.", http.StatusForbidden)
				return
			}
		}
		if adminOnly && sess.User.Role != RoleAdmin {
			http.Error(w, "Only an admin manages users.", http.StatusForbidden)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessKey{}, sess)), sess)
	}
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, name string, p *page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		s.cfg.Log.Error().Str("event", "desk_error").Err(err).Str("page", name).Msg("desk: page not rendered")
	}
}

func safeNext(next string) string {
	// Only a path on this desk: never "//host" or "/\host", which browsers
	// take for another site.
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	// Keep the token a browser has: a second login page (another tab, the
	// favicon's redirect) must not make the first one's form stale.
	tok := randomToken()
	if ck, err := r.Cookie(loginCookie); err == nil && len(ck.Value) == len(tok) {
		tok = ck.Value
	}
	http.SetCookie(w, s.cookie(r, loginCookie, tok, 3600))
	s.render(w, r, http.StatusOK, "login", &page{Title: "Log in", CSRF: tok, Next: safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ck, _ := r.Cookie(loginCookie)
	if err := r.ParseForm(); err != nil || ck == nil || !constantEqual(r.PostForm.Get("csrf"), ck.Value) {
		http.Error(w, "This form is stale or was not sent by the desk (CSRF token missing or wrong): reload the page and try again.", http.StatusForbidden)
		return
	}
	name, pw, next := r.PostForm.Get("name"), r.PostForm.Get("password"), safeNext(r.PostForm.Get("next"))
	again := func(code int, msg string) {
		tok := randomToken()
		http.SetCookie(w, s.cookie(r, loginCookie, tok, 3600))
		s.render(w, r, code, "login", &page{Title: "Log in", CSRF: tok, Next: next, Err: msg})
	}
	now := time.Now()
	keys := []string{"ip:" + clientIP(r), "user:" + name}
	if blocked, err := s.limiter.blocked(r.Context(), now, keys...); err != nil {
		s.internal(w, r, err)
		return
	} else if blocked {
		again(http.StatusTooManyRequests, "Too many failed attempts: wait a minute and try again.")
		return
	}
	u, err := s.st.Login(r.Context(), name, pw)
	if err != nil {
		if errors.Is(err, ErrBadLogin) {
			if err := s.limiter.fail(r.Context(), now, keys...); err != nil {
				s.internal(w, r, err)
				return
			}
			s.cfg.Log.Warn().Str("event", "desk_login_failed").Str("client", clientIP(r)).Msg("desk: failed login")
			again(http.StatusUnauthorized, "Wrong name or password.")
			return
		}
		s.internal(w, r, err)
		return
	}
	id, _, err := s.st.NewSession(r.Context(), u, s.cfg.SessionTTL)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	http.SetCookie(w, s.cookie(r, loginCookie, "", -1))
	http.SetCookie(w, s.cookie(r, sessionCookie, id, int(s.cfg.SessionTTL/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, sess Session) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		s.st.EndSession(r.Context(), ck.Value)
	}
	http.SetCookie(w, s.cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

var proofNames = []string{"datagram", "trusted-source", "exchange", "tcp"}

func (s *Server) casesPage(w http.ResponseWriter, r *http.Request, sess Session) {
	p := &page{Title: "Cases", User: sess.User, CSRF: sess.CSRF, Proofs: proofNames, States: States, Actions: Actions}
	p.Msg = doneMessage(r.URL.Query().Get("done"))
	f, err := filterOf(r)
	p.F = f
	q := r.URL.Query()
	p.Since, p.Until = q.Get("since"), q.Get("until")
	if err != nil {
		p.Err = err.Error()
		s.render(w, r, http.StatusBadRequest, "cases", p)
		return
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	cs, err := s.st.List(r.Context(), f)
	if err != nil {
		if strings.Contains(err.Error(), "want") {
			p.Err = strings.TrimPrefix(err.Error(), "desk: ")
			s.render(w, r, http.StatusBadRequest, "cases", p)
			return
		}
		s.internal(w, r, err)
		return
	}
	p.Cases = cs
	p.Filtered = f.Family != "" || f.Proof != "" || f.State != "" || f.Sensor != "" || f.Q != "" || !f.Since.IsZero() || !f.Until.IsZero()
	seen := map[string]bool{}
	for _, c := range cs {
		for _, fam := range c.Families {
			if !seen[fam] {
				seen[fam] = true
				p.Families = append(p.Families, fam)
			}
		}
	}
	slices.Sort(p.Families)
	if len(cs) == f.Limit {
		q.Set("offset", strconv.Itoa(f.Offset+f.Limit))
		p.More = "/?" + q.Encode()
	}
	s.render(w, r, http.StatusOK, "cases", p)
}

// doneMessage turns a redirect's fixed code into its message: the text is
// never taken from the URL.
func doneMessage(code string) string {
	switch code {
	case "":
		return ""
	case "bulk":
		return "Done for the selected cases."
	case "user":
		return "User saved."
	}
	if slices.Contains(Actions, code) {
		return "Done: " + code + "."
	}
	return ""
}

func (s *Server) bulk(w http.ResponseWriter, r *http.Request, sess Session) {
	action := r.PostForm.Get("action")
	if !slices.Contains(Actions, action) {
		http.Error(w, "Unknown action.", http.StatusBadRequest)
		return
	}
	var failed []string
	for _, v := range r.PostForm["id"] {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		if _, err := s.act(r.Context(), id, action, sess.User, r.PostForm.Get("note")); err != nil {
			code, msg := actError(err)
			if code == 0 {
				s.internal(w, r, err)
				return
			}
			failed = append(failed, Ticket(id)+": "+msg)
		}
	}
	if len(failed) > 0 {
		p := &page{Title: "Cases", User: sess.User, CSRF: sess.CSRF, Proofs: proofNames, States: States, Actions: Actions,
			Err: "Not done for " + strings.Join(failed, "; ")}
		p.Cases, _ = s.st.List(r.Context(), Filter{})
		s.render(w, r, http.StatusConflict, "cases", p)
		return
	}
	http.Redirect(w, r, "/?done=bulk", http.StatusSeeOther)
}

func (s *Server) casePageData(ctx context.Context, id int64, sess Session) (*page, error) {
	d, err := s.detail(ctx, id, 200)
	if err != nil {
		return nil, err
	}
	p := &page{Title: d.Ticket, User: sess.User, CSRF: sess.CSRF, C: d.Case, Audit: d.Audit, Evidence: d.Evidence}
	for _, a := range Actions {
		ok := Allowed(a, d.State)
		if a == ActQuarantine {
			pr, _ := evidence.ParseProof(d.Proof)
			ok = ok && pr.Verified()
		}
		p.Acts = append(p.Acts, actButton{a, ok})
	}
	p.Chart = buildChart(d.Evidence)
	return p, nil
}

func (s *Server) casePage(w http.ResponseWriter, r *http.Request, sess Session) {
	id, ok := caseID(r)
	if !ok {
		http.Error(w, "No such case.", http.StatusNotFound)
		return
	}
	p, err := s.casePageData(r.Context(), id, sess)
	if errors.Is(err, ErrNotFound) {
		http.Error(w, "No such case.", http.StatusNotFound)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	p.Msg = doneMessage(r.URL.Query().Get("done"))
	if p.Msg != "" {
		p.Done = r.URL.Query().Get("done")
	}
	s.render(w, r, http.StatusOK, "case", p)
}

func (s *Server) caseAct(w http.ResponseWriter, r *http.Request, sess Session) {
	id, ok := caseID(r)
	action := r.PostForm.Get("action")
	if !ok || !slices.Contains(Actions, action) {
		http.Error(w, "No such case or action.", http.StatusNotFound)
		return
	}
	if _, err := s.act(r.Context(), id, action, sess.User, r.PostForm.Get("note")); err != nil {
		code, msg := actError(err)
		if code == 0 {
			s.internal(w, r, err)
			return
		}
		p, perr := s.casePageData(r.Context(), id, sess)
		if perr != nil {
			http.Error(w, msg, code)
			return
		}
		p.Err = "Not done: " + msg
		s.render(w, r, code, "case", p)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/cases/%d?done=%s", id, action), http.StatusSeeOther)
}

func (s *Server) statsPage(w http.ResponseWriter, r *http.Request, sess Session) {
	st, err := s.st.Stats(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "stats", &page{Title: "Statistics", User: sess.User, CSRF: sess.CSRF, S: st})
}

func (s *Server) usersPage(w http.ResponseWriter, r *http.Request, sess Session) {
	us, err := s.st.Users(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "users", &page{Title: "Users", User: sess.User, CSRF: sess.CSRF, Users: us, Msg: doneMessage(r.URL.Query().Get("done"))})
}

func (s *Server) addUser(w http.ResponseWriter, r *http.Request, sess Session) {
	name, role := r.PostForm.Get("name"), r.PostForm.Get("role")
	if err := s.st.AddUser(r.Context(), name, role, r.PostForm.Get("password")); err != nil {
		us, _ := s.st.Users(r.Context())
		s.render(w, r, http.StatusBadRequest, "users", &page{Title: "Users", User: sess.User, CSRF: sess.CSRF, Users: us, Err: strings.TrimPrefix(err.Error(), "desk: ")})
		return
	}
	s.cfg.Log.Info().Str("event", "desk_user").Str("user", name).Str("role", role).Str("actor", sess.User.Name).Msg("desk: user set")
	http.Redirect(w, r, "/users?done=user", http.StatusSeeOther)
}
