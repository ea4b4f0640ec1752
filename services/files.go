// Package services holds the files that run ksmg-gatewayd on the appliance:
// its systemd units, sysusers.d and tmpfiles.d entries and logrotate config.
// They are embedded so that the image provisioner installs exactly what the
// tests in this package checked.
//
// Log rotation uses the distribution's logrotate (run hourly by our own timer)
// rather than rotation inside the daemon: it is the tool admins know, and its
// rename-based rotation costs no I/O. logrotate caps files by count, not bytes,
// so the small POSIX sh helper files/ksmg-logcap trims each stream to its byte
// cap after every rotation.
package services

import (
	"embed"
	"io/fs"
)

//go:embed all:files config/default.yaml
var embedded embed.FS

// defaultConfig is the gateway's shipped configuration. It lives with the
// config package that parses it; Files serves it under this name.
const defaultConfig = "ksmg-gateway.yaml"

// File is one file to install into the appliance root.
type File struct {
	Src  string      // path inside Files
	Dst  string      // absolute path in the image
	Mode fs.FileMode // permission bits
}

// Files is the tree of embedded files, rooted at "files", plus the default
// gateway configuration as "ksmg-gateway.yaml".
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "files")
	if err != nil {
		panic(err) // the directory is embedded at build time; cannot fail
	}
	return tree{sub}
}

// tree adds the default configuration to the files subtree.
type tree struct{ fs.FS }

func (t tree) Open(name string) (fs.File, error) {
	if name == defaultConfig {
		return embedded.Open("config/default.yaml")
	}
	return t.FS.Open(name)
}

// Install lists every embedded file with its destination in the image.
// Units to enable are listed in Enable. Owners are root:root; tmpfiles.d
// (applied at boot and before every gateway start) gives the gateway
// configuration its group kluser.
var Install = []File{
	{Src: "ksmg-gatewayd.service", Dst: "/usr/lib/systemd/system/ksmg-gatewayd.service", Mode: 0o644},
	{Src: "ksmg-gatewayd.socket", Dst: "/usr/lib/systemd/system/ksmg-gatewayd.socket", Mode: 0o644},
	{Src: "ksmg-logrotate.service", Dst: "/usr/lib/systemd/system/ksmg-logrotate.service", Mode: 0o644},
	{Src: "ksmg-logrotate.timer", Dst: "/usr/lib/systemd/system/ksmg-logrotate.timer", Mode: 0o644},
	{Src: "sysusers.conf", Dst: "/usr/lib/sysusers.d/ksmg.conf", Mode: 0o644},
	{Src: "tmpfiles.conf", Dst: "/usr/lib/tmpfiles.d/ksmg.conf", Mode: 0o644},
	{Src: "logrotate.conf", Dst: "/usr/lib/ksmg/logrotate.conf", Mode: 0o644},
	{Src: "ksmg-logcap", Dst: "/usr/libexec/ksmg/ksmg-logcap", Mode: 0o755},
	{Src: defaultConfig, Dst: "/etc/opt/kaspersky/ksmg-gateway.yaml", Mode: 0o640},
}

// Enable names the systemd units the image enables. The socket hands port 25
// to the daemon; the service itself also starts at boot so that queued mail
// is delivered without waiting for a connection.
var Enable = []string{
	"ksmg-gatewayd.socket",
	"ksmg-gatewayd.service",
	"ksmg-logrotate.timer",
}
