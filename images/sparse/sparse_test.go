package sparse

import (
	"os"
	"path/filepath"
	"testing"
)

// A real sparse file on the test's file system: data written at scattered
// offsets must be covered by the reported ranges, and a file system that
// supports holes (ext4, tmpfs, xfs) must not report the holes between them.
func TestRanges(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(64 * mib)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := []int64{0, 10 * mib, 40*mib + 123, size - 1}
	for _, off := range data {
		if _, err := f.WriteAt([]byte{0xAA}, off); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		size int64
	}{{"whole", size}, {"cut", 20 * mib}, {"empty", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Ranges(f, tc.size)
			if err != nil {
				t.Fatal(err)
			}
			var covered int64
			for i, x := range r {
				if x[0] >= x[1] || x[1] > tc.size || (i > 0 && x[0] < r[i-1][1]) {
					t.Fatalf("range %d %v: empty, past the size or out of order in %v", i, x, r)
				}
				covered += x[1] - x[0]
			}
			for _, off := range data {
				if off >= tc.size {
					continue
				}
				in := false
				for _, x := range r {
					in = in || (off >= x[0] && off < x[1])
				}
				if !in {
					t.Errorf("data at %d not in any range %v", off, r)
				}
			}
			if tc.size == size && covered > size/2 {
				t.Errorf("ranges cover %d of %d bytes with 4 bytes of data: holes not skipped", covered, size)
			}
		})
	}
}
