//go:build cgo && linux

package vmdk

/*
#cgo LDFLAGS: -ldeflate
#include <stdlib.h>
#include <libdeflate.h>
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Encoder names the deflate implementation in use (for logs and benchmarks).
const Encoder = "libdeflate"

// maxLevel is libdeflate's highest level.
const maxLevel = 12

// compressor wraps one libdeflate compressor; one per worker goroutine.
type compressor struct {
	c *C.struct_libdeflate_compressor
}

func newCompressor(level int) (*compressor, error) {
	c := C.libdeflate_alloc_compressor(C.int(level))
	if c == nil {
		return nil, fmt.Errorf("libdeflate: cannot allocate a level %d compressor", level)
	}
	return &compressor{c}, nil
}

// appendZlib appends src as one zlib stream to dst.
func (z *compressor) appendZlib(dst, src []byte) ([]byte, error) {
	bound := int(C.libdeflate_zlib_compress_bound(z.c, C.size_t(len(src))))
	n := len(dst)
	if cap(dst)-n < bound {
		dst = append(dst[:cap(dst)], make([]byte, n+bound-cap(dst))...)
	}
	dst = dst[:n+bound]
	got := C.libdeflate_zlib_compress(z.c, unsafe.Pointer(&src[0]), C.size_t(len(src)),
		unsafe.Pointer(&dst[n]), C.size_t(bound))
	if got == 0 {
		return nil, fmt.Errorf("libdeflate: %d bytes did not fit the %d-byte bound", len(src), bound)
	}
	return dst[:n+int(got)], nil
}

func (z *compressor) close() {
	if z.c != nil {
		C.libdeflate_free_compressor(z.c)
		z.c = nil
	}
}
