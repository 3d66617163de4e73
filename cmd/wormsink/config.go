package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"wormsink/internal/yamlline"

	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets every flag named in the YAML file that the command
// line did not set: flags given on the command line win. Keys are the flag
// names without "--"; a list flag takes a YAML list or a comma-separated
// string. Unknown keys are errors with their line.
func applyConfigFile(fs *flag.FlagSet, path string, skip ...string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlline.Locate(data, err)
		if line == 0 {
			return fmt.Errorf("%s: invalid YAML: %s", path, msg)
		}
		return fmt.Errorf("%s:%d: invalid YAML: %s", path, line, msg)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: config must be a mapping of flag names to values", path, root.Line)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		f := fs.Lookup(name)
		if f == nil || slices.Contains(skip, name) {
			return fmt.Errorf("%s:%d: unknown key %q (keys are serve's flag names: %s)", path, k.Line, name, strings.Join(flagNames(fs, skip), ", "))
		}
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("%s:%d: key %q repeated (first at line %d)", path, k.Line, name, prev)
		}
		seen[name] = k.Line
		var value string
		switch v.Kind {
		case yaml.ScalarNode:
			value = v.Value
			if v.Tag == "!!null" {
				value = ""
			}
		case yaml.SequenceNode:
			parts := make([]string, 0, len(v.Content))
			for _, c := range v.Content {
				if c.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s:%d: %s: list entries must be plain values", path, c.Line, name)
				}
				parts = append(parts, c.Value)
			}
			value = strings.Join(parts, ",")
		default:
			return fmt.Errorf("%s:%d: %s: want a value or a list", path, v.Line, name)
		}
		if onCommandLine[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, v.Line, name, err)
		}
	}
	return nil
}

func flagNames(fs *flag.FlagSet, skip []string) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if !slices.Contains(skip, f.Name) {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	return names
}

// printConfig writes the effective configuration in the --config format.
func printConfig(fs *flag.FlagSet, skip ...string) string {
	var b bytes.Buffer
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(skip, f.Name) {
			return
		}
		v, _ := yaml.Marshal(f.Value.String())
		fmt.Fprintf(&b, "%s: %s", f.Name, v)
	})
	return b.String()
}
