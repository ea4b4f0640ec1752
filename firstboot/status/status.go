// Package status is the appliance's console status: once systemd has
// finished starting up, ksmg-console-status.service prints what an
// operator (or a boot test) needs to know without logging in. Two lines:
//
//   - KSMG-STATUS k=v ... for machines (boot tests, monitoring that reads
//     the serial log). Its keys and values are a fixed protocol and are
//     never translated.
//   - one sentence for people, in the system language (the locale the
//     first-boot wizard set), from firstboot/i18n's catalogs.
package status

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// Facts are what the status lines report.
type Facts struct {
	State        string   // systemctl is-system-running: running, degraded, ...
	Failed       []string // failed units
	SecureBoot   bool
	VarFSBytes   int64 // size of the /var file system
	VarPartBytes int64 // size of /var's partition
	DiskBytes    int64 // size of the disk holding /var
	Drivers      []string
	SSH, Gateway string // systemctl is-active of ssh and ksmg-gatewayd
	Hostname     string
	Version      string
}

// Prefix starts the machine-readable line.
const Prefix = "KSMG-STATUS "

// Line is the machine-readable line: values have no spaces; a missing
// value is "none" (lists) or "unknown".
func (f Facts) Line() string {
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	sb := 0
	if f.SecureBoot {
		sb = 1
	}
	return fmt.Sprintf("%sstate=%s failed=%s secureboot=%d var_fs_bytes=%d var_part_bytes=%d disk_bytes=%d drivers=%s ssh=%s gateway=%s hostname=%s version=%s",
		Prefix, or(f.State, "unknown"), or(strings.Join(f.Failed, ","), "none"), sb, f.VarFSBytes, f.VarPartBytes, f.DiskBytes,
		or(strings.Join(f.Drivers, ","), "none"), or(f.SSH, "unknown"), or(f.Gateway, "unknown"), or(f.Hostname, "unknown"), or(f.Version, "unknown"))
}

// Human is the sentence for people, in p's language.
func (f Facts) Human(p *message.Printer) string {
	var parts []string
	state := systemState(p, f.State)
	parts = append(parts, p.Sprintf("ksmg %s on %s", f.Version, f.Hostname), p.Sprintf("system: %s", state))
	if len(f.Failed) == 0 {
		parts = append(parts, p.Sprintf("no failed units"))
	} else {
		count, units := len(f.Failed), strings.Join(f.Failed, ", ")
		parts = append(parts, p.Sprintf("%d failed units: %s", count, units))
	}
	if f.SecureBoot {
		parts = append(parts, p.Sprintf("Secure Boot on"))
	} else {
		parts = append(parts, p.Sprintf("Secure Boot off"))
	}
	gateway, ssh := unitState(p, f.Gateway), unitState(p, f.SSH)
	parts = append(parts, p.Sprintf("mail gateway: %s", gateway), p.Sprintf("SSH: %s", ssh))
	gib := float64(f.VarFSBytes) / (1 << 30)
	parts = append(parts, p.Sprintf("/var: %.1f GiB", gib))
	return strings.Join(parts, "; ")
}

func systemState(p *message.Printer, s string) string {
	switch s {
	case "running":
		return p.Sprintf("running")
	case "degraded":
		return p.Sprintf("degraded")
	case "starting", "initializing":
		return p.Sprintf("starting")
	case "maintenance":
		return p.Sprintf("in maintenance mode")
	case "stopping":
		return p.Sprintf("stopping")
	}
	return p.Sprintf("in an unknown state")
}

func unitState(p *message.Printer, s string) string {
	switch s {
	case "active":
		return p.Sprintf("active")
	case "inactive":
		return p.Sprintf("inactive")
	case "failed":
		return p.Sprintf("failed")
	case "activating", "reloading":
		return p.Sprintf("starting")
	}
	return p.Sprintf("in an unknown state")
}

// Language is the system language: the LANG of /etc/locale.conf under
// root (what the wizard wrote; read from the file because systemd's own
// environment keeps the locale of the boot), else the process's locale.
func Language(root string) string {
	for _, p := range []string{"/etc/locale.conf", "/etc/default/locale"} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "LANG="); ok {
				if lang := i18n.FromLocale(strings.Trim(v, `"'`)); lang != "" {
					return lang
				}
				return i18n.English
			}
		}
	}
	return i18n.FromEnv()
}

// hypervisorDrivers are the modules the image's initramfs carries for
// VMware and Hyper-V; the status says which of them are loaded.
var hypervisorDrivers = []string{"vmw_pvscsi", "vmxnet3", "hv_vmbus", "hv_storvsc", "hv_netvsc"}

const secureBootVar = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"

// Gather collects the facts on the running appliance. It waits until
// systemd has finished starting up (is-system-running --wait).
func Gather(ctx context.Context) Facts {
	var f Facts
	f.State = systemctl(ctx, "is-system-running", "--wait")
	for _, l := range strings.Split(systemctl(ctx, "list-units", "--state=failed", "--no-legend", "--plain"), "\n") {
		if fs := strings.Fields(l); len(fs) > 0 {
			f.Failed = append(f.Failed, fs[0])
		}
	}
	if b, err := os.ReadFile(secureBootVar); err == nil && len(b) >= 5 {
		f.SecureBoot = b[4] == 1 // 4 bytes of attributes, then the value
	}
	f.VarFSBytes, f.VarPartBytes, f.DiskBytes = varSizes("/var")
	for _, m := range hypervisorDrivers {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			f.Drivers = append(f.Drivers, m)
		}
	}
	f.SSH = systemctl(ctx, "is-active", "ssh.service")
	f.Gateway = systemctl(ctx, "is-active", "ksmg-gatewayd.service")
	f.Version = readTrim("/usr/lib/ksmg/image-version")
	f.Hostname = readTrim("/proc/sys/kernel/hostname")
	return f
}

// systemctl returns the command's output; these commands report states
// through their exit status too, so a non-zero exit is not an error here.
func systemctl(ctx context.Context, args ...string) string {
	out, _ := exec.CommandContext(ctx, "systemctl", args...).Output()
	return string(bytes.TrimSpace(out))
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
