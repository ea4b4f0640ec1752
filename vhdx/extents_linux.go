package vhdx

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// dataExtents calls fn, in order, for each [start, end) range of f below
// size that may hold data, skipping holes with SEEK_DATA/SEEK_HOLE. A file
// system without them reports the whole file as one range.
func dataExtents(f *os.File, size int64, fn func(start, end int64) error) error {
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole after off
		}
		if err != nil {
			if off == 0 && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)) {
				return fn(0, size)
			}
			return fmt.Errorf("seek data from %d: %w", off, err)
		}
		if start >= size {
			return nil
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole from %d: %w", start, err)
		}
		end = min(end, size)
		if err := fn(start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}

// startWriteback asks the kernel to begin writing [off, off+n) of f to disk
// now, without waiting, so the final fsync finds little left to do.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
