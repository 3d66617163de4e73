package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"wormsink/attribution"
	"wormsink/desk"
	"wormsink/quarantine"
	"wormsink/report"
)

const deskUsage = `usage: wormsink desk --listen ADDR --db URL [--tls-cert FILE --tls-key FILE] [--smtp URL --smtp-auth-file FILE --contacts FILE --subscribers FILE] [--webhook URL]
       wormsink desk user add NAME --role analyst|admin [--db URL]    (the password is read from stdin)
       wormsink desk token add NAME --role sensor|analyst|admin [--db URL]    (prints the token last)`

// runDesk is the abuse desk: the web UI and API over the cases, and its
// accounts.
func runDesk(ctx context.Context, e env, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "user", "token":
			return runDeskAccount(ctx, e, args)
		case "help":
			args = []string{"--help"}
		}
	}
	fs := newFlags(e, "desk", "")
	fs.Usage = func() {
		// The desk's own flags, after the usage of the account commands
		// beside it.
		fmt.Fprintln(fs.Output(), deskUsage)
		fs.PrintDefaults()
	}
	var dbURL string
	dbFlag(fs, &dbURL)
	listen := "127.0.0.1:8080"
	fs.Var((*listenAddr)(&listen), "listen", "HTTP(S) address of the desk; plain HTTP only on loopback")
	certFile := fs.String("tls-cert", "", "PEM certificate (chain) to serve HTTPS with")
	keyFile := fs.String("tls-key", "", "PEM private key of --tls-cert")
	smtpURL := fs.String("smtp", "", "mail server for notices: smtp://HOST:PORT (STARTTLS when offered) or smtps://HOST:PORT (default: no e-mail)")
	smtpAuth := fs.String("smtp-auth-file", "", `file with one line "USER PASSWORD" for the mail server`)
	smtpFrom := fs.String("smtp-from", desk.DefaultFrom, "sender of notices")
	contacts := fs.String("contacts", "", `file of lines "SUBJECT EMAIL [LANG] [external]": whom to notify; SUBJECT a subscriber id, an address or a CIDR; external contacts get the case's X-ARF report`)
	subscribers := fs.String("subscribers", "", `the attribution's subscribers file, lines "CIDR ID [EMAIL [LANG]]": a case --contacts has no line for is written to its subscriber's EMAIL`)
	internal := fs.String("internal-domains", "", "comma-separated e-mail domains of your own customers: a recipient outside them counts as external and gets the case's X-ARF report (default: only contacts marked external)")
	reporterOrg := fs.String("reporter-org", "", "X-ARF reporting organisation of notices' reports (default: the --smtp-from domain)")
	templates := fs.String("templates", "", "directory of notice templates FAMILY.LANG.tmpl and default.LANG.tmpl (text/template; default: the built-in text)")
	interval := fs.Duration("notice-interval", desk.DefaultNoticeInterval, "least time between two notices of one case")
	webhook := fs.String("webhook", "", "URL that gets each case transition POSTed as JSON")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() != 0 {
		return usageErr(e, "desk: unexpected argument %q (see wormsink desk --help)", fs.Arg(0))
	}
	if (*certFile == "") != (*keyFile == "") {
		return usageErr(e, "desk: --tls-cert and --tls-key go together")
	}
	var tlsCfg *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fail(e, "desk: --tls-cert/--tls-key: %v", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	} else if !loopbackListen(listen) {
		return usageErr(e, "desk: --listen %s is not a loopback address: serve HTTPS (--tls-cert, --tls-key), passwords and tokens cross it", listen)
	}
	if (*smtpAuth != "" || *contacts != "" || *subscribers != "") && *smtpURL == "" {
		return usageErr(e, "desk: --smtp-auth-file, --contacts and --subscribers need --smtp")
	}
	log := zerolog.New(e.stderr).With().Timestamp().Logger()
	db, err := openDB(ctx, dbURL)
	if err != nil {
		return fail(e, "desk: %v", err)
	}
	defer db.Close()
	st, err := desk.Open(ctx, db)
	if err != nil {
		return fail(e, "desk: %v", err)
	}
	eng, err := quarantine.New(ctx, quarantine.Config{DB: db, Log: log})
	if err != nil {
		return fail(e, "desk: %v", err)
	}
	var notifier *desk.Notifier
	if *smtpURL != "" {
		nc := desk.NotifierConfig{Store: st, SMTP: *smtpURL, From: *smtpFrom, Templates: *templates, Interval: *interval, Log: log}
		if *internal != "" {
			nc.InternalDomains = strings.Split(*internal, ",")
		}
		if nc.Reporter, err = report.NewReporter(*reporterOrg, *smtpFrom, ""); err != nil {
			return fail(e, "desk: --smtp-from: %v", err)
		}
		if *smtpAuth != "" {
			if nc.User, nc.Password, err = desk.ReadAuthFile(*smtpAuth); err != nil {
				return fail(e, "%v", err)
			}
		}
		if *contacts != "" {
			f, err := os.Open(*contacts)
			if err != nil {
				return fail(e, "desk: --contacts: %v", err)
			}
			nc.Contacts, err = desk.ParseContacts(f, *contacts)
			f.Close()
			if err != nil {
				return fail(e, "desk: --contacts: %v", err)
			}
		}
		if *subscribers != "" {
			subs, err := attribution.LoadSubscribers(*subscribers)
			if err != nil {
				return fail(e, "desk: --subscribers: %v", err)
			}
			nc.Subscribers = subs
		}
		if notifier, err = desk.NewNotifier(nc); err != nil {
			return fail(e, "%v", err)
		}
		go notifier.Serve(ctx)
	}
	srv, err := desk.New(desk.Config{Store: st, Quarantine: eng, Notifier: notifier, Webhook: *webhook, Addr: listen, TLS: tlsCfg, Log: log})
	if err != nil {
		return fail(e, "%v", err)
	}
	fmt.Fprintf(e.stdout, "wormsink desk: %s/ (database %s)\n", srv.URL(), db)
	if err := srv.Serve(ctx); err != nil {
		return fail(e, "%v", err)
	}
	return exitOK
}

func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// runDeskAccount is desk user add and desk token add.
func runDeskAccount(ctx context.Context, e env, args []string) int {
	kind := args[0]
	if len(args) == 2 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help" || args[1] == "help") {
		args = []string{kind, "add", "--help"}
	}
	if len(args) < 2 || args[1] != "add" {
		return usageErr(e, "desk %s: want: desk %s add NAME --role ROLE", kind, kind)
	}
	fs := newFlags(e, "desk "+kind+" add", "NAME")
	var dbURL string
	dbFlag(fs, &dbURL)
	role := fs.String("role", "", "analyst or admin (a token may also be sensor: ships evidence, nothing else)")
	if code, done := parseFlags(fs, e, reorderFlags(fs, args[2:])); done {
		return code
	}
	if fs.NArg() != 1 {
		return usageErr(e, "desk %s add: takes exactly one NAME", kind)
	}
	name := fs.Arg(0)
	if err := desk.CheckName(name); err != nil {
		return usageErr(e, "desk %s add: %v", kind, err)
	}
	if *role == "" {
		return usageErr(e, "desk %s add: needs --role", kind)
	}
	db, err := openDB(ctx, dbURL)
	if err != nil {
		return fail(e, "desk: %v", err)
	}
	defer db.Close()
	st, err := desk.Open(ctx, db)
	if err != nil {
		return fail(e, "desk: %v", err)
	}
	if kind == "user" {
		pw, err := readDeskPassword(e.stdin)
		if err != nil {
			return fail(e, "desk user add: %v", err)
		}
		if err := st.AddUser(ctx, name, *role, pw); err != nil {
			return fail(e, "%v", err)
		}
		fmt.Fprintf(e.stdout, "user %s (%s) saved\n", name, *role)
		return exitOK
	}
	tok, err := st.AddToken(ctx, name, *role)
	if err != nil {
		return fail(e, "%v", err)
	}
	fmt.Fprintf(e.stderr, "token %s (%s) saved; it is shown once, only its digest is kept:\n", name, *role)
	fmt.Fprintln(e.stdout, tok)
	return exitOK
}

// readDeskPassword takes the first line of stdin.
func readDeskPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on stdin")
	}
	return line, nil
}

// readSecretFile reads a token from a file: its first line, trimmed.
func readSecretFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s:1: empty", file)
	}
	return line, nil
}
