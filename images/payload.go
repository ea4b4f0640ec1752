package images

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/firstboot/units"
	"github.com/ksmg-appliance/ksmg/images/sbom"
	"github.com/ksmg-appliance/ksmg/provisioner"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
	"github.com/ksmg-appliance/ksmg/services"
)

//go:embed files
var applianceFiles embed.FS

const (
	initramfsModulesFile = "/usr/share/initramfs-tools/modules.d/ksmg-hypervisors"
	initramfsSystemdHook = "/usr/share/initramfs-tools/hooks/ksmg-systemd-block"
	initramfsListConf    = "/usr/share/initramfs-tools/conf.d/ksmg-modules"
	initramfsDriversHook = "/usr/share/initramfs-tools/hooks/ksmg-drivers"
	initramfsTriggerHook = "/usr/share/initramfs-tools/hooks/ksmg-udev-trigger"
	initramfsFsckVar     = "/usr/share/initramfs-tools/scripts/local-bottom/ksmg-fsck-var"
)

// initramfsFile is a file that shapes the kernel's initramfs.
type initramfsFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// initramfsFiles are our initramfs-tools settings: the modules loaded at
// its start whatever the hardware (initramfs_modules, if any), the systemd
// tags for block devices, the root file system's type and, when the spec
// lists initramfs_drivers, MODULES=list with exactly those drivers besides
// (udev loads them when their device is there). MODULES=most put 260
// modules (7.6 MB) into an 18 MB initramfs that the firmware reads and the
// kernel unpacks at every boot; the appliance's disks need a handful.
//
// FSTYPE: initramfs-tools' fsck hook takes the root file system's type
// from the device it finds at build time. An image built from a directory
// has none, so the hook left fsck out, the initramfs printed "fsck not
// present, so skipping root file system", and with / mounted writable
// systemd does not check it either: nothing ever checked /.
//
// /var is checked there too (initramfs-fsck-var says why), and the image's
// fstab gives it pass number 0 so that systemd does not check it again.
func initramfsFiles(s *appliance.Spec) []initramfsFile {
	conf := "# ksmg-appliance: the root file system is ext4 (so fsck and e2fsck are in the\n" +
		"# initramfs, which checks / before mounting it writable); no resume from\n" +
		"# hibernation (no swap; lockdown forbids it).\nFSTYPE=ext4\nRESUME=none\n"
	if len(s.InitramfsDrivers) > 0 {
		conf += "# Only the modules the appliance spec lists (initramfs_modules, initramfs_drivers).\nMODULES=list\n"
	}
	files := []initramfsFile{
		{initramfsListConf, []byte(conf), 0o644},
		{initramfsSystemdHook, embedded("initramfs-hook-systemd-block"), 0o755},
		{initramfsTriggerHook, initramfsTriggerHookScript(), 0o755},
		{initramfsFsckVar, embedded("initramfs-fsck-var"), 0o755},
	}
	if len(s.InitramfsModules) > 0 {
		files = append(files, initramfsFile{initramfsModulesFile, []byte(strings.Join(s.InitramfsModules, "\n") + "\n"), 0o644})
	}
	if len(s.InitramfsDrivers) > 0 {
		files = append(files,
			initramfsFile{initramfsDriversHook, []byte("#!/bin/sh\n# ksmg-appliance initramfs hook (written by ksmg build from the spec's\n# initramfs_drivers): the storage, network and console drivers of the\n# supported hypervisors, loaded by udev when their device is present.\nset -e\n" +
				"[ \"$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\nmanual_add_modules " + strings.Join(s.InitramfsDrivers, " ") + "\n"), 0o755})
	}
	return files
}

// The initramfs's udev (initramfs-tools' scripts/init-top/udev) replays
// an "add" event for every object in /sys, like the coldplug at boot, and
// the root file system is mounted only once all are handled (udevadm
// settle). What the initramfs needs are the disks, CD-ROMs and NICs, their
// buses and the module aliases that load their drivers; the coldplug after
// the switch to the root file system replays the rest (udevColdplugDropIn).
// So the initramfs leaves out the bus, driver and module objects and the
// coldplug's own omissions, the terminals among them (tty: the coldplug
// replays those that need it, coldplugTTY).
const (
	initramfsSubsystemsTrigger = "udevadm trigger --type=subsystems --action=add"
	initramfsDevicesTrigger    = "udevadm trigger --type=devices --action=add"
)

// initramfsTriggerArgs are the options added to the initramfs's device
// trigger.
func initramfsTriggerArgs() string {
	var args []string
	for _, s := range coldplugSkippedDevices() {
		args = append(args, "--subsystem-nomatch="+s.name)
	}
	return strings.Join(args, " ")
}

// coldplugSkippedDevices are the entries of coldplugSkip that are device
// subsystems: all but the bus, driver and module objects.
func coldplugSkippedDevices() []coldplugSkipped {
	var devs []coldplugSkipped
	for _, s := range coldplugSkip {
		switch s.name {
		case "subsystem", "drivers", "module":
			continue
		}
		devs = append(devs, s)
	}
	return devs
}

// initramfsTriggerHookScript edits the copy of Debian's udev script in the
// initramfs being built (hooks run after the scripts are copied), and
// fails the build if the script no longer has the two trigger lines.
func initramfsTriggerHookScript() []byte {
	return []byte(`#!/bin/sh
# ksmg-appliance initramfs hook (written by ksmg build, images/payload.go):
# the initramfs's udev replays events only for what the initramfs needs
# (disks, CD-ROMs, NICs, their buses and drivers' module aliases); the
# coldplug after the switch to the root file system replays the rest.
set -e
[ "$1" = prereqs ] && exit 0
script="${DESTDIR}/scripts/init-top/udev"
subsystems='` + initramfsSubsystemsTrigger + `'
devices='` + initramfsDevicesTrigger + `'
if ! grep -qx "$subsystems" "$script" || ! grep -qx "$devices" "$script"; then
	echo "ksmg-udev-trigger: $script no longer has the lines \"$subsystems\" and \"$devices\"" >&2
	exit 1
fi
sed -i -e "s|^$subsystems\$|# ksmg-appliance: no bus, driver or module events in the initramfs|" \
	-e "s|^$devices\$|$devices ` + initramfsTriggerArgs() + `|" "$script"
`)
}

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

// backgroundAtBoot are daemons that neither first boot nor the gateway
// waits for: they start after basic.target, while first boot runs, and
// took 3-4 s of CPU time then under TCG. Not udevd, whose readiness the
// coldplug's unit, and so sysinit.target, waits for, nor timesyncd, which
// sysinit.target waits for: both slowed the gateway down with a small
// weight (then networkd also waited for udevd; unitOrderings).
var backgroundAtBoot = []string{"rsyslog.service", "systemd-logind.service"}

// Coldplug: at boot, systemd-udev-trigger.service replays an "add" event
// for every device, module, bus and driver in /sys (492 on QEMU's q35
// machine), most of them already handled by the initramfs's udev. Under
// TCG that took udevd 10-15 s of CPU time while first boot and the
// gateway start. The drop-in (udevColdplugDropIn) keeps Debian's command
// but leaves out what no rule of the image acts on at boot;
// TestImageContents holds every udev rule of the built image to these
// lists.
const udevTriggerCommand = "udevadm trigger --type=all --action=add --prioritized-subsystem=module,block,tpmrm,net,tty,input"

// coldplugSkipped is a subsystem the coldplug leaves out: why, and the
// rules files that act on it (covered).
type coldplugSkipped struct {
	name, why string
	covered   []string
}

// coldplugSkip are the subsystems the coldplug leaves out, with why; the
// rules files named in "covered" act on the subsystem, but what they do at
// boot is done otherwise or has no effect, as the reason says.
var coldplugSkip = []coldplugSkipped{
	{"subsystem", "bus objects (/sys/bus/*): no rule matches them", nil},
	{"drivers", "driver objects (/sys/bus/*/drivers/*): no rule matches them", nil},
	{"module", "kernel modules: only those in coldplugModules have rules; modules loaded later announce themselves", nil},
	{"memory", "memory blocks: no rule, no module alias", nil},
	{"workqueue", "no rule, no module alias", nil},
	{"wakeup", "no rule, no module alias", nil},
	{"event_source", "no rule, no module alias", nil},
	{"serial-base", "no rule, no module alias", nil},
	{"ata_port", "no rule, no module alias", nil},
	{"ata_link", "no rule, no module alias", nil},
	{"ata_device", "no rule, no module alias", nil},
	{"scsi_host", "no rule, no module alias", nil},
	{"bdi", "no rule, no module alias", nil},
	{"clockevents", "no rule, no module alias", nil},
	{"clocksource", "no rule, no module alias", nil},
	{"container", "ACPI containers: no rule, no module alias", nil},
	{"devlink", "links between devices: no rule, no module alias", nil},
	{"machinecheck", "no rule, no module alias", nil},
	{"memory_tiering", "no rule, no module alias", nil},
	{"node", "NUMA nodes: no rule, no module alias", nil},
	{"pci_bus", "no rule, no module alias (the PCI devices, subsystem pci, carry theirs)", nil},
	{"pnp", "no rule, no module alias (their ACPI objects, subsystem acpi, carry theirs)", nil},
	{"scsi_device", "no rule, no module alias (the SCSI devices, subsystem scsi, carry theirs)", nil},
	{"scsi_disk", "no rule, no module alias", nil},
	{"thermal", "cooling devices and thermal zones: no rule, no module alias", nil},
	{"vtconsole", "console-setup's rule would load the console font again: console-setup.service did it at boot (console-font.conf)", []string{"90-console-setup.rules"}},
	{"vc", "the consoles' screen buffers (/dev/vcs*): console-setup's rule switches each console to UTF-8, which console-setup.service's font script did at boot for every console (console-font.conf); the default rule would give group tty read access to what the consoles show, and without it the nodes stay root's alone (mode 0600)", []string{"90-console-setup.rules", "50-udev-default.rules"}},
	{"tty", "replayed by its own command without the 64 virtual consoles (coldplugTTY), whose one rule gives group tty to nodes it makes mode 0600", []string{"50-udev-default.rules"}},
}

// udevMemoryRulesOverride takes the place of systemd's 70-memory.rules
// (a file of the same name in /etc wins; one without rules disables it).
const udevMemoryRulesOverride = "/etc/udev/rules.d/70-memory.rules"

// coldplugTTY are the terminals the coldplug replays (tty is left out of
// the main command): the names the rules of 99-systemd.rules tag for
// systemd (serial ports, hypervisor consoles: serial-getty@ and first boot
// bind to their device units) and 50-udev-default.rules gives group
// dialout, and the three special nodes. Left out are the 64 virtual
// consoles tty0-tty63, whose one rule (50-udev-default.rules: group tty,
// mode 0600) changes nothing a mode of 0600 does not already say; a getty
// takes its console over when it starts. 0.9-1.1 s of udevd's CPU time
// under TCG (71 events against 14, in an idle guest).
var coldplugTTY = []string{"console", "ptmx", "tty", "tty[a-zA-Z]*", "hvc*", "xvc*", "hvsi*", "ttysclp*", "sclp_line*"}

// coldplugModules are the kernel modules udev rules of the image act on
// (60-block.rules: the disk event poll interval, which notices a config
// drive's ejection; 99-systemd.rules: fusectl and configfs mounts;
// 80-drivers.rules: ppdev with parport_pc): their events are still
// replayed.
var coldplugModules = []string{"block", "configfs", "fuse", "parport_pc"}

// udevColdplugDropIn is systemd-udev-trigger.service's drop-in.
func udevColdplugDropIn() []byte {
	var b strings.Builder
	b.WriteString("# ksmg-appliance: udev's coldplug without the objects no rule of this image\n# acts on at boot (images/payload.go, coldplugSkip), under TCG 10-15 s of\n# udevd's CPU time while first boot and the gateway start. Left out:\n")
	for _, s := range coldplugSkip {
		fmt.Fprintf(&b, "#  %s: %s\n", s.name, s.why)
	}
	b.WriteString("[Service]\nExecStart=\n")
	b.WriteString("ExecStart=-udevadm trigger --type=subsystems --action=add --subsystem-match=module")
	for _, m := range coldplugModules {
		b.WriteString(" --sysname-match=" + m)
	}
	b.WriteString("\nExecStart=-udevadm trigger --type=devices --action=add --subsystem-match=tty")
	for _, n := range coldplugTTY {
		b.WriteString(" --sysname-match=" + n)
	}
	b.WriteString("\nExecStart=-" + udevTriggerCommand)
	for _, s := range coldplugSkip {
		b.WriteString(" --subsystem-nomatch=" + s.name)
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// foregroundAtBoot are on the way to the SMTP banner, through first boot
// or the network's configuration (images/HARDENING.md, "First boot", has
// the runs):
//   - first boot's chain: systemd-remount-fs (local-fs-pre.target waits
//     for it), the journal (the flush, which
//     tmpfiles waits for), tmpfiles, AppArmor and the audit rules (auditctl
//     took 1.8-2.3 s of wall time for 0.3-0.6 s of CPU under TCG at the
//     default weight, 0.9-1.1 s at this one; once off local-fs.target's
//     way, unitOrderings, both had to finish beside /var's mounts and
//     tmpfiles, which they did only at this weight: at the default, 2.7 and
//     4.0 s, the last units first boot waited for);
//   - the network's chain: nftables (network-pre.target, so networkd,
//     waits for it: 3.3-5.6 s of wall time for 0.4-0.6 s of CPU at the
//     default weight, 0.6-1.5 s at this one), systemd-sysctl (networkd
//     waits for it too: 2.8-5.0 s for 0.4-0.5 s of CPU at the default
//     weight, the last unit networkd waited for in 5 of 6 boots; at this
//     one it is done before udevd is ready) and networkd (under TCG it took
//     5-6 s to start at the default weight), which configures the address
//     the banner is reached on. wait-online left the list when the gateway
//     stopped waiting for network-online.target: nothing the appliance
//     starts at boot pulls that target in now, so wait-online does not run;
//   - what sysinit.target (so basic.target and the gateway) waits for:
//     resolved and timesyncd (4-6 s of wall time for about 1 s of CPU at the
//     default weight, the last of sysinit.target; 0.7-1.6 s at this one) and
//     auditd (3.6-4.9 s for 0.8-1.0 s of CPU at the default weight, started
//     beside first boot and the last unit sysinit.target waited for; 1.4-1.5
//     s at this one);
//
// keyboard-setup left this list when first boot stopped waiting for it
// (ksmg-firstboot@.service, --console-units): at this weight its 1-2 s of
// CPU (kbd_mode, loadkeys) came off the gateway's chains.
//
// foregroundMountsAtBoot, /var and the /var/tmp bind mount, are the mounts
// local-fs.target (so tmpfiles and first boot) waits for last: with
// AppArmor and the audit rules beside them at 1000 (unitOrderings), the
// bind mount took 2-4.6 s of wall time for 0.3 s of CPU at the default.
//
// Left at the default: the console font, which first boot waits for only
// before its wizard or text beyond ASCII (--console-units).
// systemd-modules-load no longer runs at boot: the firewall's modules are
// loaded by nftables.service itself, and the hardening leaves
// modules-load.d empty (provisioner/harden, Removed). At the default
// weight it took 8-13.5 s of wall time, and systemd-sysctl, so resolved
// and sysinit.target, waited for it; at weight 1000 the /tmp, /home and
// /run/lock mounts starved beside it and first boot ended later
// (HARDENING.md, 2026-12-05 evening and night, 2026-12-06).
var foregroundAtBoot = []string{
	"systemd-remount-fs.service", "systemd-journald.service", "systemd-journal-flush.service",
	"systemd-tmpfiles-setup.service", "apparmor.service", "audit-rules.service",
	"nftables.service", "systemd-sysctl.service", "systemd-networkd.service",
	"systemd-resolved.service", "systemd-timesyncd.service", "auditd.service",
}

var foregroundMountsAtBoot = []string{"var.mount", "var-tmp.mount"}

// packageFiles is everything our Debian package ships.
func packageFiles(s *appliance.Spec, binDir string) ([]provisioner.PackageFile, []string, error) {
	var files []provisioner.PackageFile
	for _, bin := range binaries {
		data, err := os.ReadFile(filepath.Join(binDir, bin.name))
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
	add("/usr/lib/sysusers.d/ksmg-console-status.conf", embedded("ksmg-console-status.sysusers"), 0o644)
	add("/usr/lib/systemd/network/80-ksmg-dhcp.network", embedded("80-ksmg-dhcp.network"), 0o644)
	add("/usr/lib/repart.d/50-var.conf", embedded("50-var.conf"), 0o644)
	add("/usr/lib/systemd/system/var.mount.d/ksmg-growfs.conf", embedded("var-growfs.conf"), 0o644)
	add("/usr/lib/systemd/system/systemd-growfs@var.service.d/ksmg-after-gateway.conf", embedded("growfs-after-gateway.conf"), 0o644)
	for _, u := range []string{"hv-kvp-daemon.service", "hv-vss-daemon.service", "hv-fcopy-daemon.service"} {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-hyperv-only.conf", embedded("hyperv-only.conf"), 0o644)
	}
	for _, u := range []string{"open-vm-tools.service", "vgauth.service"} {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-vmware-only.conf", embedded("vmware-only.conf"), 0o644)
	}
	add("/usr/lib/systemd/system/console-setup.service.d/ksmg-font.conf", embedded("console-font.conf"), 0o644)
	add("/usr/lib/systemd/system/systemd-udev-trigger.service.d/ksmg-coldplug.conf", udevColdplugDropIn(), 0o644)
	add(udevMemoryRulesOverride, embedded("udev-memory-off.rules"), 0o644)
	for _, u := range backgroundAtBoot {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-boot-weight.conf", embedded("boot-background.conf"), 0o644)
	}
	for _, u := range foregroundAtBoot {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-boot-weight.conf", embedded("boot-foreground.conf"), 0o644)
	}
	for _, u := range foregroundMountsAtBoot {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-boot-weight.conf", embedded("boot-foreground-mount.conf"), 0o644)
	}
	for _, u := range []string{"systemd-user-sessions.service", "acct.service"} {
		add("/usr/lib/systemd/system/"+u+".d/ksmg-after-firstboot.conf", embedded("after-firstboot.conf"), 0o644)
	}
	for _, f := range initramfsFiles(s) {
		add(f.path, f.data, f.mode)
	}
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

// Payload is what PayloadSteps needs to put the ksmg payload on a target.
type Payload struct {
	Spec            *appliance.Spec
	BinDir          string // our binaries (ksmg-gatewayd, ksmg-firstboot)
	SourceDateEpoch int64  // the package's file times
	Scratch         string // a private scratch directory (the package is staged there)
}

// PayloadSteps are the Go provisioning steps that put the ksmg payload on a
// target: our Debian package, the accounts (checked against the spec's
// fixed ids), data directories and unit enablement. `ksmg build` runs them
// on the root file system; the Packer provisioner ksmg-appliance runs the
// same steps through a Packer communicator, on any builder's machine.
func PayloadSteps(p Payload) ([]provisioner.Step, error) {
	s := p.Spec
	files, enable, err := packageFiles(s, p.BinDir)
	if err != nil {
		return nil, err
	}
	stage := filepath.Join(p.Scratch, "deb-stage")
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return nil, err
	}
	deb, err := provisioner.BuildDeb(provisioner.Package{
		Name:        packageName,
		Version:     s.Version,
		Maintainer:  "ksmg-appliance project <ksmg@localhost>",
		Description: "ksmg mail-security gateway appliance payload",
		Depends:     []string{"systemd", "logrotate", "sudo"},
		Files:       files,
		MTime:       time.Unix(p.SourceDateEpoch, 0),
	}, stage)
	if err != nil {
		return nil, err
	}
	var dirs []provisioner.Dir
	for _, d := range s.Directories {
		dirs = append(dirs, provisioner.Dir{Path: d.Path, Owner: d.Owner, Group: d.Group, Mode: fs.FileMode(d.Mode), Recursive: d.Recursive})
	}
	uids := make([]provisioner.Account, 0, len(s.Accounts))
	for _, a := range s.Accounts {
		uids = append(uids, provisioner.Account{Name: a.Name, UID: a.UID})
	}
	return []provisioner.Step{
		provisioner.InstallDeb(packageName, deb),
		provisioner.CheckSudoers(),
		provisioner.CreateAccounts(),
		provisioner.CheckAccounts(uids),
		provisioner.MakeDirs(dirs),
		// Before enabling: enablement follows the unit in use.
		unitOrderingOverrides(),
		provisioner.Units(enable, s.Services.Disable, s.Services.Mask),
	}, nil
}

// unitOrdering is a Debian unit the image ships with other ordering: the
// unit as installed (Unit, under /usr/lib/systemd/system), with each line
// of Replace swapped for its replacement ("" drops it) and the lines of Add
// put after [Unit], written to /etc/systemd/system, which wins. Derived from
// the unit installed, so Debian's other lines and later fixes are kept; a
// unit without one of the lines to replace fails the build (a new package
// has changed the ordering: look again).
type unitOrdering struct {
	Unit    string
	Why     []string // comment lines, after [Unit]
	Replace [][2]string
	Add     []string
}

// unitOrderings take units first boot waits for off the file systems' way
// (images/HARDENING.md, "First boot"). Under TCG, with the guest's two CPUs
// saturated, local-fs.target came only when /var had been checked and
// mounted and /var/tmp bind-mounted on it, and four units of first boot's
// chain started there together: tmpfiles, AppArmor, the console font and,
// after tmpfiles, the audit rules. And networkd, which configures the
// address the banner is reached on, off udevd's way.
var unitOrderings = []unitOrdering{{
	// Debian loads the keymap before local-fs-pre.target, so that a
	// passphrase or an interactive fsck can be typed in the admin's layout.
	// The appliance has neither (no encrypted disk; fsck runs unattended,
	// and root, the only account an emergency shell would take, is locked),
	// yet /var's check and mount, and so first boot, waited for the keymap:
	// 3.8 s of wall time (1.9 s of CPU: kbd_mode, loadkeys) in a slow boot.
	// The keymap is still loaded before anyone types: first boot's wizard
	// waits for it (ksmg-firstboot@.service, --console-units) and the
	// console's login is ordered after it.
	Unit: "keyboard-setup.service",
	Why: []string{"Debian's unit without its ordering before local-fs-pre.target; the keymap",
		"is loaded before the console's login and first boot's wizard, not before",
		"the file systems."},
	Replace: [][2]string{{"Before=local-fs-pre.target", ""}, {"Wants=local-fs-pre.target", ""}},
	Add:     []string{"Before=getty@tty1.service"},
}, {
	// Debian's waits for local-fs.target and tmpfiles because augenrules
	// builds the rules in /tmp. The image loads rules compiled at build time
	// with auditctl (provisioner/harden, audit-rules-compiled.conf), which
	// needs only the watched paths' directories: /etc and /usr on the root
	// file system, /var/log on /var (/tmp is kept for augenrules, should an
	// admin put it back). The rules are still in place before first boot,
	// which is ordered after this unit, changes an account.
	Unit: "audit-rules.service",
	Why: []string{"Debian's unit without its ordering after local-fs.target and tmpfiles: the",
		"rules compiled at build time are loaded by auditctl (audit-rules.service.d),",
		"which needs only the file systems of the watched paths."},
	Replace: [][2]string{{"After=local-fs.target systemd-tmpfiles-setup.service", ""}},
	Add:     []string{"RequiresMountsFor=/var/log /tmp"},
}, {
	// The profiles are read from /etc and their cache from
	// /var/cache/apparmor, which Debian's unit already requires mounted;
	// nothing else of local-fs.target (/var/tmp, /home, /tmp) is read.
	// Every confined service starts after this unit, as before.
	Unit: "apparmor.service",
	Why: []string{"Debian's unit without its ordering after local-fs.target: the profiles",
		"(/etc) and their cache (/var/cache/apparmor, RequiresMountsFor=) are all",
		"it reads."},
	Replace: [][2]string{{"After=local-fs.target", ""}},
}, {
	// At boot console-setup.sh only marks /run/console-setup (its cache is
	// current, clampTimes) and the image's drop-in loads the cached font
	// from /etc/console-setup (console-font.conf): nothing on /var, /tmp or
	// /home.
	Unit: "console-setup.service",
	Why: []string{"Debian's unit without its ordering after local-fs.target: at boot it marks",
		"/run/console-setup and loads the font cached in /etc/console-setup; before",
		"tty1's login prompt, which no longer waits for it through first boot."},
	Replace: [][2]string{{"After=console-screen.service kbd.service local-fs.target", "After=console-screen.service kbd.service"}},
	// First boot no longer waits for the font (it does so itself before
	// the wizard, --console-units); the console's login prompt still does.
	Add: []string{"Before=getty@tty1.service"},
}, {
	// Debian's comment on the ordering: it is for tuntap devices, which the
	// appliance has none of. The NICs' udev records come from the
	// initramfs's udev and survive the switch to the root file system; a NIC
	// udev has not handled yet is one networkd waits for by itself. With
	// /var checked by the initramfs, the gateway waited for
	// network-online.target, 2-6 s after first boot: networkd started only
	// when udevd was ready, 10-12 s after udevd's start under TCG, 1.5-3 s
	// after network-pre.target.
	Unit: "systemd-networkd.service",
	Why: []string{"Debian's unit without its ordering after systemd-udevd.service, which is",
		"for tuntap devices (none here): networkd waits for udev's record of a NIC",
		"by itself, and the initramfs's udev has made it for the NICs present at boot."},
	Replace: [][2]string{{"After=systemd-networkd.socket systemd-udevd.service network-pre.target systemd-sysusers.service systemd-sysctl.service",
		"After=systemd-networkd.socket network-pre.target systemd-sysusers.service systemd-sysctl.service"}},
}, {
	// udev at boot replays the devices the initramfs's udev has already
	// handled (the coldplug): its records, so the device units and the
	// NICs' names, are there before PID 1 starts. sysinit.target, so
	// basic.target and the gateway, waited for udevd's readiness and the
	// coldplug's end: under TCG udevd was ready 11-12 s after its start and
	// the coldplug ended 0.9-1.3 s after first boot and the network (4
	// timeline boots, 2026-12-05), its 8 s of udevd's CPU time on the
	// gateway's way. Nothing the gateway runs needs an event of the
	// coldplug: what it starts (serial-port gettys, Hyper-V's daemons)
	// waits for its device unit by itself, as with any device that appears
	// later.
	Unit: "systemd-udevd.service",
	Why: []string{"Debian's unit without its ordering before sysinit.target: the initramfs's",
		"udev has made the records of the devices present at boot; what waits for a",
		"device waits for its device unit."},
	Replace: [][2]string{{"Before=sysinit.target", ""}},
}, {
	Unit: "systemd-udev-trigger.service",
	Why: []string{"Debian's unit without its ordering before sysinit.target: the coldplug",
		"replays devices the initramfs's udev has handled; what waits for a device",
		"waits for its device unit (systemd-udevd.service's override)."},
	Replace: [][2]string{{"Before=sysinit.target", ""}},
}}

func (u unitOrdering) debianPath() string   { return "/usr/lib/systemd/system/" + u.Unit }
func (u unitOrdering) overridePath() string { return "/etc/systemd/system/" + u.Unit }

// override is the unit text for /etc/systemd/system, from Debian's text.
func (u unitOrdering) override(debian string) ([]byte, error) {
	var out []string
	replaced, unitSection := make([]int, len(u.Replace)), false
	for _, l := range strings.Split(debian, "\n") {
		i := slices.IndexFunc(u.Replace, func(r [2]string) bool { return r[0] == strings.TrimSpace(l) })
		if i >= 0 {
			replaced[i]++
			if u.Replace[i][1] != "" {
				out = append(out, u.Replace[i][1])
			}
			continue
		}
		out = append(out, l)
		if strings.TrimSpace(l) == "[Unit]" && !unitSection {
			unitSection = true
			out = append(out, "# ksmg-appliance (images/payload.go, unitOrderings):")
			for _, w := range u.Why {
				out = append(out, "# "+w)
			}
			out = append(out, u.Add...)
		}
	}
	if slices.ContainsFunc(replaced, func(n int) bool { return n != 1 }) || !unitSection {
		want := make([]string, len(u.Replace))
		for i, r := range u.Replace {
			want[i] = r[0]
		}
		return nil, fmt.Errorf("%s: want a [Unit] section with the lines %q, each once", u.debianPath(), want)
	}
	return []byte(strings.Join(out, "\n")), nil
}

func unitOrderingOverrides() provisioner.Step {
	return provisioner.Step{Name: "unit ordering", Do: func(ctx context.Context, t provisioner.Target) error {
		for _, u := range unitOrderings {
			// A spec without the package has no unit to override.
			debian, err := t.Run(ctx, "sh", "-c", `if [ -e "$1" ]; then cat "$1"; fi`, "sh", u.debianPath())
			if err != nil {
				return err
			}
			if len(debian) == 0 {
				continue
			}
			unit, err := u.override(string(debian))
			if err != nil {
				return err
			}
			if err := t.WriteFile(ctx, u.overridePath(), unit, 0o644, "root", "root"); err != nil {
				return err
			}
			if err := u.relink(ctx, t); err != nil {
				return err
			}
		}
		return nil
	}}
}

// relink points the enablement links of u (its wants and aliases) at the
// override. Debian's postinst made them to /lib/systemd/system/..., and
// so did the builds before the override: Debian 13's systemctl (no /lib
// in its search path) then refuses to enable the unit from /etc ("already
// exists and is a symlink to /lib/..."), and re-provisioning such an
// appliance failed.
func (u unitOrdering) relink(ctx context.Context, t provisioner.Target) error {
	out, err := t.Run(ctx, "find", "/etc/systemd/system", "-mindepth", "1", "-maxdepth", "2",
		"-type", "l", "-lname", "*/lib/systemd/system/"+u.Unit)
	if err != nil {
		return fmt.Errorf("%s: links to Debian's unit: %w", u.Unit, err)
	}
	for _, l := range strings.Fields(string(out)) {
		if err := t.Symlink(ctx, u.overridePath(), l); err != nil {
			return fmt.Errorf("%s: %w", u.Unit, err)
		}
	}
	return nil
}

// imageFiles are the files that belong to this disk image rather than to
// the payload: the mounts of its partitions, its name, its package source,
// and the "updated" stamps. They are written last, as files no package owns.
func imageFiles(s *appliance.Spec, ids diskIDs, sde int64) (provisioner.Step, error) {
	fstab, err := render("fstab.tmpl", ids)
	if err != nil {
		return provisioner.Step{}, err
	}
	// The image is "updated" as of its build: ConditionNeedsUpdate units
	// (ldconfig, catalog) need not run at first boot.
	updated := []byte(fmt.Sprintf("# This file was created by ksmg build (as systemd-update-done would).\nTIMESTAMP_NSEC=%d000000000\n", sde))
	return provisioner.WriteFiles([]provisioner.PackageFile{
		{Dst: "/etc/fstab", Data: fstab, Mode: 0o644},
		{Dst: "/etc/.updated", Data: updated, Mode: 0o644},
		{Dst: "/var/.updated", Data: updated, Mode: 0o644},
		{Dst: "/etc/hostname", Data: []byte(s.Name + "\n"), Mode: 0o644},
		{Dst: "/etc/hosts", Data: []byte("127.0.0.1\tlocalhost\n127.0.1.1\t" + s.Name + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"), Mode: 0o644},
		{Dst: "/etc/apt/sources.list", Data: []byte(s.Distribution.SourcesList()), Mode: 0o644},
	}), nil
}

// provision puts the payload and the image's own files into the root file
// system with the Go provisioners.
func (b *builder) provision(ctx context.Context, rootfs, work string, ids diskIDs) error {
	steps, err := PayloadSteps(Payload{Spec: b.spec, BinDir: b.opts.BinDir, SourceDateEpoch: b.sde, Scratch: work})
	if err != nil {
		return err
	}
	files, err := imageFiles(b.spec, ids, b.sde)
	if err != nil {
		return err
	}
	steps = append(steps, files)
	// The OS hardening last: it checks and edits what the packages and the
	// payload installed (images/HARDENING.md).
	steps = append(steps, harden.Steps(harden.Options{})...)
	t := &provisioner.DirTarget{Root: rootfs, Env: []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", b.sde)}}
	return provisioner.Apply(ctx, t, b.log, steps...)
}

// sbom describes the finished root file system: every installed Debian
// package and the Go modules of our programs (images/sbom), dated
// SOURCE_DATE_EPOCH so that it is as reproducible as the disk.
func (b *builder) sbom(rootfs string) ([]byte, error) {
	var bins []string
	for _, bin := range binaries {
		bins = append(bins, bin.dst)
	}
	return sbom.Build(sbom.Input{
		Name: b.spec.Name, Version: b.spec.Version, Root: rootfs, Binaries: bins,
		Created: time.Unix(b.sde, 0), Supplier: "ksmg-appliance project", OwnPackages: []string{packageName},
	})
}

// PayloadBinaries are the programs PayloadSteps expects in its BinDir.
func PayloadBinaries() []string {
	names := make([]string, len(binaries))
	for i, b := range binaries {
		names[i] = b.name
	}
	return names
}
