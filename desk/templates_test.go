package desk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTemplatesDirectory: files per family and language replace the
// built-in text; a template that does not parse, or names something a
// notice does not have, stops NewNotifier with FILE:LINE.
func TestTemplatesDirectory(t *testing.T) {
	write := func(dir, name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newN := func(dir string) (*Notifier, error) {
		return NewNotifier(NotifierConfig{SMTP: "smtp://127.0.0.1:25", Templates: dir})
	}
	dir := t.TempDir()
	write(dir, "blaster.de.tmpl", "Subject: Ihr Anschluss {{.Ticket}}\nGuten Tag,\nder Wurm {{.FamilyText}} von {{.AddressText}}.\n")
	write(dir, "default.en.tmpl", "Subject: Our own words\nHello, {{.Subject}} since {{.First}}.\n")
	n, err := newN(dir)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c := Case{ID: 7, Ticket: Ticket(7), Subject: "subscriber:cust-7", Families: []string{"blaster"}, Addresses: []string{"192.0.2.9"}, FirstSeen: at, LastSeen: at}
	for _, tc := range []struct {
		c    Case
		lang string
		want []string
		not  []string
	}{
		{c, "de", []string{"Subject: Ihr Anschluss WS-000007", "der Wurm blaster von 192.0.2.9."}, []string{"Our own words"}},
		// No sasser template: the directory's default replaces the built-in one.
		{Case{ID: 8, Ticket: Ticket(8), Subject: "address:192.0.2.8", Families: []string{"sasser"}, FirstSeen: at}, "en",
			[]string{"Subject: [WS-000008] Our own words", "Hello, address:192.0.2.8 since 2026-12-01 10:00 UTC."}, []string{"Dear customer"}},
		// A language with no template of its own falls back to default.en.
		{c, "fr", []string{"Our own words"}, []string{"Guten Tag"}},
	} {
		subject, body, err := n.render(tc.c, Contact{Email: "x@example.net", Lang: tc.lang})
		if err != nil {
			t.Fatal(err)
		}
		msg := "Subject: " + subject + "\n" + body
		for _, w := range tc.want {
			if !strings.Contains(string(msg), w) {
				t.Errorf("%s/%s: message lacks %q:\n%s", tc.c.Families, tc.lang, w, msg)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(string(msg), w) {
				t.Errorf("%s/%s: message has %q:\n%s", tc.c.Families, tc.lang, w, msg)
			}
		}
	}
	// Without a directory, the built-in text.
	n, err = newN("")
	if err != nil {
		t.Fatal(err)
	}
	if _, body, err := n.render(c, Contact{Email: "x@example.net"}); err != nil || !strings.Contains(body, "Dear customer") {
		t.Fatalf("built-in: %v\n%s", err, body)
	}

	for _, tc := range []struct {
		name, text, want string
	}{
		{"blaster.en.tmpl", "Subject: x\n\nHello {{.Ticket}}\n{{if .Ticket}}\n", "blaster.en.tmpl:5: unexpected EOF"}, // unclosed action
		{"blaster.en.tmpl", "Subject: x\n\n{{.Ticket | nosuchfunc}}\n", "blaster.en.tmpl:3: "},                        // unknown function
		{"default.de.tmpl", "Subject: {{.Ticket}}\n\nDear {{.CustomerName}},\n", "default.de.tmpl:3: "},               // a field a notice has not
		{"default.de.tmpl", "Subject: {{.Ticket}}\n\n{{range .Families}}{{.Nope}}{{end}}\n", "default.de.tmpl:3: "},   // deeper
		{"blaster.tmpl", "Subject: x\n", "name it FAMILY.LANG.tmpl"},
	} {
		bad := t.TempDir()
		write(bad, "default.en.tmpl", "Subject: fine\n\nfine {{.Ticket}}\n")
		p := write(bad, tc.name, tc.text)
		n, err := newN(bad)
		if err == nil || n != nil {
			t.Errorf("%s %q: no error", tc.name, tc.text)
			continue
		}
		want := tc.want
		if strings.HasPrefix(want, tc.name) {
			want = p + want[len(tc.name):]
		}
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %q: %q, want one line with %q", tc.name, tc.text, err, want)
		}
	}
	if _, err := newN(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no *.tmpl file") {
		t.Errorf("empty directory: %v", err)
	}
}
