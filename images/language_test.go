package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLanguageHook runs the build hook's shell against a scratch root with
// chroot replaced by a recorder: the files it writes and the commands it
// runs in the root (quoting included).
func TestLanguageHook(t *testing.T) {
	t.Parallel()
	root, bin := t.TempDir(), t.TempDir()
	for _, d := range []string{"etc/default", "etc/console-setup"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(root, "etc/console-setup/cached_Lat15-Fixed16.psf.gz")
	if err := os.WriteFile(stale, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(bin, "log")
	if err := os.WriteFile(filepath.Join(bin, "chroot"), []byte("#!/bin/sh\nshift\necho \"$*\" >> "+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", languageHook(), "hook", root)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hook: %v\n%s", err, out)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("etc/locale.gen"); got != "en_US.UTF-8 UTF-8\ncs_CZ.UTF-8 UTF-8\nru_RU.UTF-8 UTF-8\n" {
		t.Errorf("locale.gen:\n%s", got)
	}
	if got := read("etc/default/locale"); !strings.HasSuffix(got, "\nLANG=en_US.UTF-8\n") {
		t.Errorf("default locale:\n%s", got)
	}
	if got := read("etc/default/keyboard"); !strings.Contains(got, "XKBLAYOUT=\"us\"\n") {
		t.Errorf("keyboard:\n%s", got)
	}
	if got := read("etc/default/console-setup"); got != consoleSetup {
		t.Errorf("console-setup:\n%s", got)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a stale cached font survived")
	}
	if got, err := os.ReadFile(log); err != nil || string(got) != "locale-gen\nsetupcon --force --save-only\n" {
		t.Errorf("commands in the root: %q %v", got, err)
	}
}
