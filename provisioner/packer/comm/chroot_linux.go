package comm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"golang.org/x/sys/unix"

	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
	"github.com/ksmg-appliance/ksmg/provisioner"
)

// Chroot is a Packer communicator into a root file system directory on this
// host; the ksmg-rootfs builder hands it to Packer's provisioners.
//
//   - Start runs the command string with the root's own /bin/sh -c, inside
//     the root (provisioner.ChrootCommand: argv through unshare and chroot,
//     a private mount and PID namespace): `$(…)` and backticks expand inside
//     the root, never on the host, and no process outlives the command.
//   - Paths resolve as they would for a process chrooted there (openat2 with
//     RESOLVE_IN_ROOT): an absolute symlink such as /var/run -> /run leads to
//     <root>/run, never to the host's /run.
//   - Upload writes through internal/atomicfile (temp, fsync, rename): the
//     new file gets the mode Packer passes (a script's 0755; 0644 without
//     one) and, when it replaces a file, that file's owner and group. The
//     last path element is replaced, not followed, if it is a symlink.
type Chroot struct {
	Root string
	Env  []string // added to the commands' environment, e.g. SOURCE_DATE_EPOCH=…
}

var _ packersdk.Communicator = (*Chroot)(nil)

// modeBits are the parts of a mode an upload keeps.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Start runs cmd.Command inside the root and returns once it has started;
// cmd.Wait gives its exit status.
func (c *Chroot) Start(ctx context.Context, cmd *packersdk.RemoteCmd) error {
	x := provisioner.ChrootCommand(ctx, c.Root, c.Env, "/bin/sh", "-c", cmd.Command)
	x.Stdin, x.Stdout, x.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
	x.WaitDelay = 10 * time.Second
	if err := x.Start(); err != nil {
		return fmt.Errorf("chroot %s: %w", c.Root, err)
	}
	go func() {
		status := 0
		if err := x.Wait(); err != nil {
			status = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				status = ee.ExitCode()
			}
		}
		cmd.SetExited(status)
	}()
	return nil
}

// Upload writes the reader's data to dst inside the root. The directory
// must exist (as with Packer's SSH communicator).
func (c *Chroot) Upload(dst string, r io.Reader, fi *os.FileInfo) (err error) {
	defer wrap(&err, "chroot: upload to "+dst)
	var mode fs.FileMode = 0o644
	if fi != nil && *fi != nil {
		mode = (*fi).Mode() & modeBits
	}
	return c.writeFile(dst, r, mode, fi != nil && *fi != nil)
}

// writeFile replaces p atomically; modeSet says whether mode was given (if
// not, a replaced file keeps its own).
func (c *Chroot) writeFile(p string, r io.Reader, mode fs.FileMode, modeSet bool) error {
	root, name, err := c.parent(p)
	if err != nil {
		return err
	}
	defer root.Close()
	var opts []atomicfile.Option
	if st, err := root.Lstat(name); err == nil {
		switch {
		case st.IsDir():
			return fmt.Errorf("%s is a directory", p)
		case st.Mode().IsRegular():
			if !modeSet {
				mode = st.Mode() & modeBits
			}
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				opts = append(opts, atomicfile.Owner(int(sys.Uid), int(sys.Gid)))
			}
		}
	}
	f, err := atomicfile.CreateIn(root, name, mode, opts...)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := io.Copy(f, r); err != nil {
		return err
	}
	return f.Commit()
}

// UploadDir copies the host directory src into dst inside the root, like
// rsync: "src/" copies what is in src, "src" the directory itself. Files
// and directories keep their modes, symlinks are copied as symlinks; paths
// matching an exclude pattern (filepath.Match on the path relative to src,
// or on its base name) are skipped.
func (c *Chroot) UploadDir(dst, src string, exclude []string) (err error) {
	defer wrap(&err, "chroot: upload directory "+src+" to "+dst)
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", src)
	}
	target := dst
	if !strings.HasSuffix(src, "/") {
		target = path.Join(dst, filepath.Base(src))
	}
	if err := c.mkdirAll(target, st.Mode()&modeBits); err != nil {
		return err
	}
	from, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer from.Close()
	return copyTree(from, exclude, treeSink{
		dir:     func(rel string, mode fs.FileMode) error { return c.mkdirAll(path.Join(target, rel), mode) },
		symlink: func(rel, link string) error { return c.symlink(link, path.Join(target, rel)) },
		file: func(rel string, r io.Reader, mode fs.FileMode) error {
			return c.writeFile(path.Join(target, rel), r, mode, true)
		},
	})
}

// treeSink is where copyTree puts what it finds; rel is slash-separated.
type treeSink struct {
	dir     func(rel string, mode fs.FileMode) error
	symlink func(rel, target string) error
	file    func(rel string, r io.Reader, mode fs.FileMode) error
}

// copyTree hands every directory, symlink (never followed) and regular
// file below src that no exclude pattern matches to the sink, parents
// first, with its mode.
func copyTree(src *os.Root, exclude []string, to treeSink) error {
	return fs.WalkDir(src.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "." {
			return err
		}
		if excluded(p, exclude) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode() & modeBits
		switch {
		case d.IsDir():
			return to.dir(p, mode)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := src.Readlink(p)
			if err != nil {
				return err
			}
			return to.symlink(p, link)
		case d.Type().IsRegular():
			f, err := src.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return to.file(p, f, mode)
		default:
			return nil // devices, sockets, fifos: nothing to copy
		}
	})
}

func excluded(rel string, patterns []string) bool {
	for _, pat := range patterns {
		if ok, _ := filepath.Match(pat, rel); ok {
			return true
		}
		if ok, _ := filepath.Match(pat, filepath.Base(rel)); ok {
			return true
		}
	}
	return false
}

// Download copies the file src inside the root to w.
func (c *Chroot) Download(src string, w io.Writer) (err error) {
	defer wrap(&err, "chroot: download "+src)
	f, err := c.open(src, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	_, err = io.Copy(w, f)
	return err
}

// DownloadDir copies the directory src inside the root into the host
// directory dst (created if missing), keeping modes; symlinks are copied as
// symlinks, never followed.
func (c *Chroot) DownloadDir(src, dst string, exclude []string) (err error) {
	defer wrap(&err, "chroot: download directory "+src+" to "+dst)
	root, err := c.openRoot(src)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return copyTree(root, exclude, treeSink{
		dir: func(rel string, mode fs.FileMode) error {
			out := filepath.Join(dst, filepath.FromSlash(rel))
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			return os.Chmod(out, mode)
		},
		symlink: func(rel, link string) error {
			out := filepath.Join(dst, filepath.FromSlash(rel))
			_ = os.Remove(out)
			return os.Symlink(link, out)
		},
		file: func(rel string, r io.Reader, mode fs.FileMode) error {
			f, err := atomicfile.Create(filepath.Join(dst, filepath.FromSlash(rel)), mode)
			if err != nil {
				return err
			}
			defer f.Cleanup()
			if _, err := io.Copy(f, r); err != nil {
				return err
			}
			return f.Commit()
		},
	})
}

// split returns the directory and base name of an absolute path inside the
// root (relative paths are relative to its /).
func split(p string) (string, string, error) {
	clean := path.Clean("/" + p)
	if clean == "/" {
		return "", "", errors.New("the root itself is not a file")
	}
	return path.Dir(clean), path.Base(clean), nil
}

// open opens p as a process chrooted in c.Root would: every symlink,
// absolute ones included, resolves inside the root.
func (c *Chroot) open(p string, flags int) (*os.File, error) {
	rootfd, err := unix.Open(c.Root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: c.Root, Err: err}
	}
	defer unix.Close(rootfd)
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(rootfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p + " (in " + c.Root + ")", Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(c.Root, rel)), nil
}

// parent opens the directory of p inside the root and returns p's base name.
func (c *Chroot) parent(p string) (*os.Root, string, error) {
	dir, name, err := split(p)
	if err != nil {
		return nil, "", err
	}
	root, err := c.openRoot(dir)
	return root, name, err
}

// openRoot opens the directory dir inside the root as an *os.Root, so that
// what is then done in it (atomicfile, walks) cannot leave it.
func (c *Chroot) openRoot(dir string) (*os.Root, error) {
	f, err := c.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The descriptor's magic link names exactly the directory resolved
	// above; no path is looked up again.
	return os.OpenRoot("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
}

// mkdirAll creates p and its missing parents inside the root (parents 0755,
// p itself with mode); existing directories are left as they are.
func (c *Chroot) mkdirAll(p string, mode fs.FileMode) error {
	if f, err := c.open(p, unix.O_PATH|unix.O_DIRECTORY); err == nil {
		return f.Close()
	}
	dir, name, err := split(p)
	if err != nil {
		return err
	}
	if err := c.mkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := c.openRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Mkdir(name, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return root.Chmod(name, mode) // Mkdir's mode went through the umask
}

// symlink creates or replaces the symlink p -> target inside the root.
func (c *Chroot) symlink(target, p string) error {
	root, name, err := c.parent(p)
	if err != nil {
		return err
	}
	defer root.Close()
	tmp := "." + name + ".tmp-link-" + strconv.Itoa(os.Getpid())
	_ = root.Remove(tmp)
	if err := root.Symlink(target, tmp); err != nil {
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		_ = root.Remove(tmp)
		return err
	}
	return nil
}
