// Package ovatest holds test helpers shared by the ova packages' tests and
// the ksmg command's tests: a synthetic sparse raw disk and OVA rewriting
// for corruption tests.
package ovatest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"strings"
	"testing"
)

// Extent is a range of the synthetic disk that holds data.
type Extent struct {
	Off  int64
	Data []byte
}

// SparseRaw writes a sparse raw disk of the given size to p: random
// (incompressible) and patterned (compressible) blocks at scattered offsets,
// some not grain aligned, a block of zeros written explicitly (data that must
// still come back as an unstored grain), and the last bytes of the disk, so
// a size that is not a multiple of 64 KiB ends in a partial grain. The
// content is seeded, hence the same on every run.
func SparseRaw(t testing.TB, p string, size int64) []Extent {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	pattern := func(n int) []byte {
		line := []byte("Received: from mx.example.org (mx.example.org [192.0.2.25]) by ksmg; ")
		b := bytes.Repeat(line, n/len(line)+1)[:n]
		for i := 0; i < n; i += 4096 {
			b[i] = byte(i >> 12) // a little variation per block
		}
		return b
	}
	var ex []Extent
	add := func(off int64, b []byte) {
		if off+int64(len(b)) > size {
			off = size - int64(len(b))
		}
		ex = append(ex, Extent{off, b})
	}
	add(0, random(1<<20))                  // "partition table and boot"
	add(1<<20+512, pattern(3<<20))         // unaligned, crosses grains
	add(size/4+12345, random(700<<10))     // odd offset
	add(size/3, make([]byte, 256<<10))     // explicit zeros: stored as holes
	add(size/2, pattern(2<<20))            // compressible
	add(size/2+(64<<20), random(64<<10))   // exactly one grain, second table
	add(size-(40<<10), random(40<<10))     // end of the disk: partial last grain
	add(size*3/4+(31<<20), pattern(2<<20)) // crosses a grain-table boundary (32 MiB)
	for _, e := range ex {
		if _, err := f.WriteAt(e.Data, e.Off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return ex
}

// Member is one file of a tar archive.
type Member struct {
	Name string
	Data []byte
}

// ReadTar returns the members of the tar file at p, in order.
func ReadTar(t testing.TB, p string) []Member {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Member
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Member{h.Name, b})
	}
}

// WriteTar writes members as a ustar archive to p.
func WriteTar(t testing.TB, p string, ms []Member) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		if err := tw.WriteHeader(&tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Data)), Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Manifest returns a manifest of the members that are not manifests.
func Manifest(ms []Member) []byte {
	var b strings.Builder
	for _, m := range ms {
		if path.Ext(m.Name) == ".mf" {
			continue
		}
		sum := sha256.Sum256(m.Data)
		fmt.Fprintf(&b, "SHA256(%s)= %s\n", m.Name, hex.EncodeToString(sum[:]))
	}
	return []byte(b.String())
}

// Find returns the index of the member whose name ends in ext, or -1.
func Find(ms []Member, ext string) int {
	for i, m := range ms {
		if strings.HasSuffix(m.Name, ext) {
			return i
		}
	}
	return -1
}
