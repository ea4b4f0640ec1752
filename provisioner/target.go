// Package provisioner holds the steps that put the ksmg payload into an
// appliance: our Debian package, accounts, data directories, unit
// enablement. Steps act on a Target, so the same code provisions a root
// file-system directory here (DirTarget) and, through the Packer plugin's
// communicator target (provisioner/packer/comm), a root file system inside
// `packer build` or a running VM another builder made, over SSH.
//
// Provisioning tools of the field (Ansible, Packer's shell provisioner)
// were considered; they would put shell scripts and a second language
// between the spec and the image, which the project rules out: steps are
// plain Go against a six-method interface.
package provisioner

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
)

// Target is the machine (or root directory) being provisioned. Paths are
// absolute paths inside the target; owner and group are names resolved on
// the target ("" means root).
type Target interface {
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode, owner, group string) error
	Mkdir(ctx context.Context, path string, mode fs.FileMode, owner, group string) error
	Symlink(ctx context.Context, oldname, path string) error
	// Run runs a command inside the target and returns its combined output.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	// EnableUnit and DisableUnit change systemd unit enablement offline.
	EnableUnit(ctx context.Context, unit string) error
	DisableUnit(ctx context.Context, unit string) error
}

// DirTarget is a root file system in a host directory. Commands run with
// chroot in a private mount and PID namespace that has its own /proc, so
// nothing stays mounted when they end.
type DirTarget struct {
	Root string
	Env  []string // extra environment for Run, e.g. SOURCE_DATE_EPOCH=...
}

// rel maps an absolute target path to a name for os.Root, which refuses
// to follow symlinks out of the root (Debian has absolute ones such as
// /var/run -> /run that would otherwise lead writes onto the host).
func rel(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("target path %q is not absolute", p)
	}
	r := strings.TrimPrefix(filepath.Clean(p), "/")
	if r == "" {
		r = "."
	}
	return r, nil
}

func (t *DirTarget) open(p string) (*os.Root, string, error) {
	r, err := rel(p)
	if err != nil {
		return nil, "", err
	}
	root, err := os.OpenRoot(t.Root)
	if err != nil {
		return nil, "", err
	}
	return root, r, nil
}

// WriteFile writes data durably (atomicfile): owner and mode are set before
// the file appears under its name.
func (t *DirTarget) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode, owner, group string) (err error) {
	defer wrap(&err, "write "+p)
	uid, gid, err := t.ids(owner, group)
	if err != nil {
		return err
	}
	root, r, err := t.open(p)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(filepath.Dir(r), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFileIn(root, r, data, mode, atomicfile.Owner(uid, gid))
}

// Mkdir creates the directory (and missing parents, root-owned 0755) and
// sets owner and mode on the last element even if it existed.
func (t *DirTarget) Mkdir(ctx context.Context, p string, mode fs.FileMode, owner, group string) (err error) {
	defer wrap(&err, "mkdir "+p)
	uid, gid, err := t.ids(owner, group)
	if err != nil {
		return err
	}
	root, r, err := t.open(p)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(r, 0o755); err != nil {
		return err
	}
	if err := root.Lchown(r, uid, gid); err != nil {
		return err
	}
	return root.Chmod(r, mode)
}

// Symlink creates or replaces the symlink at p.
func (t *DirTarget) Symlink(ctx context.Context, oldname, p string) (err error) {
	defer wrap(&err, "symlink "+p)
	root, r, err := t.open(p)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.MkdirAll(filepath.Dir(r), 0o755); err != nil {
		return err
	}
	tmp := r + ".tmp-link"
	_ = root.Remove(tmp)
	if err := root.Symlink(oldname, tmp); err != nil {
		return err
	}
	if err := root.Rename(tmp, r); err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return nil
}

func wrap(err *error, what string) {
	if *err != nil {
		*err = fmt.Errorf("%s: %w", what, *err)
	}
}

// ChrootCommand is name run inside the root directory: chroot in a private
// mount and PID namespace that has its own /proc (unshare --mount-proc), so
// nothing stays mounted and no process outlives it. The argv goes to the
// program as it is: no shell on the host side ever sees it. env is added to
// a fixed environment (PATH, LC_ALL, DEBIAN_FRONTEND, HOME); the host's is
// not inherited.
func ChrootCommand(ctx context.Context, root string, env []string, name string, args ...string) *exec.Cmd {
	// --kill-child: if unshare is killed (a cancelled context), so is
	// the namespace's first process, and with it every process inside.
	argv := append([]string{"--mount", "--pid", "--fork", "--kill-child", "--mount-proc=" + filepath.Join(root, "proc"),
		"chroot", root, name}, args...)
	cmd := exec.CommandContext(ctx, "unshare", argv...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "HOME=/root"}, env...)
	return cmd
}

// Run runs name inside the root.
func (t *DirTarget) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := ChrootCommand(ctx, t.Root, t.Env, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("run %s %s in %s: %w: %s", name, strings.Join(args, " "), t.Root, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// EnableUnit uses the host's systemctl on the root: enablement is only
// symlinks from [Install] sections, and systemctl --root needs no running
// systemd (inside a chroot it would look for one).
func (t *DirTarget) EnableUnit(ctx context.Context, unit string) error {
	return t.systemctl(ctx, "enable", unit)
}

// DisableUnit removes a unit's enablement symlinks.
func (t *DirTarget) DisableUnit(ctx context.Context, unit string) error {
	return t.systemctl(ctx, "disable", unit)
}

func (t *DirTarget) systemctl(ctx context.Context, verb, unit string) error {
	out, err := exec.CommandContext(ctx, "systemctl", "--root="+t.Root, "--no-reload", verb, unit).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s %s: %w: %s", verb, unit, err, bytes.TrimSpace(out))
	}
	return nil
}

// ids resolves user and group names in the root's /etc/passwd and /etc/group.
func (t *DirTarget) ids(owner, group string) (int, int, error) {
	if owner == "" {
		owner = "root"
	}
	if group == "" {
		group = "root"
	}
	uid, err := lookup(filepath.Join(t.Root, "etc/passwd"), owner, 2)
	if err != nil {
		return 0, 0, fmt.Errorf("user %q: %w", owner, err)
	}
	gid, err := lookup(filepath.Join(t.Root, "etc/group"), group, 2)
	if err != nil {
		return 0, 0, fmt.Errorf("group %q: %w", group, err)
	}
	return uid, gid, nil
}

func lookup(file, name string, field int) (int, error) {
	if name == "root" {
		return 0, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), ":")
		if len(parts) > field && parts[0] == name {
			return strconv.Atoi(parts[field])
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("not defined in " + file)
}
