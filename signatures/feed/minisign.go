package feed

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"aead.dev/minisign"
	"golang.org/x/crypto/blake2b"
)

// The minisign formats (https://jedisct1.github.io/minisign/): the key and
// signature encodings and the verification are aead.dev/minisign's; what
// this file adds is strictness at the edges the library leaves open (key
// checksums, comment lines, sizes) and the feed's trusted comment.

// MaxSigSize bounds a .minisig file: four short lines, the trusted comment
// being the longest.
const MaxSigSize = 4096

// ErrSignature is wrapped by every verification failure: a bad or foreign
// signature, a malformed .minisig, a trusted comment that does not check.
var ErrSignature = errors.New("signature refused")

// PublicKey is a minisign public key.
type PublicKey = minisign.PublicKey

// ParsePublicKey reads a public key given as its base64 line ("RWQ…") or
// as a minisign .pub file (an untrusted comment line, then that line).
func ParsePublicKey(text []byte) (PublicKey, error) {
	var pk PublicKey
	lines := strings.Split(strings.TrimRight(string(text), "\r\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], "\r")
	}
	switch {
	case len(lines) == 1:
	case len(lines) == 2 && strings.HasPrefix(lines[0], "untrusted comment:"):
		lines = lines[1:]
	default:
		return pk, errors.New("not a minisign public key: want one base64 line, after an optional untrusted comment line")
	}
	if err := pk.UnmarshalText([]byte(strings.TrimSpace(lines[0]))); err != nil {
		return pk, fmt.Errorf("not a minisign public key: %w", err)
	}
	return pk, nil
}

// LoadPublicKey reads a key given on the command line: a file's path, or
// the key itself in base64 (what `minisign -P` takes).
func LoadPublicKey(arg string) (PublicKey, error) {
	if _, err := os.Stat(arg); err != nil {
		// Not a file: the key itself, or a path mistyped.
		pk, perr := ParsePublicKey([]byte(arg))
		if perr != nil {
			return pk, fmt.Errorf("%q is neither a readable key file (%v) nor a base64 key", clip(arg), errors.Unwrap(err))
		}
		return pk, nil
	}
	data, err := readLimited(arg, 4096)
	if err != nil {
		return PublicKey{}, err
	}
	pk, err := ParsePublicKey(data)
	if err != nil {
		return pk, fmt.Errorf("%s: %w", arg, err)
	}
	return pk, nil
}

// KeyID renders a key's ID as minisign prints it.
func KeyID(id uint64) string { return strings.ToUpper(strconv.FormatUint(id, 16)) }

// Secret key file layout (minisign's): algorithm "Ed", KDF ("\0\0" none or
// "Sc" scrypt), checksum algorithm "B2", 32 bytes salt, 8 ops, 8 mem, then
// (encrypted with the KDF's key stream) key ID 8, Ed25519 key 64, checksum 32.
const (
	secretKeySize = 158
	kdfNone       = 0x0000
	kdfScrypt     = 0x6353
	hashBlake2b   = 0x3242
)

// PrivateKey is a minisign secret key.
type PrivateKey = minisign.PrivateKey

// ErrNeedPassword is returned for an encrypted key when no password was given.
var ErrNeedPassword = errors.New("the key is encrypted: give its password (--password-file)")

// ParsePrivateKey reads a minisign secret key file. An encrypted key
// (minisign -G without -W) needs password, which is asked only then.
func ParsePrivateKey(text []byte, password func() (string, error)) (PrivateKey, error) {
	body := text
	if first, rest, ok := bytes.Cut(text, []byte("\n")); ok && bytes.HasPrefix(first, []byte("untrusted comment:")) {
		body = rest
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(body)))
	if err != nil || len(raw) != secretKeySize {
		return PrivateKey{}, errors.New("not a minisign secret key")
	}
	if binary.LittleEndian.Uint16(raw) != minisign.EdDSA || binary.LittleEndian.Uint16(raw[4:]) != hashBlake2b {
		return PrivateKey{}, errors.New("not a minisign Ed25519 secret key")
	}
	switch binary.LittleEndian.Uint16(raw[2:]) {
	case kdfScrypt:
		if password == nil {
			return PrivateKey{}, ErrNeedPassword
		}
		pw, err := password()
		if err != nil {
			return PrivateKey{}, err
		}
		k, err := minisign.DecryptKey(pw, text)
		if err != nil {
			return PrivateKey{}, errors.New("wrong password for the key, or a damaged key")
		}
		return k, nil
	case kdfNone:
		// aead.dev/minisign skips the checksum of an unencrypted key;
		// minisign itself checks it, and so do we, so a damaged key file
		// is caught here rather than as signatures nobody can verify.
		sum := keyChecksum(raw[54:62], raw[62:126])
		zero := [32]byte{}
		if !bytes.Equal(raw[126:], sum[:]) && !bytes.Equal(raw[126:], zero[:]) {
			return PrivateKey{}, errors.New("secret key checksum does not match: the key file is damaged")
		}
		var k PrivateKey
		if err := k.UnmarshalText(body); err != nil {
			return PrivateKey{}, err
		}
		return k, nil
	}
	return PrivateKey{}, errors.New("secret key encrypted with an unknown method")
}

func keyChecksum(id, key []byte) [32]byte {
	msg := make([]byte, 0, 74)
	msg = binary.LittleEndian.AppendUint16(msg, minisign.EdDSA)
	msg = append(msg, id...)
	msg = append(msg, key...)
	return blake2b.Sum256(msg)
}

// GenerateKey makes a key pair and returns the public key file and an
// unencrypted secret key file, both in minisign's formats (the secret one
// with the checksum minisign checks, which aead.dev/minisign leaves zero).
func GenerateKey() (pub, sec []byte, err error) {
	pk, sk, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	skText, err := sk.MarshalText()
	if err != nil {
		return nil, nil, err
	}
	_, b64, _ := bytes.Cut(skText, []byte("\n"))
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
	if err != nil || len(raw) != secretKeySize {
		return nil, nil, errors.New("minisign: unexpected secret key encoding")
	}
	sum := keyChecksum(raw[54:62], raw[62:126])
	copy(raw[126:], sum[:])
	sec = fmt.Appendf(nil, "untrusted comment: minisign secret key %s\n%s\n", KeyID(sk.ID()), base64.StdEncoding.EncodeToString(raw))
	pub = fmt.Appendf(nil, "untrusted comment: minisign public key %s\n%s\n", KeyID(pk.ID()), pk.String())
	return pub, sec, nil
}

// Sign signs data as minisign -S does: Ed25519 over the BLAKE2b-512 hash
// of data (the prehashed "ED" form every minisign since 0.8 verifies), and
// a global signature binding trustedComment to it.
func Sign(key PrivateKey, data []byte, trustedComment string) ([]byte, error) {
	if err := checkCommentText(trustedComment); err != nil {
		return nil, err
	}
	r := minisign.NewReader(bytes.NewReader(data))
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	return r.SignWithComments(key, trustedComment, "signature from wormsink secret key "+KeyID(key.ID())), nil
}

// Verified is what a good signature vouches for.
type Verified struct {
	KeyID          uint64
	TrustedComment string
}

// Verify checks sig (a .minisig file) over data against the keys, and
// returns the trusted comment the signer vouched for. Both the prehashed
// ("ED") and the legacy ("Ed") forms are accepted, as minisign -V does.
func Verify(keys []PublicKey, data, sig []byte) (Verified, error) {
	s, norm, err := parseSignature(sig)
	if err != nil {
		return Verified{}, err
	}
	for _, k := range keys {
		if k.ID() != s.KeyID {
			continue
		}
		if !minisign.Verify(k, data, norm) {
			return Verified{}, fmt.Errorf("%w: the signature by key %s does not match the file (tampered, or another file's signature)", ErrSignature, KeyID(s.KeyID))
		}
		return Verified{KeyID: s.KeyID, TrustedComment: s.TrustedComment}, nil
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = KeyID(k.ID())
	}
	return Verified{}, fmt.Errorf("%w: signed by key %s, which is not a trusted key (%s)", ErrSignature, KeyID(s.KeyID), strings.Join(ids, ", "))
}

// ParseSignature reads a .minisig file strictly: exactly the four lines
// (an optional final newline, CRLF tolerated), printable comments, nothing
// after them. The library alone would take a trailing line into the
// global signature's base64 and let comments carry control bytes.
func ParseSignature(sig []byte) (minisign.Signature, error) {
	s, _, err := parseSignature(sig)
	return s, err
}

// parseSignature also returns the four lines as the library reads them.
func parseSignature(sig []byte) (minisign.Signature, []byte, error) {
	var s minisign.Signature
	if len(sig) > MaxSigSize {
		return s, nil, fmt.Errorf("%w: .minisig larger than %d bytes", ErrSignature, MaxSigSize)
	}
	text := strings.TrimSuffix(string(sig), "\n")
	lines := strings.Split(text, "\n")
	if len(lines) != 4 {
		return s, nil, fmt.Errorf("%w: a .minisig has 4 lines, this has %d", ErrSignature, len(lines))
	}
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	uc, ok1 := strings.CutPrefix(lines[0], "untrusted comment: ")
	tc, ok2 := strings.CutPrefix(lines[2], "trusted comment: ")
	if !ok1 || !ok2 {
		return s, nil, fmt.Errorf("%w: malformed .minisig (comment lines)", ErrSignature)
	}
	if checkCommentText(uc) != nil || checkCommentText(tc) != nil {
		return s, nil, fmt.Errorf("%w: .minisig comment with control characters", ErrSignature)
	}
	for _, l := range []string{lines[1], lines[3]} {
		if l == "" || strings.ContainsAny(l, " \t") {
			return s, nil, fmt.Errorf("%w: malformed .minisig (signature lines)", ErrSignature)
		}
	}
	norm := []byte(strings.Join(lines, "\n") + "\n")
	if err := s.UnmarshalText(norm); err != nil {
		return s, nil, fmt.Errorf("%w: malformed .minisig: %v", ErrSignature, err)
	}
	return s, norm, nil
}

// checkCommentText takes a comment line: printable text and tabs (which
// minisign's default trusted comment has), no line breaks or other controls.
func checkCommentText(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return errors.New("a comment must be one line of printable text")
		}
	}
	return nil
}

// Comment is the feed's trusted comment, "serial:N expires:RFC3339
// file:NAME": signed together with the signature, so a mirror cannot
// replay an old file under a new name or stretch an expiry.
type Comment struct {
	Serial  uint64
	Expires time.Time
	File    string // base name of the signature file
}

func (c Comment) String() string {
	return fmt.Sprintf("serial:%d expires:%s file:%s", c.Serial, c.Expires.UTC().Format(time.RFC3339), c.File)
}

// ParseComment reads a trusted comment written by String, strictly: the
// three fields in order, single spaces, a positive decimal serial without
// leading zeros, an RFC 3339 time, a file name without a path.
func ParseComment(s string) (Comment, error) {
	var c Comment
	bad := func(what string) (Comment, error) {
		return Comment{}, fmt.Errorf("trusted comment %q is not \"serial:N expires:RFC3339 file:NAME\": %s", clip(s), what)
	}
	parts := strings.Split(s, " ")
	if len(parts) != 3 {
		return bad("want three fields separated by single spaces")
	}
	serial, ok1 := strings.CutPrefix(parts[0], "serial:")
	exp, ok2 := strings.CutPrefix(parts[1], "expires:")
	file, ok3 := strings.CutPrefix(parts[2], "file:")
	if !ok1 || !ok2 || !ok3 {
		return bad("fields out of order or misnamed")
	}
	n, err := strconv.ParseUint(serial, 10, 64)
	if err != nil || n == 0 || serial[0] == '0' {
		return bad("serial must be a positive decimal number")
	}
	t, err := time.Parse(time.RFC3339, exp)
	if err != nil {
		return bad("expires must be an RFC 3339 time")
	}
	if file == "" || file == "." || file == ".." || strings.ContainsAny(file, "/\\\t") || checkCommentText(file) != nil {
		return bad("file must be a file name without a path")
	}
	c.Serial, c.Expires, c.File = n, t, file
	return c, nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// readLimited reads a small file whole, refusing one larger than limit.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}

// EncryptKey encrypts a secret key with password as minisign -G does
// (scrypt with libsodium's "sensitive" limits: about a second and 1 GiB
// of memory to open it again).
func EncryptKey(password string, key PrivateKey) ([]byte, error) {
	b, err := minisign.EncryptKey(password, key)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
