package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"wormsink/signatures"
)

// The maintainers' tools: what a release changes, and public lists turned
// into signature entries.

func runSigsDiff(e env, args []string) int {
	fs := newFlags(e, "sigs diff", "OLD NEW")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() != 2 {
		return usageErr(e, "sigs diff: takes OLD and NEW")
	}
	old, err := signatures.Load(fs.Arg(0))
	if err != nil {
		return fail(e, "sigs diff: %v", err)
	}
	cur, err := signatures.Load(fs.Arg(1))
	if err != nil {
		return fail(e, "sigs diff: %v", err)
	}
	if _, err := signatures.WriteDiff(e.stdout, old, cur); err != nil {
		return fail(e, "sigs diff: %v", err)
	}
	return exitOK
}

func runSigsImport(e env, args []string) int {
	fs := newFlags(e, "sigs import", "--format hosts|rpz|urlhaus-csv --family NAME --id PREFIX FILE")
	format := fs.String("format", "", "the list's format: "+strings.Join(signatures.ImportFormats, ", "))
	family := fs.String("family", "", "family of the entry written")
	id := fs.String("id", "", "id of the entry written")
	evidence := fs.String("evidence", "weak", "what a lookup of a listed name proves: weak (public lists mix in false positives) or strong")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if *format == "" || *family == "" || *id == "" || fs.NArg() != 1 {
		return usageErr(e, "sigs import: needs --format, --family, --id and one FILE")
	}
	ev, ok := signatures.ParseStrength(*evidence)
	if !ok {
		return usageErr(e, "sigs import: --evidence %q: want weak or strong", *evidence)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fail(e, "sigs import: %v", err)
	}
	defer f.Close()
	im, err := signatures.Import(fs.Arg(0), f, *format)
	if err != nil {
		return fail(e, "sigs import: %v", err)
	}
	opt := signatures.ImportOptions{ID: *id, Family: *family, Evidence: ev, Source: filepath.Base(fs.Arg(0)), Format: *format}
	if err := signatures.WriteImported(e.stdout, im, opt); err != nil {
		return fail(e, "sigs import: %v", err)
	}
	fmt.Fprintf(e.stderr, "sigs import: %d names, %d entries skipped\n", len(im.Domains), im.Skipped)
	return exitOK
}
