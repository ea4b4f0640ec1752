package apply

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// change is one path to switch into place. Exactly one of data (a file),
// link (a symlink), dir (a directory) or remove is meant.
type change struct {
	path     string // absolute, under the root
	data     []byte
	dataFn   func() ([]byte, error) // data made at staging time (fileFunc)
	link     string
	dir      bool
	remove   bool
	mode     fs.FileMode
	uid, gid int

	tmp    string  // staged file or link
	before *backup // state before commit; nil until taken
	done   bool
}

type backup struct {
	exists   bool
	isLink   bool
	isDir    bool
	link     string
	data     []byte
	mode     fs.FileMode
	uid, gid int
}

func takeBackup(path string) (*backup, error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &backup{}, nil
	}
	if err != nil {
		return nil, err
	}
	b := &backup{exists: true, mode: st.Mode().Perm()}
	b.uid, b.gid = owner(st)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		b.isLink = true
		b.link, err = os.Readlink(path)
	case st.IsDir():
		b.isDir = true
	case st.Mode().IsRegular():
		b.data, err = os.ReadFile(path)
	default:
		err = fmt.Errorf("%s is neither a file, a directory nor a symlink", path)
	}
	return b, err
}

// tx switches a set of changes into place all or nothing: every new file
// is staged under a temporary name in its target directory and fsynced
// first; only then are they renamed over the targets. If a rename fails,
// the targets already switched are restored from their backups.
type tx struct {
	changes []*change
}

func (t *tx) file(path string, data []byte, mode fs.FileMode, uid, gid int) {
	t.changes = append(t.changes, &change{path: path, data: data, mode: mode, uid: uid, gid: gid})
}

// fileFunc is file with data that fn makes when the file is staged, after
// every other file (it may wait for work done meanwhile, such as a password
// hash); an error from fn fails the commit before anything is switched.
func (t *tx) fileFunc(path string, fn func() ([]byte, error), mode fs.FileMode, uid, gid int) {
	t.changes = append(t.changes, &change{path: path, dataFn: fn, mode: mode, uid: uid, gid: gid})
}

func (t *tx) symlink(path, target string) {
	t.changes = append(t.changes, &change{path: path, link: target})
}

func (t *tx) mkdir(path string, mode fs.FileMode, uid, gid int) {
	for _, c := range t.changes {
		if c.dir && c.path == path {
			return // queued already
		}
	}
	t.changes = append(t.changes, &change{path: path, dir: true, mode: mode, uid: uid, gid: gid})
}

func (t *tx) remove(path string) {
	t.changes = append(t.changes, &change{path: path, remove: true})
}

// commit stages, switches and on failure rolls back. It returns the error
// of the first failing step, joined with any rollback failure.
func (t *tx) commit() (err error) {
	defer t.cleanup()
	for _, c := range t.changes {
		if c.before, err = takeBackup(c.path); err != nil {
			return fmt.Errorf("inspect %s: %w", c.path, err)
		}
	}
	fail := func(err error) error {
		if rbErr := t.rollback(); rbErr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return fmt.Errorf("%w (all changes rolled back)", err)
	}
	// Missing directories first: files are staged inside them.
	for _, c := range t.changes {
		if c.dir {
			if err := c.switchIn(); err != nil {
				return fail(fmt.Errorf("create directory %s: %w", c.path, err))
			}
			c.done = true
		}
	}
	// Files whose data is made at staging time come last.
	for _, late := range []bool{false, true} {
		for _, c := range t.changes {
			if (c.dataFn != nil) != late {
				continue
			}
			if err := c.stage(); err != nil {
				return fail(fmt.Errorf("stage %s: %w", c.path, err))
			}
		}
	}
	for _, c := range t.changes {
		if c.dir {
			continue
		}
		if err := c.switchIn(); err != nil {
			return fail(fmt.Errorf("switch %s into place: %w", c.path, err))
		}
		c.done = true
	}
	syncDirs(t.changes)
	return nil
}

func (c *change) stage() error {
	if c.remove || c.dir {
		return nil
	}
	if c.dataFn != nil {
		data, err := c.dataFn()
		if err != nil {
			return err
		}
		c.data = data
	}
	dir := filepath.Dir(c.path)
	if c.link != "" {
		c.tmp = filepath.Join(dir, "."+filepath.Base(c.path)+".ksmg-new")
		_ = os.Remove(c.tmp)
		return os.Symlink(c.link, c.tmp)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(c.path)+".ksmg-*")
	if err != nil {
		return err
	}
	c.tmp = f.Name()
	if _, err := f.Write(c.data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(c.mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(c.uid, c.gid); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (c *change) switchIn() error {
	switch {
	case c.remove:
		if !c.before.exists {
			return nil
		}
		return os.Remove(c.path)
	case c.dir:
		if c.before.exists {
			if !c.before.isDir {
				return fmt.Errorf("exists and is not a directory")
			}
			return nil
		}
		if err := os.Mkdir(c.path, c.mode); err != nil {
			return err
		}
		if err := os.Chmod(c.path, c.mode); err != nil { // umask-proof
			return err
		}
		return os.Chown(c.path, c.uid, c.gid)
	default:
		return os.Rename(c.tmp, c.path)
	}
}

// rollback restores, newest first, every change already switched.
func (t *tx) rollback() error {
	var errs []error
	for i := len(t.changes) - 1; i >= 0; i-- {
		c := t.changes[i]
		if !c.done {
			continue
		}
		if err := restore(c.path, c.before); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", c.path, err))
		}
	}
	return errors.Join(errs...)
}

func restore(path string, b *backup) error {
	if !b.exists {
		return os.RemoveAll(path)
	}
	if b.isDir {
		return nil // directories are only ever created, never replaced
	}
	tmp := path + ".ksmg-restore"
	_ = os.Remove(tmp)
	if b.isLink {
		if err := os.Symlink(b.link, tmp); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	if err := os.WriteFile(tmp, b.data, b.mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, b.mode); err != nil {
		return err
	}
	if err := os.Chown(tmp, b.uid, b.gid); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (t *tx) cleanup() {
	for _, c := range t.changes {
		if c.tmp != "" {
			_ = os.Remove(c.tmp) // gone already after a successful rename
		}
	}
}

func syncDirs(changes []*change) {
	for _, d := range dirsToSync(changes) {
		if f, err := os.Open(d); err == nil {
			_ = f.Sync()
			f.Close()
		}
	}
}

// dirsToSync are the directories whose entries commit changed: the parent
// of each file switched in or removed and of each directory created. A
// directory that already existed changed nothing in its parent (opening
// those parents, /, /var and /var/lib, was denied by first boot's AppArmor
// profile in the booted image, and synced nothing).
func dirsToSync(changes []*change) []string {
	var dirs []string
	for _, c := range changes {
		if !c.done || (c.dir && c.before.exists) || (c.remove && !c.before.exists) {
			continue
		}
		if d := filepath.Dir(c.path); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// changed reports whether committing switched any of paths to something
// other than what was there before (content, link target, existence).
// Only valid after commit; paths tx did not touch are unchanged.
func (t *tx) changed(paths ...string) bool {
	for _, p := range paths {
		for _, c := range t.changes {
			if c.path == p && c.before != nil && c.differs() {
				return true
			}
		}
	}
	return false
}

func (c *change) differs() bool {
	b := c.before
	switch {
	case c.remove:
		return b.exists
	case c.dir:
		return !b.exists
	case c.link != "":
		return !b.isLink || b.link != c.link
	default:
		return !b.exists || b.isLink || b.isDir || !bytes.Equal(b.data, c.data)
	}
}

// hadContent reports whether path existed before the commit with substr
// in it.
func (t *tx) hadContent(path, substr string) bool {
	for _, c := range t.changes {
		if c.path == path && c.before != nil && c.before.exists {
			return bytes.Contains(c.before.data, []byte(substr))
		}
	}
	return false
}
