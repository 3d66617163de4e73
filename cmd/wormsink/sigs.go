package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"wormsink/signatures"
)

func runSigs(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		return usageErr(e, "sigs: needs a subcommand: %s", sigsSubcommands)
	}
	switch args[0] {
	case "check":
		return runSigsCheck(e, args[1:])
	case "export":
		return runSigsExport(e, args[1:])
	case "keygen":
		return runSigsKeygen(e, args[1:])
	case "sign":
		return runSigsSign(e, args[1:])
	case "verify":
		return runSigsVerify(e, args[1:])
	case "pull":
		return runSigsPull(ctx, e, args[1:])
	case "diff":
		return runSigsDiff(e, args[1:])
	case "import":
		return runSigsImport(e, args[1:])
	case "-h", "-help", "--help":
		fmt.Fprint(e.stdout, sigsUsage)
		return exitOK
	}
	return usageErr(e, "sigs: unknown subcommand %q (want %s)", args[0], sigsSubcommands)
}

const sigsSubcommands = "check, export, keygen, sign, verify, pull, diff or import"

const sigsUsage = `usage: wormsink sigs check FILE
       wormsink sigs export --format rpz|hosts|suricata [--sinkhole-ip IP,...] [--zone NAME] [--keep-underscore] [FILE]
       wormsink sigs keygen -o PREFIX [--password-file FILE]
       wormsink sigs sign --key FILE [--password-file FILE] SIGFILE
       wormsink sigs verify --pubkey KEY SIGFILE
       wormsink sigs pull --sigs-url URL --sigs-pubkey KEY [--sigs-ca FILE] --signatures FILE
       wormsink sigs diff OLD NEW
       wormsink sigs import --format hosts|rpz|urlhaus-csv FILE --family NAME --id PREFIX
`

func runSigsCheck(e env, args []string) int {
	fs := newFlags(e, "sigs check", "FILE")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() != 1 {
		return usageErr(e, "sigs check: takes exactly one FILE")
	}
	set, err := signatures.Load(fs.Arg(0))
	if err != nil {
		return fail(e, "sigs check: %v", err)
	}
	st := set.Stats()
	fmt.Fprintf(e.stdout, "%s: ok: serial %d, %s, %d signatures, %d domains (%d wildcard), %d tftp files, %d payload rules\n",
		fs.Arg(0), set.Serial(), expiryText(set.Expires(), time.Now()), st.Signatures, st.Domains, st.Wildcards, st.TFTPFiles, st.Payloads)
	if exp := set.Expires(); !exp.IsZero() && !time.Now().Before(exp) {
		return fail(e, "sigs check: %s expired at %s: a feed refuses it", fs.Arg(0), exp.Format(time.RFC3339))
	}
	return exitOK
}

func runSigsExport(e env, args []string) int {
	fs := newFlags(e, "sigs export", "[FILE]")
	format := fs.String("format", "", "output format: "+strings.Join(signatures.ExportFormats, ", "))
	var ips addrList
	fs.Var(&ips, "sinkhole-ip", "comma-separated addresses for sinkhole answers (rpz, hosts)")
	zone := fs.String("zone", "", "rpz: the zone's name; owners become absolute and every name is checked to fit below it (default: relative owners, for zone names of up to 12 characters)")
	keepUnderscore := fs.Bool("keep-underscore", false, "rpz: write sinkhole names with '_' as A/AAAA data (BIND then needs check-names primary ignore on the zone); by default they answer NODATA")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if *format == "" {
		return usageErr(e, "sigs export: needs --format (%s)", strings.Join(signatures.ExportFormats, ", "))
	}
	known := false
	for _, f := range signatures.ExportFormats {
		known = known || f == *format
	}
	if !known {
		return usageErr(e, "sigs export: unknown format %q (want %s)", *format, strings.Join(signatures.ExportFormats, ", "))
	}
	if fs.NArg() > 1 {
		return usageErr(e, "sigs export: takes at most one FILE")
	}
	var set *signatures.Set
	if fs.NArg() == 1 && fs.Arg(0) != "" {
		var err error
		if set, err = signatures.Load(fs.Arg(0)); err != nil {
			return fail(e, "sigs export: %v", err)
		}
	} else {
		set = signatures.Default()
	}
	if (*zone != "" || *keepUnderscore) && *format != "rpz" {
		return usageErr(e, "sigs export: --zone and --keep-underscore apply to --format rpz only")
	}
	if err := signatures.CheckZone(*zone); err != nil {
		return usageErr(e, "sigs export: --zone: %v", err)
	}
	opt := signatures.ExportOptions{
		Sinkhole:       ips,
		Zone:           *zone,
		KeepUnderscore: *keepUnderscore,
		Warn:           func(msg string) { fmt.Fprintln(e.stderr, "warning:", msg) },
	}
	if err := signatures.ExportWith(e.stdout, set, *format, opt); err != nil {
		return fail(e, "sigs export: %v", err)
	}
	return exitOK
}

// expiryText says when a file expires, for the check and verify lines.
func expiryText(exp, now time.Time) string {
	switch {
	case exp.IsZero():
		return "no expiry"
	case !now.Before(exp):
		return "EXPIRED at " + exp.Format(time.RFC3339)
	}
	return fmt.Sprintf("expires %s (in %s)", exp.Format(time.RFC3339), exp.Sub(now).Round(time.Minute))
}

// addrList is a flag holding comma-separated IP addresses.
type addrList []netip.Addr

func (l *addrList) String() string {
	s := make([]string, len(*l))
	for i, a := range *l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (l *addrList) Set(v string) error {
	*l = (*l)[:0]
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return fmt.Errorf("bad address %q", part)
		}
		*l = append(*l, a)
	}
	return nil
}
