package images

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// scrubGlobs are removed from the root file system before it becomes a
// disk: build-time state that would differ between two builds (logs,
// caches, backups, random seeds) or must be unique per VM (SSH host keys,
// D-Bus machine id). First boot recreates what is needed.
var scrubGlobs = []string{
	"/etc/ssh/ssh_host_*",
	"/etc/*-", // passwd-, shadow-, group-, gshadow-, subuid-, subgid- backups
	"/etc/.pwd.lock",
	"/var/lib/dbus/machine-id",
	"/var/lib/systemd/random-seed",
	"/var/lib/systemd/credential.secret",
	"/var/lib/systemd/catalog/database",
	"/var/lib/apt/lists/*",
	"/var/cache/apt/*.bin",
	"/var/cache/apt/archives/*.deb",
	"/var/cache/ldconfig/aux-cache",
	"/var/cache/debconf/*-old",
	"/var/lib/dpkg/*-old",
	"/var/log/*.log",
	"/var/log/apt/*",
	"/var/log/journal/*",
	"/tmp/*",
	"/var/tmp/*",
	"/run/*",
}

func (b *builder) scrub(rootfs string) error {
	for _, g := range scrubGlobs {
		matches, err := filepath.Glob(filepath.Join(rootfs, g))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if filepath.Base(m) == "partial" || filepath.Base(m) == "lock" {
				continue // apt's own directories/locks: empty and deterministic
			}
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	// Python byte code is compiled with time stamps inside.
	if err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "__pycache__" {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
			return filepath.SkipDir
		}
		return nil
	}); err != nil {
		return err
	}
	// Empty: systemd makes a new id for each VM and commits it once /etc
	// is writable (machine-id(5)), but the boot is not a "first boot".
	// With "uninitialized" PID 1 first computes every unit's preset
	// (7 s under TCG, on the critical path) only to fail writing them
	// to the read-only root, and the image's enablement is final anyway;
	// the ConditionFirstBoot= units (systemd-firstboot, sshd-keygen) are
	// masked: ksmg-firstboot does their work.
	if err := os.WriteFile(filepath.Join(rootfs, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(rootfs, "etc/machine-id"), 0o444); err != nil {
		return err
	}
	if err := checkNoCredentials(rootfs); err != nil {
		return err
	}
	return clampTimes(rootfs, b.sde)
}

// checkNoCredentials refuses to ship an account that has a password.
func checkNoCredentials(rootfs string) error {
	data, err := os.ReadFile(filepath.Join(rootfs, "etc/shadow"))
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 2 {
			continue
		}
		if pw := f[1]; pw == "" || (!strings.HasPrefix(pw, "*") && !strings.HasPrefix(pw, "!")) {
			return fmt.Errorf("/etc/shadow: account %q has a password or an empty one; the image must ship none", f[0])
		}
	}
	return nil
}
