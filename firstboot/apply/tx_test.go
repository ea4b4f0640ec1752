package apply

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Only the directories whose entries a commit changed are synced: an
// existing directory queued with mkdir, or a file removal that found
// nothing, leaves its parent alone.
func TestDirsToSync(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	p := func(s string) string { return filepath.Join(root, s) }
	for _, d := range []string{"etc/ssh", "var/lib/ksmg"} {
		if err := os.MkdirAll(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p("etc/old"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var tx tx
	tx.mkdir(p("var/lib/ksmg"), 0o755, os.Getuid(), os.Getgid()) // exists
	tx.mkdir(p("etc/ssh"), 0o755, os.Getuid(), os.Getgid())      // exists
	tx.file(p("var/lib/ksmg/stamp"), []byte("now\n"), 0o644, os.Getuid(), os.Getgid())
	tx.mkdir(p("home"), 0o755, os.Getuid(), os.Getgid()) // new
	tx.remove(p("etc/old"))
	tx.remove(p("etc/ssh/none")) // nothing there
	if err := tx.commit(); err != nil {
		t.Fatal(err)
	}
	want := []string{p("var/lib/ksmg"), root, p("etc")}
	if got := dirsToSync(tx.changes); !reflect.DeepEqual(got, want) {
		t.Errorf("synced %v, want %v", got, want)
	}
}
