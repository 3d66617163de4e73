package rpz

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// Key is a TSIG key (RFC 8945) transfers must be signed with.
type Key struct {
	Name      string // fully qualified, lower case
	Algorithm string // fully qualified, e.g. "hmac-sha256."
	Secret    []byte
}

// strongAlgorithms are the HMACs accepted: hmac-sha256 and stronger. MD5,
// SHA-1 and SHA-224 are refused, both in --rpz-tsig and on the wire.
var strongAlgorithms = map[string]func() hash.Hash{
	dns.HmacSHA256: sha256.New,
	dns.HmacSHA384: sha512.New384,
	dns.HmacSHA512: sha512.New,
}

// ParseKey reads NAME:ALGORITHM:BASE64SECRET, as --rpz-tsig takes it.
func ParseKey(s string) (Key, error) {
	name, rest, ok1 := strings.Cut(s, ":")
	alg, secret, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || name == "" || alg == "" || secret == "" {
		return Key{}, errors.New("want NAME:ALGORITHM:BASE64SECRET")
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return Key{}, fmt.Errorf("key name %q is not a domain name", name)
	}
	k := Key{Name: strings.ToLower(dns.Fqdn(name)), Algorithm: strings.ToLower(dns.Fqdn(alg))}
	if _, ok := strongAlgorithms[k.Algorithm]; !ok {
		return Key{}, fmt.Errorf("algorithm %q: want hmac-sha256, hmac-sha384 or hmac-sha512 (weaker ones are refused)", alg)
	}
	sec, err := base64.StdEncoding.DecodeString(secret)
	if err != nil {
		return Key{}, fmt.Errorf("secret: %w", err)
	}
	if len(sec) < 16 {
		return Key{}, fmt.Errorf("secret of %d bytes: want at least 16", len(sec))
	}
	k.Secret = sec
	return k, nil
}

// provider signs and verifies with the one configured key. miekg/dns's own
// providers take the algorithm from the message, so a client holding the
// secret could sign with hmac-md5; this one insists on the key's algorithm.
type provider struct{ key Key }

func (p provider) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	if !strings.EqualFold(t.Hdr.Name, p.key.Name) {
		return nil, dns.ErrSecret
	}
	if !strings.EqualFold(dns.CanonicalName(t.Algorithm), p.key.Algorithm) {
		return nil, dns.ErrKeyAlg
	}
	m := hmac.New(strongAlgorithms[p.key.Algorithm], p.key.Secret)
	m.Write(msg)
	return m.Sum(nil), nil
}

func (p provider) Verify(msg []byte, t *dns.TSIG) error {
	want, err := p.Generate(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, got) {
		return dns.ErrSig
	}
	return nil
}

// ReadKeyFile reads the key --rpz-tsig-file names, so the secret never
// appears on a command line (ps, /proc/PID/cmdline). The file holds either
// one NAME:ALGORITHM:BASE64SECRET line, or a key clause as tsig-keygen
// prints it for BIND:
//
//	key "xfr-key" { algorithm hmac-sha256; secret "BASE64"; };
//
// Lines starting with # or // are comments. A file every user may read is
// refused: the key is what lets a secondary take the zone.
func ReadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Key{}, err
	}
	if st.Mode().Perm()&0o004 != 0 {
		return Key{}, fmt.Errorf("%s: readable by every user (mode %04o): chmod o-r it", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return Key{}, err
	}
	if len(data) > maxKeyFile {
		return Key{}, fmt.Errorf("%s: more than %d bytes: not a key file", path, maxKeyFile)
	}
	k, line, err := parseKeyFile(data)
	if err != nil {
		if line > 0 {
			return Key{}, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// maxKeyFile bounds what ReadKeyFile reads; a key clause is about 100 bytes.
const maxKeyFile = 64 << 10

var (
	keyClause  = regexp.MustCompile(`^key\s+"?([^"\s{;]+)"?\s*\{`)
	keyAlg     = regexp.MustCompile(`\balgorithm\s+"?([A-Za-z0-9.-]+)"?\s*;`)
	keySecret  = regexp.MustCompile(`\bsecret\s+"([^"]*)"\s*;`)
	keyClauses = regexp.MustCompile(`(?m)^\s*key\b`)
)

// parseKeyFile reads what ReadKeyFile describes; line is where an error is
// (0: the file as a whole).
func parseKeyFile(data []byte) (k Key, line int, err error) {
	if !utf8.Valid(data) {
		return Key{}, 0, errors.New("not text")
	}
	var body []string // the lines that are not comments, blank lines kept for numbering
	first := 0
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") || strings.HasPrefix(l, "//") {
			l = ""
		}
		body = append(body, l)
		if l != "" && first == 0 {
			first = i + 1
		}
	}
	if first == 0 {
		return Key{}, 0, errors.New("no key in it")
	}
	text := strings.Join(body, "\n")
	if !keyClause.MatchString(strings.TrimSpace(text)) {
		// One NAME:ALGORITHM:BASE64SECRET line.
		for i, l := range body {
			if l != "" && i+1 != first {
				return Key{}, i + 1, errors.New("more than one line: want one NAME:ALGORITHM:BASE64SECRET line or one key clause")
			}
		}
		k, err := ParseKey(body[first-1])
		return k, first, err
	}
	if n := len(keyClauses.FindAllStringIndex(text, -1)); n != 1 {
		return Key{}, first, fmt.Errorf("%d key clauses: want one", n)
	}
	name := keyClause.FindStringSubmatch(strings.TrimSpace(text))[1]
	alg := keyAlg.FindStringSubmatch(text)
	sec := keySecret.FindStringSubmatch(text)
	if alg == nil || sec == nil {
		return Key{}, first, errors.New(`key clause without algorithm NAME; and secret "BASE64";`)
	}
	k, err = ParseKey(name + ":" + alg[1] + ":" + sec[1])
	return k, first, err
}
