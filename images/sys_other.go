//go:build !linux

package images

import (
	"errors"
	"os"
)

// Building the image needs Linux (mmdebstrap, chroot, mkfs); the package
// still compiles elsewhere so that its types and the format registry can be
// used by tools that only convert or inspect images.
var errNotLinux = errors.New("building the appliance image needs Linux")

func clampTimes(string, int64) error { return errNotLinux }

func removeWork(dir string) error { return os.RemoveAll(dir) }
