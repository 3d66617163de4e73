package desk

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/attribution"
	"wormsink/internal/testutil"
	"wormsink/store/storetest"
)

// TestNoticeGoesToTheSubscribersContact: a case with no line in
// --contacts is written to the e-mail address the attribution's subscriber
// data names, found by the case's subscriber or by the subscriber of its
// address; --contacts wins where it has one; a subscriber with no address
// is refused as having no contact. The e-mails arrive at aiosmtpd.
func TestNoticeGoesToTheSubscribersContact(t *testing.T) {
	smtpURL, maildir := startMailbox(t)
	subs, err := attribution.ParseSubscribers(strings.NewReader(`
192.0.2.0/24    cust-7 cust7@example.net de
198.51.100.0/24 cust-8
203.0.113.0/24  cust-9 sub9@example.net
`), "subscribers")
	if err != nil {
		t.Fatal(err)
	}
	contacts, err := ParseContacts(strings.NewReader("cust-9 listed@example.org\n"), "contacts")
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Open(t, "sqlite:"+filepath.Join(t.TempDir(), "d.db"))
	st := openStore(t, db)
	n, err := NewNotifier(NotifierConfig{Store: st, SMTP: smtpURL, Contacts: contacts, Subscribers: subs, Backoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Serve(ctx)
	d := startDesk(t, db, func(c *Config) { c.Notifier = n })
	t0 := time.Now().Add(-time.Hour)
	st.Ingest(ctx, []Line{
		{"s", "l", 0, evLine(t0, "192.0.2.5", "blaster", "strong", "tcp", "s", "cust-7")},      // the subscriber named in the line
		{"s", "l", 100, evLine(t0, "192.0.2.60", "blaster", "strong", "tcp", "s", "")},         // an address case: its subscriber by the file
		{"s", "l", 200, evLine(t0, "203.0.113.5", "blaster", "strong", "tcp", "s", "cust-9")},  // in both: --contacts wins
		{"s", "l", 300, evLine(t0, "198.51.100.5", "blaster", "strong", "tcp", "s", "cust-8")}, // no e-mail anywhere
	})
	want := map[string]string{"cust-7": "cust7@example.net", "192.0.2.60": "cust7@example.net", "cust-9": "listed@example.org"}
	for q, to := range want {
		cs, err := st.List(ctx, Filter{Q: q})
		if err != nil || len(cs) != 1 {
			t.Fatalf("case of %s: %v %v", q, err, cs)
		}
		if code, b := d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/notify", cs[0].ID), RoleAnalyst, nil); code != 200 {
			t.Fatalf("notify %s: %d %s", q, code, b)
		}
		testutil.WaitFor(t, 60*time.Second, "the notice of "+q+" to be delivered", func() bool {
			c, _ := st.Get(ctx, cs[0].ID)
			return strings.HasPrefix(c.Notice, "delivered to "+to+" ")
		})
	}
	cs, _ := st.List(ctx, Filter{Q: "cust-8"})
	if code, b := d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/notify", cs[0].ID), RoleAnalyst, nil); code != 409 || !strings.Contains(string(b), "no contact") {
		t.Fatalf("notify a subscriber without an e-mail address: %d %s", code, b)
	}
	box := mailbox(t, maildir)
	for to, wantN := range map[string]int{"cust7@example.net": 2, "listed@example.org": 1, "sub9@example.net": 0} {
		if got := len(box[to]); got != wantN {
			t.Errorf("%s got %d e-mails, want %d", to, got, wantN)
		}
	}
}
