//go:build linux

package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestClampTimesKeepsCachesNewer runs console-setup's own freshness test
// (sh's -nt, as console-setup.sh does it) on a clamped tree: the cache must
// be newer than the configuration it was built from, or every boot
// rebuilds it.
func TestClampTimesKeepsCachesNewer(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	files := []string{"etc/default/keyboard", "etc/default/console-setup", "etc/console-setup/cached_setup_terminal.sh", "etc/other"}
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const sde = 1735689600
	if err := clampTimes(root, sde); err != nil {
		t.Fatal(err)
	}
	for _, conf := range olderThanCaches {
		cmd := exec.Command("sh", "-c", `[ etc/console-setup/cached_setup_terminal.sh -nt "$1" ]`, "sh", conf)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			t.Errorf("console-setup's cache is not newer than %s after clampTimes (%v)", conf, err)
		}
	}
	for f, want := range map[string]int64{"etc/other": sde, "etc/default/keyboard": sde - 1, "etc": sde} {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.ModTime().Unix(); got != want {
			t.Errorf("%s: mtime %d, want %d", f, got, want)
		}
	}
	// A tree without the files (the ESP, /boot) is clamped as before.
	if err := clampTimes(filepath.Join(root, "etc/console-setup"), sde); err != nil {
		t.Errorf("tree without the configuration files: %v", err)
	}
}
