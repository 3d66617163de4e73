package testutil

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The programs the tests and scripts run must all be installed by
// scripts/deps.sh: `make test` runs it first, and a program the machine
// happened to have (logrotate, once) makes the tests pass on one machine
// and fail on a fresh one. These tests find the programs in the code and
// check them against deps.sh's need map.

// prerequisites are what `make deps` itself needs to run: the README's
// install section names them.
var prerequisites = map[string]bool{"go": true, "make": true}

// repoRoot is the module's directory (where go.mod is).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// needMap reads the `[program]=package` entries of deps.sh's need map.
func needMap(t *testing.T, root string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "scripts", "deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	start := strings.Index(s, "declare -A need=(")
	if start < 0 {
		t.Fatal("scripts/deps.sh: no `declare -A need=(` map")
	}
	end := strings.Index(s[start:], "\n)")
	if end < 0 {
		t.Fatal("scripts/deps.sh: the need map does not end")
	}
	need := map[string]string{}
	for _, m := range regexp.MustCompile(`\[([^\]]+)\]=([a-z0-9.+-]+)`).FindAllStringSubmatch(s[start:start+end], -1) {
		need[m[1]] = m[2]
	}
	if len(need) == 0 {
		t.Fatal("scripts/deps.sh: the need map is empty")
	}
	return need
}

// use is one place that runs a program.
type use struct {
	program string
	where   string // file:line
}

// goUses finds the programs the Go tests run: the literal program names
// given to exec.Command, exec.CommandContext, exec.LookPath, Find, Need and
// the packages' own need helpers, the program after `ip netns exec NS`,
// and the literals of a `range []string{...}` whose variable is passed to
// one of them.
func goUses(t *testing.T, root string) []use {
	t.Helper()
	var files []string
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasSuffix(path, "_test.go") || (strings.HasPrefix(rel, "internal/testutil/") && strings.HasSuffix(path, ".go")) {
			files = append(files, path)
		}
		return nil
	})
	var uses []use
	fset := token.NewFileSet()
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, file)
		add := func(n ast.Node, lit ast.Expr) {
			bl, ok := lit.(*ast.BasicLit)
			if !ok || bl.Kind != token.STRING {
				return
			}
			name, err := strconv.Unquote(bl.Value)
			if err != nil || name == "" {
				return
			}
			if strings.Contains(name, "/") && !strings.HasPrefix(name, "/") {
				return // a script of the repository, checked below
			}
			uses = append(uses, use{name, rel + ":" + strconv.Itoa(fset.Position(n.Pos()).Line)})
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				for _, i := range programArgs(n) {
					add(n, n.Args[i])
				}
			case *ast.RangeStmt:
				lits, ok := n.X.(*ast.CompositeLit)
				v, _ := n.Value.(*ast.Ident)
				if !ok || v == nil {
					return true
				}
				ast.Inspect(n.Body, func(m ast.Node) bool {
					call, ok := m.(*ast.CallExpr)
					if !ok {
						return true
					}
					for _, i := range programArgs(call) {
						if id, ok := call.Args[i].(*ast.Ident); ok && id.Name == v.Name {
							for _, e := range lits.Elts {
								add(e, e)
							}
						}
					}
					return true
				})
			}
			return true
		})
	}
	return uses
}

// programArgs are the indexes of call's arguments that name a program.
func programArgs(call *ast.CallExpr) []int {
	var name string
	switch fn := call.Fun.(type) {
	case *ast.Ident:
		name = fn.Name
	case *ast.SelectorExpr:
		name = fn.Sel.Name
	}
	var idx []int
	switch name {
	case "Command", "LookPath", "Find", "Need":
		idx = []int{0}
		if name == "Need" {
			idx = []int{1} // Need(t, prog)
		}
		if name == "Command" && len(call.Args) >= 5 && isLit(call.Args[0], "ip") && isLit(call.Args[1], "netns") && isLit(call.Args[2], "exec") {
			idx = append(idx, 4)
		}
	case "CommandContext":
		idx = []int{1}
	case "needTool", "needTools", "need":
		for i := 1; i < len(call.Args); i++ {
			idx = append(idx, i)
		}
	}
	return slices.DeleteFunc(idx, func(i int) bool { return i >= len(call.Args) })
}

func isLit(e ast.Expr, s string) bool {
	bl, ok := e.(*ast.BasicLit)
	return ok && bl.Value == strconv.Quote(s)
}

// shellWords is what a command position of a script may hold that is not
// a program: keywords, builtins and the words that run another command.
var shellWords = func() map[string]bool {
	words := map[string]bool{}
	for _, w := range strings.Fields(`if then else elif fi for while until do done case esac in function select time
		! { } [ [[ ]] ]] test echo printf read cd exit return set shift local declare export readonly unset trap wait
		source . eval exec command true false break continue mapfile readarray let type kill shopt getopts umask
		builtin alias jobs disown pushd popd dirs hash ulimit sudo env nice timeout compgen complete
		compopt caller enable fc help history logout suspend times typeset bind`) {
		words[w] = true
	}
	return words
}()

var (
	funcDef = regexp.MustCompile(`^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)`)
	// sourced is `. "$root/PATH"` (or source): a file of the tree read in.
	sourced = regexp.MustCompile(`^\s*(?:\.|source)\s+"?\$root/([^"\s]+)"?\s*$`)
	heredoc = regexp.MustCompile(`^<<-?\s*['"]?([A-Za-z_]+)['"]?`)
	// A case pattern (`up)`, `*)`, `a|b)`) at a line's start.
	casePattern = regexp.MustCompile(`^\s*[A-Za-z0-9_*.@/-]+(\s*\|\s*[A-Za-z0-9_*.@/-]+)*\s*\)`)
	progName    = regexp.MustCompile(`^[a-z][a-z0-9._+-]*$`)
	// A command starts after these (and at a line's start).
	separator = regexp.MustCompile(`\$\(|&&|\|\||[;|&(){}` + "`" + `]`)
)

// shellCode is a script with what cannot run a command blanked: comments,
// quoted strings (across lines too), here-documents, arithmetic $((...))
// and array values X=(...). Lines stay where they were.
func shellCode(src string) string {
	var out strings.Builder
	endDoc := "" // a here-document's end word, once its line ends
	inDoc := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inDoc { // skip whole lines until the end word
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				break
			}
			if strings.TrimSpace(src[i:i+j]) == endDoc {
				inDoc, endDoc = false, ""
			}
			out.WriteByte('\n')
			i += j
			continue
		}
		switch {
		case c == '\n':
			out.WriteByte(c)
			if endDoc != "" {
				inDoc = true
			}
		case c == '\\' && i+1 < len(src):
			i++
			if src[i] == '\n' {
				out.WriteByte(' ') // a continued line: the same command
			}
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(src) && src[j] != c {
				if c == '"' && src[j] == '\\' {
					j++
				}
				j++
			}
			out.WriteString(`""`)
			out.WriteString(strings.Repeat("\n", strings.Count(src[i:min(j, len(src))], "\n")))
			i = j
		case c == '#' && (i == 0 || strings.IndexByte(" \t\n;", src[i-1]) >= 0):
			j := strings.IndexByte(src[i:], '\n')
			if j < 0 {
				return out.String()
			}
			i += j - 1
		case strings.HasPrefix(src[i:], "$(("), c == '=' && i+1 < len(src) && src[i+1] == '(':
			open, depth := i+2, 0
			if c == '=' {
				out.WriteByte('=')
				open = i + 1
			}
			j := open
			for ; j < len(src); j++ {
				if src[j] == '(' {
					depth++
				} else if src[j] == ')' {
					depth--
					if depth == 0 {
						break
					}
				}
			}
			if c != '=' && j+1 < len(src) {
				j++ // the second ')'
			}
			out.WriteString("0" + strings.Repeat("\n", strings.Count(src[i:min(j, len(src))], "\n")))
			i = j
		case strings.HasPrefix(src[i:], "<<") && !strings.HasPrefix(src[i:], "<<<"):
			if m := heredoc.FindStringSubmatch(src[i:]); m != nil {
				endDoc = m[1]
				i += len(m[0]) - 1
				continue
			}
			out.WriteByte(c)
		default:
			out.WriteByte(c)
		}
	}
	return out.String()
}

// shellUses finds the programs a script runs: the first word of each
// command (after separators, assignments, `ip netns exec NS`), leaving out
// shell words, loop variables and the script's own functions.
func shellUses(t *testing.T, root, rel string) []use {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := funcDef.FindStringSubmatch(line); m != nil {
			funcs[m[1]] = true
		}
		// A file of the tree it sources defines functions too (its own
		// programs are checked where it is read as a script itself).
		if m := sourced.FindStringSubmatch(line); m != nil {
			lib, err := os.ReadFile(filepath.Join(root, m[1]))
			if err != nil {
				t.Errorf("%s sources %s: %v", rel, m[1], err)
				continue
			}
			for _, l := range strings.Split(string(lib), "\n") {
				if m := funcDef.FindStringSubmatch(l); m != nil {
					funcs[m[1]] = true
				}
			}
		}
	}
	var uses []use
	for n, line := range strings.Split(shellCode(string(data)), "\n") {
		line = casePattern.ReplaceAllString(line, "")
		for _, seg := range separator.Split(line, -1) {
			words := strings.Fields(seg)
			if len(words) > 0 && (words[0] == "for" || words[0] == "select" || words[0] == "case" || words[0] == "local" ||
				words[0] == "declare" || words[0] == "export" || words[0] == "readonly" || words[0] == "function") {
				continue
			}
			for len(words) > 0 && (strings.Contains(words[0], "=") || shellWords[words[0]] || words[0] == "!") {
				words = words[1:]
			}
			if len(words) >= 4 && words[0] == "ip" && words[1] == "netns" && words[2] == "exec" {
				uses = append(uses, use{"ip", rel + ":" + strconv.Itoa(n+1)})
				words = words[4:]
			}
			if len(words) == 0 {
				continue
			}
			w := words[0]
			if !strings.HasPrefix(w, "/usr/") && !progName.MatchString(w) || funcs[w] || shellWords[w] {
				continue
			}
			uses = append(uses, use{w, rel + ":" + strconv.Itoa(n+1)})
		}
	}
	return uses
}

// stripShellComment cuts a trailing # comment.
func stripShellComment(line string) string { return shellCode(line) }

// dpkgOwner is the Debian package that installed path ("" when none did).
func dpkgOwner(path string) string {
	paths := []string{path, strings.Replace(path, "/usr/", "/", 1)}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		paths = append(paths, real) // an alternative: the program it stands for
	}
	for _, p := range paths {
		out, err := exec.Command("dpkg", "-S", p).Output()
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(line, "diversion by ") {
				continue // linux-perf diverts /usr/bin/perf: the owner is on another line
			}
			pkg, _, _ := strings.Cut(line, ": ")
			pkg, _, _ = strings.Cut(pkg, ":") // the architecture
			return pkg
		}
	}
	return ""
}

// basePackage reports whether pkg is on every Debian machine, so deps.sh
// need not install it: an Essential package, or one of priority required
// (what debootstrap's minimal base and the Debian container images hold).
func basePackage(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Essential} ${Priority}", pkg).Output()
	f := strings.Fields(string(out))
	return err == nil && len(f) == 2 && (f[0] == "yes" || f[1] == "required")
}

// dependsOn reports whether pkg depends on owner (a transitional package
// such as dnsutils installs bind9-dnsutils, which holds dig).
func dependsOn(pkg, owner string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Depends},${Pre-Depends}", pkg).Output()
	if err != nil {
		return false
	}
	for _, dep := range strings.FieldsFunc(string(out), func(r rune) bool { return r == ',' || r == '|' }) {
		if name, _, _ := strings.Cut(strings.TrimSpace(dep), " "); name == owner {
			return true
		}
	}
	return false
}

// TestDepsInstallWhatTestsRun: every program a test or a script runs is
// in deps.sh's need map, or comes with every Debian machine, or is Go or
// make.
func TestDepsInstallWhatTestsRun(t *testing.T) {
	root := repoRoot(t)
	need := needMap(t, root)
	uses := goUses(t, root)
	scripts, err := exec.Command("git", "-C", root, "ls-files", "*.sh", ".ci/run").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, rel := range strings.Fields(string(scripts)) {
		uses = append(uses, shellUses(t, root, rel)...)
	}
	if len(uses) < 20 {
		t.Fatalf("found only %d program uses: the scanner is broken", len(uses))
	}
	seen := map[string]bool{}
	for _, u := range uses {
		// A program named by its path (/usr/bin/python3: Debian's, not a
		// pyenv one) is in the map by that path, or by its name.
		if need[u.program] != "" || need[filepath.Base(u.program)] != "" || prerequisites[u.program] || seen[u.program] {
			continue
		}
		seen[u.program] = true
		path, err := Find(u.program)
		if err == nil {
			if owner := dpkgOwner(path); owner != "" && basePackage(owner) {
				continue
			}
		}
		t.Errorf("%s runs %s, which scripts/deps.sh does not install: add it to the need map there", u.where, u.program)
	}
}

// TestDepsPackagesHoldTheirPrograms: each need map entry names the Debian
// package that installs the program (checked after deps.sh ran, as `make
// test` runs it), so a wrong name cannot pass on a machine that had the
// program anyway.
func TestDepsPackagesHoldTheirPrograms(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Fatal("dpkg not found: the tests run on Debian")
	}
	for prog, pkg := range needMap(t, repoRoot(t)) {
		path, err := Find(prog)
		if err != nil {
			t.Errorf("%s is not installed: run `make deps` (scripts/deps.sh: [%s]=%s)", prog, prog, pkg)
			continue
		}
		owner := dpkgOwner(path)
		if owner != pkg && !dependsOn(pkg, owner) {
			t.Errorf("scripts/deps.sh: [%s]=%s, but %s comes from the package %q", prog, pkg, path, owner)
		}
	}
}

// TestCIRunsMakeTest: CI runs exactly what a developer runs, `make test`
// (which installs the dependencies first).
func TestCIRunsMakeTest(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(stripShellComment(line)) == "make test" {
			return
		}
	}
	t.Fatalf(".ci/run does not run `make test`:\n%s", data)
}
