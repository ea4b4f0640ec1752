//go:build linux

package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
			return fmt.Errorf("%s is still mounted (%v); not removing %s", mounts[i], err, dir)
		}
	}
	return os.RemoveAll(dir)
}

// sparseFingerprint hashes a file's size, the offsets and lengths of its
// data extents and their bytes; holes read as zeros, so two files with the
// same fingerprint have the same content. Reading only the data (hundreds
// of MiB) instead of the whole 100 GiB disk makes the fingerprint a cheap
// key for memoising the disk's full SHA-256 between identical builds.
func sparseFingerprint(ctx context.Context, f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "ksmg-sparse-v1 %d\n", st.Size())
	buf := make([]byte, 4<<20)
	fd := int(f.Fd())
	for pos := int64(0); pos < st.Size(); {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return "", err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "extent %d %d\n", data, hole-data)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, data, hole-data), buf); err != nil {
			return "", err
		}
		pos = hole
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashSparse feeds size bytes of f to w, taking holes from a zero buffer
// instead of reading them (the kernel would zero-fill and copy every page
// of a 100 GiB sparse disk).
func hashSparse(ctx context.Context, w io.Writer, f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4<<20)
	zero := make([]byte, 4<<20)
	fd := int(f.Fd())
	var n int64
	zeros := func(count int64) error {
		for count > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			m := min(count, int64(len(zero)))
			w.Write(zero[:m])
			count -= m
			n += m
		}
		return nil
	}
	for pos := int64(0); pos < size; {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = size // the rest is a hole
		} else if err != nil {
			return n, err
		}
		if err := zeros(data - pos); err != nil {
			return n, err
		}
		if data >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return n, err
		}
		hole = min(hole, size)
		for off := data; off < hole; {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			m := min(hole-off, int64(len(buf)))
			if _, err := f.ReadAt(buf[:m], off); err != nil {
				return n, err
			}
			w.Write(buf[:m])
			off += m
			n += m
		}
		pos = hole
	}
	return n, nil
}
