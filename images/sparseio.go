package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/ksmg-appliance/ksmg/images/sparse"
)

// writeSparseAt copies n bytes of src to dst at offset, leaving holes where
// src has holes or all-zero blocks (dst is assumed zero there).
func writeSparseAt(ctx context.Context, dst *os.File, src *os.File, offset, n int64) error {
	const block = 1 << 20
	buf := make([]byte, block)
	zero := make([]byte, block)
	return sparse.Extents(src, n, func(start, end int64) error {
		for pos := start; pos < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			m := min(end-pos, block)
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
		return nil
	})
}

// sparseFingerprint hashes a file's size, the offsets and lengths of its
// data extents and their bytes; holes read as zeros, so two files with the
// same fingerprint have the same content (the converse need not hold: that
// only costs a cache miss). Reading only the data (hundreds of MiB) instead
// of the whole 100 GiB disk makes the fingerprint a cheap key for memoising
// the disk's full SHA-256 between identical builds.
func sparseFingerprint(ctx context.Context, f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "ksmg-sparse-v1 %d\n", st.Size())
	buf := make([]byte, 4<<20)
	err = sparse.Extents(f, st.Size(), func(start, end int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(h, "extent %d %d\n", start, end-start)
		_, err := io.CopyBuffer(h, io.NewSectionReader(f, start, end-start), buf)
		return err
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
