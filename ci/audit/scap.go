package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ksmg-appliance/ksmg/images/imagefs"
)

const rulePrefix = "xccdf_org.ssgproject.content_rule_"

// The content is Debian 12's (trixie's ssg-debian 0.1.76 has no Debian 13
// data stream); its CPE check reads /etc/debian_version.
const (
	dataStream        = "usr/share/xml/scap/ssg/content/ssg-debian12-ds.xml"
	scanDebianVersion = "12.0"
)

type scapResult struct {
	Results     map[string]string // short rule id -> pass, fail, notapplicable, ...
	Score       string
	ResultsFile string
}

func (s *scapResult) count(res string) int {
	n := 0
	for _, r := range s.Results {
		if r == res {
			n++
		}
	}
	return n
}

// Failed lists the failing rules (short ids), sorted.
func (s *scapResult) Failed() []string {
	var out []string
	for id, r := range s.Results {
		if r == "fail" || r == "error" {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// PassRatio is pass / (pass + fail + error): the share of applicable rules
// that pass.
func (s *scapResult) PassRatio() float64 {
	pass, fail := s.count("pass"), s.count("fail")+s.count("error")
	if pass+fail == 0 {
		return 0
	}
	return float64(pass) / float64(pass+fail)
}

func (s *scapResult) print(w io.Writer) {
	fmt.Fprintf(w, "pass %d  fail %d  notapplicable %d  notchecked %d  error %d  (of %d rules in the profile)\n",
		s.count("pass"), s.count("fail"), s.count("notapplicable"), s.count("notchecked"), s.count("error"), len(s.Results)-s.count("notselected"))
	fmt.Fprintf(w, "score %s; applicable rules passing: %.1f %%\n", s.Score, 100*s.PassRatio())
	if f := s.Failed(); len(f) > 0 {
		fmt.Fprintf(w, "failing rules:\n  %s\n", strings.Join(f, "\n  "))
	}
}

// runSCAP copies the image's file systems out (no mount) and evaluates the
// profile on the copy with oscap-chroot. mounts, if given, is the booted
// image's /proc/self/mounts: OpenSCAP's partition probe reads <root>/proc/mounts,
// so with it partition_for_* and the mount-option rules judge the mounts the
// appliance really has rather than the scanning host's.
func runSCAP(ctx context.Context, image, ssgDeb, profile string, mounts []byte, work string) (*scapResult, error) {
	content := filepath.Join(work, "ssg")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", ssgDeb, content).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack %s: %w: %s", ssgDeb, err, out)
	}
	root := filepath.Join(work, "root")
	if err := imagefs.Extract(ctx, image, root); err != nil {
		return nil, fmt.Errorf("copy the image's file systems: %w", err)
	}
	// The scan's copy only: the content's platform check wants Debian 12.
	// The image itself says 13.x.
	img, err := os.ReadFile(filepath.Join(root, "etc/debian_version"))
	if err != nil {
		return nil, err
	}
	fmt.Printf("image's /etc/debian_version %s; the scan's copy says %s (the content's CPE check)\n", strings.TrimSpace(string(img)), scanDebianVersion)
	if err := replaceFile(filepath.Join(root, "etc/debian_version"), []byte(scanDebianVersion+"\n")); err != nil {
		return nil, err
	}
	if mounts != nil {
		if err := os.WriteFile(filepath.Join(root, "proc/mounts"), mounts, 0o444); err != nil {
			return nil, err
		}
		fmt.Println("mount table: the booted image's /proc/self/mounts")
	} else {
		fmt.Println("mount table: none (no boot): partition_for_* rules fail and mount-option rules read /etc/fstab only")
	}
	// The dpkginfo probe of openscap 1.3 (bookworm) reads the package
	// database through libapt with RootDir set to the copy, but libapt
	// still reads the host's apt.conf.d first; a host setting such as
	// docker-clean's empty Dir::Cache::pkgcache then makes every package
	// check "not applicable". An empty configuration keeps the scan the
	// same on every host.
	aptConf := filepath.Join(work, "apt.conf")
	if err := os.WriteFile(aptConf, []byte("Dir::Etc::parts \"/nonexistent\";\nDir::Etc::main \"/nonexistent\";\n"), 0o644); err != nil {
		return nil, err
	}
	results := filepath.Join(work, "results.xml")
	cmd := exec.CommandContext(ctx, "oscap-chroot", root, "xccdf", "eval",
		"--profile", "xccdf_org.ssgproject.content_profile_"+profile,
		"--results", results, filepath.Join(content, dataStream))
	cmd.Env = append(os.Environ(), "APT_CONFIG="+aptConf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	// oscap exits 2 when a rule failed: a result, not an error.
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		return nil, fmt.Errorf("oscap-chroot: %w\n%s", err, tail(out.String(), 40))
	}
	res, err := parseResults(results)
	if err != nil {
		return nil, err
	}
	res.ResultsFile = results
	return res, nil
}

func replaceFile(p string, data []byte) error {
	_ = os.Remove(p) // may be a symlink or read-only
	return os.WriteFile(p, data, 0o644)
}

// parseResults reads an XCCDF 1.2 result file: every rule-result's idref and
// result, and the default scoring model's score.
func parseResults(path string) (*scapResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &scapResult{Results: map[string]string{}}
	dec := xml.NewDecoder(f)
	var rule, elem string
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			elem = t.Name.Local
			switch elem {
			case "rule-result":
				rule = strings.TrimPrefix(attr(t, "idref"), rulePrefix)
			case "score":
				if attr(t, "system") != "urn:xccdf:scoring:default" {
					elem = ""
				}
			}
		case xml.CharData:
			switch {
			case elem == "result" && rule != "":
				res.Results[rule] = strings.TrimSpace(string(t))
			case elem == "score":
				res.Score = strings.TrimSpace(string(t))
			}
		case xml.EndElement:
			if t.Name.Local == "rule-result" {
				rule = ""
			}
			elem = ""
		}
	}
	if len(res.Results) == 0 {
		return nil, fmt.Errorf("%s: no rule results", path)
	}
	return res, nil
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// documentedFailures reads the rule ids (in backquotes) of the section
// "## OpenSCAP rules we do not pass" of the hardening document.
func documentedFailures(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hardening document: %w", err)
	}
	const heading = "## OpenSCAP rules we do not pass"
	_, sec, ok := strings.Cut(string(data), heading)
	if !ok {
		return nil, fmt.Errorf("%s: no section %q", path, heading)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	out := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, part := range strings.Split(cells[1], "`") {
			if id := strings.TrimSpace(part); id != "" && !strings.ContainsAny(id, " ,") && strings.ToLower(id) == id && strings.Contains(id, "_") {
				out[id] = true
			}
		}
	}
	return out, nil
}
