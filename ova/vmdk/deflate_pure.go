//go:build !cgo || !linux

package vmdk

import (
	"bytes"

	"github.com/klauspost/compress/zlib"
)

// Encoder names the deflate implementation in use (for logs and benchmarks).
// Without cgo the pure-Go klauspost/compress encoder is used: correct and
// parallel, but its output is a few percent larger than zlib's.
const Encoder = "klauspost/compress"

const maxLevel = 9

type compressor struct {
	zw  *zlib.Writer
	buf bytes.Buffer
}

func newCompressor(level int) (*compressor, error) {
	c := &compressor{}
	zw, err := zlib.NewWriterLevel(&c.buf, min(level, maxLevel))
	if err != nil {
		return nil, err
	}
	c.zw = zw
	return c, nil
}

func (z *compressor) appendZlib(dst, src []byte) ([]byte, error) {
	z.buf.Reset()
	z.zw.Reset(&z.buf)
	if _, err := z.zw.Write(src); err != nil {
		return nil, err
	}
	if err := z.zw.Close(); err != nil {
		return nil, err
	}
	return append(dst, z.buf.Bytes()...), nil
}

func (z *compressor) close() {}
