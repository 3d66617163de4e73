package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// build sets git's name for the commit); "dev" means it was not.
var version = "dev"

func runVersion(ctx context.Context, e env, args []string) int {
	fs := newFlags(e, "version", "")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageErr(e, "version: takes no arguments")
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintf(e.stdout, "wormsink %s (%s, %s/%s)\n", versionString(version, bi), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// versionString names the build: the version stamped at link time, else
// what Go recorded in the binary, the module version of a `go install
// wormsink/cmd/wormsink@vX` or the VCS revision (and time, and whether
// the tree had changes) of a build in a checkout. Only a build with
// neither says "dev".
func versionString(stamped string, bi *debug.BuildInfo) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	if bi == nil {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "dev-" + rev
	if dirty {
		v += "-dirty"
	}
	if when != "" {
		v += " " + when
	}
	return v
}
