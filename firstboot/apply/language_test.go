//go:build unix

package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// TestApplyLanguage: the locale lands in /etc/locale.conf, Debian's
// /etc/default/locale link to it stays a link, the keyboard follows the
// language and console-setup's stale compiled keymap is removed.
func TestApplyLanguage(t *testing.T) {
	t.Parallel()
	for _, lang := range []string{i18n.Czech, i18n.Russian} {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			root := newRoot(t)
			for p, c := range map[string]string{LocalePath: "LANG=en_US.UTF-8\n", keymapCache: "#!/bin/sh\nloadkeys us\n"} {
				if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Join(root, "/etc/default"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../locale.conf", filepath.Join(root, DefaultLocalePath)); err != nil {
				t.Fatal(err)
			}
			a := staticAnswers()
			a.Language = lang
			if err := Apply(context.Background(), Options{Root: root, Now: fixedNow}, a); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(filepath.Join(root, DefaultLocalePath)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is no longer a link: %v", DefaultLocalePath, err)
			}
			want := "\nLANG=" + i18n.SystemOf(lang).Locale + "\n"
			if got := read(t, root, DefaultLocalePath); !strings.HasSuffix(got, want) {
				t.Errorf("locale:\n%s", got)
			}
			if got := read(t, root, KeyboardPath); !strings.Contains(got, `XKBLAYOUT="`+i18n.SystemOf(lang).XKBLayout+`"`) {
				t.Errorf("keyboard:\n%s", got)
			}
			if _, err := os.Stat(filepath.Join(root, keymapCache)); !os.IsNotExist(err) {
				t.Errorf("stale keymap cache left: %v", err)
			}
		})
	}
}
