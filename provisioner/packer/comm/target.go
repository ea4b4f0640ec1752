package comm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/ksmg-appliance/ksmg/provisioner"
)

// Target is a provisioner.Target over a Packer communicator: the machine at
// the other end (a root file system through Chroot, a VM over SSH) gets
// the same steps `ksmg build` runs on its root file system. Every command
// is an argv quoted for the remote POSIX shell, so no argument is ever
// interpreted by it. Files are uploaded to a private staging directory and
// then installed under a temporary name next to their destination, synced
// and renamed into place, so a reader sees the old file or the new one.
type Target struct {
	Comm packersdk.Communicator
	// Sudo runs every command with `sudo -n` (a VM whose SSH user is not
	// root but may use sudo without a password).
	Sudo bool

	mu      sync.Mutex
	staging string // private directory for uploads, made on first use
}

var _ provisioner.Target = (*Target)(nil)

// quote makes s one word for a POSIX shell.
func quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// command is argv as one shell command line.
func command(argv ...string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

// run runs a command line (already quoted) and returns its combined output.
func (t *Target) run(ctx context.Context, line string, privileged bool) ([]byte, error) {
	if privileged && t.Sudo {
		line = "sudo -n -- sh -c " + quote(line)
	}
	var out lockedBuffer
	cmd := &packersdk.RemoteCmd{Command: line, Stdout: &out, Stderr: &out}
	if err := t.Comm.Start(ctx, cmd); err != nil {
		return nil, err
	}
	done := make(chan int, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case status := <-done:
		if status != 0 {
			return out.Bytes(), fmt.Errorf("exit status %d: %s", status, bytes.TrimSpace(out.Bytes()))
		}
		return out.Bytes(), nil
	case <-ctx.Done():
		return out.Bytes(), ctx.Err()
	}
}

// lockedBuffer collects a command's stdout and stderr. Over Packer's RPC
// each stream is copied by its own goroutine; a shared bytes.Buffer would
// have two concurrent ReadFrom calls, the later of which truncates what
// the other appended. This one only has Write, under a lock.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// Run runs name with args on the target and returns its combined output.
func (t *Target) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := t.run(ctx, command(append([]string{name}, args...)...), true)
	if err != nil {
		return out, fmt.Errorf("run %s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}

// random is an unpredictable name part.
func random() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tmpName is a name next to p for staging a replacement.
func tmpName(p, what string) string {
	return path.Join(path.Dir(p), "."+path.Base(p)+"."+what+"-"+random())
}

func wrap(err *error, what string) {
	if *err != nil {
		*err = fmt.Errorf("%s: %w", what, *err)
	}
}

// octal is a mode as chmod and install take it.
func octal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

func owners(owner, group string) (string, string) {
	if owner == "" {
		owner = "root"
	}
	if group == "" {
		group = "root"
	}
	return owner, group
}

// stagingDir makes (once) a directory only the connecting user can read,
// where files are uploaded before they are installed.
func (t *Target) stagingDir(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.staging != "" {
		return t.staging, nil
	}
	out, err := t.run(ctx, command("mktemp", "-d", "/tmp/ksmg-provision.XXXXXXXXXX"), false)
	if err != nil {
		return "", fmt.Errorf("staging directory: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if !path.IsAbs(dir) || strings.ContainsAny(dir, "\n'") {
		return "", fmt.Errorf("staging directory: mktemp printed %q", out)
	}
	t.staging = dir
	return dir, nil
}

// Close removes the staging directory.
func (t *Target) Close(ctx context.Context) error {
	t.mu.Lock()
	dir := t.staging
	t.staging = ""
	t.mu.Unlock()
	if dir == "" {
		return nil
	}
	_, err := t.run(ctx, command("rm", "-rf", "--", dir), false)
	return err
}

// fileInfo describes the staged upload to the communicator: private until
// it is installed.
type fileInfo struct {
	name string
	size int64
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.size }
func (f fileInfo) Mode() fs.FileMode  { return 0o600 }
func (f fileInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (f fileInfo) IsDir() bool        { return false }
func (f fileInfo) Sys() any           { return nil }

// WriteFile installs data at p with mode, owner and group (names resolved
// on the target), atomically and durably.
func (t *Target) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode, owner, group string) (err error) {
	defer wrap(&err, "write "+p)
	if !path.IsAbs(p) {
		return fmt.Errorf("target path %q is not absolute", p)
	}
	p = path.Clean(p)
	dir, err := t.stagingDir(ctx)
	if err != nil {
		return err
	}
	staged := path.Join(dir, "upload-"+random())
	var fi os.FileInfo = fileInfo{name: path.Base(staged), size: int64(len(data))}
	if err := t.Comm.Upload(staged, bytes.NewReader(data), &fi); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	owner, group = owners(owner, group)
	tmp := tmpName(p, "tmp")
	line := "umask 022 && " + command("mkdir", "-p", "--", path.Dir(p)) +
		" && " + command("install", "-m", octal(mode), "-o", owner, "-g", group, "-T", "--", staged, tmp) +
		" && " + command("sync", "--", tmp) +
		" && " + command("mv", "-f", "-T", "--", tmp, p) +
		" && " + command("sync", "--", path.Dir(p)) +
		" || { rc=$?; " + command("rm", "-f", "--", tmp) + "; exit $rc; }"
	_, err = t.run(ctx, line, true)
	if _, rerr := t.run(ctx, command("rm", "-f", "--", staged), false); err == nil && rerr != nil {
		err = fmt.Errorf("remove staged upload: %w", rerr)
	}
	return err
}

// Mkdir creates p (missing parents root-owned 0755) and sets owner and
// mode on it even if it existed.
func (t *Target) Mkdir(ctx context.Context, p string, mode fs.FileMode, owner, group string) (err error) {
	defer wrap(&err, "mkdir "+p)
	if !path.IsAbs(p) {
		return fmt.Errorf("target path %q is not absolute", p)
	}
	owner, group = owners(owner, group)
	line := "umask 022 && " + command("mkdir", "-p", "--", p) +
		" && " + command("chown", "-h", "--", owner+":"+group, p) +
		" && " + command("chmod", "--", octal(mode), p)
	_, err = t.run(ctx, line, true)
	return err
}

// Symlink creates or replaces the symlink at p, atomically.
func (t *Target) Symlink(ctx context.Context, oldname, p string) (err error) {
	defer wrap(&err, "symlink "+p)
	if !path.IsAbs(p) {
		return fmt.Errorf("target path %q is not absolute", p)
	}
	tmp := tmpName(path.Clean(p), "link")
	line := "umask 022 && " + command("mkdir", "-p", "--", path.Dir(p)) +
		" && " + command("ln", "-s", "-n", "-T", "--", oldname, tmp) +
		" && " + command("mv", "-f", "-T", "--", tmp, p) +
		" || { rc=$?; " + command("rm", "-f", "--", tmp) + "; exit $rc; }"
	_, err = t.run(ctx, line, true)
	return err
}

// EnableUnit enables a systemd unit (offline inside a chroot, with a daemon
// reload on a running machine).
func (t *Target) EnableUnit(ctx context.Context, unit string) error {
	_, err := t.Run(ctx, "systemctl", "enable", "--", unit)
	return err
}

// DisableUnit removes a unit's enablement.
func (t *Target) DisableUnit(ctx context.Context, unit string) error {
	_, err := t.Run(ctx, "systemctl", "disable", "--", unit)
	return err
}
