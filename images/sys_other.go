//go:build !linux

package images

import (
	"context"
	"errors"
	"io"
	"os"
)

// Building the image needs Linux (mmdebstrap, chroot, mkfs); the package
// still compiles elsewhere so that its types and the format registry can be
// used by tools that only convert or inspect images.
var errNotLinux = errors.New("building the appliance image needs Linux")

func clampTimes(string, int64) error { return errNotLinux }

func writeSparseAt(context.Context, *os.File, *os.File, int64, int64) error { return errNotLinux }

func removeWork(dir string) error { return os.RemoveAll(dir) }

func sparseFingerprint(context.Context, *os.File) (string, error) { return "", errNotLinux }

func hashSparse(ctx context.Context, w io.Writer, f *os.File, size int64) (int64, error) {
	return io.Copy(w, f)
}
