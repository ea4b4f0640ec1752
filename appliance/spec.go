// Package appliance holds the appliance spec: the YAML document that says
// what goes into the image (distribution, packages, accounts, directories,
// services, disk layout, VM hardware, output formats), its embedded default
// (appliance.yaml) and the EULA shipped with the formats.
//
// Specs are read with viper and decoded strictly: unknown keys, wrong types
// and invalid values are errors that name the file, the key and what was
// expected.
package appliance

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

//go:embed appliance.yaml
var defaultSpec []byte

//go:embed EULA.txt
var eula string

// DefaultName is how errors name the embedded default spec.
const DefaultName = "appliance.yaml (embedded default)"

// EULA is the licence text the formats show before deployment.
func EULA() string { return eula }

// DefaultYAML is the embedded default spec.
func DefaultYAML() []byte { return bytes.Clone(defaultSpec) }

// Spec is one appliance.
type Spec struct {
	Name             string       `mapstructure:"name"`
	Version          string       `mapstructure:"version"`
	Distribution     Distribution `mapstructure:"distribution"`
	Packages         []string     `mapstructure:"packages"`
	InitramfsModules []string     `mapstructure:"initramfs_modules"`
	InitramfsDrivers []string     `mapstructure:"initramfs_drivers"`
	Accounts         []Account    `mapstructure:"accounts"`
	Directories      []Directory  `mapstructure:"directories"`
	Services         Services     `mapstructure:"services"`
	Disk             Disk         `mapstructure:"disk"`
	Hardware         Hardware     `mapstructure:"hardware"`
	Formats          []string     `mapstructure:"formats"`

	// Source names where the spec was read from (a path or DefaultName).
	Source string `mapstructure:"-"`
}

// Distribution is the Debian release the root file system is built from.
type Distribution struct {
	Suite  string `mapstructure:"suite"`
	Mirror string `mapstructure:"mirror"`
	// Updates are further suites of the release the image is built from
	// and its apt sources name: <suite>-updates (on Mirror) and
	// <suite>-security (on SecurityMirror).
	Updates        []string `mapstructure:"updates"`
	SecurityMirror string   `mapstructure:"security_mirror"`
	Components     []string `mapstructure:"components"`
	Variant        string   `mapstructure:"variant"`
}

// Source is one suite of a Debian archive.
type Source struct {
	URI   string
	Suite string
}

// Sources lists where the packages come from: the release, then its
// updates in spec order.
func (d Distribution) Sources() []Source {
	out := []Source{{URI: d.Mirror, Suite: d.Suite}}
	for _, u := range d.Updates {
		uri := d.Mirror
		if u == d.Suite+"-security" {
			uri = d.SecurityMirror
		}
		out = append(out, Source{URI: uri, Suite: u})
	}
	return out
}

// SourcesList is the apt sources.list naming every suite (one-line
// format), signed by the Debian archive keyring.
func (d Distribution) SourcesList() string {
	var b strings.Builder
	for _, src := range d.Sources() {
		fmt.Fprintf(&b, "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s %s\n", src.URI, src.Suite, strings.Join(d.Components, " "))
	}
	return b.String()
}

// Account is a system account created in the image (sysusers.d). Accounts
// never get a password: administrators are created by the first-boot wizard.
type Account struct {
	Name    string `mapstructure:"name"`
	UID     int    `mapstructure:"uid"`
	Home    string `mapstructure:"home"`
	Shell   string `mapstructure:"shell"`
	Comment string `mapstructure:"comment"`
}

// Directory is a directory created in the image with its owner and mode.
type Directory struct {
	Path  string `mapstructure:"path"`
	Owner string `mapstructure:"owner"`
	Group string `mapstructure:"group"`
	Mode  Mode   `mapstructure:"mode"`
	// Recursive also gives everything already inside (files the packages
	// installed) to Owner and Group; their modes stay.
	Recursive bool `mapstructure:"recursive"`
}

// Services are the systemd units enabled or disabled in the image.
type Services struct {
	Enable  []string `mapstructure:"enable"`
	Disable []string `mapstructure:"disable"`
	Mask    []string `mapstructure:"mask"`
}

// Disk is the disk layout: a GPT disk of Size virtual bytes.
type Disk struct {
	Size       Size        `mapstructure:"size"`
	Partitions []Partition `mapstructure:"partitions"`
}

// Partition types understood by the image builder.
const (
	PartESP  = "esp"
	PartRoot = "root"
	PartVar  = "var"
)

// Partition is one GPT partition. Size is the size in the shipped image; a
// Grow partition (the last one) is enlarged to fill the disk at first boot.
type Partition struct {
	Name  string `mapstructure:"name"`
	Type  string `mapstructure:"type"`
	Size  Size   `mapstructure:"size"`
	Mount string `mapstructure:"mount"`
	Grow  bool   `mapstructure:"grow"`
}

// Hardware is the virtual machine the formats describe.
type Hardware struct {
	CPUs           int    `mapstructure:"cpus"`
	MemoryMiB      int    `mapstructure:"memory_mib"`
	Firmware       string `mapstructure:"firmware"`
	SecureBoot     bool   `mapstructure:"secure_boot"`
	DiskController string `mapstructure:"disk_controller"`
	NetworkAdapter string `mapstructure:"network_adapter"`
}

// Size is a byte count written as an integer or with a binary unit.
type Size int64

// Mode is a permission mode written as a quoted octal string ("0750").
type Mode fs.FileMode

func (s Size) String() string {
	for _, u := range sizeUnits {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

var sizeUnits = []struct {
	name string
	mult int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// ParseSize parses "64MiB", "100GiB", "4096".
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.name) {
			mult, s = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.name))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, errors.New("not a size: want a non-negative integer with an optional unit KiB, MiB, GiB or TiB (e.g. 100GiB)")
	}
	return Size(n * mult), nil
}

var (
	sizeType = reflect.TypeOf(Size(0))
	modeType = reflect.TypeOf(Mode(0))
)

// strictHook converts the two scalar types that have a textual form.
func strictHook(from, to reflect.Type, data any) (any, error) {
	switch to {
	case sizeType:
		switch v := data.(type) {
		case string:
			return ParseSize(v)
		case int:
			if v < 0 {
				return nil, errors.New("size must not be negative")
			}
			return Size(v), nil
		}
		return nil, fmt.Errorf("want a size such as 100GiB, got %T", data)
	case modeType:
		v, ok := data.(string)
		if !ok {
			return nil, fmt.Errorf("want a quoted octal mode such as \"0750\", got %T %v", data, data)
		}
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return nil, fmt.Errorf("want an octal mode between \"0000\" and \"7777\", got %q", v)
		}
		return Mode(n), nil
	}
	return data, nil
}

// Load reads the spec at path, or the embedded default when path is "".
func Load(file string) (*Spec, error) {
	if file == "" {
		return Parse(DefaultName, defaultSpec)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read appliance spec: %w", err)
	}
	return Parse(file, data)
}

// Parse decodes and validates a spec; name is used in error messages.
func Parse(name string, data []byte) (*Spec, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", name, err)
	}
	var s Spec
	err := v.UnmarshalExact(&s, func(c *mapstructure.DecoderConfig) {
		c.WeaklyTypedInput = false // "cpus: four" or "cpus: '4'" is an error, not a guess
		c.DecodeHook = strictHook
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s.Source = name
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &s, nil
}

var (
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	versionRE = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~-]*$`)
	debPkgRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	userRE    = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	unitRE    = regexp.MustCompile(`^[A-Za-z0-9:_.@\\-]+\.(service|socket|timer|target|path|mount)$`)
	moduleRE  = regexp.MustCompile(`^[a-z0-9_-]+$`)
)

// Validate checks every value; the error names the key and what was expected.
// Every problem is reported, not only the first.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if !nameRE.MatchString(s.Name) {
		bad("name", "%q: want lower-case letters, digits and '-', starting with a letter", s.Name)
	}
	if !versionRE.MatchString(s.Version) {
		bad("version", "%q: want a version starting with a digit (e.g. 0.1.0)", s.Version)
	}
	s.validateDistribution(bad)
	s.validateLists(bad)
	owners := s.validateAccounts(bad)
	s.validateDirectories(bad, owners)
	s.validateDisk(bad)
	s.validateHardware(bad)
	s.validateFormats(bad)
	return errors.Join(errs...)
}

// badFunc records one problem: the key and what was expected of it.
type badFunc = func(key, format string, a ...any)

// checkList checks every entry of a list against re and for duplicates.
func checkList(bad badFunc, key string, list []string, re *regexp.Regexp, what string) {
	seen := map[string]bool{}
	for i, p := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		if !re.MatchString(p) {
			bad(k, "%q: want %s", p, what)
		}
		if seen[p] {
			bad(k, "%q listed twice", p)
		}
		seen[p] = true
	}
}

// validMirror reports whether m is an http, https or file URL a mirror can have.
func validMirror(m string) bool {
	u, err := url.Parse(m)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "file") && (u.Scheme == "file" || u.Host != "")
}

func (s *Spec) validateDistribution(bad badFunc) {
	d := s.Distribution
	if d.Suite != "trixie" {
		bad("distribution.suite", "%q: only trixie (Debian 13) is supported", d.Suite)
	}
	if !validMirror(d.Mirror) {
		bad("distribution.mirror", "%q: want an http://, https:// or file:// URL of a Debian mirror", d.Mirror)
	}
	seenUpdate := map[string]bool{}
	for i, u := range d.Updates {
		key := fmt.Sprintf("distribution.updates[%d]", i)
		switch {
		case seenUpdate[u]:
			bad(key, "%q is listed twice", u)
		case u != d.Suite+"-updates" && u != d.Suite+"-security":
			bad(key, "%q: want %s-updates or %s-security", u, d.Suite, d.Suite)
		case u == d.Suite+"-security":
			if !validMirror(d.SecurityMirror) {
				bad("distribution.security_mirror", "%q: want an http://, https:// or file:// URL of the Debian security archive (%s is listed in updates)", d.SecurityMirror, u)
			}
		}
		seenUpdate[u] = true
	}
	if d.SecurityMirror != "" && !seenUpdate[d.Suite+"-security"] {
		bad("distribution.security_mirror", "set, but %s-security is not in distribution.updates", d.Suite)
	}
	if len(d.Components) == 0 {
		bad("distribution.components", "empty: want at least [main]")
	}
	switch d.Variant {
	case "minbase", "essential", "required", "important", "standard":
	default:
		bad("distribution.variant", "%q: want one of minbase, essential, required, important, standard", d.Variant)
	}
}

// validateLists checks packages, modules and units.
func (s *Spec) validateLists(bad badFunc) {
	if len(s.Packages) == 0 {
		bad("packages", "empty: the image needs at least a kernel")
	}
	checkList(bad, "packages", s.Packages, debPkgRE, "a Debian package name")
	checkList(bad, "initramfs_modules", s.InitramfsModules, moduleRE, "a kernel module name")
	checkList(bad, "initramfs_drivers", s.InitramfsDrivers, moduleRE, "a kernel module name")
	checkList(bad, "services.enable", s.Services.Enable, unitRE, "a systemd unit name such as foo.service")
	checkList(bad, "services.disable", s.Services.Disable, unitRE, "a systemd unit name such as foo.service")
	checkList(bad, "services.mask", s.Services.Mask, unitRE, "a systemd unit name such as foo.service")
	for _, u := range s.Services.Enable {
		for _, w := range s.Services.Disable {
			if u == w {
				bad("services", "%q is both enabled and disabled", u)
			}
		}
	}

}

// validateAccounts checks the system accounts and returns the names files
// and directories may be owned by (root and the accounts).
func (s *Spec) validateAccounts(bad badFunc) map[string]bool {
	owners := map[string]bool{"root": true}
	uids := map[int]string{}
	for i, a := range s.Accounts {
		k := fmt.Sprintf("accounts[%d]", i)
		if !userRE.MatchString(a.Name) || a.Name == "root" {
			bad(k+".name", "%q: want a user name (lower-case, at most 32 characters, not root)", a.Name)
		}
		if owners[a.Name] {
			bad(k+".name", "%q defined twice", a.Name)
		}
		owners[a.Name] = true
		if a.UID < 100 || a.UID > 999 {
			bad(k+".uid", "%d: want a fixed system uid between 100 and 999 (fixed so builds are reproducible)", a.UID)
		} else if other, dup := uids[a.UID]; dup {
			bad(k+".uid", "%d already used by %s", a.UID, other)
		}
		uids[a.UID] = a.Name
		if !path.IsAbs(a.Home) {
			bad(k+".home", "%q: want an absolute path", a.Home)
		}
		if !path.IsAbs(a.Shell) {
			bad(k+".shell", "%q: want an absolute path such as /usr/sbin/nologin", a.Shell)
		}
		if strings.ContainsAny(a.Comment, "\"\n") {
			bad(k+".comment", "must not contain quotes or newlines")
		}
	}
	return owners
}

func (s *Spec) validateDirectories(bad badFunc, owners map[string]bool) {
	seenDir := map[string]bool{}
	for i, dir := range s.Directories {
		k := fmt.Sprintf("directories[%d]", i)
		if !path.IsAbs(dir.Path) || path.Clean(dir.Path) != dir.Path || dir.Path == "/" {
			bad(k+".path", "%q: want a clean absolute path below /", dir.Path)
		}
		if seenDir[dir.Path] {
			bad(k+".path", "%q listed twice", dir.Path)
		}
		seenDir[dir.Path] = true
		if !owners[dir.Owner] {
			bad(k+".owner", "%q: want root or an account defined under accounts", dir.Owner)
		}
		if !owners[dir.Group] {
			bad(k+".group", "%q: want root or an account (its group) defined under accounts", dir.Group)
		}
		if dir.Mode&0o7000 == 0 && dir.Mode&0o002 != 0 {
			bad(k+".mode", "%04o: world-writable directories need the sticky bit", uint32(dir.Mode))
		}
	}
}

func (s *Spec) validateFormats(bad badFunc) {
	if len(s.Formats) == 0 {
		bad("formats", "empty: want at least [raw]")
	}
	checkList(bad, "formats", s.Formats, nameRE, "a format name such as raw, ova or vhdx")
}

func (s *Spec) validateHardware(bad badFunc) {
	h := s.Hardware
	if h.CPUs < 1 || h.CPUs > 128 {
		bad("hardware.cpus", "%d: want 1..128", h.CPUs)
	}
	if h.MemoryMiB < 1024 || h.MemoryMiB%4 != 0 {
		bad("hardware.memory_mib", "%d: want at least 1024 and a multiple of 4", h.MemoryMiB)
	}
	if h.Firmware != "efi" {
		bad("hardware.firmware", "%q: only efi is supported (the disk has no BIOS boot code)", h.Firmware)
	}
	switch h.DiskController {
	case "pvscsi", "lsilogic", "sata":
	default:
		bad("hardware.disk_controller", "%q: want pvscsi, lsilogic or sata", h.DiskController)
	}
	switch h.NetworkAdapter {
	case "vmxnet3", "e1000e":
	default:
		bad("hardware.network_adapter", "%q: want vmxnet3 or e1000e", h.NetworkAdapter)
	}
}

func (s *Spec) validateDisk(bad badFunc) {
	const mib = 1 << 20
	if s.Disk.Size < 1<<30 || s.Disk.Size%mib != 0 {
		bad("disk.size", "%s: want at least 1GiB, a whole number of MiB", s.Disk.Size)
	}
	types := map[string]int{}
	var total Size = 2 * mib // GPT headers and alignment
	names := map[string]bool{}
	for i, p := range s.Disk.Partitions {
		k := fmt.Sprintf("disk.partitions[%d]", i)
		if !nameRE.MatchString(p.Name) || names[p.Name] {
			bad(k+".name", "%q: want a unique lower-case name", p.Name)
		}
		names[p.Name] = true
		types[p.Type]++
		want := map[string]string{PartESP: "", PartRoot: "/", PartVar: "/var"}
		m, known := want[p.Type]
		if !known {
			bad(k+".type", "%q: want esp, root or var", p.Type)
		} else if p.Mount != m {
			bad(k+".mount", "%q: a %s partition is mounted at %q", p.Mount, p.Type, m)
		}
		if p.Size < 32*mib || p.Size%mib != 0 {
			bad(k+".size", "%s: want at least 32MiB, a whole number of MiB", p.Size)
		}
		if p.Grow && i != len(s.Disk.Partitions)-1 {
			bad(k+".grow", "only the last partition can grow to fill the disk")
		}
		total += p.Size
	}
	for _, t := range []string{PartESP, PartRoot, PartVar} {
		if types[t] != 1 {
			bad("disk.partitions", "want exactly one partition of type %s, have %d", t, types[t])
		}
	}
	if total > s.Disk.Size {
		bad("disk.partitions", "sizes add up to %s (with GPT), more than disk.size %s", total, s.Disk.Size)
	}
}

// Partition returns the partition of the given type.
func (s *Spec) Partition(typ string) (Partition, bool) {
	for _, p := range s.Disk.Partitions {
		if p.Type == typ {
			return p, true
		}
	}
	return Partition{}, false
}

// Account returns the account with the given name.
func (s *Spec) Account(name string) (Account, bool) {
	for _, a := range s.Accounts {
		if a.Name == name {
			return a, true
		}
	}
	return Account{}, false
}

// ImageBase is the output file name without extension: name-version.
func (s *Spec) ImageBase() string { return s.Name + "-" + s.Version }
