package status

import (
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// varSizes: the file system's size (statfs), and through
// /sys/dev/block/MAJ:MIN the partition it is on and that partition's disk.
func varSizes(path string) (fs, part, disk int64) {
	var sfs unix.Statfs_t
	if unix.Statfs(path, &sfs) == nil {
		fs = int64(sfs.Blocks) * sfs.Frsize
	}
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return fs, 0, 0
	}
	dev, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		return fs, 0, 0
	}
	return fs, blockBytes(dev), blockBytes(filepath.Dir(dev))
}

// blockBytes reads a /sys/class/block size file (512-byte sectors).
func blockBytes(dir string) int64 {
	n, err := strconv.ParseInt(readTrim(filepath.Join(dir, "size")), 10, 64)
	if err != nil {
		return 0
	}
	return n * 512
}
