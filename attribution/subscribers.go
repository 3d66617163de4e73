package attribution

import (
	"bufio"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"os"
	"strings"
)

// Subscribers is a static map from networks to subscriber ids (business
// lines with fixed addresses): the longest prefix wins. A line may also
// name the subscriber's e-mail contact and language, which the abuse desk
// writes its notices to.
type Subscribers struct {
	byPrefix map[netip.Prefix]string
	lens4    []int
	lens6    []int
	contacts map[string]subscriberContact
}

type subscriberContact struct{ email, lang string }

// LoadSubscribers reads a subscribers file: lines "CIDR ID [EMAIL [LANG]]"
// (an address stands for itself), # comments and blank lines ignored.
func LoadSubscribers(path string) (*Subscribers, error) {
	return loadFile(path, "subscribers", ParseSubscribers)
}

// ParseSubscribers parses a subscribers file read from r; name is used in
// errors (NAME:LINE).
func ParseSubscribers(r io.Reader, name string) (*Subscribers, error) {
	s := &Subscribers{byPrefix: map[netip.Prefix]string{}, contacts: map[string]subscriberContact{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 || len(f) > 4 {
			return nil, fmt.Errorf("%s:%d: want \"CIDR ID [EMAIL [LANG]]\"", name, n)
		}
		p, err := parsePrefixOrAddr(f[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if prev, ok := s.byPrefix[p]; ok && prev != f[1] {
			return nil, fmt.Errorf("%s:%d: %s is already subscriber %q", name, n, p, prev)
		}
		if len(f) > 2 {
			c, err := parseContact(f[2:])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, n, err)
			}
			if prev, ok := s.contacts[f[1]]; ok {
				if prev.email != c.email || (prev.lang != "" && c.lang != "" && prev.lang != c.lang) {
					return nil, fmt.Errorf("%s:%d: subscriber %q already has the contact %s %s", name, n, f[1], prev.email, prev.lang)
				}
				if c.lang == "" {
					c.lang = prev.lang // a line that names no language keeps the one named
				}
			}
			s.contacts[f[1]] = c
		}
		s.byPrefix[p] = f[1]
		s.addLen(p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// parseContact reads "EMAIL [LANG]": a bare address (no name, nothing a
// mail header could be broken with) and a language tag like en or de.
func parseContact(f []string) (subscriberContact, error) {
	a, err := mail.ParseAddress(f[0])
	if err != nil || a.Name != "" || a.Address != f[0] || strings.ContainsAny(a.Address, "\r\n<>\"") {
		return subscriberContact{}, fmt.Errorf("%q is not a bare e-mail address", f[0])
	}
	c := subscriberContact{email: a.Address}
	if len(f) > 1 {
		l := f[1]
		if len(l) < 2 || len(l) > 8 || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz-") != "" {
			return subscriberContact{}, fmt.Errorf("language %q: want a tag like en or de", l)
		}
		c.lang = l
	}
	return c, nil
}

// Contact returns the e-mail address and language ("" when none was
// given) of subscriber id, as the subscribers file names them.
func (s *Subscribers) Contact(id string) (email, lang string, ok bool) {
	if s == nil {
		return "", "", false
	}
	c, ok := s.contacts[id]
	return c.email, c.lang, ok
}

func parsePrefixOrAddr(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q", v)
		}
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p)).Masked(), nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("bad address %q", v)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return 96
	}
	return 0
}

func (s *Subscribers) addLen(p netip.Prefix) {
	lens := &s.lens6
	if p.Addr().Is4() {
		lens = &s.lens4
	}
	for _, l := range *lens {
		if l == p.Bits() {
			return
		}
	}
	*lens = append(*lens, p.Bits())
	for i := len(*lens) - 1; i > 0 && (*lens)[i] > (*lens)[i-1]; i-- {
		(*lens)[i], (*lens)[i-1] = (*lens)[i-1], (*lens)[i]
	}
}

// Lookup returns the subscriber of the longest network holding a, or "".
func (s *Subscribers) Lookup(a netip.Addr) string {
	if s == nil {
		return ""
	}
	a = a.Unmap()
	lens := s.lens6
	if a.Is4() {
		lens = s.lens4
	}
	for _, l := range lens {
		p, err := a.Prefix(l)
		if err != nil {
			continue
		}
		if id, ok := s.byPrefix[p]; ok {
			return id
		}
	}
	return ""
}

// Len returns the number of networks.
func (s *Subscribers) Len() int { return len(s.byPrefix) }

// loadFile opens path and parses it with parse, which names errors by
// path (FILE:LINE); what names the file in an error opening it.
func loadFile[T any](path, what string, parse func(io.Reader, string) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("attribution: %s: %w", what, err)
	}
	defer f.Close()
	return parse(f, path)
}
