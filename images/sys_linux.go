//go:build linux

package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// clampTimes sets every file's access and modification time to the source
// date (mkfs.ext4 -d and mcopy copy them into the images).
func clampTimes(root string, sde int64) error {
	ts := []unix.Timespec{{Sec: sde}, {Sec: sde}}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set time of %s: %w", p, err)
		}
		return nil
	})
}

// writeSparseAt copies n bytes of src to dst at offset, leaving holes where
// src has holes or all-zero blocks (dst is assumed zero there).
func writeSparseAt(ctx context.Context, dst *os.File, src *os.File, offset, n int64) error {
	const block = 1 << 20
	buf := make([]byte, block)
	zero := make([]byte, block)
	var pos int64
	fd := int(src.Fd())
	for pos < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			data = pos // no SEEK_DATA support: read everything
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > n {
			hole = n
		}
		for pos = data; pos < hole; {
			m := int64(block)
			if hole-pos < m {
				m = hole - pos
			}
			if _, err := src.ReadAt(buf[:m], pos); err != nil && err != io.EOF {
				return err
			}
			if !bytes.Equal(buf[:m], zero[:m]) {
				if _, err := dst.WriteAt(buf[:m], offset+pos); err != nil {
					return err
				}
			}
			pos += m
		}
	}
	return nil
}
