package images

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/firstboot/units"
	"github.com/ksmg-appliance/ksmg/provisioner"
	"github.com/ksmg-appliance/ksmg/services"
)

//go:embed files
var applianceFiles embed.FS

const initramfsModulesFile = "/usr/share/initramfs-tools/modules.d/ksmg-hypervisors"

// packageName is our Debian package in the image.
const packageName = "ksmg-appliance"

// binaries maps our programs in BinDir to their place in the image.
var binaries = []struct{ name, dst string }{
	{"ksmg-gatewayd", "/usr/sbin/ksmg-gatewayd"},
	{"ksmg-firstboot", units.BinaryPath},
}

func embedded(name string) []byte {
	b, err := applianceFiles.ReadFile("files/" + name)
	if err != nil {
		panic(err) // embedded at build time
	}
	return b
}

func render(name string, data any) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(string(embedded(name)))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// packageFiles is everything our Debian package ships.
func (b *builder) packageFiles() ([]provisioner.PackageFile, []string, error) {
	s := b.spec
	var files []provisioner.PackageFile
	for _, bin := range binaries {
		data, err := os.ReadFile(filepath.Join(b.opts.BinDir, bin.name))
		if err != nil {
			return nil, nil, fmt.Errorf("binary %s (build it with `make build` or pass --bin): %w", bin.name, err)
		}
		files = append(files, provisioner.PackageFile{Dst: bin.dst, Data: data, Mode: 0o755})
	}
	add := func(dst string, data []byte, mode fs.FileMode) {
		files = append(files, provisioner.PackageFile{Dst: dst, Data: data, Mode: mode})
	}
	add("/usr/lib/ksmg/console-status", embedded("console-status"), 0o755)
	add("/usr/lib/systemd/system/ksmg-console-status.service", embedded("ksmg-console-status.service"), 0o644)
	add("/usr/lib/systemd/network/80-ksmg-dhcp.network", embedded("80-ksmg-dhcp.network"), 0o644)
	add("/usr/lib/repart.d/50-var.conf", embedded("50-var.conf"), 0o644)
	for _, u := range []string{"hv-kvp-daemon.service", "hv-vss-daemon.service", "hv-fcopy-daemon.service"} {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-hyperv-only.conf", embedded("hyperv-only.conf"), 0o644)
	}
	for _, u := range []string{"open-vm-tools.service", "vgauth.service"} {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-vmware-only.conf", embedded("vmware-only.conf"), 0o644)
	}
	add(initramfsModulesFile, []byte(strings.Join(s.InitramfsModules, "\n")+"\n"), 0o644)
	add("/usr/lib/ksmg/image-version", []byte(s.Version+"\n"), 0o644)
	var sysusers strings.Builder
	sysusers.WriteString("# Service accounts of the ksmg appliance (from the appliance spec). No passwords.\n")
	for _, a := range s.Accounts {
		fmt.Fprintf(&sysusers, "u %s %d \"%s\" %s %s\n", a.Name, a.UID, a.Comment, a.Home, a.Shell)
	}
	add("/usr/lib/sysusers.d/ksmg-appliance.conf", []byte(sysusers.String()), 0o644)
	add("/usr/share/doc/ksmg-appliance/EULA.txt", []byte(appliance.EULA()), 0o644)

	enable := append([]string(nil), s.Services.Enable...)
	for _, p := range payloads {
		for _, f := range p.Files {
			data, err := fs.ReadFile(p.FS, f.Src)
			if err != nil {
				return nil, nil, fmt.Errorf("payload %s: %w", p.Name, err)
			}
			add(f.Dst, data, f.Mode)
		}
		enable = append(enable, p.Enable...)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Dst < files[j].Dst })
	for i := 1; i < len(files); i++ {
		if files[i].Dst == files[i-1].Dst {
			return nil, nil, fmt.Errorf("two payload files for %s", files[i].Dst)
		}
	}
	return files, enable, nil
}

// payload is a set of embedded files and units another package contributes
// to the image.
type payload struct {
	Name   string
	FS     fs.FS
	Files  []services.File
	Enable []string
}

// payloads: the gateway's units, sysusers.d, tmpfiles.d and logrotate
// (services), and the first-boot wizard's units (firstboot/units).
var payloads = []payload{
	{Name: "services", FS: services.Files(), Files: services.Install, Enable: services.Enable},
	{Name: "firstboot", FS: units.Files(), Files: units.Install, Enable: units.Enable},
}

// provision puts the payload into the root file system with the Go
// provisioners.
func (b *builder) provision(ctx context.Context, rootfs, work string, ids diskIDs) error {
	s := b.spec
	files, enable, err := b.packageFiles()
	if err != nil {
		return err
	}
	stage := filepath.Join(work, "deb-stage")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return err
	}
	deb, err := provisioner.BuildDeb(provisioner.Package{
		Name:        packageName,
		Version:     s.Version,
		Maintainer:  "ksmg-appliance project <ksmg@localhost>",
		Description: "ksmg mail-security gateway appliance payload",
		Depends:     []string{"systemd", "logrotate"},
		Files:       files,
		MTime:       time.Unix(b.sde, 0),
	}, stage)
	if err != nil {
		return err
	}
	b.bytes += int64(len(deb))

	fstab, err := render("fstab.tmpl", ids)
	if err != nil {
		return err
	}
	var dirs []provisioner.Dir
	for _, d := range s.Directories {
		dirs = append(dirs, provisioner.Dir{Path: d.Path, Owner: d.Owner, Group: d.Group, Mode: fs.FileMode(d.Mode), Recursive: d.Recursive})
	}
	// The image is "updated" as of its build: ConditionNeedsUpdate units
	// (ldconfig, catalog) need not run at first boot.
	updated := []byte(fmt.Sprintf("# This file was created by ksmg build (as systemd-update-done would).\nTIMESTAMP_NSEC=%d000000000\n", b.sde))
	t := &provisioner.DirTarget{Root: rootfs, Env: []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", b.sde)}}
	return provisioner.Apply(ctx, t, b.log,
		provisioner.InstallDeb(packageName, deb),
		provisioner.CreateAccounts(),
		provisioner.Step{Name: "check account ids", Do: func(ctx context.Context, _ provisioner.Target) error {
			return checkAccounts(rootfs, s.Accounts)
		}},
		provisioner.MakeDirs(dirs),
		provisioner.Units(enable, s.Services.Disable, s.Services.Mask),
		provisioner.WriteFiles([]provisioner.PackageFile{
			{Dst: "/etc/fstab", Data: fstab, Mode: 0o644},
			{Dst: "/etc/.updated", Data: updated, Mode: 0o644},
			{Dst: "/var/.updated", Data: updated, Mode: 0o644},
			{Dst: "/etc/hostname", Data: []byte(s.Name + "\n"), Mode: 0o644},
			{Dst: "/etc/hosts", Data: []byte("127.0.0.1\tlocalhost\n127.0.1.1\t" + s.Name + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"), Mode: 0o644},
			{Dst: "/etc/apt/sources.list", Data: []byte(fmt.Sprintf("deb %s %s %s\n", s.Distribution.Mirror, s.Distribution.Suite, strings.Join(s.Distribution.Components, " "))), Mode: 0o644},
		}),
	)
}

// checkAccounts verifies that sysusers gave every account the spec's fixed
// uid (it silently picks another when that one is taken).
func checkAccounts(rootfs string, accounts []appliance.Account) error {
	data, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		return err
	}
	uids := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Split(line, ":"); len(f) > 2 {
			uids[f[0]] = f[2]
		}
	}
	for _, a := range accounts {
		if got := uids[a.Name]; got != fmt.Sprint(a.UID) {
			return fmt.Errorf("account %s has uid %q, spec says %d (taken by another account? pick a free one in the spec)", a.Name, got, a.UID)
		}
	}
	return nil
}
