package desk

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/store/storetest"
)

// startMailbox starts aiosmtpd as its own process on a free loopback port,
// delivering into a maildir; it returns the smtp:// URL and the maildir.
func startMailbox(t *testing.T) (string, string) {
	t.Helper()
	return startMailboxOn(t, 0)
}

// startMailboxOn is startMailbox on port (0: a free one), for a test that
// had the desk try the port before the server was there.
func startMailboxOn(t *testing.T, port int) (string, string) {
	t.Helper()
	bin := testutil.Need(t, "aiosmtpd")
	maildir := filepath.Join(t.TempDir(), "maildir")
	p := testutil.Daemon{Name: "aiosmtpd", Port: port,
		Command: func(port int) (string, []string, error) {
			return bin, []string{"-n", "-l", fmt.Sprintf("127.0.0.1:%d", port), "-c", "aiosmtpd.handlers.Mailbox", maildir}, nil
		},
		Ready: func(addr string) error {
			c, err := smtp.Dial(addr)
			if err != nil {
				return err
			}
			return c.Quit()
		},
	}.StartT(t)
	return "smtp://" + p.Addr, maildir
}

// mailbox reads every message aiosmtpd delivered, by recipient.
func mailbox(t *testing.T, maildir string) map[string][]*mail.Message {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
	out := map[string][]*mail.Message{}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(fh)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		body, _ := io.ReadAll(m.Body)
		fh.Close()
		m.Body = strings.NewReader(string(body))
		out[m.Header.Get("To")] = append(out[m.Header.Get("To")], m)
	}
	return out
}

// attachment is one MIME part of a received message.
type attachment struct {
	contentType, filename string
	body                  []byte
}

// parts splits a received message into its text and its attachments.
func parts(t *testing.T, m *mail.Message) (text string, atts []attachment) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	if mt != "multipart/mixed" {
		b, _ := io.ReadAll(m.Body)
		return string(b), nil
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return text, atts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			if b, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b))); err != nil {
				t.Fatalf("part %s: %v", p.FileName(), err)
			}
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if p.FileName() == "" && ct == "text/plain" {
			text = string(b)
			continue
		}
		atts = append(atts, attachment{ct, p.FileName(), b})
	}
}

// TestNoticeAttachesXARFForExternalRecipients: a contact marked external,
// and one outside the internal domains, get the case's X-ARF report as a
// JSON attachment; a recipient in an internal domain gets the text alone;
// a case whose only proof is a lone datagram gets no report (a forger can
// make such evidence), though its notice still goes.
func TestNoticeAttachesXARFForExternalRecipients(t *testing.T) {
	smtpURL, maildir := startMailbox(t)
	contacts, err := ParseContacts(strings.NewReader(`
192.0.2.0/24    abuse@reseller.example en external  # marked
198.51.100.0/24 cust@home.isp.example               # an internal domain
203.0.113.0/24  noc@business.example                # outside the internal domains
`), "contacts")
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db"))
	st := openStore(t, db)
	n, err := NewNotifier(NotifierConfig{Store: st, SMTP: smtpURL, From: "abuse@isp.example", Contacts: contacts,
		InternalDomains: []string{"isp.example"}, Backoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Serve(ctx)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	if _, err := st.Ingest(ctx, []Line{
		{"s", "l", 0, evLine(t0, "192.0.2.55", "blaster", "strong", "tcp", "pop1", "")},
		{"s", "l", 100, evLine(t0.Add(time.Minute), "192.0.2.55", "blaster", "strong", "exchange", "pop1", "")},
		{"s", "l", 200, evLine(t0, "198.51.100.1", "blaster", "strong", "tcp", "pop1", "")},
		{"s", "l", 300, evLine(t0, "203.0.113.9", "sasser", "strong", "datagram", "pop1", "")},
	}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, a := range []string{"192.0.2.55", "198.51.100.1", "203.0.113.9"} {
		cs, err := st.List(ctx, Filter{Q: a})
		if err != nil || len(cs) != 1 {
			t.Fatalf("case of %s: %v %v", a, err, cs)
		}
		ids[a] = cs[0].ID
		if err := n.Queue(ctx, cs[0]); err != nil {
			t.Fatal(err)
		}
	}
	for a, id := range ids {
		testutil.WaitFor(t, 60*time.Second, "the notice to "+a+" to be delivered", func() bool {
			c, _ := st.Get(ctx, id)
			return strings.HasPrefix(c.Notice, "delivered")
		})
	}
	box := mailbox(t, maildir)

	// Marked external: the text and the X-ARF report.
	msgs := box["abuse@reseller.example"]
	if len(msgs) != 1 {
		t.Fatalf("%d messages to the reseller", len(msgs))
	}
	text, atts := parts(t, msgs[0])
	ticket := Ticket(ids["192.0.2.55"])
	if !strings.Contains(msgs[0].Header.Get("Subject"), ticket) || !strings.Contains(text, "192.0.2.55") {
		t.Errorf("reseller's notice: subject %q, text %q", msgs[0].Header.Get("Subject"), text)
	}
	if len(atts) != 1 || atts[0].contentType != "application/json" || atts[0].filename != ticket+".xarf.json" {
		t.Fatalf("reseller's attachments: %+v", atts)
	}
	var x map[string]any
	if err := json.Unmarshal(atts[0].body, &x); err != nil {
		t.Fatalf("attachment is not JSON: %v\n%s", err, atts[0].body)
	}
	rep, _ := x["reporter"].(map[string]any)
	for k, want := range map[string]any{"xarf_version": "4.0.0", "category": "infrastructure", "type": "botnet",
		"source_identifier": "192.0.2.55", "malware_family": "blaster", "first_seen": t0.Format("2006-01-02T15:04:05.000Z"),
		"confidence": 0.9} {
		if x[k] != want {
			t.Errorf("x-arf %s = %v, want %v", k, x[k], want)
		}
	}
	if rep["contact"] != "abuse@isp.example" || rep["domain"] != "isp.example" {
		t.Errorf("x-arf reporter %v", rep)
	}
	if ev, _ := x["evidence"].([]any); len(ev) != 1 {
		t.Errorf("x-arf evidence: %v", x["evidence"])
	}

	// An internal recipient: text only.
	msgs = box["cust@home.isp.example"]
	if len(msgs) != 1 {
		t.Fatalf("%d messages to the customer", len(msgs))
	}
	if mt, _, _ := mime.ParseMediaType(msgs[0].Header.Get("Content-Type")); mt != "text/plain" {
		t.Errorf("internal recipient's notice is %s", mt)
	}
	if _, atts := parts(t, msgs[0]); len(atts) != 0 {
		t.Errorf("internal recipient got %d attachments", len(atts))
	}

	// External by domain, but the evidence is a lone datagram: no report.
	msgs = box["noc@business.example"]
	if len(msgs) != 1 {
		t.Fatalf("%d messages to the business", len(msgs))
	}
	if _, atts := parts(t, msgs[0]); len(atts) != 0 {
		t.Errorf("forgeable evidence filed as X-ARF: %+v", atts)
	}
	if c, _ := st.Get(ctx, ids["203.0.113.9"]); !strings.Contains(c.Notice, "no X-ARF report") {
		t.Errorf("the case does not say why no report went: %q", c.Notice)
	}
	if c, _ := st.Get(ctx, ids["192.0.2.55"]); !strings.Contains(c.Notice, "with its X-ARF report") {
		t.Errorf("the case does not say the report went: %q", c.Notice)
	}
}
