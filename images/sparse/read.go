package sparse

import (
	"context"
	"io"
	"os"
)

// WriteTo feeds the first size bytes of f to w, taking holes from a zero
// buffer instead of reading them (the kernel would zero-fill and copy every
// page of a 100 GiB sparse disk). Hashing a sparse disk costs the hash of
// its size, but the reads only follow the data. It returns the bytes fed.
func WriteTo(ctx context.Context, w io.Writer, f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4<<20)
	zero := make([]byte, 4<<20)
	var n int64
	write := func(p []byte) error {
		if _, err := w.Write(p); err != nil {
			return err
		}
		n += int64(len(p))
		return nil
	}
	zeros := func(count int64) error {
		for count > 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			m := min(count, int64(len(zero)))
			if err := write(zero[:m]); err != nil {
				return err
			}
			count -= m
		}
		return nil
	}
	err := Extents(f, size, func(start, end int64) error {
		if err := zeros(start - n); err != nil {
			return err
		}
		for off := start; off < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			m := min(end-off, int64(len(buf)))
			if _, err := f.ReadAt(buf[:m], off); err != nil {
				return err
			}
			if err := write(buf[:m]); err != nil {
				return err
			}
			off += m
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, zeros(size - n)
}
