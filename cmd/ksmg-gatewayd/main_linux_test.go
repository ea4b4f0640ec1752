package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestMakeDirs(t *testing.T) { // not parallel: it sets the process's umask
	old := syscall.Umask(0o027) // the unit's UMask
	defer syscall.Umask(old)
	tmp := t.TempDir()
	dirs := []string{filepath.Join(tmp, "ksmgtmp"), filepath.Join(tmp, "klms_filter", "nested")}
	if err := makeDirs(dirs); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o750 {
			t.Errorf("%s: %v, want a 0750 directory", d, fi.Mode())
		}
	}
	// Existing directories are fine (a restart in the same private /tmp).
	if err := makeDirs(dirs); err != nil {
		t.Errorf("second call: %v", err)
	}
	// A file in the way is an error naming the path.
	f := filepath.Join(tmp, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := makeDirs([]string{f}); err == nil {
		t.Errorf("makeDirs over a file: no error")
	}
}

func TestTempDirMustBeAbsolute(t *testing.T) {
	t.Parallel()
	if code := run([]string{"--temp-dir", "relative/dir", "--check-config"}); code != 2 {
		t.Errorf("exit status %d for a relative --temp-dir, want 2", code)
	}
}
