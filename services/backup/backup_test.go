//go:build unix

package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func srcFile(t *testing.T, dir string, i int, size int) string {
	t.Helper()
	p := filepath.Join(dir, fmt.Sprintf("%016X", i))
	if err := os.WriteFile(p, []byte(strings.Repeat("x", size)), 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCapDeletesOldestFirst(t *testing.T) {
	t.Parallel()
	dir, src := t.TempDir(), t.TempDir()
	s, err := Open(dir, 5500)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		p := srcFile(t, src, i, 1000)
		if err := s.Add(fmt.Sprintf("%016X", i), p); err != nil {
			t.Fatal(err)
		}
		if s.Size() > 5500 {
			t.Fatalf("after %d copies size %d exceeds cap", i, s.Size())
		}
		// The queue deletes its file after delivery; the copy stays.
		os.Remove(p)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	var total int64
	for _, e := range ents {
		fi, _ := e.Info()
		total += fi.Size()
		names = append(names, e.Name())
	}
	if len(names) != 5 || names[0] != fmt.Sprintf("%016X.msg", 6) || names[4] != fmt.Sprintf("%016X.msg", 10) {
		t.Fatalf("kept %v, want the 5 newest", names)
	}
	if total != s.Size() || total > 5500 {
		t.Fatalf("disk total %d, accounted %d, cap 5500", total, s.Size())
	}
	// A second Add of the same id (retry after restart) is not counted twice.
	p := srcFile(t, src, 10, 1000)
	os.Remove(filepath.Join(dir, names[4]))
	if err := os.Link(p, filepath.Join(dir, names[4])); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(fmt.Sprintf("%016X", 10), p); err != nil || s.Size() != 5000 {
		t.Fatalf("re-Add: %v, size %d, want 5000", err, s.Size())
	}

	// A restart with a smaller cap (config) enforces it on the files found.
	if err := os.WriteFile(filepath.Join(dir, ".0000000000000FFF.msg.tmp"), []byte("half"), 0o640); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(dir, 2500)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ = os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != fmt.Sprintf("%016X.msg", 9) || s2.Size() != 2000 {
		t.Fatalf("after reopen with cap 2500: %d files, size %d", len(ents), s2.Size())
	}
	s2.SetMax(1)
	if ents, _ = os.ReadDir(dir); len(ents) != 0 || s2.Size() != 0 {
		t.Fatalf("SetMax(1) left %d files", len(ents))
	}
}

func TestLinkOrCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := Open(dir, 1<<20)
	p := srcFile(t, t.TempDir(), 1, 100)
	if err := s.Add("0000000000000001", p); err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(p)
	b, _ := os.Stat(filepath.Join(dir, "0000000000000001.msg"))
	if !os.SameFile(a, b) {
		t.Error("same file system: the copy should be a hard link")
	}
	// Another file system: a real copy.
	other, err := os.MkdirTemp("/dev/shm", "ksmg-backup-")
	if err != nil {
		t.Skipf("no second file system (/dev/shm) to test the copy path: %v", err)
	}
	defer os.RemoveAll(other)
	var st1, st2 syscall.Stat_t
	if err := syscall.Stat(other, &st1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(dir, &st2); err != nil {
		t.Fatal(err)
	}
	if st1.Dev == st2.Dev {
		t.Skip("/dev/shm is on the same file system as the temp dir; copy path not reachable")
	}
	q := srcFile(t, other, 2, 300)
	if err := s.Add("0000000000000002", q); err != nil {
		t.Fatal(err)
	}
	c, _ := os.Stat(filepath.Join(dir, "0000000000000002.msg"))
	d, _ := os.Stat(q)
	if os.SameFile(c, d) || c.Size() != 300 || c.Mode().Perm() != 0o640 {
		t.Errorf("cross-device copy: same=%v size %d mode %v", os.SameFile(c, d), c.Size(), c.Mode().Perm())
	}
	if s.Size() != 400 {
		t.Errorf("accounted %d, want 400", s.Size())
	}
}

func TestAddRejectsPathIDs(t *testing.T) {
	t.Parallel()
	s, _ := Open(t.TempDir(), 1<<20)
	for _, id := range []string{"", "../x", ".hidden", "a/b"} {
		if err := s.Add(id, "/etc/hostname"); err == nil {
			t.Errorf("Add(%q) accepted", id)
		}
	}
}
