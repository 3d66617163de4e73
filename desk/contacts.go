package desk

import (
	"bufio"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"strings"
)

// Contacts says whom to notify for a case: lines
// "SUBJECT EMAIL [LANG] [external]", SUBJECT a subscriber id, an address or
// a CIDR; '#' starts a comment. "external" marks another network's abuse
// desk (a reseller, a business customer's own NOC): its notices carry the
// case's X-ARF report.
type Contacts struct {
	subjects map[string]Contact
	nets     []netContact
}

// Contact is an address to write to and the language to write in.
type Contact struct {
	Email string
	Lang  string // "" is DefaultLang
	// External recipients get the case's X-ARF report attached.
	External bool
}

type netContact struct {
	p netip.Prefix
	c Contact
}

// ParseContacts reads a contacts file; name is used in errors (FILE:LINE).
func ParseContacts(r io.Reader, name string) (*Contacts, error) {
	cs := &Contacts{subjects: map[string]Contact{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 || len(f) > 4 {
			return nil, fmt.Errorf("%s:%d: want SUBJECT EMAIL [LANG] [external]", name, n)
		}
		a, err := mail.ParseAddress(f[1])
		if err != nil || a.Name != "" || strings.ContainsAny(a.Address, "\r\n<>") {
			return nil, fmt.Errorf("%s:%d: %q is not an e-mail address", name, n, f[1])
		}
		c := Contact{Email: a.Address}
		for i, v := range f[2:] {
			switch {
			case v == "external" && !c.External:
				c.External = true
			case i == 0 && validLang(v):
				c.Lang = v
			case i == 0:
				return nil, fmt.Errorf("%s:%d: language %q: want a tag like en or de", name, n, v)
			default:
				return nil, fmt.Errorf("%s:%d: %q: want SUBJECT EMAIL [LANG] [external]", name, n, v)
			}
		}
		switch {
		case strings.Contains(f[0], "/"):
			p, err := netip.ParsePrefix(f[0])
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %q: %v", name, n, f[0], err)
			}
			cs.nets = append(cs.nets, netContact{p.Masked(), c})
		default:
			if a, err := netip.ParseAddr(f[0]); err == nil {
				cs.subjects["address:"+a.Unmap().String()] = c
				continue
			}
			if err := CheckName(f[0]); err != nil {
				return nil, fmt.Errorf("%s:%d: subject: %v", name, n, err)
			}
			cs.subjects["subscriber:"+f[0]] = c
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return cs, nil
}

func validLang(s string) bool {
	if len(s) < 2 || len(s) > 8 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

// Lookup finds the contact of a case: its subject, else the most specific
// network holding one of its addresses.
func (cs *Contacts) Lookup(c Case) (Contact, bool) {
	if cs == nil {
		return Contact{}, false
	}
	if ct, ok := cs.subjects[c.Subject]; ok {
		return ct, true
	}
	best, bits := Contact{}, -1
	for _, s := range c.Addresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if ct, ok := cs.subjects["address:"+a.String()]; ok {
			return ct, true
		}
		for _, n := range cs.nets {
			if n.p.Contains(a) && n.p.Bits() > bits {
				best, bits = n.c, n.p.Bits()
			}
		}
	}
	return best, bits >= 0
}
