package desk

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"wormsink/internal/testutil"
	"wormsink/store"
	"wormsink/store/storetest"
)

// TestTwoDesksSendEachNoticeOnce: two desks on one PostgreSQL, both asked
// to notify every case at once: exactly one click per case is taken. Then
// their notifiers start together, each finding every notice queued, and
// race for them: aiosmtpd receives exactly one e-mail per notice. A notice claimed by a desk that then died is sent
// by a live one once the claim's lease has run out, not before.
func TestTwoDesksSendEachNoticeOnce(t *testing.T) {
	smtpURL, maildir := startMailbox(t)
	url, err := storetest.Cluster(t).NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	const cases = 12
	var lines []Line
	var contactText strings.Builder
	for i := range cases + 1 {
		addr := fmt.Sprintf("192.0.2.%d", 10+i)
		lines = append(lines, Line{"s", "l", int64(i * 1000), evLine(time.Now().Add(-time.Hour), addr, "blaster", "strong", "tcp", "s", "")})
		fmt.Fprintf(&contactText, "%s c%d@example.net\n", addr, 10+i)
	}
	contacts, err := ParseContacts(strings.NewReader(contactText.String()), "contacts")
	if err != nil {
		t.Fatal(err)
	}
	const lease = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var desks []*testDesk
	var notifiers []*Notifier
	for range 2 {
		db := storetest.Open(t, url)
		st := openStore(t, db)
		n, err := NewNotifier(NotifierConfig{Store: st, SMTP: smtpURL, Contacts: contacts, Backoff: 50 * time.Millisecond,
			Lease: lease, Scan: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		notifiers = append(notifiers, n)
		desks = append(desks, startDesk(t, db, func(c *Config) { c.Notifier = n }))
	}
	desks[0].tokens = desks[1].tokens // the second desk's tokens replaced the first's
	if _, err := desks[0].st.Ingest(ctx, lines); err != nil {
		t.Fatal(err)
	}
	all, err := desks[0].st.List(ctx, Filter{})
	if err != nil || len(all) != cases+1 {
		t.Fatalf("%d cases: %v", len(all), err)
	}

	// The last case's notice was claimed by a desk that died at once.
	dead := all[len(all)-1].ID
	if ok, err := desks[0].st.queueNotice(ctx, dead, time.Now()); !ok || err != nil {
		t.Fatalf("queue: %v %v", ok, err)
	}
	deadUntil := time.Now().Add(lease)
	if ok, err := desks[0].st.claimNotice(ctx, dead, "a-desk-that-died", deadUntil); !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}

	// Both desks are asked to notify every other case, at the same moment.
	var wg sync.WaitGroup
	codes := make([][2]int, cases)
	for i, c := range all[:cases] {
		for j, d := range desks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i][j], _ = d.api(t, "POST", fmt.Sprintf("/api/v1/cases/%d/notify", c.ID), RoleAnalyst, nil)
			}()
		}
	}
	wg.Wait()
	for i, c := range codes {
		if !(c == [2]int{200, 409} || c == [2]int{409, 200}) {
			t.Errorf("case %d: the two desks answered %v, want one 200 and one 409", all[i].ID, c)
		}
	}
	// Both notifiers start at once: each finds every notice queued and
	// unclaimed, and they race for each in the same order.
	var served sync.WaitGroup
	for _, n := range notifiers {
		served.Add(1)
		go func() { defer served.Done(); n.Serve(ctx) }()
	}
	for _, c := range all {
		testutil.WaitFor(t, 60*time.Second, "the notice of "+c.Ticket+" to be delivered", func() bool {
			got, _ := desks[1].st.Get(ctx, c.ID)
			return strings.HasPrefix(got.Notice, "delivered")
		})
	}
	if c, _ := desks[1].st.Get(ctx, dead); c.NotifiedAt.Before(deadUntil.Truncate(time.Millisecond)) {
		t.Errorf("the dead desk's notice was sent at %s, before its lease ran out at %s", c.NotifiedAt, deadUntil)
	}
	// Both notifiers stopped: every e-mail either could send is in the box.
	cancel()
	served.Wait()
	box := mailbox(t, maildir)
	total := 0
	for _, c := range all {
		to := fmt.Sprintf("c%s@example.net", strings.TrimPrefix(c.Addresses[0], "192.0.2."))
		if got := len(box[to]); got != 1 {
			t.Errorf("%s (%s): %d e-mails, want 1", c.Ticket, to, got)
		}
		total += len(box[to])
	}
	if total != cases+1 {
		t.Errorf("%d e-mails for %d notices", total, cases+1)
	}
}

// The look for notices to send, made by every desk every half minute, is
// served by its partial index on both databases, not by reading every
// case (PostgreSQL is told to avoid a sequential scan where it can, since
// on a small table it would rightly prefer one).
func TestPendingNoticeLookUsesItsIndex(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		openStore(t, db)
		var plan strings.Builder
		err := db.Tx(ctx, func(tx *store.Tx) error {
			explain := "EXPLAIN QUERY PLAN "
			if db.Dialect() == store.Postgres {
				explain = "EXPLAIN "
				if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
					return err
				}
			}
			rows, err := tx.Query(ctx, explain+claimableSQL, int64(0), 10)
			if err != nil {
				return err
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			vals := make([]any, len(cols))
			for i := range vals {
				vals[i] = new(any)
			}
			for rows.Next() {
				if err := rows.Scan(vals...); err != nil {
					return err
				}
				for _, v := range vals {
					fmt.Fprintf(&plan, "%v ", *(v.(*any)))
				}
				plan.WriteString("\n")
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(plan.String(), "desk_cases_pending_notice") {
			t.Errorf("the look does not use its index:\n%s", plan.String())
		}
	})
}
