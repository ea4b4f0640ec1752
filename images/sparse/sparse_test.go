package sparse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
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

// WriteTo of a sparse file gives the same bytes, and so the same SHA-256,
// as reading it whole; a size past the end is zeros.
func TestWriteTo(t *testing.T) {
	const mib = 1 << 20
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(24 * mib); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{1, 5*mib + 7, 24*mib - 1} {
		if _, err := f.WriteAt([]byte("ksmg"[:1+off%3]), off); err != nil {
			t.Fatal(err)
		}
	}
	whole, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{24 * mib, 6 * mib, 30 * mib} {
		var got bytes.Buffer
		n, err := WriteTo(context.Background(), &got, f, size)
		if err != nil || n != size {
			t.Fatalf("size %d: wrote %d, %v", size, n, err)
		}
		want := append([]byte(nil), whole[:min(size, int64(len(whole)))]...)
		want = append(want, make([]byte, max(0, size-int64(len(whole))))...)
		if sha256.Sum256(got.Bytes()) != sha256.Sum256(want) {
			t.Errorf("size %d: content differs from a plain read", size)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteTo(ctx, io.Discard, f, 24*mib); err == nil {
		t.Error("cancelled WriteTo succeeded")
	}
}
