package sparse

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Extents calls fn, in order, for each [start, end) range of f below size
// that may hold data, skipping holes with SEEK_DATA/SEEK_HOLE. A file system
// without them reports the whole file as one range. It uses lseek on f's
// descriptor, so callers must read with ReadAt (or seek afterwards).
func Extents(f *os.File, size int64, fn func(start, end int64) error) error {
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
			return fmt.Errorf("%s: seek data from %d: %w", f.Name(), off, err)
		}
		if start >= size {
			return nil
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("%s: seek hole from %d: %w", f.Name(), start, err)
		}
		end = min(end, size)
		if err := fn(start, end); err != nil {
			return err
		}
		off = end
	}
	return nil
}
