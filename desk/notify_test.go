package desk

import (
	"context"
	"fmt"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/report"
	"wormsink/store/storetest"
)

// TestNoticeReachesARealSMTPServer: the notice is tried while the mail
// server is down (the case says it is retrying), then delivered to
// aiosmtpd once it is up, with the ticket in the subject; a second notice
// within the interval is refused.
func TestNoticeReachesARealSMTPServer(t *testing.T) {
	testutil.Need(t, "aiosmtpd") // before the desk tries it
	port := testutil.FreePort(t)
	contacts, err := ParseContacts(strings.NewReader("# who\n192.0.2.0/24 noc@example.net\ncust-9 cust9@example.org de\n"), "contacts")
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db"))
	st, err := Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNotifier(NotifierConfig{Store: st, SMTP: fmt.Sprintf("smtp://127.0.0.1:%d", port), From: "abuse@isp.example",
		Contacts: contacts, Attempts: 40, Backoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Serve(ctx)
	d := startDesk(t, db, func(c *Config) { c.Notifier = n })
	d.st.Ingest(ctx, []Line{
		{"s", "l", 0, evLine(time.Now(), "192.0.2.55", "blaster", "strong", "tcp", "s", "")},
		{"s", "l", 100, evLine(time.Now(), "198.51.100.1", "blaster", "strong", "tcp", "s", "")},
	})
	cs, _ := d.st.List(ctx, Filter{Q: "192.0.2.55"})
	other, _ := d.st.List(ctx, Filter{Q: "198.51.100.1"})
	id := cs[0].ID
	if code, b := d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/notify", other[0].ID), RoleAnalyst, nil); code != 409 || !strings.Contains(string(b), "no contact") {
		t.Fatalf("notify without a contact: %d %s", code, b)
	}
	if code, b := d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/notify", id), RoleAnalyst, []byte(`{"note":"first notice"}`)); code != 200 {
		t.Fatalf("notify: %d %s", code, b)
	}
	testutil.WaitFor(t, 30*time.Second, "the case to say the notice is being retried", func() bool {
		c, _ := d.st.Get(ctx, id)
		return strings.HasPrefix(c.Notice, "retrying")
	})
	_, maildir := startMailboxOn(t, port)
	var c Case
	testutil.WaitFor(t, 60*time.Second, "the notice to be delivered", func() bool {
		c, _ = d.st.Get(ctx, id)
		return strings.HasPrefix(c.Notice, "delivered")
	})
	if c.NotifiedAt.IsZero() || c.State != StateNotified {
		t.Fatalf("after delivery: %+v", c)
	}
	files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d messages in the mailbox, want 1", len(files))
	}
	msg, _ := os.ReadFile(files[0])
	for _, want := range []string{"Subject: [" + c.Ticket + "]", "To: noc@example.net", "blaster", "192.0.2.55"} {
		if !strings.Contains(string(msg), want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if code, b := d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/notify", id), RoleAnalyst, nil); code != 409 || !strings.Contains(string(b), "interval") {
		t.Fatalf("second notice within the interval: %d %s", code, b)
	}
	// A notice a stopped desk left queued is sent by the next one.
	d.st.Ingest(ctx, []Line{{"s", "l", 200, evLine(time.Now(), "192.0.2.56", "blaster", "strong", "tcp", "s", "")}})
	left, _ := d.st.List(ctx, Filter{Q: "192.0.2.56"})
	d.st.SetNotice(ctx, left[0].ID, "queued", false)
	n2, err := NewNotifier(NotifierConfig{Store: st, SMTP: fmt.Sprintf("smtp://127.0.0.1:%d", port), Contacts: contacts, Backoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go n2.Serve(ctx)
	testutil.WaitFor(t, 30*time.Second, "the left notice to be delivered", func() bool {
		c, _ := d.st.Get(ctx, left[0].ID)
		return strings.HasPrefix(c.Notice, "delivered")
	})
	// The case page shows the delivery status and the ticket.
	code, b := d.api(t, "GET", "/api/v1/cases/"+c.Ticket, RoleAnalyst, nil)
	if code != 200 || !strings.Contains(string(b), `"notice": "delivered to noc@example.net`) {
		t.Fatalf("case: %d %s", code, b)
	}
}

func TestContactsFileErrors(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"cust-1\n", "contacts:1: want SUBJECT EMAIL"},
		{"# c\ncust-1 not-an-address\n", "contacts:2:"},
		{"10.0.0.0/33 a@b.c\n", "contacts:1:"},
		{"cust-1 a@b.c EN\n", "contacts:1: language"},
		{"cust 1 a@b.c\n", "contacts:1:"},
		{"cust-1 \"x\" <a@b.c>\n", "contacts:1:"},
		{"cust-1 a@b.c external en\n", `contacts:1: "en": want SUBJECT EMAIL [LANG] [external]`},
		{"cust-1 a@b.c en external external\n", "contacts:1: want SUBJECT EMAIL [LANG] [external]"},
		{"cust-1 a@b.c en extern\n", `contacts:1: "extern"`},
	} {
		_, err := ParseContacts(strings.NewReader(tc.in), "contacts")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.err)
		}
	}
	cs, err := ParseContacts(strings.NewReader("10.0.0.0/8 wide@x.y\n10.1.0.0/16 narrow@x.y\n10.1.2.3 host@x.y\ncust-1 c@x.y de\ncust-2 e@x.y de external\ncust-3 f@x.y external\n"), "contacts")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    Case
		want string
	}{
		{Case{Subject: "address:10.9.9.9", Addresses: []string{"10.9.9.9"}}, "wide@x.y"},
		{Case{Subject: "address:10.1.9.9", Addresses: []string{"10.1.9.9"}}, "narrow@x.y"},
		{Case{Subject: "address:10.1.2.3", Addresses: []string{"10.1.2.3"}}, "host@x.y"},
		{Case{Subject: "subscriber:cust-1", Addresses: []string{"10.1.2.3"}}, "c@x.y"},
		{Case{Subject: "subscriber:cust-4", Addresses: []string{"192.0.2.1"}}, ""},
	} {
		got, _ := cs.Lookup(tc.c)
		if got.Email != tc.want {
			t.Errorf("%s: %q, want %q", tc.c.Subject, got.Email, tc.want)
		}
	}
	for subj, want := range map[string]Contact{"subscriber:cust-1": {"c@x.y", "de", false},
		"subscriber:cust-2": {"e@x.y", "de", true}, "subscriber:cust-3": {"f@x.y", "", true}} {
		if got, _ := cs.Lookup(Case{Subject: subj}); got != want {
			t.Errorf("%s: %+v, want %+v", subj, got, want)
		}
	}
}

func FuzzParseContacts(f *testing.F) {
	f.Add("cust-1 a@b.c de\n10.0.0.0/8 n@x.y\n# c\n")
	f.Add("2001:db8::/32 v6@x.y\n::ffff:10.0.0.1 m@x.y\n")
	f.Add("10.0.0.0/8 n@x.y en external\ncust-2 c@x.y external\ncust-3 d@x.y external en\n")
	f.Fuzz(func(t *testing.T, in string) {
		cs, err := ParseContacts(strings.NewReader(in), "f")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f:") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error not FILE:LINE on one line: %q", err)
			}
			return
		}
		for _, ct := range cs.subjects {
			if strings.ContainsAny(ct.Email, "\r\n<> ") {
				t.Fatalf("address %q could inject a header", ct.Email)
			}
		}
	})
}

func FuzzSplitBatch(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n\n{\"b\":2}\r\nlast"), int64(0))
	f.Fuzz(func(t *testing.T, body []byte, base int64) {
		if base < 0 {
			base = -base
		}
		base %= 1 << 40
		lines := SplitBatch(body, "s", "log", base)
		prev := int64(-1)
		for _, l := range lines {
			if l.Off <= prev || l.Off < base || l.Off-base >= int64(len(body)) {
				t.Fatalf("offset %d out of order or range", l.Off)
			}
			if !strings.HasPrefix(string(body[l.Off-base:]), string(l.Text)) {
				t.Fatalf("line %q is not at its offset", l.Text)
			}
			prev = l.Off
		}
		// And what the desk makes of any line: no panic.
		var p report.Parser
		for _, l := range lines {
			parse(&p, l.Text)
		}
	})
}
