package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportAttributesFromStore: lines written before the RADIUS records
// reached the store are attributed at report time, and the report by
// subscriber joins a subscriber's addresses.
func TestReportAttributesFromStore(t *testing.T) {
	dir := t.TempDir()
	detail := filepath.Join(dir, "detail")
	// alice has 100.64.0.7 until 12:10, then 100.64.0.9; bob gets 100.64.0.7.
	os.WriteFile(detail, []byte(`Sun Dec  6 12:00:00 2026
	User-Name = "alice"
	Acct-Status-Type = Start
	Acct-Session-Id = "a1"
	NAS-IP-Address = 192.0.2.10
	Framed-IP-Address = 100.64.0.7
	Event-Timestamp = "Dec  6 2026 12:00:00 UTC"

Sun Dec  6 12:10:00 2026
	User-Name = "alice"
	Acct-Status-Type = Stop
	Acct-Session-Id = "a1"
	NAS-IP-Address = 192.0.2.10
	Framed-IP-Address = 100.64.0.7
	Event-Timestamp = "Dec  6 2026 12:10:00 UTC"

Sun Dec  6 12:11:00 2026
	User-Name = "alice"
	Acct-Status-Type = Start
	Acct-Session-Id = "a2"
	NAS-IP-Address = 192.0.2.10
	Framed-IP-Address = 100.64.0.9
	Event-Timestamp = "Dec  6 2026 12:11:00 UTC"

Sun Dec  6 12:12:00 2026
	User-Name = "bob"
	Acct-Status-Type = Start
	Acct-Session-Id = "b1"
	NAS-IP-Address = 192.0.2.10
	Framed-IP-Address = 100.64.0.7
	Event-Timestamp = "Dec  6 2026 12:12:00 UTC"
`), 0o600)
	db := "sqlite:" + filepath.Join(dir, "w.db")
	if code, out, errOut := runCmd(t, "", "attribution", "import", "--db", db, "--radius-detail", detail); code != 0 {
		t.Fatalf("import: %d %q %q", code, out, errOut)
	}
	line := func(at, host, port string) string {
		return `{"time":"` + at + `","event":"tftp_refused","host":"` + host + `","port":` + port +
			`,"signature":"blaster","family":"Blaster","evidence":"strong","proof":"exchange","count":1,"sensor":"s","serial":1,"file":"msblast.exe","mode":"octet","op":"read"}`
	}
	logf := filepath.Join(dir, "evidence.jsonl")
	os.WriteFile(logf, []byte(strings.Join([]string{
		line("2026-12-06T12:05:00.000Z", "100.64.0.7", "1000"), // alice
		line("2026-12-06T12:11:30.000Z", "100.64.0.9", "1001"), // alice, new address
		line("2026-12-06T12:13:00.000Z", "100.64.0.7", "1002"), // bob
		line("2026-12-06T11:00:00.000Z", "100.64.0.8", "1003"), // nobody
	}, "\n")+"\n"), 0o600)

	code, out, errOut := runCmd(t, "", "report", "--db", db, "--format", "json", logf)
	if code != 0 {
		t.Fatalf("report --db: %d %q", code, errOut)
	}
	var doc struct {
		Hosts []struct {
			Host        string   `json:"host"`
			Subscribers []string `json:"subscribers"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"100.64.0.7": "alice;bob", "100.64.0.9": "alice", "100.64.0.8": ""}
	for _, h := range doc.Hosts {
		if got := strings.Join(h.Subscribers, ";"); got != want[h.Host] {
			t.Errorf("%s: subscribers %q, want %q", h.Host, got, want[h.Host])
		}
	}
	// Without --db the lines say nothing of subscribers.
	if _, out, _ := runCmd(t, "", "report", "--format", "csv", logf); strings.Contains(out, "alice") {
		t.Errorf("report without --db attributed: %s", out)
	}

	code, out, errOut = runCmd(t, "", "report", "--db", db, "--by", "subscriber", "--format", "csv", logf)
	if code != 0 {
		t.Fatalf("report --by subscriber: %d %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "alice,2026-12-06T12:05:00.000Z,2026-12-06T12:11:30.000Z,100.64.0.7;100.64.0.9,ipv4,2,strong,Blaster,exchange") ||
		!strings.HasPrefix(lines[2], "bob,") {
		t.Errorf("by subscriber:\n%s", out)
	}
	if !strings.Contains(errOut, "1 sightings name no subscriber") {
		t.Errorf("stderr %q: want the unattributed count", errOut)
	}
	if code, _, errOut := runCmd(t, "", "report", "--by", "subscriber", "--format", "xarf", "--reporter-contact", "abuse@example.net", logf); code != exitUsage {
		t.Errorf("--by subscriber --format xarf: exit %d %q, want a usage error", code, errOut)
	}
}
