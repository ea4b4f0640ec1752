//go:build !linux

package comm

import (
	"context"
	"errors"
	"io"
	"os"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// Chroot needs Linux (openat2, unshare, chroot); elsewhere the plugin still
// builds, and its post-processors work.
type Chroot struct {
	Root string
	Env  []string
}

var errNotLinux = errors.New("chroot communicator: needs Linux")

func (c *Chroot) Start(context.Context, *packersdk.RemoteCmd) error { return errNotLinux }
func (c *Chroot) Upload(string, io.Reader, *os.FileInfo) error      { return errNotLinux }
func (c *Chroot) UploadDir(string, string, []string) error          { return errNotLinux }
func (c *Chroot) Download(string, io.Writer) error                  { return errNotLinux }
func (c *Chroot) DownloadDir(string, string, []string) error        { return errNotLinux }
