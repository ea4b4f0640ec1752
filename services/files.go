// Package services holds the files that run ksmg-gatewayd on the appliance:
// its systemd units, sysusers.d and tmpfiles.d entries and logrotate config.
// They are embedded so that the image provisioner installs exactly what the
// tests in this package checked.
package services

import (
	"embed"
	"io/fs"
)

//go:embed all:files
var embedded embed.FS

// File is one file to install into the appliance root.
type File struct {
	Src  string      // path inside Files
	Dst  string      // absolute path in the image
	Mode fs.FileMode // permission bits
}

// Files is the tree of embedded files, rooted at "files".
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "files")
	if err != nil {
		panic(err) // the directory is embedded at build time; cannot fail
	}
	return sub
}

// Install lists every embedded file with its destination in the image.
// Units to enable are listed in Enable.
var Install = []File{}

// Enable names the systemd units the image enables.
var Enable = []string{}
