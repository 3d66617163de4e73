package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"wormsink/report"
	"wormsink/signatures"
)

// The flag and metric references in docs/ are generated from the code: the
// flag sets the commands parse and the collectors serve registers. These
// tests fail when the committed files differ from what the code says;
// `make docs` (go test -run Reference -args -update-docs) rewrites them.

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/flags.md, docs/metrics.md and docs/packages.md from the code")

const generatedNote = "<!-- Generated from the code by `make docs`; do not edit: a test fails when it drifts. -->\n"

// checkGenerated compares the file at file (from the repository's root)
// with want, or writes it with -update-docs.
func checkGenerated(t *testing.T, file, want string) {
	t.Helper()
	path := filepath.Join("..", "..", file)
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
		t.Fatalf("%s is not what the code says: run `make docs`\nfirst difference, line %d:\n  file: %s\n  code: %s", file, i+1, line(gl), line(wl))
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
			// A command with flags of its own may have subcommands too
			// (desk): its usage lines, before the flags, name them.
			help, _, _ = strings.Cut(help, "\n  -")
		}
		subs := regexp.MustCompile(`wormsink `+regexp.QuoteMeta(c.name)+` ([a-z][a-z0-9-]*)`).FindAllStringSubmatch(help, -1)
		if fs != nil && len(subs) == 0 {
			continue
		}
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

// docLink is the link from a page of docs/ to file (named from the
// repository's root, as tests that look for dangling names read them).
func docLink(file string) string { return strings.TrimPrefix(file, "docs/") }

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
		"the command line wins over the file ([configuration](" + docLink("docs/configuration.md") + ")).\n\n")
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
			if m, ok := machineDefault(t, f); ok {
				def = m
			} else if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				def = "`" + f.DefValue + "`"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", mdCell(flagCol), mdCell(def), mdCell(meaning))
		})
	}
	return b.String()
}

// machineDefault says in words a default taken from the machine the help
// runs on (its host name, its number of CPUs), so that the reference is
// the same on every machine.
func machineDefault(t *testing.T, f *flag.Flag) (string, bool) {
	if h, _ := os.Hostname(); h != "" && f.DefValue == h {
		return "the host name", true
	}
	if f.DefValue != strconv.Itoa(runtime.NumCPU()) {
		return "", false
	}
	// The number is the CPU count only where the flag's definition says so.
	files, _ := filepath.Glob("*.go")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, strconv.Quote(f.Name)) && strings.Contains(line, "runtime.NumCPU()") {
				return "the number of CPUs", true
			}
		}
	}
	return "", false
}

// TestFlagReference: docs/flags.md lists every flag of every command as
// the code defines it.
func TestFlagReference(t *testing.T) {
	checkGenerated(t, "docs/flags.md", flagReference(t))
}

// TestHelpNamesEveryFormat: the top-level help names every report format
// and `sigs --help` every export format (shadowserver6 was missing when
// the list was typed twice).
func TestHelpNamesEveryFormat(t *testing.T) {
	var top bytes.Buffer
	usage(&top)
	_, sigsHelp := commandFlags(t, "sigs")
	for _, c := range []struct {
		help    string
		formats []string
	}{{top.String(), report.FormatNames()}, {sigsHelp, signatures.ExportFormats}} {
		for _, f := range c.formats {
			if !regexp.MustCompile(`[ |]` + regexp.QuoteMeta(f) + `[|\]) ]`).MatchString(c.help) {
				t.Errorf("the help does not name the format %s:\n%s", f, c.help)
			}
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

// docsServeArgs turn on every part of serve, on loopback, with the files
// they need in dir, so that every collector registers. A new part adds its
// flags here; TestMetricsReference fails (naming the metric) until it does.
func docsServeArgs(t *testing.T, dir string) []string {
	t.Helper()
	sigs, err := os.ReadFile(filepath.Join("..", "..", "signatures/default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"sigs.yaml":    string(sigs),
		"policy.yaml":  quarantinePolicy,
		"radius.conf":  "127.0.0.1/32 docs-secret\n",
		"evidence.log": "",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, errs := runCmd(t, "", "sigs", "keygen", "-o", filepath.Join(dir, "feed")); code != exitOK {
		t.Fatalf("sigs keygen: %s", errs)
	}
	return []string{"--dns-listen", "127.0.0.1:0", "--tftp-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--tftp-intercept", "127.0.0.1:0", "--capture", "lo",
		"--rpz-listen", "127.0.0.1:0", "--dnstap-listen", "unix:" + filepath.Join(dir, "tap.sock"),
		"--sinkhole-ip", "192.0.2.66", "--upstream", "127.0.0.1:9",
		"--signatures", filepath.Join(dir, "sigs.yaml"),
		"--sigs-url", "http://127.0.0.1:9/sigs.yaml", "--sigs-pubkey", filepath.Join(dir, "feed.pub"),
		"--db", "sqlite:" + filepath.Join(dir, "wormsink.db"),
		"--quarantine-policy", filepath.Join(dir, "policy.yaml"), "--notice-ip", "127.0.0.80",
		"--radius-acct-listen", "127.0.0.1:0", "--radius-secrets", filepath.Join(dir, "radius.conf"), "--nat-ipfix-listen", "127.0.0.1:0",
		"--bgp-asn", "65000", "--bgp-router-id", "192.0.2.1", "--bgp-neighbor", "127.0.0.1@65001",
		"--log", filepath.Join(dir, "evidence.log"), "--user", "", "--watch-interval", "0"}
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
	if err := fs.Parse(docsServeArgs(t, t.TempDir())); err != nil {
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
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, strings.ToLower(mf.GetType().String()), mdCell(strings.Join(lcol, "; ")), mdCell(mf.GetHelp()))
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
	checkGenerated(t, "docs/metrics.md", ref)
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

// packageReference is docs/packages.md: every package of the module with
// its package comment, the one place each says what it holds.
func packageReference(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{.Doc}}", "wormsink/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var b strings.Builder
	b.WriteString("# Packages\n\n" + generatedNote + "\n")
	b.WriteString("Every package of the module and what it holds, from its package comment (`go doc` shows the rest). " +
		"Where the other directories fit is in [design](" + docLink("docs/design.md") + "#layout).\n\n")
	b.WriteString("| package | what it holds |\n| --- | --- |\n")
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, doc, _ := strings.Cut(line, "\t")
		dir := strings.TrimPrefix(strings.TrimPrefix(path, "wormsink"), "/")
		if dir == "" {
			dir = "."
		}
		fmt.Fprintf(&b, "| [`%s`](../%s) | %s |\n", path, dir, mdCell(doc))
	}
	return b.String()
}

// TestPackageReference: docs/packages.md lists every package with its
// package comment.
func TestPackageReference(t *testing.T) {
	checkGenerated(t, "docs/packages.md", packageReference(t))
}

// docFiles are README.md and every docs/*.md, relative to the repository's
// root.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{"README.md"}
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join("..", ".."), f)
		all = append(all, rel)
	}
	return all
}

// example is one `$ command` of a console block and the output shown
// under it.
type example struct {
	where   string // FILE:LINE
	command string
	output  []string
}

// docExamples finds the examples: in ```console blocks, a line "$ CMD"
// and the lines after it up to the next "$ " or the block's end.
func docExamples(t *testing.T, file string) []example {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", file))
	if err != nil {
		t.Fatal(err)
	}
	var exs []example
	in := false
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```console":
			in = true
		case in && strings.TrimSpace(line) == "```":
			in = false
		case in && strings.HasPrefix(line, "$ "):
			exs = append(exs, example{where: fmt.Sprintf("%s:%d", file, i+1), command: line[2:]})
		case in && len(exs) > 0:
			exs[len(exs)-1].output = append(exs[len(exs)-1].output, line)
		case in:
			t.Errorf("%s:%d: a console block must start with a `$ ` command line", file, i+1)
		}
	}
	return exs
}

// outputMatches compares output with what the example shows: a line "..."
// stands for any lines, and "..." inside a line for any text. Spaces at
// the end of a line do not count (a table pads its last column; a page
// keeps no trailing spaces).
func outputMatches(want, got []string) bool {
	var re strings.Builder
	re.WriteString(`^`)
	for _, w := range want {
		w = strings.TrimRight(w, " \t")
		if w == "..." {
			re.WriteString(`(?:.*\n)*?`)
			continue
		}
		parts := strings.Split(w, "...")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		re.WriteString(strings.Join(parts, `.*?`) + `\n`)
	}
	re.WriteString(`$`)
	text := ""
	for _, g := range got {
		text += strings.TrimRight(g, " \t") + "\n"
	}
	return regexp.MustCompile(re.String()).MatchString(text)
}

// TestDocExamples runs every example of README.md and docs/ (the console
// blocks) with this tree's binary as `wormsink`, from the repository's
// root, and checks what it prints (stdout and stderr) is what is shown.
func TestDocExamples(t *testing.T) {
	bin := wormsinkBinary(t)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, file := range docFiles(t) {
		for _, ex := range docExamples(t, file) {
			n++
			if f := strings.Fields(ex.command); len(f) == 0 || f[0] != "wormsink" {
				t.Errorf("%s: an example runs wormsink, not %q (show other commands in a sh block)", ex.where, ex.command)
				continue
			}
			cmd := exec.Command("bash", "-o", "pipefail", "-c", ex.command)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
			out, _ := cmd.CombinedOutput() // examples of errors exit non-zero
			got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			want := ex.output
			for len(want) > 0 && strings.TrimSpace(want[len(want)-1]) == "" {
				want = want[:len(want)-1]
			}
			if !outputMatches(want, got) {
				t.Errorf("%s: $ %s\nthe page shows:\n%s\nit prints:\n%s", ex.where, ex.command, strings.Join(want, "\n"), out)
			}
		}
	}
	if n < 3 {
		t.Fatalf("found %d examples: the console blocks are gone or the scan is broken", n)
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsIndexLinksEveryPage: docs/README.md links every page of docs/;
// -update-docs (make docs) adds the pages it lacks under "More".
func TestDocsIndexLinksEveryPage(t *testing.T) {
	index := filepath.Join("..", "..", "docs", "README.md")
	data, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	linked := map[string]bool{}
	for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
		target, _, _ := strings.Cut(m[1], "#")
		linked[target] = true
	}
	var missing []string
	for _, f := range docFiles(t) {
		name := filepath.Base(f)
		if strings.HasPrefix(f, "docs") && name != "README.md" && !linked[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return
	}
	if !*updateDocs {
		t.Fatalf("docs/README.md does not link %s: run `make docs` (it adds them under More), then move them where they belong", strings.Join(missing, ", "))
	}
	text := strings.TrimRight(string(data), "\n") + "\n"
	for _, name := range missing {
		title := name
		if page, err := os.ReadFile(filepath.Join("..", "..", "docs", name)); err == nil {
			if first, _, _ := strings.Cut(string(page), "\n"); strings.HasPrefix(first, "# ") {
				title = strings.TrimPrefix(first, "# ")
			}
		}
		text += fmt.Sprintf("- [%s](%s)\n", title, name)
	}
	if err := os.WriteFile(index, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// anchor is the GitHub anchor of a Markdown heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestDocLinks: every relative link of README.md and docs/ names a file of
// the repository, and a #fragment a heading of that page.
func TestDocLinks(t *testing.T) {
	root := filepath.Join("..", "..")
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a := map[string]bool{}
		data, _ := os.ReadFile(path)
		fence := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "```") {
				fence = !fence
			}
			if !fence && strings.HasPrefix(line, "#") {
				a[anchor(strings.TrimLeft(line, "#"))] = true
			}
		}
		anchors[path] = a
		return a
	}
	for _, file := range docFiles(t) {
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				full := filepath.Join(root, filepath.Dir(file), path)
				if path == "" {
					full = filepath.Join(root, file)
				}
				if _, err := os.Stat(full); err != nil {
					t.Errorf("%s:%d: link to %s: no such file", file, i+1, target)
					continue
				}
				if frag != "" && strings.HasSuffix(full, ".md") && !anchorsOf(full)[frag] {
					t.Errorf("%s:%d: link to %s: no heading #%s there", file, i+1, target, frag)
				}
			}
		}
	}
}

// TestReadmeIsShort: README.md stays an entry point (what wormsink is, the
// two commands, install, where to read next); the rest goes to docs/.
func TestReadmeIsShort(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n > 250 {
		t.Fatalf("README.md has %d lines, more than 250: move the detail to a page of docs/", n)
	}
}

// TestDependenciesDocumented: the table of docs/design.md names every
// module go.mod requires directly, at its version, and no other: a module
// is added with the reason it was chosen.
func TestDependenciesDocumented(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\t(\S+) (v\S+)$`).FindAllStringSubmatch(string(gomod), -1) {
		required[m[1]] = m[2] // lines with "// indirect" do not match
	}
	design, err := os.ReadFile(filepath.Join("..", "..", "docs/design.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\S+\.\S+/\S+) \| (v\S+) \|`).FindAllStringSubmatch(string(design), -1) {
		documented[m[1]] = m[2]
	}
	for mod, v := range required {
		if documented[mod] != v {
			t.Errorf("go.mod requires %s %s; docs/design.md's table says %q: give its version and why it is there", mod, v, documented[mod])
		}
	}
	for mod := range documented {
		if required[mod] == "" {
			t.Errorf("docs/design.md lists %s, which go.mod does not require directly", mod)
		}
	}
}

// TestInterceptRulesAsDocumented: the router rules TestInterceptNamespaces
// applies are the ones docs/interception.md tells operators to type (the
// page shows the IPv4 half and says IPv6 is the same with ip -6 and
// tproxy ip6).
func TestInterceptRulesAsDocumented(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("..", "..", "docs/interception.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rule := range interceptRules {
		if slices.Contains(rule, "-6") || slices.Contains(rule, "ip6") {
			continue
		}
		words := slices.Clone(rule)
		for i, w := range words {
			if strings.Contains(w, " ") {
				words[i] = "'" + w + "'"
			}
		}
		n++
		if line := "    " + strings.Join(words, " ") + "\n"; !strings.Contains(string(page), line) {
			t.Errorf("docs/interception.md does not show the rule the test applies:\n%s", line)
		}
	}
	if n == 0 {
		t.Fatal("no IPv4 rules in interceptRules")
	}
}
