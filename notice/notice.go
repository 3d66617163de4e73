// Package notice is the walled garden's notice page: what was seen, how to clean
// up, and a "my computer is clean" button within the policy's allowance.
package notice

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"wormsink/quarantine"
)

// Quarantine is what the page needs of the quarantine engine.
type Quarantine interface {
	Lookup(addr netip.Addr) (*quarantine.Entry, bool)
	SelfRelease(ctx context.Context, addr netip.Addr) (*quarantine.Entry, error)
	Policy() *quarantine.Policy
}

// Config is what a Server needs.
type Config struct {
	// Listen is the HTTP address (--notice-listen). HTTPS cannot be sent
	// here: a browser that asks for an https:// site gets a certificate
	// error, never this page; operating systems' captive-portal probes use
	// plain HTTP and open it.
	Listen string
	// ISP is the operator's name on the page; "" says "your Internet
	// provider".
	ISP string
	// Log gets a line per self-release asked for.
	Log zerolog.Logger
}

// Server serves the notice page. It has one lifecycle: New, Serve until the
// context ends, Shutdown.
type Server struct {
	cfg    Config
	q      Quarantine
	secret [32]byte // keys the form tokens; new at every start
	srv    *http.Server
	ln     net.Listener
	mu     sync.Mutex
}

// New makes a Server and binds its address.
func New(cfg Config, q Quarantine) (*Server, error) {
	if q == nil {
		return nil, errors.New("notice: no quarantine")
	}
	s := &Server{cfg: cfg, q: q}
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// ReleasePath is where the release button posts to; every other path, on
// any Host, is the notice page.
const ReleasePath = "/.well-known/wormsink/release"

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script, no frame, nothing from elsewhere; the form posts here.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	client, ok := clientAddr(r)
	if !ok {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if r.URL.Path == ReleasePath && r.Method == http.MethodPost {
		s.release(w, r, client)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.page(w, client, "", http.StatusNetworkAuthenticationRequired)
}

func clientAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// token is the release form's CSRF token: bound to the client's address
// and to the quarter hour, keyed by a secret of this process, so that a
// page elsewhere cannot post the form for the customer.
func (s *Server) token(client netip.Addr, at time.Time) string {
	m := hmac.New(sha256.New, s.secret[:])
	b := client.As16()
	m.Write(b[:])
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], uint64(at.Unix()/900))
	m.Write(t[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Server) tokenOK(client netip.Addr, got string) bool {
	now := time.Now()
	for _, at := range []time.Time{now, now.Add(-15 * time.Minute)} {
		if hmac.Equal([]byte(got), []byte(s.token(client, at))) {
			return true
		}
	}
	return false
}

func (s *Server) release(w http.ResponseWriter, r *http.Request, client netip.Addr) {
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil || !s.tokenOK(client, r.PostForm.Get("token")) {
		s.page(w, client, "The form has expired. Please try again.", http.StatusForbidden)
		return
	}
	// One click at a time per process; the engine's transaction makes it
	// safe across processes too.
	s.mu.Lock()
	ent, err := s.q.SelfRelease(r.Context(), client)
	s.mu.Unlock()
	switch {
	case err == nil:
		s.cfg.Log.Info().Str("event", "self_release").Str("client", client.String()).Str("subject", ent.Subject.String()).Msg("customer released themselves")
		s.render(w, http.StatusOK, pageData{ISP: s.isp(), Released: true, Left: max(s.q.Policy().SelfReleaseMax-ent.SelfReleases, 0),
			Grace: s.q.Policy().SelfReleaseGrace.String(), Contact: s.q.Policy().Contact})
	case errors.Is(err, quarantine.ErrNotQuarantined):
		s.page(w, client, "", http.StatusOK)
	case errors.Is(err, quarantine.ErrNoSelfRelease):
		s.page(w, client, "You have used every release you can do yourself. Please contact us: we will help you and lift the restriction.", http.StatusForbidden)
	default:
		s.cfg.Log.Error().Str("event", "notice_error").Err(err).Msg("notice: release failed")
		s.page(w, client, "Something went wrong on our side. Please try again in a minute.", http.StatusInternalServerError)
	}
}

type pageData struct {
	ISP, Contact  string
	Quarantined   bool
	Released      bool
	Notice        quarantine.Notice
	Family        string
	First, Last   string
	Token, Action string
	Left          int
	CanRelease    bool
	Message       string
	Grace         string
}

func (s *Server) isp() string {
	if s.cfg.ISP != "" {
		return s.cfg.ISP
	}
	return "your Internet provider"
}

func (s *Server) page(w http.ResponseWriter, client netip.Addr, msg string, code int) {
	p := s.q.Policy()
	d := pageData{ISP: s.isp(), Contact: p.Contact, Message: msg}
	ent, ok := s.q.Lookup(client)
	if !ok {
		if code == http.StatusNetworkAuthenticationRequired {
			code = http.StatusOK
		}
		s.render(w, code, d)
		return
	}
	d.Quarantined = true
	d.Family = ent.Family
	d.Notice = p.Notice(ent.Family)
	d.First = day(ent.FirstSeen)
	d.Last = day(ent.LastSighting)
	d.Left = max(p.SelfReleaseMax-ent.SelfReleases, 0)
	d.CanRelease = d.Left > 0
	d.Token = s.token(client, time.Now())
	d.Action = ReleasePath
	s.render(w, code, d)
}

// day says when, in the customer's words: a date and an hour, UTC.
func day(t time.Time) string {
	if t.IsZero() {
		return "recently"
	}
	return t.UTC().Format("Monday 2 January 2006, 15:04 UTC")
}

func (s *Server) render(w http.ResponseWriter, code int, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	pageTmpl.Execute(w, d)
}

var pageTmpl = template.Must(template.New("notice").Funcs(template.FuncMap{
	"paras": func(s string) []string { return strings.Split(strings.TrimSpace(s), "\n\n") },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .Quarantined}}{{.Notice.Title}}{{else}}Your connection{{end}}</title>
<style>
body{font:1.05rem/1.5 system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#111;background:#fff}
h1{font-size:1.5rem}.box{border:2px solid #b00;padding:1rem;border-radius:.3rem}
button{font-size:1.05rem;padding:.5rem 1rem}p.msg{font-weight:bold}
</style>
</head>
<body>
<main>
{{if .Message}}<p class="msg" role="alert">{{.Message}}</p>{{end}}
{{if .Released}}
<h1>Thank you: your connection is open again</h1>
<p>The restriction is lifted. If the infection comes back within {{.Grace}} we will not restrict your connection again at once, so that you can finish cleaning up.</p>
<p>You can release yourself {{.Left}} more {{if eq .Left 1}}time{{else}}times{{end}}; after that, please contact us.</p>
{{else if .Quarantined}}
<h1>{{.Notice.Title}}</h1>
<div class="box">
<p>{{.ISP}} saw a device on your connection try to download <strong>{{.Family}}</strong>, a computer worm, first on {{.First}} and last on {{.Last}}.</p>
{{range paras .Notice.What}}<p>{{.}}</p>{{end}}
<p>To protect you and others, web sites are replaced by this page until the device is clean. Updates and antivirus sites still work.</p>
</div>
<h2>How to clean up</h2>
{{range paras .Notice.Cleanup}}<p>{{.}}</p>{{end}}
{{if .Notice.Links}}<ul>{{range .Notice.Links}}<li><a href="{{.}}">{{.}}</a></li>{{end}}</ul>{{end}}
<h2>When you are done</h2>
{{if .CanRelease}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="token" value="{{.Token}}">
<p><button type="submit">My computer is clean: open my connection</button></p>
<p>You can do this {{.Left}} more {{if eq .Left 1}}time{{else}}times{{end}}.</p>
</form>
{{else}}
<p>You have used every release you can do yourself. Please contact us and we will help.</p>
{{end}}
{{else}}
<h1>Your connection is not restricted</h1>
<p>There is nothing to do. If a web site still shows this page, wait a minute and reload it.</p>
{{end}}
{{if .Contact}}<h2>Contact</h2><p>{{.Contact}}</p>{{end}}
<p><small>This page never asks for a password or payment. If a page like it does, it is not from {{.ISP}}.</small></p>
</main>
</body>
</html>
`))
