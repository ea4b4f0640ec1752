package images

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputsPublish: outputs appear under their names only on Publish,
// all at once, with SHA256SUMS; merged lists keep other files' lines.
func TestOutputsPublish(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" // sha256("a")
	write := func(merge bool, names ...string) []Output {
		t.Helper()
		o := NewOutputs(dir, OutputOptions{MergeSums: merge})
		defer o.Cleanup()
		for _, n := range names {
			_, existed := os.Stat(filepath.Join(dir, n))
			f, err := o.Create("x", n)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("a"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil && existed != nil {
				t.Fatalf("%s visible before Publish", n)
			}
		}
		outs, _, err := o.Publish(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return outs
	}
	sums := func() string {
		data, _ := os.ReadFile(filepath.Join(dir, SumsFile))
		return string(data)
	}
	outs := write(false, "one.raw", "two.ova")
	if len(outs) != 2 || outs[1].SHA256 != a || outs[1].Size != 1 || outs[1].Path != filepath.Join(dir, "two.ova") {
		t.Fatalf("outputs %+v", outs)
	}
	if got := sums(); got != a+"  one.raw\n"+a+"  two.ova\n" {
		t.Fatalf("SHA256SUMS %q", got)
	}
	write(true, "three.vhdx")
	if got := sums(); got != a+"  one.raw\n"+a+"  two.ova\n"+a+"  three.vhdx\n" {
		t.Fatalf("merged SHA256SUMS %q", got)
	}
	if err := os.Remove(filepath.Join(dir, "one.raw")); err != nil {
		t.Fatal(err)
	}
	write(true, "two.ova")
	if got := sums(); got != a+"  two.ova\n"+a+"  three.vhdx\n" {
		t.Fatalf("SHA256SUMS after one.raw went: %q", got)
	}
	if err := DropSum(dir, "two.ova"); err != nil {
		t.Fatal(err)
	}
	if got := sums(); got != a+"  three.vhdx\n" {
		t.Fatalf("after DropSum: %q", got)
	}
	write(false, "four.raw")
	if got := sums(); got != a+"  four.raw\n" {
		t.Fatalf("unmerged SHA256SUMS %q", got)
	}

	// A malformed list is an error naming the file and line, not replaced.
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(a+"  four.raw\nnot a sum\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := NewOutputs(dir, OutputOptions{MergeSums: true})
	defer o.Cleanup()
	if _, err := o.Create("x", "five.raw"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Publish(context.Background()); err == nil || !strings.Contains(err.Error(), SumsFile+":2:") {
		t.Errorf("malformed SHA256SUMS: err = %v", err)
	}
	o.Cleanup()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || e.Name() == "five.raw" {
			t.Errorf("left %s", e.Name())
		}
	}
	for _, bad := range []string{"SHA256SUMS", "../x", ".hidden", "a/b"} {
		if _, err := o.Create("x", bad); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
}
