package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// SeedDrive finds a config drive by filesystem label, mounts it read-only,
// reads SeedFileName and unmounts it. Under systemd the mount is asked of
// PID 1 (a transient mount unit, over D-Bus), so the sandboxed first-boot unit
// needs no CAP_SYS_ADMIN; elsewhere (tests as root) mount(8) does it.
type SeedDrive struct {
	ByLabel string   // directory of label symlinks; "" means /dev/disk/by-label
	Labels  []string // "" means SeedLabels
	// UdevData is udev's database directory ("" means /run/udev/data),
	// consulted when the label links are not visible: the sandboxed
	// first-boot unit has a private /dev.
	UdevData string
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
		if _, err := os.Stat(dev); err == nil {
			return readFromDevice(ctx, dev)
		}
	}
	// No /dev/disk in this namespace: ask udev's database which block
	// device has the label, and let PID 1 (in its namespace)
	// find the device node.
	dev, err := udevDeviceByLabel(d.UdevData, labels)
	if err != nil {
		return nil, err
	}
	if dev != "" {
		return readFromDevice(ctx, dev)
	}
	return nil, ErrAbsent
}

// udevDeviceByLabel returns /dev/<name> of the first block device whose
// udev record (b<major>:<minor> in dir) carries one of labels as
// ID_FS_LABEL, in the order of labels; "" when none does. A database
// it may not read is an error, not "no drive": a denied read (AppArmor, a
// sandbox) once made a present config drive silently absent.
func udevDeviceByLabel(dir string, labels []string) (string, error) {
	if dir == "" {
		dir = "/run/udev/data"
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("udev database: %w", err)
	}
	var recs []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "b") && strings.Contains(n, ":") {
			recs = append(recs, filepath.Join(dir, n))
		}
	}
	sort.Strings(recs)
	found := map[string]string{}
	for _, r := range recs {
		data, err := os.ReadFile(r)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the device went away meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("udev database: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			label, ok := strings.CutPrefix(line, "E:ID_FS_LABEL=")
			if !ok {
				continue
			}
			if _, dup := found[label]; dup {
				continue
			}
			// The kernel's name of the device: DEVNAME in sysfs' uevent.
			uevent, err := os.ReadFile(filepath.Join("/sys/dev/block", strings.TrimPrefix(filepath.Base(r), "b"), "uevent"))
			if err != nil {
				continue
			}
			for _, u := range strings.Split(string(uevent), "\n") {
				if name, ok := strings.CutPrefix(u, "DEVNAME="); ok && name != "" && !strings.Contains(name, "..") {
					found[label] = "/dev/" + name
				}
			}
		}
	}
	for _, l := range labels {
		if dev := found[l]; dev != "" {
			return dev, nil
		}
	}
	return "", nil
}

func readFromDevice(ctx context.Context, dev string) (map[string]string, error) {
	mnt, unmount, err := mountReadOnly(ctx, dev)
	if err != nil {
		return nil, err
	}
	defer unmount()
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

// mountOptions: a config drive is data, never code or devices.
const mountOptions = "ro,nosuid,nodev,noexec"

// mountReadOnly mounts dev and returns where, and how to unmount it.
func mountReadOnly(ctx context.Context, dev string) (string, func(), error) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		// PID 1 mounts it in the host's namespace (propagated into the
		// caller's); one mount point per process, as both consoles'
		// first-boot instances read the drive at the same time.
		mnt := fmt.Sprintf("/run/ksmg-seed-%d", os.Getpid())
		unmount, err := systemdMount(ctx, dev, mnt)
		if err != nil {
			return "", nil, err
		}
		return mnt, unmount, nil
	}
	mnt, err := os.MkdirTemp("", "ksmg-seed-")
	if err != nil {
		return "", nil, fmt.Errorf("mount point: %w", err)
	}
	if err := runQuiet(ctx, "mount", "-o", mountOptions, dev, mnt); err != nil {
		os.Remove(mnt)
		return "", nil, fmt.Errorf("mount %s: %w", dev, err)
	}
	return mnt, func() {
		_ = exec.Command("umount", mnt).Run()
		os.Remove(mnt)
	}, nil
}

func runQuiet(ctx context.Context, name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}
