package feed

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wormsink/internal/testutil"
)

func sigFile(serial int, expires time.Time, names ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "serial: %d\n", serial)
	if !expires.IsZero() {
		fmt.Fprintf(&b, "expires: %s\n", expires.UTC().Format(time.RFC3339))
	}
	b.WriteString("signatures:\n  - id: conficker\n    family: Conficker\n    domains:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "      - %s\n", n)
	}
	return []byte(b.String())
}

func mustKey(t *testing.T) (PublicKey, PrivateKey, []byte, []byte) {
	t.Helper()
	pub, sec, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ParsePrivateKey(sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return pk, sk, pub, sec
}

// The minisign tool and this package verify each other's work: our keys
// and signatures with minisign -S/-V, minisign's with Verify and Open.
func TestMinisignToolInterop(t *testing.T) {
	minisign := testutil.Need(t, "minisign")
	dir := t.TempDir()
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	data := sigFile(7, exp, "a.example", "b.example")
	file := filepath.Join(dir, "sigs.yaml")
	os.WriteFile(file, data, 0o644)
	comment := Comment{Serial: 7, Expires: exp, File: "sigs.yaml"}.String()

	t.Run("ours verified by minisign", func(t *testing.T) {
		_, sk, pub, _ := mustKey(t)
		os.WriteFile(filepath.Join(dir, "ours.pub"), pub, 0o644)
		sig, err := Sign(sk, data, comment)
		if err != nil {
			t.Fatal(err)
		}
		if algorithm(t, sig) != "ED" {
			t.Fatalf("signature is not the prehashed ED form: %s", sig)
		}
		os.WriteFile(file+".minisig", sig, 0o644)
		out, err := exec.Command(minisign, "-V", "-p", filepath.Join(dir, "ours.pub"), "-m", file).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Trusted comment: "+comment) {
			t.Fatalf("minisign -V: %v\n%s", err, out)
		}
		// Tampered: minisign must refuse it too.
		os.WriteFile(file, append(data, "# x\n"...), 0o644)
		defer os.WriteFile(file, data, 0o644)
		if out, err := exec.Command(minisign, "-V", "-p", filepath.Join(dir, "ours.pub"), "-m", file).CombinedOutput(); err == nil {
			t.Fatalf("minisign verified a tampered file:\n%s", out)
		}
	})

	t.Run("our secret key used by minisign", func(t *testing.T) {
		pk, _, _, sec := mustKey(t)
		keyFile := filepath.Join(dir, "ours.key")
		os.WriteFile(keyFile, sec, 0o600)
		out, err := exec.Command(minisign, "-S", "-s", keyFile, "-m", file, "-t", comment).CombinedOutput()
		if err != nil {
			t.Fatalf("minisign -S with our key: %v\n%s", err, out)
		}
		sig, _ := os.ReadFile(file + ".minisig")
		if _, err := Open([]PublicKey{pk}, "sigs.yaml", data, sig, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("minisign's verified by us", func(t *testing.T) {
		pub, sec := filepath.Join(dir, "m.pub"), filepath.Join(dir, "m.key")
		if out, err := exec.Command(minisign, "-G", "-W", "-p", pub, "-s", sec).CombinedOutput(); err != nil {
			t.Fatalf("minisign -G: %v\n%s", err, out)
		}
		if out, err := exec.Command(minisign, "-S", "-s", sec, "-m", file, "-t", comment).CombinedOutput(); err != nil {
			t.Fatalf("minisign -S: %v\n%s", err, out)
		}
		pk, err := LoadPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := os.ReadFile(file + ".minisig")
		rel, err := Open([]PublicKey{pk}, "sigs.yaml", data, sig, time.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if rel.Comment.Serial != 7 || !rel.Comment.Expires.Equal(exp) {
			t.Fatalf("comment %+v", rel.Comment)
		}
		// The legacy (not prehashed) form minisign -l writes is taken too.
		if out, err := exec.Command(minisign, "-S", "-l", "-s", sec, "-m", file, "-t", comment).CombinedOutput(); err != nil {
			t.Fatalf("minisign -S -l: %v\n%s", err, out)
		}
		legacy, _ := os.ReadFile(file + ".minisig")
		if algorithm(t, legacy) != "Ed" {
			t.Fatalf("minisign -l did not write the legacy form: %s", legacy)
		}
		if _, err := Open([]PublicKey{pk}, "sigs.yaml", data, legacy, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
		// And minisign's key signs through our code.
		keyText, _ := os.ReadFile(sec)
		sk, err := ParsePrivateKey(keyText, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sk.ID() != pk.ID() {
			t.Fatalf("key id %x, public %x", sk.ID(), pk.ID())
		}
	})

}

// algorithm is the signature's algorithm: "ED" prehashed, "Ed" legacy.
func algorithm(t *testing.T, sig []byte) string {
	raw, err := base64.StdEncoding.DecodeString(strings.Split(string(sig), "\n")[1])
	if err != nil || len(raw) < 2 {
		t.Fatalf("signature line: %v", err)
	}
	return string(raw[:2])
}

// An encrypted key (minisign -G without -W) asks for its password, and
// without one fails before any scrypt work.
func TestEncryptedKeyNeedsPassword(t *testing.T) {
	_, _, _, sec := mustKey(t)
	lines := strings.Split(strings.TrimSpace(string(sec)), "\n")
	raw, _ := base64.StdEncoding.DecodeString(lines[1])
	binary.LittleEndian.PutUint16(raw[2:], kdfScrypt)
	enc := []byte(lines[0] + "\n" + base64.StdEncoding.EncodeToString(raw) + "\n")
	if _, err := ParsePrivateKey(enc, nil); !errors.Is(err, ErrNeedPassword) {
		t.Fatalf("encrypted key without password: %v", err)
	}
	asked := false
	_, err := ParsePrivateKey(enc, func() (string, error) { asked = true; return "", errors.New("no terminal") })
	if !asked || err == nil {
		t.Fatalf("password not asked for, or taken: %v", err)
	}
	// A damaged unencrypted key is caught by its checksum.
	raw, _ = base64.StdEncoding.DecodeString(lines[1])
	raw[70] ^= 1
	bad := []byte(lines[0] + "\n" + base64.StdEncoding.EncodeToString(raw) + "\n")
	if _, err := ParsePrivateKey(bad, nil); err == nil {
		t.Fatal("damaged key taken")
	}
}

func TestOpenRefuses(t *testing.T) {
	pk, sk, _, _ := mustKey(t)
	_, other, _, _ := mustKey(t)
	now := time.Now()
	exp := now.Add(time.Hour).Truncate(time.Second)
	data := sigFile(5, exp, "a.example")
	sign := func(k PrivateKey, d []byte, c Comment) []byte {
		s, err := Sign(k, d, c.String())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := Comment{Serial: 5, Expires: exp, File: "s.yaml"}
	for _, tc := range []struct {
		name   string
		data   []byte
		sig    []byte
		reason Reason
	}{
		{"tampered", append([]byte("# x\n"), data...), sign(sk, data, good), Signature},
		{"other key", data, sign(other, data, good), Signature},
		{"comment names another serial", data, sign(sk, data, Comment{Serial: 6, Expires: exp, File: "s.yaml"}), Signature},
		{"comment names another file", data, sign(sk, data, Comment{Serial: 5, Expires: exp, File: "t.yaml"}), Signature},
		{"comment stretches the expiry", data, sign(sk, data, Comment{Serial: 5, Expires: exp.Add(time.Hour), File: "s.yaml"}), Signature},
		{"expired", sigFile(5, now.Add(-time.Minute), "a.example"), sign(sk, sigFile(5, now.Add(-time.Minute), "a.example"), Comment{Serial: 5, Expires: now.Add(-time.Minute), File: "s.yaml"}), Freeze},
		{"unparsable but signed", []byte("serial: [\n"), sign(sk, []byte("serial: [\n"), good), Parse},
		{"foreign comment", data, func() []byte { s, _ := Sign(sk, data, "timestamp:1 file:s.yaml"); return s }(), Signature},
		{"garbage signature", data, []byte("untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA\n"), Signature},
		{"oversize", make([]byte, 2000), sign(sk, data, good), Oversize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open([]PublicKey{pk}, "s.yaml", tc.data, tc.sig, now, 1000)
			if err == nil {
				t.Fatal("taken")
			}
			if r, _ := ReasonOf(err); r != tc.reason {
				t.Fatalf("reason %s, want %s: %v", r, tc.reason, err)
			}
		})
	}
	if _, err := Open([]PublicKey{pk}, "s.yaml", data, sign(sk, data, good), now, 1000); err != nil {
		t.Fatalf("good file refused: %v", err)
	}
	// Key rotation: with the old and the new key trusted, either signs.
	otherPub, _ := ParsePublicKey([]byte(mustPub(t, other)))
	for _, k := range []PrivateKey{sk, other} {
		if _, err := Open([]PublicKey{otherPub, pk}, "s.yaml", data, sign(k, data, good), now, 1000); err != nil {
			t.Fatalf("rotation: key %s refused: %v", KeyID(k.ID()), err)
		}
	}
}

func mustPub(t *testing.T, k PrivateKey) string {
	t.Helper()
	pub, ok := k.Public().(PublicKey)
	if !ok {
		t.Fatalf("public key of type %T", k.Public())
	}
	return pub.String()
}

func TestParseComment(t *testing.T) {
	good := "serial:12 expires:2027-01-02T03:04:05Z file:sigs.yaml"
	c, err := ParseComment(good)
	if err != nil || c.Serial != 12 || c.File != "sigs.yaml" || c.String() != good {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{
		"", "serial:12", "serial:12 expires:2027-01-02T03:04:05Z", "serial:012 expires:2027-01-02T03:04:05Z file:a",
		"serial:0 expires:2027-01-02T03:04:05Z file:a", "serial:-1 expires:2027-01-02T03:04:05Z file:a",
		"serial:1 expires:2027-01-02 file:a", "serial:1  expires:2027-01-02T03:04:05Z file:a",
		"expires:2027-01-02T03:04:05Z serial:1 file:a", "serial:1 expires:2027-01-02T03:04:05Z file:../a",
		"serial:1 expires:2027-01-02T03:04:05Z file:a extra:1", "serial:1 expires:2027-01-02T03:04:05Z file:",
		"serial:18446744073709551616 expires:2027-01-02T03:04:05Z file:a",
	} {
		if _, err := ParseComment(bad); err == nil {
			t.Errorf("%q taken", bad)
		}
	}
}

func FuzzParseComment(f *testing.F) {
	f.Add("serial:12 expires:2027-01-02T03:04:05Z file:sigs.yaml")
	f.Add("serial:1 expires:2027-01-02T03:04:05+02:00 file:a")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseComment(s)
		if err != nil {
			return
		}
		// What parses prints back to a comment that parses to the same.
		c2, err := ParseComment(c.String())
		if err != nil || c2.Serial != c.Serial || !c2.Expires.Equal(c.Expires) || c2.File != c.File {
			t.Fatalf("%q -> %q: %+v %v", s, c.String(), c2, err)
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	_, sk, _, _ := mustKeyF(f)
	sig, _ := Sign(sk, []byte("x"), "serial:1 expires:2027-01-02T03:04:05Z file:a")
	f.Add(sig)
	f.Add([]byte("untrusted comment: x\r\nAAAA\r\ntrusted comment: y\r\nAAAA\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSignature(b)
		if err != nil {
			return
		}
		if checkCommentText(s.TrustedComment) != nil || checkCommentText(s.UntrustedComment) != nil {
			t.Fatalf("control characters taken into a comment: %q", s.TrustedComment)
		}
	})
}

func FuzzParseKeys(f *testing.F) {
	pub, sec, _ := GenerateKey()
	f.Add(pub, sec)
	f.Fuzz(func(t *testing.T, pub, sec []byte) {
		ParsePublicKey(pub)
		ParsePrivateKey(sec, nil) // an encrypted key asks for a password: none given, no scrypt run
	})
}

func mustKeyF(f *testing.F) (PublicKey, PrivateKey, []byte, []byte) {
	pub, sec, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	pk, _ := ParsePublicKey(pub)
	sk, err := ParsePrivateKey(sec, nil)
	if err != nil {
		f.Fatal(err)
	}
	return pk, sk, pub, sec
}
