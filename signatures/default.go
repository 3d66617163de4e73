package signatures

import (
	_ "embed"
	"fmt"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultName labels the built-in set in messages.
const DefaultName = "built-in"

// DefaultYAML returns the text of the built-in signature file.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Default compiles the built-in signature set.
func Default() *Set {
	s, err := Parse(DefaultName, defaultYAML)
	if err != nil {
		// The file is embedded and tested; failing here is a build defect.
		panic(fmt.Sprintf("signatures: built-in set: %v", err))
	}
	return s
}
