package vmdk

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify feeds damaged streams to Verify: it must return an error or a
// report, never panic, hang or allocate without bound. The seed is a real
// stream of a small disk; go test replays it and any committed corpus.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	raw := filepath.Join(dir, "r.raw")
	data := bytes.Repeat([]byte("ksmg fuzz seed "), 12000) // ~180 KiB: 3 grains
	if err := os.WriteFile(raw, append(data, make([]byte, 1<<20)...), 0o644); err != nil {
		f.Fatal(err)
	}
	src, err := os.Open(raw)
	if err != nil {
		f.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(dir, "s.vmdk")
	dst, err := os.Create(out)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := Convert(context.Background(), src, dst, Options{Workers: 1}); err != nil {
		f.Fatal(err)
	}
	dst.Close()
	seed, err := os.ReadFile(out)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := Verify(bytes.NewReader(seed)); err != nil {
		f.Fatalf("seed does not verify: %v", err)
	}
	f.Add(seed)
	f.Add(seed[:SectorSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b))
		if err == nil && rep == nil {
			t.Fatal("nil report without an error")
		}
	})
}
