// Command wormsink is the worm sinkhole: it serves the DNS shim, the fake TFTP
// server and the packet matcher, and scans, reports and checks what they use.
package main

//go:generate go test -count=1 -run ^(Test(Flag|Metrics|Package)Reference|TestDocsIndexLinksEveryPage)$ . -args -update-docs

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"wormsink/report"
)

// Exit statuses (docs/contract.md §1).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// env is what a command sees of the process, so tests can run commands in
// process with their own streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// flagSet, when set, sees every command's flags before they are
	// parsed: the generated flag reference (docs/flags.md) is read from it.
	flagSet func(*flag.FlagSet)
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e env, args []string) int
}

// commands is the whole command line, wired here in one visible place.
func commands() []command {
	return []command{
		{"serve", "DNS shim + fake TFTP server (+ live packet matching), until SIGTERM", runServe},
		{"scan", "match worm patterns in pcap/pcapng files; evidence lines to stdout", runScan},
		{"report", "per-host summary of evidence logs (report [--format " + strings.Join(report.FormatNames(), "|") + "] [LOG...])", runReport},
		{"sigs", "check, export, sign, verify, pull, diff and import signature files (sigs --help)", runSigs},
		{"quarantine", "list, add, release and annotate quarantined subscribers and addresses (--db)", runQuarantine},
		{"attribution", "RADIUS and NAT records in (import) and who an address was (who ADDR[:PORT] TIME)", runAttribution},
		{"desk", "the abuse desk: cases from every sensor's evidence, web UI and API (desk --help)", runDesk},
		{"ship", "send evidence logs to the desk as they grow (ship --to URL --token-file FILE LOG...)", runShip},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "wormsink: unknown command %q (see wormsink --help)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wormsink COMMAND [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'wormsink COMMAND --help' for a command's flags.")
}

// newFlags makes a FlagSet that reports instead of exiting, with a usage
// line naming the command's arguments.
func newFlags(e env, name, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			// Said, so that an empty list does not read as a broken help.
			fmt.Fprintf(fs.Output(), "usage: wormsink %s %s\n(no flags)\n", name, argsUsage)
			return
		}
		fmt.Fprintf(fs.Output(), "usage: wormsink %s [flags] %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; done is true when the caller should return code
// (help was asked for, or the flags were wrong).
func parseFlags(fs *flag.FlagSet, e env, args []string) (code int, done bool) {
	// The flag package prints its own usage on errors and on -h; hold it,
	// so help goes once to stdout and errors once to stderr.
	if e.flagSet != nil {
		e.flagSet(fs)
	}
	var held bytes.Buffer
	fs.SetOutput(&held)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return exitOK, true
	}
	fs.SetOutput(e.stderr)
	if err != nil {
		// One line, as every error; the usage is a --help away.
		fmt.Fprintf(e.stderr, "wormsink: %s: %s (see wormsink %s --help)\n", fs.Name(), flagError(err), fs.Name())
		return exitUsage, true
	}
	return 0, false
}

var flagValueError = regexp.MustCompile(`^invalid value "(.*)" for flag -(\S+): (.*)$`)

// flagError words the flag package's errors as the rest of the command's:
// the flag as it is typed (--name) first, the value once.
func flagError(err error) string {
	msg := err.Error()
	if m := flagValueError.FindStringSubmatch(msg); m != nil {
		value, name, detail := m[1], m[2], m[3]
		switch {
		case detail == "parse error":
			detail = fmt.Sprintf("%q is not a valid value", value)
		case !strings.Contains(detail, value):
			detail = fmt.Sprintf("%q: %s", value, detail)
		}
		return "--" + name + ": " + detail
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag --" + name
	}
	return msg
}

// fail prints one clear line and returns the runtime failure status.
func fail(e env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "wormsink: "+format+"\n", args...)
	return exitFailure
}

// usageErr prints one line and returns the usage status.
func usageErr(e env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "wormsink: "+format+"\n", args...)
	return exitUsage
}
