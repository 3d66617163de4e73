package desk

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of Config.
const (
	DefaultMaxBatch       = 16 << 20 // bytes of one evidence POST
	DefaultLoginTries     = 5        // failed logins per name or client per LoginWindow
	DefaultLoginWindow    = time.Minute
	sessionCookie         = "wormsink_desk"
	readHeaderTimeout     = 10 * time.Second
	contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

// Config is what a desk Server needs.
type Config struct {
	// Store holds the cases and accounts (required).
	Store *Store
	// Quarantine carries out quarantine and release; nil refuses them.
	Quarantine Quarantiner
	// Notifier sends notices; nil records the notify action only.
	Notifier *Notifier
	// Webhook, when set, gets each case transition POSTed as JSON.
	Webhook string
	// Addr is where to listen (host:port; port 0 picks one).
	Addr string
	// TLS, when set, serves HTTPS (and marks cookies Secure).
	TLS *tls.Config
	// SessionTTL is how long a login lasts; 0 is DefaultSessionTTL.
	SessionTTL time.Duration
	// LoginTries failed logins per name and per client address are allowed
	// in each LoginWindow; 0 is DefaultLoginTries / DefaultLoginWindow. The
	// failures are counted in the store, across every desk on it.
	LoginTries  int
	LoginWindow time.Duration
	// Log gets a line per action and per error.
	Log zerolog.Logger
}

// Server is the desk's web UI and API.
type Server struct {
	cfg     Config
	st      *Store
	ln      net.Listener
	srv     *http.Server
	limiter *limiter
	hook    *webhook
}

// New listens on cfg.Addr.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("desk: no store")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LoginTries <= 0 {
		cfg.LoginTries = DefaultLoginTries
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = DefaultLoginWindow
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("desk: %w", err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	s := &Server{cfg: cfg, st: cfg.Store, ln: ln, limiter: newLimiter(cfg.Store, cfg.LoginTries, cfg.LoginWindow)}
	if cfg.Webhook != "" {
		s.hook = newWebhook(cfg.Webhook, cfg.Log)
	}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: readHeaderTimeout, ErrorLog: nil}
	return s, nil
}

// Addr is the address the desk listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the desk's base URL.
func (s *Server) URL() string {
	scheme := "http"
	if s.cfg.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + s.ln.Addr().String()
}

// Serve serves until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	if s.hook != nil {
		go s.hook.run(ctx)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("desk: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// Shutdown stops taking requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("desk: %w", err)
	}
	return nil
}

// Handler is every route: /healthz is open, /api/v1/ takes Bearer tokens,
// everything else a login session.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.st.db.SQL().PingContext(r.Context()); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	s.apiRoutes(mux)
	s.uiRoutes(mux)
	return secureHeaders(mux)
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func constantEqual(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}
