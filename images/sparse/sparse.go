// Package sparse walks the data ranges of sparse files. The appliance disk is
// a 100 GiB file that is almost all holes; every reader of it (the image
// build's copy and hash, the VMDK and VHDX writers) reads only what
// SEEK_DATA/SEEK_HOLE report, so its cost follows the data, not the size.
package sparse

import "os"

// Ranges returns the [start, end) ranges of f below size that may hold data,
// in order. See Extents.
func Ranges(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	err := Extents(f, size, func(start, end int64) error {
		out = append(out, [2]int64{start, end})
		return nil
	})
	return out, err
}
