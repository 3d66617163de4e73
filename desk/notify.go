package desk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"wormsink/report"
	"wormsink/store"
)

// Defaults of NotifierConfig.
const (
	DefaultNoticeInterval = 24 * time.Hour
	DefaultNoticeAttempts = 6
	DefaultNoticeBackoff  = 2 * time.Second
	DefaultLang           = "en"
	DefaultFrom           = "abuse@localhost"
	DefaultNoticeLease    = 3 * time.Minute
	DefaultNoticeScan     = 30 * time.Second
)

// Errors of Queue.
var (
	ErrNoContact = errors.New("no contact for this case (--contacts, --subscribers)")
	ErrTooSoon   = errors.New("a notice for this case was sent or is on its way within the notice interval")
)

// NotifierConfig is what a Notifier needs.
type NotifierConfig struct {
	Store *Store
	// SMTP is the mail server: smtp://HOST:PORT (STARTTLS when offered,
	// required when authenticating) or smtps://HOST:PORT (TLS from the
	// start).
	SMTP string
	// User and Password authenticate (PLAIN); empty is no authentication.
	User, Password string
	// From is the sender; "" is DefaultFrom.
	From string
	// Contacts says whom to write to.
	Contacts *Contacts
	// Subscribers is the attribution's subscriber data: a case with no
	// contact in Contacts is written to the e-mail address it names for
	// the case's subscriber (or for the subscriber of one of the case's
	// addresses); nil is none.
	Subscribers SubscriberContacts
	// Reporter names who files the X-ARF reports external contacts get;
	// the zero Reporter is made from From (its domain the organisation).
	Reporter report.Reporter
	// InternalDomains, when set, are the e-mail domains (and their
	// subdomains) of recipients that are not external: every other
	// recipient gets X-ARF reports too. Empty: only contacts marked
	// external get them.
	InternalDomains []string
	// Templates is a directory of FAMILY.LANG.tmpl and default.LANG.tmpl
	// files (text/template: a "Subject: …" line, a blank line, the body);
	// "" uses the built-in text.
	Templates string
	// Interval is the least time between two notices of one case; 0 is
	// DefaultNoticeInterval.
	Interval time.Duration
	// Attempts and Backoff: a notice is tried Attempts times, waiting
	// Backoff, then twice that, … in between; 0 is the default.
	Attempts int
	Backoff  time.Duration
	// Lease is how long a desk's claim on a notice lasts without being
	// renewed (it is renewed before each attempt): another desk takes the
	// notice over only after it runs out. One attempt is cut off at half of
	// it, so a claim never runs out while its notice is being sent; 0 is
	// DefaultNoticeLease.
	Lease time.Duration
	// Scan is how often the desk looks for notices nobody holds (queued
	// by another desk, or left by one that died); 0 is DefaultNoticeScan.
	Scan time.Duration
	// TLS is the client TLS configuration (root CAs); nil is the system's.
	TLS *tls.Config
	Log zerolog.Logger
}

// SubscriberContacts is the attribution's subscriber data as notices use
// it (attribution.Subscribers).
type SubscriberContacts interface {
	// Lookup returns the subscriber of a, or "".
	Lookup(a netip.Addr) string
	// Contact returns subscriber id's e-mail address and language.
	Contact(id string) (email, lang string, ok bool)
}

// Notifier e-mails notices to subscribers' contacts, one worker in order,
// and records each notice's delivery status on its case.
type Notifier struct {
	cfg  NotifierConfig
	srv  *url.URL
	tmpl *template.Template
	in   chan int64 // case ids
	// owner names this desk in the claims it takes on notices.
	owner string

	mu      sync.Mutex
	pending map[int64]bool
}

// ReadAuthFile reads "USER PASSWORD" (one line) from file.
func ReadAuthFile(file string) (user, password string, err error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("desk: smtp auth: %w", err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	user, password, ok := strings.Cut(strings.TrimSpace(line), " ")
	if !ok || user == "" || strings.TrimSpace(password) == "" {
		return "", "", fmt.Errorf("desk: smtp auth: %s:1: want USER PASSWORD", file)
	}
	return user, strings.TrimSpace(password), nil
}

// NewNotifier checks the configuration and loads the templates.
func NewNotifier(cfg NotifierConfig) (*Notifier, error) {
	u, err := url.Parse(cfg.SMTP)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("desk: --smtp %q: want smtp://HOST:PORT or smtps://HOST:PORT (credentials in --smtp-auth-file)", cfg.SMTP)
	}
	if u.Port() == "" {
		port := "25"
		if u.Scheme == "smtps" {
			port = "465"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if cfg.From == "" {
		cfg.From = DefaultFrom
	}
	if cfg.Reporter.Contact == "" {
		if cfg.Reporter, err = report.NewReporter("", cfg.From, ""); err != nil {
			return nil, fmt.Errorf("desk: --smtp-from %q: %w", cfg.From, err)
		}
	}
	for i, d := range cfg.InternalDomains {
		d = strings.ToLower(strings.Trim(strings.TrimSpace(d), "."))
		if d == "" || strings.ContainsAny(d, "@ \t,") {
			return nil, fmt.Errorf("desk: internal domain %q: want a domain like isp.example", cfg.InternalDomains[i])
		}
		cfg.InternalDomains[i] = d
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultNoticeInterval
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultNoticeAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultNoticeBackoff
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultNoticeLease
	}
	if cfg.Scan <= 0 {
		cfg.Scan = DefaultNoticeScan
	}
	ob := make([]byte, 8)
	rand.Read(ob)
	owner := hex.EncodeToString(ob)
	t, err := loadTemplates(cfg.Templates)
	if err != nil {
		return nil, err
	}
	return &Notifier{cfg: cfg, srv: u, tmpl: t, in: make(chan int64, 1024), owner: owner, pending: map[int64]bool{}}, nil
}

// loadTemplates parses the built-in notice and the files of dir, then
// renders every template once with a sample case: a template that does not
// parse, names a field a notice does not have or calls an unknown function
// stops the desk at start with FILE:LINE, rather than failing (or sending
// "<no value>") when a customer is due a notice.
func loadTemplates(dir string) (*template.Template, error) {
	t := template.New("notice").Option("missingkey=error")
	if _, err := t.New("default." + DefaultLang).Parse(defaultNotice); err != nil {
		return nil, err
	}
	if dir == "" {
		return t, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.tmpl"))
	if err != nil {
		return nil, fmt.Errorf("desk: templates: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("desk: templates: no *.tmpl file in %s", dir)
	}
	fileOf := map[string]string{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".tmpl")
		fam, lang, ok := cutLast(name, ".")
		if !ok || fam == "" || !validLang(lang) {
			return nil, fmt.Errorf("desk: template %s: name it FAMILY.LANG.tmpl or default.LANG.tmpl (LANG like en or de)", f)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("desk: templates: %w", err)
		}
		fileOf[name] = f
		if _, err := t.New(name).Parse(string(b)); err != nil {
			return nil, templateError(err, fileOf)
		}
	}
	sample := sampleNotice()
	for name, f := range fileOf {
		var out bytes.Buffer
		if err := t.Lookup(name).Execute(&out, sample); err != nil {
			return nil, templateError(err, fileOf)
		}
		if strings.Contains(out.String(), "<no value>") {
			return nil, fmt.Errorf("desk: template %s: renders \"<no value>\": it names something a notice does not have", f)
		}
	}
	return t, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// tmplErrPos is where text/template says an error is: "template: NAME:LINE:"
// (parse) or "template: NAME:LINE:COL: executing …" (execution).
var tmplErrPos = regexp.MustCompile(`^template: ([^:]+):(\d+):(?:\d+:)? ?(.*)$`)

// templateError names the file and line of a template's error.
func templateError(err error, fileOf map[string]string) error {
	m := tmplErrPos.FindStringSubmatch(err.Error())
	if m == nil || fileOf[m[1]] == "" {
		return fmt.Errorf("desk: templates: %w", err)
	}
	return fmt.Errorf("desk: template %s:%s: %s", fileOf[m[1]], m[2], m[3])
}

// sampleNotice is a case with every field set, to try templates on.
func sampleNotice() noticeData {
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := Case{ID: 42, Ticket: Ticket(42), Subject: "subscriber:sample", State: StateNew, FirstSeen: t, LastSeen: t,
		Families: []string{"blaster"}, Evidence: "strong", Proof: "tcp", Addresses: []string{"192.0.2.1"},
		Sensors: []string{"sensor"}, Sightings: 1, Lines: 1, NotifiedAt: t, Notice: "queued", UpdatedAt: t}
	return newNoticeData(c)
}

// defaultNotice is the built-in notice: what was seen, in the customer's
// words, and what to do.
const defaultNotice = `Subject: [{{.Ticket}}] A computer on your Internet connection appears to be infected
Dear customer,

our network saw a computer on your connection behave like the {{.FamilyText}}
worm: it tried to reach a place only that worm goes to.

  Your case number: {{.Ticket}}
  First seen:  {{.First}}
  Last seen:   {{.Last}}
  Address(es): {{.AddressText}}

Please check the computers on your connection with an up-to-date virus
scanner and install the missing updates of their operating system. If you
need help, reply to this message and keep the case number in the subject.

Your abuse team
`

// noticeData is what a template sees.
type noticeData struct {
	Case
	FamilyText, AddressText, First, Last string
}

func newNoticeData(c Case) noticeData {
	return noticeData{Case: c, FamilyText: strings.Join(c.Families, ", "), AddressText: strings.Join(c.Addresses, ", "),
		First: c.FirstSeen.Format("2006-01-02 15:04 UTC"), Last: c.LastSeen.Format("2006-01-02 15:04 UTC")}
}

// Queue accepts a case for a notice, or refuses it when nobody can be
// written to or one was sent (or is under way, from any desk on the
// database) within the interval.
func (n *Notifier) Queue(ctx context.Context, c Case) error {
	if _, ok := n.contact(c); !ok {
		return ErrNoContact
	}
	ok, err := n.cfg.Store.queueNotice(ctx, c.ID, time.Now().Add(-n.cfg.Interval))
	if err != nil {
		return err
	}
	if !ok {
		return ErrTooSoon
	}
	n.enqueue(c.ID) // when the worker is busy, the next scan finds it
	return nil
}

// queueIn is Queue inside the transaction that records the notify
// action (tx, with c's row locked): the notice is queued if and only if
// the action is recorded. The caller enqueues c once tx is committed.
func (n *Notifier) queueIn(ctx context.Context, tx *store.Tx, c Case) error {
	if _, ok := n.contact(c); !ok {
		return ErrNoContact
	}
	ok, err := n.cfg.Store.queueNoticeOn(ctx, tx, c.ID, time.Now().Add(-n.cfg.Interval))
	if err != nil {
		return err
	}
	if !ok {
		return ErrTooSoon
	}
	return nil
}

func (n *Notifier) enqueue(id int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending[id] {
		return
	}
	select {
	case n.in <- id:
		n.pending[id] = true
	default:
	}
}

// Serve sends queued notices until ctx ends. Every Scan it also looks for
// notices nobody holds: queued by another desk, or left by a desk that
// stopped or died (its claim's lease ran out).
func (n *Notifier) Serve(ctx context.Context) error {
	tick := time.NewTicker(n.cfg.Scan)
	defer tick.Stop()
	n.scan(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			n.scan(ctx)
		case id := <-n.in:
			n.take(ctx, id)
			n.mu.Lock()
			delete(n.pending, id)
			n.mu.Unlock()
		}
	}
}

func (n *Notifier) scan(ctx context.Context) {
	ids, err := n.cfg.Store.claimable(ctx, cap(n.in))
	if err != nil {
		if ctx.Err() == nil {
			n.cfg.Log.Error().Str("event", "desk_error").Err(err).Msg("desk: notices to send not read")
		}
		return
	}
	for _, id := range ids {
		n.enqueue(id)
	}
}

// take claims case id's notice and delivers it; a notice another desk
// holds is left to it.
func (n *Notifier) take(ctx context.Context, id int64) {
	ok, err := n.cfg.Store.claimNotice(ctx, id, n.owner, time.Now().Add(n.cfg.Lease))
	if err != nil || !ok {
		return
	}
	c, err := n.cfg.Store.Get(ctx, id)
	if err != nil {
		n.cfg.Log.Error().Str("event", "desk_error").Err(err).Msg("desk: notice's case not read")
		n.release(ctx, id)
		return
	}
	n.deliver(ctx, c)
}

// release gives up a claim so that another desk may send the notice at
// once rather than when the lease runs out.
func (n *Notifier) release(ctx context.Context, id int64) {
	n.cfg.Store.db.Exec(context.WithoutCancel(ctx), `UPDATE desk_cases SET notice_owner = '', notice_lease = 0 WHERE id = ? AND notice_owner = ?`, id, n.owner)
}

// deliver sends c's notice, which this desk has claimed. Before each
// attempt the claim is renewed for a Lease, longer than an attempt may
// take, so no other desk can claim it while it is being sent; a claim lost
// (this desk stalled past its lease) ends the delivery here.
func (n *Notifier) deliver(ctx context.Context, c Case) {
	ct, ok := n.contact(c)
	if !ok { // the desk restarted with other contacts since it was queued
		n.status(ctx, c.ID, "failed: "+ErrNoContact.Error(), false, true, 0)
		return
	}
	subject, body, err := n.render(c, ct)
	text := [2]string{subject, body}
	if err != nil {
		n.status(ctx, c.ID, "failed: template: "+err.Error(), false, true, 0)
		return
	}
	external := n.External(ct)
	var xarf [][]byte
	wait := n.cfg.Backoff
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			if ok, err := n.cfg.Store.claimNotice(ctx, c.ID, n.owner, time.Now().Add(n.cfg.Lease)); err != nil || !ok {
				return
			}
		}
		err = nil
		if external && xarf == nil {
			// Made per attempt until it works: a database that did not
			// answer is retried like a mail server that did not.
			if xarf, err = n.cfg.Store.XARF(ctx, c.ID, n.cfg.Reporter); err == nil && xarf == nil {
				xarf = [][]byte{} // nothing the complaint rules let through
			}
		}
		if err == nil {
			err = n.send(ct.Email, n.compose(c, ct, text, xarf))
		}
		if err == nil {
			n.status(ctx, c.ID, fmt.Sprintf("delivered to %s at %s (attempt %d)%s", ct.Email, time.Now().UTC().Format(time.RFC3339), attempt, xarfNote(external, xarf)), true, true, 0)
			n.cfg.Log.Info().Str("event", "desk_notice").Int64("case", c.ID).Str("to", ct.Email).Int("xarf", len(xarf)).Msg("desk: notice sent")
			return
		}
		if attempt >= n.cfg.Attempts {
			n.status(ctx, c.ID, fmt.Sprintf("failed after %d attempts: %v", attempt, err), false, true, 0)
			n.cfg.Log.Warn().Str("event", "desk_notice").Int64("case", c.ID).Err(err).Msg("desk: notice not delivered")
			return
		}
		if !n.status(ctx, c.ID, fmt.Sprintf("%s: attempt %d of %d failed: %v", noticeRetrying, attempt, n.cfg.Attempts, err), false, false, wait+n.cfg.Lease) {
			return
		}
		select {
		case <-ctx.Done():
			n.release(ctx, c.ID)
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// contact is whom c's notice goes to: the contacts file's entry, else the
// subscriber data's contact of the case's subscriber, else of the
// subscriber of one of its addresses.
func (n *Notifier) contact(c Case) (Contact, bool) {
	if ct, ok := n.cfg.Contacts.Lookup(c); ok {
		return ct, true
	}
	if n.cfg.Subscribers == nil {
		return Contact{}, false
	}
	if id, ok := strings.CutPrefix(c.Subject, "subscriber:"); ok {
		email, lang, ok := n.cfg.Subscribers.Contact(id)
		return Contact{Email: email, Lang: lang}, ok
	}
	for _, s := range c.Addresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if id := n.cfg.Subscribers.Lookup(a); id != "" {
			if email, lang, ok := n.cfg.Subscribers.Contact(id); ok {
				return Contact{Email: email, Lang: lang}, true
			}
		}
	}
	return Contact{}, false
}

// xarfNote is what the delivery status says about X-ARF reports.
func xarfNote(external bool, xarf [][]byte) string {
	switch {
	case !external:
		return ""
	case len(xarf) == 0:
		return ", no X-ARF report: no address with strong evidence and more than datagram proof"
	case len(xarf) == 1:
		return ", with its X-ARF report"
	}
	return fmt.Sprintf(", with %d X-ARF reports", len(xarf))
}

// External reports whether ct gets X-ARF reports: a contact marked external,
// or any address outside InternalDomains when that list is set.
func (n *Notifier) External(ct Contact) bool {
	if ct.External {
		return true
	}
	if len(n.cfg.InternalDomains) == 0 {
		return false
	}
	_, dom, _ := cutLast(ct.Email, "@")
	dom = strings.ToLower(dom)
	for _, d := range n.cfg.InternalDomains {
		if dom == d || strings.HasSuffix(dom, "."+d) {
			return false
		}
	}
	return true
}

// status records a notice's status if this desk still holds its claim,
// ending the claim when done, else keeping it for lease; it reports
// whether the claim was still held.
func (n *Notifier) status(ctx context.Context, id int64, s string, sent, done bool, lease time.Duration) bool {
	if len(s) > 300 {
		s = s[:300]
	}
	ok, err := n.cfg.Store.noticeStatus(context.WithoutCancel(ctx), id, n.owner, s, sent, done, time.Now().Add(lease))
	if err != nil {
		n.cfg.Log.Error().Str("event", "desk_error").Err(err).Msg("desk: notice status not recorded")
		return false
	}
	if !ok {
		n.cfg.Log.Warn().Str("event", "desk_notice").Int64("case", id).Msg("desk: another desk took this notice over (this one held it past its lease)")
	}
	return ok
}

// render runs c's template in the contact's language: the subject and
// the body.
func (n *Notifier) render(c Case, ct Contact) (subject, body string, err error) {
	lang := ct.Lang
	if lang == "" {
		lang = DefaultLang
	}
	var t *template.Template
	for _, name := range append(familyNames(c.Families, lang), "default."+lang, "default."+DefaultLang) {
		if t = n.tmpl.Lookup(name); t != nil {
			break
		}
	}
	var b bytes.Buffer
	if err := t.Execute(&b, newNoticeData(c)); err != nil {
		return "", "", err
	}
	subject = "[" + c.Ticket + "] abuse notice"
	text := b.String()
	if first, rest, ok := strings.Cut(text, "\n"); ok && strings.HasPrefix(first, "Subject:") {
		subject, text = strings.TrimSpace(strings.TrimPrefix(first, "Subject:")), rest
	}
	if !strings.Contains(subject, c.Ticket) {
		subject = "[" + c.Ticket + "] " + subject
	}
	return subject, text, nil
}

// compose writes the message: plain text, or multipart/mixed with one
// application/json part per X-ARF report (base64: no line limit to break).
func (n *Notifier) compose(c Case, ct Contact, text [2]string, xarf [][]byte) []byte {
	var b bytes.Buffer
	id := make([]byte, 12)
	rand.Read(id)
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s.%s@wormsink>\r\nMIME-Version: 1.0\r\n",
		oneLine(n.cfg.From), oneLine(ct.Email), oneLine(text[0]), time.Now().UTC().Format(time.RFC1123Z), c.Ticket, hex.EncodeToString(id))
	if len(xarf) == 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		writeCRLF(&b, text[1])
		return b.Bytes()
	}
	mw := multipart.NewWriter(&b)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", mw.Boundary())
	pw, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}, "Content-Transfer-Encoding": {"8bit"}})
	var body bytes.Buffer
	writeCRLF(&body, text[1])
	pw.Write(body.Bytes())
	for i, doc := range xarf {
		name := c.Ticket + ".xarf.json"
		if i > 0 {
			name = fmt.Sprintf("%s-%d.xarf.json", c.Ticket, i+1)
		}
		pw, _ := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {mime.FormatMediaType("application/json", map[string]string{"name": name})},
			"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": name})},
			"Content-Transfer-Encoding": {"base64"},
		})
		enc := base64.StdEncoding.EncodeToString(doc)
		for len(enc) > 76 {
			io.WriteString(pw, enc[:76]+"\r\n")
			enc = enc[76:]
		}
		io.WriteString(pw, enc+"\r\n")
	}
	mw.Close()
	return b.Bytes()
}

// writeCRLF writes text with CRLF line ends, as SMTP wants them.
func writeCRLF(b *bytes.Buffer, text string) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteString("\r\n")
	}
}

func familyNames(fams []string, lang string) []string {
	var out []string
	for _, f := range fams {
		out = append(out, f+"."+lang)
	}
	return out
}

// oneLine keeps a header value on one line: no header injection through a
// family name or a template.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// send delivers one message.
func (n *Notifier) send(to string, msg []byte) error {
	host := n.srv.Hostname()
	tlsCfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if n.cfg.TLS != nil {
		tlsCfg = n.cfg.TLS.Clone()
		if tlsCfg.ServerName == "" {
			tlsCfg.ServerName = host
		}
	}
	d := net.Dialer{Timeout: min(15*time.Second, n.cfg.Lease/4)}
	var conn net.Conn
	var err error
	if n.srv.Scheme == "smtps" {
		conn, err = tls.DialWithDialer(&d, "tcp", n.srv.Host, tlsCfg)
	} else {
		conn, err = d.Dial("tcp", n.srv.Host)
	}
	if err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	conn.SetDeadline(time.Now().Add(min(time.Minute, n.cfg.Lease/2)))
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	if n.srv.Scheme == "smtp" {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsCfg); err != nil {
				return fmt.Errorf("smtp: starttls: %w", err)
			}
		} else if n.cfg.User != "" {
			return errors.New("smtp: the server offers no STARTTLS: credentials are not sent in the clear")
		}
	}
	if n.cfg.User != "" {
		if err := c.Auth(smtp.PlainAuth("", n.cfg.User, n.cfg.Password, host)); err != nil {
			return fmt.Errorf("smtp: auth: %w", err)
		}
	}
	if err := c.Mail(n.cfg.From); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp: %w", err)
	}
	return c.Quit()
}
