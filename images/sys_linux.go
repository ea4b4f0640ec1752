//go:build linux

package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// olderThanCaches are configuration files that programs compare with the
// caches built from them: clampTimes dates them a second before the rest
// of the tree. With equal times, console-setup.service takes its cache
// for stale ("cached_setup_terminal.sh -nt /etc/default/keyboard") and
// rebuilds it on every boot until it writes one: setupcon --save, about
// 20 s of ckbcomp (Perl) under TCG on first boot's critical path.
var olderThanCaches = []string{"etc/default/keyboard", "etc/default/console-setup"}

// clampTimes sets every file's access and modification time to the source
// date (mkfs.ext4 -d and mcopy copy them into the images), except the
// files of olderThanCaches, which get one second less.
func clampTimes(root string, sde int64) error {
	ts := []unix.Timespec{{Sec: sde}, {Sec: sde}}
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set time of %s: %w", p, err)
		}
		return nil
	}); err != nil {
		return err
	}
	older := []unix.Timespec{{Sec: sde - 1}, {Sec: sde - 1}}
	for _, rel := range olderThanCaches {
		p := filepath.Join(root, rel)
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, older, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set time of %s: %w", p, err)
		}
	}
	return nil
}

// removeWork deletes the work directory. A failed mmdebstrap can leave
// mounts (/proc, /dev, ...) in the root file system; they are detached
// first so that the removal never reaches into what they show.
func removeWork(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- { // mountinfo lists parents first
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			return fmt.Errorf("%s is still mounted (%w); not removing %s", mounts[i], err, dir)
		}
	}
	return os.RemoveAll(dir)
}
