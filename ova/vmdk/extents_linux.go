package vmdk

import (
	"errors"
	"os"
	"syscall"
)

const (
	seekData = 3 // SEEK_DATA
	seekHole = 4 // SEEK_HOLE
)

// dataRanges lists the [start, end) byte ranges of f that hold data, using
// SEEK_DATA/SEEK_HOLE so the holes of a sparse image are never read. A file
// system without support yields the whole file as one range.
func dataRanges(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	for off := int64(0); off < size; {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		}
		if errors.Is(err, syscall.EINVAL) && off == 0 {
			return [][2]int64{{0, size}}, nil
		}
		if err != nil {
			return nil, err
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]int64{start, min(end, size)})
		off = end
	}
	return out, nil
}
