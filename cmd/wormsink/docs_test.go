package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"wormsink/signatures"
)

// The flag and metric references in docs/ are generated from the code: the
// flag sets the commands parse and the collectors serve registers. These
// tests fail when the committed files differ from what the code says;
// `make docs` (go test -run Reference -args -update-docs) rewrites them.

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/flags.md and docs/metrics.md from the code")

const generatedNote = "<!-- Generated from the code by `make docs`; do not edit: a test fails when it drifts. -->\n"

// checkGenerated compares docs/name with want, or writes it with -update-docs.
func checkGenerated(t *testing.T, name, want string) {
	t.Helper()
	path := filepath.Join("..", "..", "docs", name)
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run `make docs`", err)
	}
	if string(got) != want {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(gl) && i < len(wl) && gl[i] == wl[i] {
			i++
		}
		line := func(l []string) string {
			if i < len(l) {
				return l[i]
			}
			return "(end of file)"
		}
		t.Fatalf("docs/%s is not what the code says: run `make docs`\nfirst difference, line %d:\n  file: %s\n  code: %s", name, i+1, line(gl), line(wl))
	}
}

// commandFlags runs `wormsink ARGS --help` and returns the flag set the
// command parsed (nil for a command with subcommands) and its help.
func commandFlags(t *testing.T, args ...string) (*flag.FlagSet, string) {
	t.Helper()
	var fs *flag.FlagSet
	var out, errb bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, flagSet: func(f *flag.FlagSet) { fs = f }}
	if code := run(context.Background(), e, append(args, "--help")); code != exitOK {
		t.Fatalf("wormsink %s --help: exit %d\n%s", strings.Join(args, " "), code, errb.String())
	}
	return fs, out.String()
}

// commandLines are every command and subcommand: the top-level list, and
// for a command without flags of its own the subcommands its help names
// (lines "wormsink CMD SUB ...").
func commandLines(t *testing.T) [][]string {
	t.Helper()
	var all [][]string
	for _, c := range commands() {
		fs, help := commandFlags(t, c.name)
		if fs != nil {
			all = append(all, []string{c.name})
			continue
		}
		subs := regexp.MustCompile(`wormsink `+regexp.QuoteMeta(c.name)+` ([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help, -1)
		if len(subs) == 0 {
			t.Fatalf("wormsink %s --help names no flags and no subcommands:\n%s", c.name, help)
		}
		seen := map[string]bool{}
		for _, m := range subs {
			if !seen[m[1]] {
				seen[m[1]] = true
				all = append(all, []string{c.name, m[1]})
			}
		}
	}
	return all
}

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "<", "&lt;")
	return strings.ReplaceAll(s, "\n", " ")
}

// flagReference is docs/flags.md: every command's usage and flags.
func flagReference(t *testing.T) string {
	var b strings.Builder
	b.WriteString("# Command-line reference\n\n" + generatedNote + "\n")
	b.WriteString("Every flag of every command, as `wormsink COMMAND --help` prints it. " +
		"A flag is written `--name value` or `--name=value`; a boolean flag alone turns it on. " +
		"Each `serve` flag is also a key of the `--config` file (YAML, the flag's name without the dashes); " +
		"the command line wins over the file ([configuration](configuration.md)).\n\n")
	var top bytes.Buffer
	usage(&top)
	b.WriteString("```\n$ wormsink --help\n" + top.String() + "```\n")
	for _, args := range commandLines(t) {
		fs, help := commandFlags(t, args...)
		name := strings.Join(args, " ")
		fmt.Fprintf(&b, "\n## wormsink %s\n\n", name)
		usageLine, _, _ := strings.Cut(help, "\n")
		fmt.Fprintf(&b, "`%s`\n\n", strings.TrimSpace(usageLine))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			b.WriteString("No flags.\n")
			continue
		}
		b.WriteString("| flag | default | meaning |\n| --- | --- | --- |\n")
		fs.VisitAll(func(f *flag.Flag) {
			typ, meaning := flag.UnquoteUsage(f)
			flagCol := "`--" + f.Name
			if typ != "" && typ != "value" { // "value": a flag.Value that names no type
				flagCol += " " + typ
			}
			flagCol += "`"
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				def = "`" + f.DefValue + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCell(flagCol), mdCell(def), mdCell(meaning))
		})
	}
	return b.String()
}

// TestFlagReference: docs/flags.md lists every flag of every command as
// the code defines it.
func TestFlagReference(t *testing.T) {
	checkGenerated(t, "flags.md", flagReference(t))
}

// TestHelpNamesEveryFormat: the top-level help names every report and
// export format (shadowserver6 was missing when the list was typed twice).
func TestHelpNamesEveryFormat(t *testing.T) {
	var top bytes.Buffer
	usage(&top)
	for _, f := range slices.Concat(reportFormats, signatures.ExportFormats) {
		if !regexp.MustCompile(`[ |]` + regexp.QuoteMeta(f) + `[|\]) ]`).MatchString(top.String()) {
			t.Errorf("wormsink --help does not name the format %s:\n%s", f, top.String())
		}
	}
}

// TestEveryCommandHelpSaysItsFlags: each command's --help has a usage line
// and then either its flags or "(no flags)" (sigs check listed nothing).
func TestEveryCommandHelpSaysItsFlags(t *testing.T) {
	for _, args := range commandLines(t) {
		fs, help := commandFlags(t, args...)
		if !strings.HasPrefix(help, "usage: wormsink "+strings.Join(args, " ")) {
			t.Errorf("wormsink %s --help: no usage line:\n%s", strings.Join(args, " "), help)
		}
		n := 0
		fs.VisitAll(func(f *flag.Flag) {
			n++
			if !strings.Contains(help, "-"+f.Name) {
				t.Errorf("wormsink %s --help does not list -%s", strings.Join(args, " "), f.Name)
			}
		})
		if n == 0 && !strings.Contains(help, "(no flags)") {
			t.Errorf("wormsink %s --help lists nothing and does not say it has no flags:\n%s", strings.Join(args, " "), help)
		}
	}
}

// docsServeArgs turn on every part of serve, on loopback, so that every
// collector registers. A new part adds its flags here;
// TestMetricsReference fails (naming the metric) until it does.
func docsServeArgs(dir string) []string {
	return []string{"--dns-listen", "127.0.0.1:0", "--tftp-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--tftp-intercept", "127.0.0.1:0", "--capture", "lo",
		"--rpz-listen", "127.0.0.1:0", "--dnstap-listen", "unix:" + filepath.Join(dir, "tap.sock"),
		"--sinkhole-ip", "192.0.2.66", "--upstream", "127.0.0.1:9",
		"--log", filepath.Join(dir, "evidence.jsonl"), "--user", "", "--watch-interval", "0"}
}

// metricReference is docs/metrics.md: every metric serve registers, with
// its type, labels and help, as its collector describes it.
func metricReference(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: the capture and interception parts register their metrics once bound (make test runs as root)")
	}
	var c serveConfig
	var errb bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &errb, stderr: &errb}
	fs := serveFlags(e, &c)
	if err := fs.Parse(docsServeArgs(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	if err := c.complete(); err != nil {
		t.Fatal(err)
	}
	s, err := newServer(e, &c, signals{})
	if err != nil {
		t.Fatalf("serve with every part: %v", err)
	}
	defer s.closeAll()
	families, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("# Metrics reference\n\n" + generatedNote + "\n")
	b.WriteString("What `wormsink serve` exports on `--metrics-listen` at `/metrics` (Prometheus text format), " +
		"each metric once, with the help text its collector gives. A part that is off (no `--dns-listen`, " +
		"no `--capture`, …) exports none of its metrics. Besides these, the Go runtime's `go_*` and the " +
		"process's `process_*` metrics are exported as the Prometheus client library defines them.\n\n")
	b.WriteString("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n")
	for _, mf := range families {
		name := mf.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		labels := map[string][]string{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels[lp.GetName()], lp.GetValue()) {
					labels[lp.GetName()] = append(labels[lp.GetName()], lp.GetValue())
				}
			}
		}
		var lcol []string
		for l, vs := range labels {
			sort.Strings(vs)
			lcol = append(lcol, "`"+l+"`: "+strings.Join(vs, ", "))
		}
		sort.Strings(lcol)
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, strings.ToLower(dto.MetricType_name[int32(mf.GetType())]), mdCell(strings.Join(lcol, "; ")), mdCell(mf.GetHelp()))
	}
	return b.String()
}

// TestMetricsReference: docs/metrics.md lists every metric serve's
// collectors describe, and every metric name the code registers appears
// in it (a part docsServeArgs does not turn on would leave its own out).
func TestMetricsReference(t *testing.T) {
	ref := metricReference(t)
	for _, m := range registeredMetricNames(t) {
		if !strings.Contains(ref, "| `"+m.name+"` |") {
			t.Errorf("%s registers %s, which serve with docsServeArgs did not: turn its part on in docsServeArgs", m.where, m.name)
		}
	}
	checkGenerated(t, "metrics.md", ref)
}

type metricName struct{ name, where string }

// registeredMetricNames are the metric names written in this command's
// source: each string literal that is a whole wormsink_* name.
func registeredMetricNames(t *testing.T) []metricName {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"(wormsink_[a-z0-9_]+)"`)
	var names []metricName
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				names = append(names, metricName{m[1], fmt.Sprintf("%s:%d", f, i+1)})
			}
		}
	}
	if len(names) < 20 {
		t.Fatalf("found %d metric names in the source: the scan is broken", len(names))
	}
	return names
}
