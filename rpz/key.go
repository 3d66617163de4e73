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
	"strings"

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
