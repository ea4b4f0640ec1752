package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// SeedDrive finds a config drive by filesystem label, mounts it read-only
// in a private temporary directory, reads SeedFileName and unmounts it.
type SeedDrive struct {
	ByLabel string   // directory of label symlinks; "" means /dev/disk/by-label
	Labels  []string // "" means SeedLabels
}

// Name implements Source.
func (SeedDrive) Name() *i18n.Msg { return i18n.Errorf("config drive") }

// Read implements Source: absent when no labelled drive exists or the
// drive has no seed file.
func (d SeedDrive) Read(ctx context.Context) (map[string]string, error) {
	dir := d.ByLabel
	if dir == "" {
		dir = "/dev/disk/by-label"
	}
	labels := d.Labels
	if labels == nil {
		labels = SeedLabels
	}
	for _, l := range labels {
		dev := filepath.Join(dir, l)
		if _, err := os.Stat(dev); err != nil {
			continue
		}
		return readFromDevice(ctx, dev)
	}
	return nil, ErrAbsent
}

func readFromDevice(ctx context.Context, dev string) (map[string]string, error) {
	mnt, err := os.MkdirTemp("", "ksmg-seed-")
	if err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	defer os.Remove(mnt)
	var stderr bytes.Buffer
	mount := exec.CommandContext(ctx, "mount", "-o", "ro,nosuid,nodev,noexec", dev, mnt)
	mount.Stderr = &stderr
	if err := mount.Run(); err != nil {
		return nil, fmt.Errorf("mount %s: %w: %s", dev, err, bytes.TrimSpace(stderr.Bytes()))
	}
	defer func() {
		// A fresh context: unmount even when ctx was cancelled.
		_ = exec.Command("umount", mnt).Run()
	}()
	kv, err := Seed{Path: filepath.Join(mnt, SeedFileName)}.Read(ctx)
	if errors.Is(err, ErrAbsent) {
		return nil, ErrAbsent
	}
	if err != nil {
		name := dev // one catalog message with Gather's "{Name}: {Err}"
		return nil, i18n.Errorf("%s: %v", name, err)
	}
	return kv, nil
}
