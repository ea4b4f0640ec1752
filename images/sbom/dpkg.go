package sbom

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DebPackage is one installed package of a dpkg database.
type DebPackage struct {
	Name          string // binary package name
	Version       string
	Architecture  string
	Source        string // source package name (the binary name when dpkg records none)
	SourceVersion string // source version (the binary version when dpkg records none)
	Maintainer    string
	Homepage      string
	Summary       string // first line of Description
}

// Key is "name:arch", unique in one dpkg database (Multi-Arch).
func (p DebPackage) Key() string { return p.Name + ":" + p.Architecture }

// ReadDpkgStatus reads the installed packages of a dpkg status file
// (/var/lib/dpkg/status): deb822 paragraphs; only packages whose Status says
// "installed" count (not config-files or half-installed leftovers). The
// result is sorted by name and architecture. A malformed paragraph is an
// error naming the line.
func ReadDpkgStatus(r io.Reader) ([]DebPackage, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	var (
		out    []DebPackage
		fields = map[string]string{}
		last   string
		line   int
		start  int
	)
	flush := func() error {
		if len(fields) == 0 {
			return nil
		}
		defer clear(fields)
		status := strings.Fields(fields["Status"])
		if len(status) != 3 || status[2] != "installed" {
			return nil
		}
		p := DebPackage{
			Name: fields["Package"], Version: fields["Version"], Architecture: fields["Architecture"],
			Maintainer: fields["Maintainer"], Homepage: fields["Homepage"],
		}
		p.Summary, _, _ = strings.Cut(fields["Description"], "\n")
		if p.Name == "" || p.Version == "" || p.Architecture == "" {
			return fmt.Errorf("paragraph at line %d: an installed package needs Package, Version and Architecture", start)
		}
		// "Source: name" or "Source: name (version)" when the source
		// version differs from the binary's (binNMUs, bin-only uploads).
		p.Source, p.SourceVersion = p.Name, p.Version
		if src := fields["Source"]; src != "" {
			name, ver, hasVer := strings.Cut(src, " ")
			p.Source = name
			if hasVer {
				ver = strings.TrimSpace(ver)
				if !strings.HasPrefix(ver, "(") || !strings.HasSuffix(ver, ")") {
					return fmt.Errorf("paragraph at line %d: Source %q: want \"name\" or \"name (version)\"", start, src)
				}
				p.SourceVersion = strings.TrimSpace(ver[1 : len(ver)-1])
			}
		}
		out = append(out, p)
		return nil
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case strings.TrimSpace(text) == "":
			if err := flush(); err != nil {
				return nil, err
			}
			last = ""
		case text[0] == ' ' || text[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation line outside a field", line)
			}
			fields[last] += "\n" + strings.TrimSpace(text)
		default:
			k, v, ok := strings.Cut(text, ":")
			if !ok || k == "" {
				return nil, fmt.Errorf("line %d: %q is not a \"Field: value\" line", line, text)
			}
			if len(fields) == 0 {
				start = line
			}
			last = k
			fields[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	for i := 1; i < len(out); i++ {
		if out[i].Key() == out[i-1].Key() {
			return nil, fmt.Errorf("package %s is listed twice as installed", out[i].Key())
		}
	}
	return out, nil
}

// fileOwners maps absolute paths to the package whose file list
// (<admindir>/info/<pkg>[:<arch>].list) names them, for the given paths only.
func fileOwners(admindir string, paths []string) (map[string]string, error) {
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	lists, err := filepath.Glob(filepath.Join(admindir, "info", "*.list"))
	if err != nil {
		return nil, err
	}
	sort.Strings(lists)
	owners := map[string]string{}
	for _, l := range lists {
		data, err := os.ReadFile(l)
		if err != nil {
			return nil, err
		}
		pkg := strings.TrimSuffix(filepath.Base(l), ".list")
		pkg, _, _ = strings.Cut(pkg, ":")
		for _, f := range bytes.Split(data, []byte("\n")) {
			if want[string(f)] {
				owners[string(f)] = pkg
			}
		}
	}
	return owners, nil
}
