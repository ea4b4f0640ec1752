// Package units holds the systemd unit that runs ksmg-firstboot at the
// first boot and the administrator's sudoers drop-in (the product's
// administrative commands, nothing else), embedded so that the image
// installs exactly the files the tests checked (same pattern as
// services.Install).
package units

import (
	"embed"
	"io/fs"

	"github.com/ksmg-appliance/ksmg/services"
)

//go:embed files
var embedded embed.FS

// BinaryPath is where the image must install the ksmg-firstboot binary;
// the unit's ExecStart points there.
const BinaryPath = "/usr/sbin/ksmg-firstboot"

// Files is the tree of embedded files, rooted at "files".
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "files")
	if err != nil {
		panic(err) // the directory is embedded at build time; cannot fail
	}
	return sub
}

// Install lists every embedded file with its destination in the image.
var Install = []services.File{
	{Src: "ksmg-firstboot@.service", Dst: "/usr/lib/systemd/system/ksmg-firstboot@.service", Mode: 0o644},
	{Src: "ksmg-firstboot-serial.conf", Dst: "/usr/lib/systemd/system/ksmg-firstboot@ttyS0.service.d/ksmg-serial.conf", Mode: 0o644},
	{Src: "ksmg-firstboot-getty.conf", Dst: "/usr/lib/systemd/system/serial-getty@ttyS0.service.d/ksmg-after-firstboot.conf", Mode: 0o644},
	{Src: "ksmg-admin.sudoers", Dst: SudoersPath, Mode: 0o440},
	// Started by first boot (apply.HostnameUnit), never enabled.
	{Src: "ksmg-hostname.service", Dst: "/usr/lib/systemd/system/ksmg-hostname.service", Mode: 0o644},
}

// SudoersPath is the administrator's sudoers drop-in in the image.
const SudoersPath = "/etc/sudoers.d/ksmg-admin"

// Consoles are the unit's instances, one per console the wizard runs on:
// the VM console and the first serial port. The unit starts them all
// (--wizard-units) when setup needs a person.
var Consoles = []string{
	"ksmg-firstboot@tty1.service",
	"ksmg-firstboot@ttyS0.service",
}

// Enable names the instances the image enables, which the boot starts:
// the VM console's only, so an unattended first boot runs one first-boot
// process (ksmg-firstboot@.service).
var Enable = []string{Consoles[0]}
