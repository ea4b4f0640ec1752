// Package atomicfile is the project's one way to write a file durably: the
// data goes to a temporary file next to its final name, is fsynced, gets its
// owner and mode, and is renamed into place; the directory is then fsynced so
// the rename itself survives a crash. A reader, or a machine that lost power,
// sees the old file or the complete new one, never a part.
//
// google/renameio (v2) does the first half of this well but fits none of our
// cases whole: it does not fsync the directory after the rename (so a crash
// can forget the new name), it works on path names only (the provisioner
// writes inside an image root through *os.Root, which must not follow
// symlinks out of it), it cannot keep the directory sync for a group commit
// (the mail spool shares one directory fsync between sessions) or stage in a
// sibling directory (the spool's tmp/). So this small package is written on
// *os.Root, with those as options; a plain path is a root opened at its
// directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// File is a file being written under a temporary name. Write to it, then
// Commit; Cleanup (deferred) removes the temporary file if Commit was not
// reached or failed.
type File struct {
	*os.File
	root      *os.Root
	ownRoot   bool
	name, tmp string
	perm      fs.FileMode
	o         options
	done      bool
}

type options struct {
	tmp       string
	uid, gid  int
	chown     bool
	noDirSync bool
}

// Option changes how a file is written.
type Option func(*options)

// TempName stages the file under exactly this name (relative to the root;
// on the same file system), created exclusively, instead of a random name
// beside the final one. The spool stages in tmp/ so that what it finds
// there after a crash is known never to have been acknowledged.
func TempName(name string) Option { return func(o *options) { o.tmp = name } }

// Owner gives the file this owner before it is renamed into place (the mode
// is set after the owner, since chown clears set-id bits).
func Owner(uid, gid int) Option {
	return func(o *options) { o.uid, o.gid, o.chown = uid, gid, true }
}

// NoDirSync leaves the directory fsync to the caller, who must call SyncDir
// (or share one sync between several commits) before treating the file as
// durable.
func NoDirSync() Option { return func(o *options) { o.noDirSync = true } }

var seq atomic.Uint64

// Create starts writing path. The directory must exist.
func Create(path string, perm fs.FileMode, opts ...Option) (*File, error) {
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	f, err := CreateIn(root, filepath.Base(path), perm, opts...)
	if err != nil {
		root.Close()
		return nil, err
	}
	f.ownRoot = true
	return f, nil
}

// CreateIn starts writing name inside root; neither the file nor its
// temporary name can resolve outside root.
func CreateIn(root *os.Root, name string, perm fs.FileMode, opts ...Option) (*File, error) {
	f := &File{root: root, name: name, perm: perm}
	for _, opt := range opts {
		opt(&f.o)
	}
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	f.tmp = f.o.tmp
	if f.tmp == "" {
		// Pid, time and a counter: unique among concurrent writers, and
		// recognisable (".name.tmp-…") to whoever cleans up after a crash.
		f.tmp = filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".tmp-"+
			strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.FormatUint(seq.Add(1), 10))
	}
	var err error
	if f.File, err = root.OpenFile(f.tmp, flag, 0o600); err != nil {
		return nil, err
	}
	return f, nil
}

// TempPath is the temporary file's name, relative to the root.
func (f *File) TempPath() string { return f.tmp }

// Commit makes the file durable under its final name: owner, mode, fsync,
// close, rename, and (unless NoDirSync) fsync of the directory. After an
// error the temporary file is removed; the final name is untouched unless
// the rename itself succeeded and only the directory sync failed.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: commit of a finished file")
	}
	err := f.finish()
	f.done = true
	if err != nil {
		_ = f.root.Remove(f.tmp)
	} else if !f.o.noDirSync {
		err = syncIn(f.root, filepath.Dir(f.name))
	}
	if f.ownRoot {
		f.root.Close()
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.name, err)
	}
	return nil
}

func (f *File) finish() error {
	err := f.Sync()
	if err == nil && f.o.chown {
		err = f.Chown(f.o.uid, f.o.gid)
	}
	if err == nil {
		err = f.Chmod(f.perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = f.root.Rename(f.tmp, f.name)
	}
	return err
}

// Cleanup abandons an uncommitted file: it is closed and its temporary name
// removed. It does nothing after Commit, so it can always be deferred.
func (f *File) Cleanup() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	_ = f.root.Remove(f.tmp)
	if f.ownRoot {
		f.root.Close()
	}
}

// WriteFile writes data to path durably (see Create).
func WriteFile(path string, data []byte, perm fs.FileMode, opts ...Option) error {
	f, err := Create(path, perm, opts...)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return write(f, data)
}

// WriteFileIn writes data to name inside root durably (see CreateIn).
func WriteFileIn(root *os.Root, name string, data []byte, perm fs.FileMode, opts ...Option) error {
	f, err := CreateIn(root, name, perm, opts...)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return write(f, data)
}

func write(f *File, data []byte) error {
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.name, err)
	}
	return f.Commit()
}

// SyncDir fsyncs a directory so that renames into it are durable. Windows
// cannot open a directory for that; NTFS journals the rename itself.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func syncIn(root *os.Root, dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", filepath.Join(root.Name(), dir), err)
	}
	return nil
}
