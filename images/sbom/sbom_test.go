package sbom

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	"github.com/spdx/tools-golang/spdxlib"
)

// TestReadDpkgStatusMatchesDpkgQuery reads the host's real dpkg database
// and compares every installed package with what dpkg-query reports.
func TestReadDpkgStatusMatchesDpkgQuery(t *testing.T) {
	t.Parallel()
	const admindir = "/var/lib/dpkg"
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("dpkg-query not installed: not a Debian host")
	}
	out, err := exec.Command("dpkg-query", "--admindir="+admindir, "-W",
		"-f=${db:Status-Status}\t${Package}:${Architecture}\t${Version}\t${source:Package}\t${source:Version}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	want := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(l, "\t", 2)
		if f[0] == "installed" {
			k, v, _ := strings.Cut(f[1], "\t")
			want[k] = v
		}
	}
	f, err := os.Open(filepath.Join(admindir, "status"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadDpkgStatus(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(got) < 50 {
		t.Errorf("%d installed packages read, dpkg-query lists %d", len(got), len(want))
	}
	for _, p := range got {
		if v := p.Version + "\t" + p.Source + "\t" + p.SourceVersion; want[p.Key()] != v {
			t.Errorf("%s: read %q, dpkg-query says %q", p.Key(), v, want[p.Key()])
		}
	}
}

func TestReadDpkgStatusErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{"no colon", "Package: a\nbogus line\n", "line 2"},
		{"continuation first", " leading\n", "line 1: continuation"},
		{"missing version", "Package: a\nStatus: install ok installed\nArchitecture: amd64\n", "paragraph at line 1"},
		{"bad source", "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\nSource: b 2\n", `Source "b 2"`},
		{"duplicate", "Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\nPackage: a\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadDpkgStatus(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

const testStatus = `Package: linux-image-6.12.43+deb13-cloud-amd64
Status: install ok installed
Priority: optional
Section: kernel
Maintainer: Debian Kernel Team <debian-kernel@lists.debian.org>
Architecture: amd64
Source: linux-signed-amd64 (6.12.43+deb13u1)
Version: 6.12.43-1
Description: Linux 6.12 for x86-64 cloud
 The Linux kernel 6.12 and modules for use on x86-64 cloud instances.

Package: ksmg-appliance
Status: install ok installed
Maintainer: ksmg-appliance project <ksmg@localhost>
Architecture: amd64
Version: 0.1.0
Description: ksmg mail-security gateway appliance payload

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.41-12
Homepage: https://www.gnu.org/software/libc/libc.html
Description: GNU C Library: Shared libraries

Package: old-removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
`

var (
	progOnce sync.Once
	prog     []byte
	progErr  error
)

// testProgram builds testdata/prog, a Go program with one module
// dependency (test binaries record no dependencies in their build
// information).
func testProgram(t *testing.T) []byte {
	t.Helper()
	progOnce.Do(func() {
		out := filepath.Join(os.TempDir(), fmt.Sprintf("ksmg-sbom-prog-%d", os.Getpid()))
		defer os.Remove(out)
		var msg []byte
		if msg, progErr = exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/prog").CombinedOutput(); progErr != nil {
			progErr = fmt.Errorf("%w: %s", progErr, msg)
			return
		}
		prog, progErr = os.ReadFile(out)
	})
	if progErr != nil {
		t.Fatalf("build testdata/prog: %v", progErr)
	}
	return prog
}

// fakeRoot is a root file system with a dpkg database and one Go program
// (testdata/prog) installed as /usr/sbin/ksmg-test by ksmg-appliance.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	info := filepath.Join(root, "var/lib/dpkg/info")
	sbin := filepath.Join(root, "usr/sbin")
	for _, d := range []string{info, sbin, filepath.Join(root, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := testProgram(t)
	for p, data := range map[string][]byte{
		"var/lib/dpkg/status":                     []byte(testStatus),
		"var/lib/dpkg/info/ksmg-appliance.list":   []byte("/.\n/usr\n/usr/sbin\n/usr/sbin/ksmg-test\n"),
		"var/lib/dpkg/info/libc6:amd64.list":      []byte("/.\n/usr/lib/x86_64-linux-gnu/libc.so.6\n"),
		"usr/sbin/ksmg-test":                      bin,
		"etc/os-release":                          []byte("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_ID=\"13\"\n"),
		"var/lib/dpkg/info/old-removed.conffiles": []byte("/etc/old\n"),
	} {
		if err := os.WriteFile(filepath.Join(root, p), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func testInput(root string) Input {
	return Input{
		Name: "ksmg", Version: "0.1.0", Root: root, Binaries: []string{"/usr/sbin/ksmg-test"},
		Created: time.Unix(1735689600, 0), Supplier: "ksmg-appliance project",
		OwnPackages: []string{"ksmg-appliance"},
	}
}

// TestSBOM generates the document for a small root and reads it back with
// the SPDX library: the image, every installed Debian package with version
// and source, the Go program and its modules, all related.
//
//nolint:gocyclo // a linear list of checks on one SBOM document
func TestSBOM(t *testing.T) {
	t.Parallel()
	root := fakeRoot(t)
	data, err := Build(testInput(root))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the SPDX library cannot read the SBOM: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatalf("SPDX validation: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.CreationInfo.Created != "2025-01-01T00:00:00Z" {
		t.Errorf("header: %s %s %s", doc.SPDXVersion, doc.DataLicense, doc.CreationInfo.Created)
	}
	if !strings.HasPrefix(doc.DocumentNamespace, "https://spdx.org/spdxdocs/ksmg-0.1.0-") {
		t.Errorf("namespace %q", doc.DocumentNamespace)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 {
		t.Fatalf("described packages: %v %v", described, err)
	}
	byName := map[string]int{}
	ids := map[common.ElementID]string{}
	for i, p := range doc.Packages {
		byName[p.PackageName+"@"+p.PackageVersion] = i
		if _, dup := ids[p.PackageSPDXIdentifier]; dup {
			t.Errorf("id %s used twice", p.PackageSPDXIdentifier)
		}
		ids[p.PackageSPDXIdentifier] = p.PackageName
	}
	pkg := func(nameAtVersion string) int {
		i, ok := byName[nameAtVersion]
		if !ok {
			t.Fatalf("SBOM lacks %s; has %v", nameAtVersion, byName)
		}
		return i
	}
	if ids[described[0]] != "ksmg" {
		t.Errorf("document describes %s, want the image", ids[described[0]])
	}
	kernel := doc.Packages[pkg("linux-image-6.12.43+deb13-cloud-amd64@6.12.43-1")]
	if kernel.PackageSourceInfo != "built from Debian source package linux-signed-amd64 6.12.43+deb13u1" {
		t.Errorf("kernel source: %q", kernel.PackageSourceInfo)
	}
	if got := kernel.PackageExternalReferences[0].Locator; got != "pkg:deb/debian/linux-image-6.12.43%2Bdeb13-cloud-amd64@6.12.43-1?arch=amd64&distro=debian-13&upstream=linux-signed-amd64%406.12.43%2Bdeb13u1" {
		t.Errorf("kernel purl %s", got)
	}
	if got := doc.Packages[pkg("libc6@2.41-12")].PackageExternalReferences[0].Locator; got != "pkg:deb/debian/libc6@2.41-12?arch=amd64&distro=debian-13&upstream=glibc" {
		t.Errorf("libc6 purl %s", got)
	}
	if _, ok := byName["old-removed@1.0"]; ok {
		t.Error("a removed package (config-files) is listed")
	}
	ours := doc.Packages[pkg("ksmg-appliance@0.1.0")]
	if ours.PackageSupplier.Supplier != "ksmg-appliance project" {
		t.Errorf("our package's supplier: %+v", ours.PackageSupplier)
	}
	bin := doc.Packages[pkg("ksmg-test@0.1.0")]
	if len(bin.PackageChecksums) != 1 || len(bin.PackageChecksums[0].Value) != 64 {
		t.Errorf("binary checksum: %+v", bin.PackageChecksums)
	}
	bi, err := buildinfo.Read(bytes.NewReader(testProgram(t)))
	if err != nil || len(bi.Deps) != 1 {
		t.Fatalf("testdata/prog build info: %v %v", bi, err)
	}
	stdlib := pkg("stdlib@" + bi.GoVersion)
	uuidMod := pkg(bi.Deps[0].Path + "@" + bi.Deps[0].Version)
	if got := doc.Packages[uuidMod].PackageExternalReferences[0].Locator; got != "pkg:golang/github.com/google/uuid@v1.6.0" {
		t.Errorf("module purl %s", got)
	}
	has := func(a common.ElementID, typ string, b common.ElementID) bool {
		for _, r := range doc.Relationships {
			if r.RefA.ElementRefID == a && r.Relationship == typ && r.RefB.ElementRefID == b {
				return true
			}
		}
		return false
	}
	img := described[0]
	for _, c := range []struct {
		a    common.ElementID
		typ  string
		b    common.ElementID
		what string
	}{
		{img, "CONTAINS", kernel.PackageSPDXIdentifier, "image contains the kernel"},
		{ours.PackageSPDXIdentifier, "CONTAINS", bin.PackageSPDXIdentifier, "our package contains the binary (dpkg file list)"},
		{bin.PackageSPDXIdentifier, "STATIC_LINK", doc.Packages[stdlib].PackageSPDXIdentifier, "binary links the standard library"},
		{bin.PackageSPDXIdentifier, "STATIC_LINK", doc.Packages[uuidMod].PackageSPDXIdentifier, "binary links its module"},
	} {
		if !has(c.a, c.typ, c.b) {
			t.Errorf("missing relationship: %s", c.what)
		}
	}
	// The JSON itself: every package has the fields SPDX 2.3 requires.
	var raw struct {
		Packages []map[string]any `json:"packages"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	for _, p := range raw.Packages {
		for _, k := range []string{"name", "SPDXID", "downloadLocation", "filesAnalyzed"} {
			if _, ok := p[k]; !ok {
				t.Errorf("package %v lacks %s", p["name"], k)
			}
		}
	}
}

// TestSBOMReproducible: the same root gives the same bytes; a different
// package set gives a different namespace.
func TestSBOMReproducible(t *testing.T) {
	t.Parallel()
	root := fakeRoot(t)
	a, err := Build(testInput(root))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(testInput(root))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two SBOMs of the same root differ")
	}
	status := filepath.Join(root, "var/lib/dpkg/status")
	if err := os.WriteFile(status, []byte(strings.Replace(testStatus, "Version: 2.41-12", "Version: 2.41-13", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Build(testInput(root))
	if err != nil {
		t.Fatal(err)
	}
	ns := func(data []byte) string {
		doc, err := spdxjson.Read(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		return doc.DocumentNamespace
	}
	if ns(a) == ns(c) {
		t.Error("a changed package set kept the document namespace")
	}
}

func TestSBOMErrors(t *testing.T) {
	t.Parallel()
	root := fakeRoot(t)
	in := testInput(root)
	in.Binaries = []string{"/usr/sbin/missing"}
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "/usr/sbin/missing") {
		t.Errorf("missing binary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/script"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	in.Binaries = []string{"/usr/sbin/script"}
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "no Go build information") {
		t.Errorf("not a Go binary: %v", err)
	}
	in = testInput(t.TempDir())
	if _, err := Build(in); err == nil || !strings.Contains(err.Error(), "dpkg database") {
		t.Errorf("no dpkg database: %v", err)
	}
}

// TestModuleOf: a replacement by a directory of ours (third_party/) is named
// as the upstream release it was copied from, so advisories still match; a
// replacement by another module is that module.
func TestModuleOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                   string
		dep                    debug.Module
		path, version, comment string
	}{
		{"plain", debug.Module{Path: "a.example/m", Version: "v1.2.3", Sum: "h1:x"}, "a.example/m", "v1.2.3", "go.sum h1:x"},
		{"local copy", debug.Module{Path: "github.com/emersion/go-smtp", Version: "v0.26.0", Replace: &debug.Module{Path: "./third_party/go-smtp", Version: "(devel)"}},
			"github.com/emersion/go-smtp", "v0.26.0", "patched copy in ./third_party/go-smtp"},
		{"other module", debug.Module{Path: "github.com/zclconf/go-cty", Version: "v1.16.0", Replace: &debug.Module{Path: "github.com/nywilken/go-cty", Version: "v1.13.3", Sum: "h1:y"}},
			"github.com/nywilken/go-cty", "v1.13.3", "replaces github.com/zclconf/go-cty v1.16.0 go.sum h1:y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, v, c := moduleOf(&tc.dep)
			if p != tc.path || v != tc.version || c != tc.comment {
				t.Errorf("moduleOf = %q %q %q, want %q %q %q", p, v, c, tc.path, tc.version, tc.comment)
			}
		})
	}
}
