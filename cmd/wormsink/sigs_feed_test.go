package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The maintainer's commands in process, and against the minisign tool.
func TestSigsSignVerifyCommands(t *testing.T) {
	minisign := needTool(t, "minisign")
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if code, out, errs := runCmd(t, "", "sigs", "keygen", "-o", key); code != exitOK || !strings.Contains(out, "--sigs-pubkey RW") {
		t.Fatalf("keygen: %d %q %q", code, out, errs)
	}
	// A second keygen never replaces a key a feed is signed with.
	if code, _, errs := runCmd(t, "", "sigs", "keygen", "-o", key); code != exitFailure || !strings.Contains(errs, "exists") {
		t.Fatalf("keygen over a key: %d %q", code, errs)
	}
	file := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(file, []byte("serial: 4\nsignatures:\n  - id: a\n    family: A\n    domains: [a.example]\n"), 0o644)
	if code, _, errs := runCmd(t, "", "sigs", "sign", "--key", key+".key", file); code != exitFailure || !strings.Contains(errs, "no expires") {
		t.Fatalf("sign without expires: %d %q", code, errs)
	}
	// The expiry may be left to the signature.
	if code, out, errs := runCmd(t, "", "sigs", "sign", "--key", key+".key", "--expires", "48h", file); code != exitOK || !strings.Contains(out, "serial:4 expires:") {
		t.Fatalf("sign --expires: %d %q %q", code, out, errs)
	}
	if code, out, errs := runCmd(t, "", "sigs", "verify", "--pubkey", key+".pub", file); code != exitOK || !strings.Contains(out, "expires ") {
		t.Fatalf("verify of a file whose expiry is in its signature: %d %q %q", code, out, errs)
	}
	exp := time.Now().Add(30 * 24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	os.WriteFile(file, []byte("serial: 4\nexpires: "+exp+"\nsignatures:\n  - id: a\n    family: A\n    domains: [a.example]\n"), 0o644)
	code, out, errs := runCmd(t, "", "sigs", "sign", "--key", key+".key", file)
	want := "serial:4 expires:" + exp + " file:sigs.yaml"
	if code != exitOK || !strings.Contains(out, want) {
		t.Fatalf("sign: %d %q %q", code, out, errs)
	}
	if out, err := exec.Command(minisign, "-V", "-p", key+".pub", "-m", file).CombinedOutput(); err != nil || !strings.Contains(string(out), "Trusted comment: "+want) {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}
	if code, out, errs := runCmd(t, "", "sigs", "verify", "--pubkey", key+".pub", file); code != exitOK || !strings.Contains(out, "ok: signed by key") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	if code, out, _ := runCmd(t, "", "sigs", "check", file); code != exitOK || !strings.Contains(out, "expires "+exp) {
		t.Fatalf("check: %d %q", code, out)
	}

	// minisign's own signature with its default trusted comment: a good
	// signature, which a feed would not take.
	if out, err := exec.Command(minisign, "-S", "-s", key+".key", "-m", file).CombinedOutput(); err != nil {
		t.Fatalf("minisign -S: %v\n%s", err, out)
	}
	if code, out, errs := runCmd(t, "", "sigs", "verify", "--pubkey", key+".pub", file); code != exitOK || !strings.Contains(out, "would refuse") {
		t.Fatalf("verify of a default comment: %d %q %q", code, out, errs)
	}
	// Tampered after signing.
	os.WriteFile(file, []byte("serial: 5\nexpires: "+exp+"\nsignatures:\n  - id: a\n    family: A\n    domains: [a.example]\n"), 0o644)
	if code, _, errs := runCmd(t, "", "sigs", "verify", "--pubkey", key+".pub", file); code != exitFailure || !strings.Contains(errs, "does not match") {
		t.Fatalf("verify of a tampered file: %d %q", code, errs)
	}
	// The secret key's password is never an argument.
	if code, _, errs := runCmd(t, "", "sigs", "sign", "--key", key+".key", "--password", "x", file); code != exitUsage || !strings.Contains(errs, "unknown flag --password") {
		t.Fatalf("--password: %d %q", code, errs)
	}
}

func TestSigsDiffImportCommands(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	os.WriteFile(a, []byte("serial: 1\nsignatures:\n  - id: a\n    family: A\n    domains: [x.example]\n"), 0o644)
	os.WriteFile(b, []byte("serial: 2\nsignatures:\n  - id: a\n    family: A\n    domains: [y.example]\n"), 0o644)
	if code, out, errs := runCmd(t, "", "sigs", "diff", a, b); code != exitOK || !strings.Contains(out, "+ name y.example") || !strings.Contains(out, "- name x.example") {
		t.Fatalf("diff: %d %q %q", code, out, errs)
	}
	hosts := filepath.Join(dir, "hosts")
	os.WriteFile(hosts, []byte("0.0.0.0 one.example two.example\n0.0.0.0 bad..example\n"), 0o644)
	if code, _, errs := runCmd(t, "", "sigs", "import", "--format", "hosts", "--family", "F", "--id", "f", hosts); code != exitFailure || !strings.Contains(errs, hosts+":2: ") {
		t.Fatalf("import of a bad list: %d %q", code, errs)
	}
	os.WriteFile(hosts, []byte("0.0.0.0 one.example two.example\n"), 0o644)
	code, out, errs := runCmd(t, "", "sigs", "import", "--format", "hosts", "--family", "Imported", "--id", "imp", hosts)
	if code != exitOK || !strings.Contains(out, "- id: imp") || !strings.Contains(errs, "2 names") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	full := filepath.Join(dir, "full.yaml")
	os.WriteFile(full, []byte("serial: 3\nsignatures:\n"+out), 0o644)
	if code, out, errs := runCmd(t, "", "sigs", "check", full); code != exitOK || !strings.Contains(out, "2 domains") {
		t.Fatalf("check of the imported entry: %d %q %q", code, out, errs)
	}
}
