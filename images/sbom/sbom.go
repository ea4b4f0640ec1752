// Package sbom writes the appliance image's software bill of materials: an
// SPDX 2.3 JSON document (github.com/spdx/tools-golang's model and writer)
// listing every Debian package installed in the root file system, from its
// dpkg database, with version and source package, and the Go modules and
// toolchain of our binaries, from their embedded build information
// (debug/buildinfo).
//
// The document is reproducible: the same root file system and creation time
// give the same bytes. Nothing in it comes from the clock or from map
// order; its namespace is a name-based UUID of its own content.
//
// The dpkg status file is read here (a deb822 reader of ~60 lines) rather
// than with pault.ag/go/debian/control, which parses it too but brings the
// deprecated golang.org/x/crypto/openpgp and two compression libraries for
// a file dpkg itself writes in a plain, stable format; the tests compare
// this reader with dpkg-query on a real database.
package sbom

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// Input describes the image the document is about.
type Input struct {
	Name    string // the appliance ("ksmg")
	Version string // its version ("0.1.0")
	// Root is the image's root file system (a directory); its dpkg
	// database is Root/var/lib/dpkg.
	Root string
	// Binaries are our Go programs, as absolute paths inside Root.
	Binaries []string
	// Created is the document's creation time; a build passes
	// SOURCE_DATE_EPOCH, so two builds agree.
	Created time.Time
	// Supplier is the organisation that ships the appliance and our own
	// packages (OwnPackages); Debian supplies the rest.
	Supplier    string
	OwnPackages []string
	// Distro is the purl "distro" qualifier of the Debian packages
	// ("debian-13"); "" reads ID and VERSION_ID from Root's os-release.
	Distro string
}

// FileName is the SBOM's name next to the image (<base>.spdx.json).
func FileName(imageBase string) string { return imageBase + ".spdx.json" }

// Namespace prefix of document namespaces: SPDX asks for a unique URI per
// document; spdx.org/spdxdocs is the prefix the specification suggests for
// documents without a web site of their own.
const namespacePrefix = "https://spdx.org/spdxdocs/"

// Generate builds the document.
func Generate(in Input) (*spdx.Document, error) {
	if in.Name == "" || in.Version == "" || in.Root == "" {
		return nil, errors.New("sbom: Name, Version and Root are required")
	}
	if in.Supplier == "" {
		in.Supplier = in.Name
	}
	admindir := filepath.Join(in.Root, "var/lib/dpkg")
	f, err := os.Open(filepath.Join(admindir, "status"))
	if err != nil {
		return nil, fmt.Errorf("sbom: dpkg database: %w", err)
	}
	debs, err := ReadDpkgStatus(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("sbom: %s: %w", filepath.Join(admindir, "status"), err)
	}
	if len(debs) == 0 {
		return nil, fmt.Errorf("sbom: %s lists no installed package", filepath.Join(admindir, "status"))
	}
	if in.Distro == "" {
		in.Distro = distro(in.Root)
	}
	owners, err := fileOwners(admindir, in.Binaries)
	if err != nil {
		return nil, fmt.Errorf("sbom: dpkg file lists: %w", err)
	}

	ids := idSet{}
	doc := &spdx.Document{
		SPDXVersion:    spdx.Version,
		DataLicense:    spdx.DataLicense,
		SPDXIdentifier: "DOCUMENT",
		DocumentName:   in.Name + "-" + in.Version,
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{
				{CreatorType: "Organization", Creator: in.Supplier},
				{CreatorType: "Tool", Creator: "ksmg-build-" + in.Version},
			},
			Created: in.Created.UTC().Format(time.RFC3339),
		},
	}
	image := &spdx.Package{
		PackageName:             in.Name,
		PackageSPDXIdentifier:   ids.make("Image", in.Name, in.Version),
		PackageVersion:          in.Version,
		PackageSupplier:         &common.Supplier{SupplierType: "Organization", Supplier: in.Supplier},
		PackageDownloadLocation: "NOASSERTION",
		PrimaryPackagePurpose:   "OPERATING-SYSTEM",
		PackageLicenseConcluded: "NOASSERTION",
		PackageLicenseDeclared:  "NOASSERTION",
		PackageCopyrightText:    "NOASSERTION",
		PackageDescription:      "Virtual appliance disk image (Debian root file system, ksmg payload)",
		BuiltDate:               in.Created.UTC().Format(time.RFC3339),
	}
	doc.Packages = append(doc.Packages, image)
	rel := func(a common.ElementID, typ string, b common.ElementID) {
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: typ,
		})
	}
	rel("DOCUMENT", common.TypeRelationshipDescribe, image.PackageSPDXIdentifier)

	own := map[string]bool{}
	for _, n := range in.OwnPackages {
		own[n] = true
	}
	debIDs := map[string]common.ElementID{}
	for _, d := range debs {
		p := debPackage(d, in, own[d.Name])
		p.PackageSPDXIdentifier = ids.make("Deb", d.Name, d.Architecture, d.Version)
		debIDs[d.Name] = p.PackageSPDXIdentifier
		doc.Packages = append(doc.Packages, p)
		rel(image.PackageSPDXIdentifier, common.TypeRelationshipContains, p.PackageSPDXIdentifier)
	}

	modIDs := map[string]common.ElementID{} // path@version -> id, shared between binaries
	for _, bin := range in.Binaries {
		bp, mods, err := goBinary(in, bin)
		if err != nil {
			return nil, err
		}
		bp.PackageSPDXIdentifier = ids.make("Go", bin)
		doc.Packages = append(doc.Packages, bp)
		if owner, ok := debIDs[owners[bin]]; ok {
			rel(owner, common.TypeRelationshipContains, bp.PackageSPDXIdentifier)
		} else {
			rel(image.PackageSPDXIdentifier, common.TypeRelationshipContains, bp.PackageSPDXIdentifier)
		}
		for _, m := range mods {
			key := m.PackageName + "@" + m.PackageVersion
			id, ok := modIDs[key]
			if !ok {
				id = ids.make("GoModule", m.PackageName, m.PackageVersion)
				m.PackageSPDXIdentifier = id
				modIDs[key] = id
				doc.Packages = append(doc.Packages, m)
			}
			rel(bp.PackageSPDXIdentifier, common.TypeRelationshipStaticLink, id)
		}
	}

	// The namespace names this content: a name-based UUID over the
	// document without it.
	var body bytes.Buffer
	if err := spdxjson.Write(doc, &body); err != nil {
		return nil, fmt.Errorf("sbom: encode: %w", err)
	}
	u := uuid.NewSHA1(uuid.NameSpaceURL, body.Bytes())
	doc.DocumentNamespace = namespacePrefix + doc.DocumentName + "-" + u.String()
	return doc, nil
}

// distro is "<ID>-<VERSION_ID>" from root's os-release ("debian-13"), or
// "" when it does not say.
func distro(root string) string {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		data, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		kv := map[string]string{}
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				kv[k] = strings.Trim(v, `"'`)
			}
		}
		if kv["ID"] != "" && kv["VERSION_ID"] != "" {
			return kv["ID"] + "-" + kv["VERSION_ID"]
		}
	}
	return ""
}

// Write encodes doc as indented SPDX JSON.
func Write(w io.Writer, doc *spdx.Document) error {
	return spdxjson.Write(doc, w, spdxjson.Indent("  "), spdxjson.EscapeHTML(false))
}

// Build is Generate and Write into memory.
func Build(in Input) ([]byte, error) {
	doc, err := Generate(in)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := Write(&b, doc); err != nil {
		return nil, fmt.Errorf("sbom: encode: %w", err)
	}
	return b.Bytes(), nil
}

func debPackage(d DebPackage, in Input, own bool) *spdx.Package {
	supplier := &common.Supplier{SupplierType: "Organization", Supplier: "Debian"}
	if own {
		supplier = &common.Supplier{SupplierType: "Organization", Supplier: in.Supplier}
	}
	p := &spdx.Package{
		PackageName:             d.Name,
		PackageVersion:          d.Version,
		PackageSupplier:         supplier,
		PackageDownloadLocation: "NOASSERTION",
		PackageHomePage:         d.Homepage,
		PackageSourceInfo:       fmt.Sprintf("built from Debian source package %s %s", d.Source, d.SourceVersion),
		PackageLicenseConcluded: "NOASSERTION",
		PackageLicenseDeclared:  "NOASSERTION",
		PackageCopyrightText:    "NOASSERTION",
		PackageSummary:          d.Summary,
		PrimaryPackagePurpose:   "INSTALL",
	}
	if own {
		p.PackageSourceInfo = "built by ksmg build from this project's sources"
	}
	// purl of a Debian package (package-url spec, type "deb"); "upstream"
	// names the source package, as Debian-aware scanners expect.
	q := url.Values{}
	q.Set("arch", d.Architecture)
	if in.Distro != "" {
		q.Set("distro", in.Distro)
	}
	if d.Source != d.Name || d.SourceVersion != d.Version {
		up := d.Source
		if d.SourceVersion != d.Version {
			up += "@" + d.SourceVersion
		}
		q.Set("upstream", up)
	}
	ns := "debian"
	if own {
		ns = purlSegment(in.Name)
	}
	p.PackageExternalReferences = []*spdx.PackageExternalReference{{
		Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL,
		Locator: "pkg:deb/" + ns + "/" + purlSegment(d.Name) + "@" + purlSegment(d.Version) + "?" + purlQuery(q),
	}}
	return p
}

// goBinary describes one Go program and the modules linked into it.
func goBinary(in Input, path string) (*spdx.Package, []*spdx.Package, error) {
	host := filepath.Join(in.Root, path)
	data, err := os.ReadFile(host)
	if err != nil {
		return nil, nil, fmt.Errorf("sbom: binary %s: %w", path, err)
	}
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("sbom: %s: no Go build information: %w", path, err)
	}
	sum := sha256.Sum256(data)
	var settings []string
	for _, s := range bi.Settings {
		switch s.Key {
		case "GOOS", "GOARCH", "GOAMD64", "CGO_ENABLED", "-trimpath", "-buildmode", "vcs.revision", "vcs.modified":
			settings = append(settings, s.Key+"="+s.Value)
		}
	}
	bin := &spdx.Package{
		PackageName:             filepath.Base(path),
		PackageVersion:          in.Version,
		PackageFileName:         path,
		PackageSupplier:         &common.Supplier{SupplierType: "Organization", Supplier: in.Supplier},
		PackageDownloadLocation: "NOASSERTION",
		PackageChecksums:        []common.Checksum{{Algorithm: common.SHA256, Value: hex.EncodeToString(sum[:])}},
		PackageLicenseConcluded: "NOASSERTION",
		PackageLicenseDeclared:  "NOASSERTION",
		PackageCopyrightText:    "NOASSERTION",
		PackageComment:          fmt.Sprintf("Go program %s of module %s, built with %s (%s)", bi.Path, bi.Main.Path, bi.GoVersion, strings.Join(settings, " ")),
		PrimaryPackagePurpose:   "APPLICATION",
		PackageExternalReferences: []*spdx.PackageExternalReference{{
			Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL,
			Locator: "pkg:golang/" + purlPath(bi.Path) + "@" + purlSegment(in.Version),
		}},
	}
	// The standard library is a module of its own to vulnerability
	// scanners ("stdlib", the Go version).
	mods := []*spdx.Package{goModule("stdlib", bi.GoVersion, "", "Go standard library and runtime")}
	for _, d := range bi.Deps {
		path, version, comment := moduleOf(d)
		mods = append(mods, goModule(path, version, comment, ""))
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].PackageName < mods[j].PackageName })
	return bin, mods, nil
}

// moduleOf names a dependency as scanners should see it. A replacement by
// another module is that module. A replacement by a directory in our tree
// (third_party/: an upstream release with our patches) has no version of
// its own; it is named as the upstream module and version it was copied
// from, so that advisories against that release still match, and the
// comment says it is a patched copy.
func moduleOf(d *debug.Module) (path, version, comment string) {
	m := d
	if d.Replace != nil {
		if isDirectory(d.Replace.Path) {
			return d.Path, d.Version, "patched copy in " + d.Replace.Path
		}
		comment = "replaces " + d.Path + " " + d.Version
		m = d.Replace
	}
	if m.Sum != "" {
		comment = strings.TrimSpace(comment + " go.sum " + m.Sum)
	}
	return m.Path, m.Version, comment
}

// isDirectory says whether a replacement is a directory (go.mod's rule:
// a relative path starting with ./ or ../, or an absolute one); the build
// information gives it the version "(devel)".
func isDirectory(path string) bool {
	return strings.HasPrefix(path, "./") || strings.HasPrefix(path, "../") || filepath.IsAbs(path)
}

func goModule(path, version, comment, summary string) *spdx.Package {
	purlVersion := version
	if path == "stdlib" {
		purlVersion = strings.TrimPrefix(version, "go")
	}
	return &spdx.Package{
		PackageName:             path,
		PackageVersion:          version,
		PackageDownloadLocation: "NOASSERTION",
		PackageLicenseConcluded: "NOASSERTION",
		PackageLicenseDeclared:  "NOASSERTION",
		PackageCopyrightText:    "NOASSERTION",
		PackageComment:          comment,
		PackageSummary:          summary,
		PrimaryPackagePurpose:   "LIBRARY",
		PackageExternalReferences: []*spdx.PackageExternalReference{{
			Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL,
			Locator: "pkg:golang/" + purlPath(path) + "@" + purlSegment(purlVersion),
		}},
	}
}

// purlSegment percent-encodes one purl path segment or version.
func purlSegment(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
}

// purlPath encodes each segment of a namespace/name path (Go module
// paths keep their slashes in a purl).
func purlPath(p string) string {
	parts := strings.Split(p, "/")
	for i := range parts {
		parts[i] = purlSegment(parts[i])
	}
	return strings.Join(parts, "/")
}

// purlQuery: qualifiers sorted by key, values percent-encoded.
func purlQuery(q url.Values) string {
	return strings.ReplaceAll(q.Encode(), "+", "%20")
}

// idSet hands out unique SPDX element ids ("SPDXRef-" + letters, digits,
// '.' and '-'). Names are sanitised and, since that can merge two names,
// a short hash of the unsanitised parts keeps them apart.
type idSet map[common.ElementID]bool

var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

func (s idSet) make(kind string, parts ...string) common.ElementID {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	base := kind + "-" + strings.Trim(idUnsafe.ReplaceAllString(parts[0], "-"), "-") + "-" + hex.EncodeToString(h[:4])
	id := common.ElementID(base)
	for n := 2; s[id]; n++ {
		id = common.ElementID(fmt.Sprintf("%s-%d", base, n))
	}
	s[id] = true
	return id
}
