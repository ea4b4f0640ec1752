package provisioner

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Step is one provisioning action.
type Step struct {
	Name string
	Do   func(ctx context.Context, t Target) error
}

// Apply runs the steps in order and stops at the first error.
func Apply(ctx context.Context, t Target, log *slog.Logger, steps ...Step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		if err := s.Do(ctx, t); err != nil {
			return fmt.Errorf("provision %s: %w", s.Name, err)
		}
		log.Debug("provisioned", "step", s.Name, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// InstallDeb copies a Debian package into the target and installs it with
// dpkg, so dpkg's database lists every file it ships.
func InstallDeb(name string, deb []byte) Step {
	return Step{Name: "install " + name, Do: func(ctx context.Context, t Target) error {
		p := "/var/cache/ksmg-" + name + ".deb"
		if err := t.WriteFile(ctx, p, deb, 0o600, "root", "root"); err != nil {
			return err
		}
		if _, err := t.Run(ctx, "dpkg", "--install", "--force-confold", p); err != nil {
			return err
		}
		_, err := t.Run(ctx, "rm", "-f", p)
		return err
	}}
}

// CreateAccounts runs systemd-sysusers so the accounts of every sysusers.d
// file (ours came with the package) exist before files are chowned to them.
func CreateAccounts() Step {
	return Step{Name: "accounts (systemd-sysusers)", Do: func(ctx context.Context, t Target) error {
		_, err := t.Run(ctx, "systemd-sysusers")
		return err
	}}
}

// Dir is a directory with owner and mode.
type Dir struct {
	Path         string
	Owner, Group string
	Mode         fs.FileMode
	Recursive    bool // chown what is inside too (modes stay)
}

// MakeDirs creates the directories in order (parents first).
func MakeDirs(dirs []Dir) Step {
	return Step{Name: "directories", Do: func(ctx context.Context, t Target) error {
		for _, d := range dirs {
			if err := t.Mkdir(ctx, d.Path, d.Mode, d.Owner, d.Group); err != nil {
				return err
			}
			if d.Recursive {
				// A root-owned file in a kluser-owned directory is an
				// "unsafe path transition" to systemd-tmpfiles.
				if _, err := t.Run(ctx, "chown", "-R", "--no-dereference", d.Owner+":"+d.Group, d.Path); err != nil {
					return err
				}
			}
		}
		return nil
	}}
}

// Units enables, disables and masks systemd units (a mask is a link to
// /dev/null in /etc/systemd/system).
func Units(enable, disable, mask []string) Step {
	return Step{Name: "units", Do: func(ctx context.Context, t Target) error {
		for _, u := range mask {
			if err := t.Symlink(ctx, "/dev/null", "/etc/systemd/system/"+u); err != nil {
				return err
			}
		}
		for _, u := range disable {
			if err := t.DisableUnit(ctx, u); err != nil {
				return err
			}
		}
		for _, u := range enable {
			if err := t.EnableUnit(ctx, u); err != nil {
				return err
			}
		}
		return nil
	}}
}

// WriteFiles writes files that must not belong to a package (files other
// packages or first boot change, such as /etc/fstab or /etc/machine-id).
func WriteFiles(files []PackageFile) Step {
	return Step{Name: "files", Do: func(ctx context.Context, t Target) error {
		for _, f := range files {
			if err := t.WriteFile(ctx, f.Dst, f.Data, f.Mode, "root", "root"); err != nil {
				return err
			}
		}
		return nil
	}}
}

// Account is a service account with the fixed uid the spec gives it.
type Account struct {
	Name string
	UID  int
}

// CheckAccounts verifies that every account has its fixed uid: sysusers
// silently picks another one when that uid is taken. It asks the target's
// own user database (getent), so it works in a root file system and on a
// running machine alike.
func CheckAccounts(accounts []Account) Step {
	return Step{Name: "check account ids", Do: func(ctx context.Context, t Target) error {
		for _, a := range accounts {
			out, err := t.Run(ctx, "getent", "passwd", a.Name)
			if err != nil {
				return fmt.Errorf("account %s: not found (%w)", a.Name, err)
			}
			f := strings.Split(strings.TrimSpace(string(out)), ":")
			if len(f) < 3 || f[2] != strconv.Itoa(a.UID) {
				got := ""
				if len(f) > 2 {
					got = f[2]
				}
				return fmt.Errorf("account %s has uid %q, spec says %d (taken by another account? pick a free one in the spec)", a.Name, got, a.UID)
			}
		}
		return nil
	}}
}

// CheckSudoers has the target's own visudo check its sudoers policy,
// every drop-in included: a syntax error would lock the administrator
// out of the product's commands (or, worse, be read differently than
// reviewed).
func CheckSudoers() Step {
	return Step{Name: "sudoers (visudo --check)", Do: func(ctx context.Context, t Target) error {
		_, err := t.Run(ctx, "visudo", "--check", "--strict")
		return err
	}}
}
