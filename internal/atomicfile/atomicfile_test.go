package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestWriteFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		old   string // existing content, "" = none
		perm  os.FileMode
		write string
	}{
		{"new file", "", 0o640, "hello"},
		{"replaces", "old content that is longer", 0o600, "new"},
		{"empty", "x", 0o644, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if tc.old != "" {
				if err := os.WriteFile(p, []byte(tc.old), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(p, []byte(tc.write), tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != tc.write {
				t.Fatalf("content %q, %v; want %q", got, err, tc.write)
			}
			st, _ := os.Stat(p)
			if st.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v (umask must not apply)", st.Mode().Perm(), tc.perm)
			}
			if n := names(t, dir); len(n) != 1 {
				t.Errorf("directory holds %v, want only f", n)
			}
		})
	}
}

func TestCleanupKeepsOld(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("half of the new")); err != nil {
		t.Fatal(err)
	}
	f.Cleanup()
	f.Cleanup() // twice is harmless
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Fatalf("after an abandoned write the file holds %q", got)
	}
	if n := names(t, dir); len(n) != 1 {
		t.Fatalf("temporary file left: %v", n)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("commit after cleanup succeeded")
	}
}

func TestCommitFailureRemovesTemp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The final name is a non-empty directory: the rename fails.
	if err := os.MkdirAll(filepath.Join(dir, "f", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644)
	if err == nil {
		t.Fatal("write over a non-empty directory succeeded")
	}
	if n := names(t, dir); len(n) != 1 || n[0] != "f" {
		t.Fatalf("directory holds %v after a failed commit", n)
	}
}

// The spool's use: an exact temporary name in a sibling directory, the
// directory sync left to the caller.
func TestTempNameNoDirSync(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"tmp", "msg"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, err := CreateIn(root, "msg/1", 0o640, TempName("tmp/1"), NoDirSync())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "1")); err != nil {
		t.Fatalf("not staged under tmp/1: %v", err)
	}
	// Exclusive: a second writer of the same temporary name is refused.
	if _, err := CreateIn(root, "msg/1", 0o640, TempName("tmp/1")); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second writer of tmp/1: %v, want ErrExist", err)
	}
	if _, err := f.Write([]byte("m")); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(dir, "msg")); err != nil {
		t.Fatal(err)
	}
	if n := names(t, filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Fatalf("tmp/ holds %v", n)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "msg", "1")); string(got) != "m" {
		t.Fatalf("msg/1 holds %q", got)
	}
}

// Inside a root, a symlink (absolute or relative) cannot take the write
// outside it.
func TestRootConfines(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../"+filepath.Base(outside), filepath.Join(dir, "rel")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, name := range []string{"abs/x", "rel/x", "../x"} {
		if err := WriteFileIn(root, name, []byte("escape"), 0o644); err == nil {
			t.Errorf("write to %s inside the root succeeded", name)
		}
	}
	if n := names(t, outside); len(n) != 0 {
		t.Fatalf("files written outside the root: %v", n)
	}
}

func TestOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root (CI runs as root)")
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFile(p, []byte("x"), 0o750|os.ModeSetuid, Owner(1234, 5678)); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode()&os.ModeSetuid == 0 || st.Mode().Perm() != 0o750 {
		t.Errorf("mode %v: set-uid must survive the chown (mode after owner)", st.Mode())
	}
	uid, gid := fileOwner(st)
	if uid != 1234 || gid != 5678 {
		t.Errorf("owner %d:%d, want 1234:5678", uid, gid)
	}
}

func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := WriteFile(p, []byte{byte('a' + i)}, 0o644); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got, _ := os.ReadFile(p); len(got) != 1 {
		t.Fatalf("file holds %q, want one writer's byte", got)
	}
	if n := names(t, dir); len(n) != 1 {
		t.Fatalf("directory holds %v", n)
	}
}
