package signatures

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// WriteDiff writes what changed from old to new for a reviewer: the serial
// and expiry, then signatures added (+), removed (-) and changed (~) with
// their names, TFTP files and payload rules, in the new file's order. It
// returns the number of changes (0: the two sets match the same things).
func WriteDiff(w io.Writer, old, new *Set) (int, error) {
	d := differ{w: w}
	d.line("serial %d -> %d", old.Serial(), new.Serial())
	if !old.Expires().Equal(new.Expires()) {
		d.line("expires %s -> %s", expiryString(old.Expires()), expiryString(new.Expires()))
	}
	if new.Serial() <= old.Serial() {
		d.line("warning: the serial does not go up: a feed refuses this file as a rollback")
	}
	oldByID := map[string]*Signature{}
	for i := range old.Signatures() {
		oldByID[old.Signatures()[i].ID] = &old.Signatures()[i]
	}
	seen := map[string]bool{}
	for i := range new.Signatures() {
		n := &new.Signatures()[i]
		seen[n.ID] = true
		o, ok := oldByID[n.ID]
		if !ok {
			d.change("+ signature %s (%s): %s", n.ID, n.Family, summary(n))
			d.entries(" + ", n)
			continue
		}
		d.signature(o, n)
	}
	for i := range old.Signatures() {
		if o := &old.Signatures()[i]; !seen[o.ID] {
			d.change("- signature %s (%s): %s", o.ID, o.Family, summary(o))
		}
	}
	if d.changes == 0 {
		d.line("no changes to signatures")
	}
	return d.changes, d.err
}

type differ struct {
	w       io.Writer
	changes int
	err     error
}

func (d *differ) line(format string, args ...any) {
	if d.err == nil {
		_, d.err = fmt.Fprintf(d.w, format+"\n", args...)
	}
}

func (d *differ) change(format string, args ...any) {
	d.changes++
	d.line(format, args...)
}

func expiryString(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format(time.RFC3339)
}

func summary(s *Signature) string {
	return fmt.Sprintf("%d names, %d tftp files, %d payload rules", len(s.Domains), len(s.TFTPFiles), len(s.Payloads))
}

// signature writes the changes inside one signature kept under its id.
func (d *differ) signature(o, n *Signature) {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	if o.Family != n.Family {
		add("    ~ family %q -> %q", o.Family, n.Family)
	}
	if !slices.Equal(o.Aliases, n.Aliases) {
		add("    ~ aliases %s -> %s", strings.Join(o.Aliases, ", "), strings.Join(n.Aliases, ", "))
	}
	if !slices.Equal(o.References, n.References) {
		add("    ~ references %s -> %s", strings.Join(o.References, ", "), strings.Join(n.References, ", "))
	}
	oldDom := map[string]Domain{}
	for _, dm := range o.Domains {
		oldDom[dm.Pattern()] = dm
	}
	newDom := map[string]bool{}
	for _, dm := range n.Domains {
		p := dm.Pattern()
		newDom[p] = true
		od, ok := oldDom[p]
		switch {
		case !ok:
			add("    + name %s (%s, %s)", p, dm.Action, dm.Evidence)
		case od.Action != dm.Action || od.Evidence != dm.Evidence:
			add("    ~ name %s: %s, %s -> %s, %s", p, od.Action, od.Evidence, dm.Action, dm.Evidence)
		}
	}
	for _, dm := range o.Domains {
		if !newDom[dm.Pattern()] {
			add("    - name %s", dm.Pattern())
		}
	}
	for _, f := range n.TFTPFiles {
		if !slices.Contains(o.TFTPFiles, f) {
			add("    + tftp_file %s", f)
		}
	}
	for _, f := range o.TFTPFiles {
		if !slices.Contains(n.TFTPFiles, f) {
			add("    - tftp_file %s", f)
		}
	}
	oldP := map[string]bool{}
	for _, p := range o.Payloads {
		oldP[payloadKey(p)] = true
	}
	newP := map[string]bool{}
	for _, p := range n.Payloads {
		k := payloadKey(p)
		newP[k] = true
		if !oldP[k] {
			add("    + payload %s", k)
		}
	}
	for _, p := range o.Payloads {
		if k := payloadKey(p); !newP[k] {
			add("    - payload %s", k)
		}
	}
	if len(lines) == 0 {
		return
	}
	d.change("~ signature %s (%s)", n.ID, n.Family)
	for _, l := range lines {
		d.line("%s", l)
	}
	d.changes += len(lines) - 1
}

// entries lists what a new signature brings, so the review sees every name.
func (d *differ) entries(prefix string, n *Signature) {
	for _, dm := range n.Domains {
		d.line("   %sname %s (%s, %s)", prefix, dm.Pattern(), dm.Action, dm.Evidence)
	}
	for _, f := range n.TFTPFiles {
		d.line("   %stftp_file %s", prefix, f)
	}
	for _, p := range n.Payloads {
		d.line("   %spayload %s", prefix, payloadKey(p))
	}
}

func payloadKey(p Payload) string {
	port := "any"
	if p.Port != 0 {
		port = fmt.Sprint(p.Port)
	}
	nocase := ""
	if p.NoCase {
		nocase = " nocase"
	}
	return fmt.Sprintf("%s/%s %q%s (%s)", p.Proto, port, p.Source, nocase, p.Evidence)
}
