// Package ksmg holds what belongs to the whole project rather than to one
// of its packages: its version, read from the VERSION file.
package ksmg

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var version string

// Version is the project's version (the VERSION file), e.g. "0.1.0".
func Version() string { return strings.TrimSpace(version) }
