package config

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every KSMG_ variable the project's programs, tests and scripts read or
// set must be a configuration key's or listed in OtherVariables: the daemon
// refuses any other KSMG_ variable in its environment, so an unlisted one
// (make test once exported KSMG_PACKER) stops every daemon started under it.
func TestProjectVariablesKnown(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	goUse := regexp.MustCompile(`(?:Getenv|LookupEnv|Setenv|Unsetenv)\("(KSMG_[A-Z0-9_]+)"`)
	// Outside tests, a whole string literal naming a variable (a constant
	// passed to Getenv, a flag's environment fallback).
	goLiteral := regexp.MustCompile(`"(KSMG_[A-Z0-9_]+)"`)
	shUse := regexp.MustCompile(`(?:\$\{|\$\(|\b)(KSMG_[A-Z0-9_]+)(?:=|:-|\}|\))`)
	seen := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == "third_party" || name == "out" || name == "bin" || (strings.HasPrefix(name, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		var re *regexp.Regexp
		switch {
		case strings.HasSuffix(name, ".go"):
			re = goUse
		case name == "Makefile" || strings.HasSuffix(name, ".sh") || (filepath.Base(filepath.Dir(path)) == ".ci"):
			re = shUse
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			seen[m[1]] = path
		}
		if re == goUse && !strings.HasSuffix(name, "_test.go") {
			for _, m := range goLiteral.FindAllStringSubmatch(string(data), -1) {
				seen[m[1]] = path
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := seen["KSMG_PACKER"]; !ok {
		t.Fatalf("the scan found no KSMG_PACKER (Makefile, cmd/packer-plugin-ksmg): it reads nothing; seen %v", seen)
	}
	for n, path := range seen {
		if strings.HasPrefix(n, "KSMG_TEST_") || slices.Contains(OtherVariables, n) {
			continue
		}
		if err := checkVariables(map[string]string{n: ""}); err != nil {
			t.Errorf("%s (used in %s) would stop ksmg-gatewayd: %v; add it to OtherVariables", n, path, err)
		}
	}
}
