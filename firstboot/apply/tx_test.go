package apply

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
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

// TestTxFileFunc: a file whose data is made at staging time is staged
// after every other file (so that work such as the password hash runs
// while they are written), and its error fails the commit with nothing
// switched and no temporary file left.
func TestTxFileFunc(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	p := func(s string) string { return filepath.Join(root, s) }
	if err := os.WriteFile(p("passwd"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	staged := func() []string {
		m, _ := filepath.Glob(p(".*.ksmg-*"))
		return m
	}

	var ok tx
	var seen []string
	ok.fileFunc(p("shadow"), func() ([]byte, error) {
		seen = staged()
		return []byte("hashed\n"), nil
	}, 0o640, uid, gid)
	ok.file(p("passwd"), []byte("new\n"), 0o644, uid, gid)
	if err := ok.commit(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || !strings.HasPrefix(filepath.Base(seen[0]), ".passwd.ksmg-") {
		t.Errorf("when shadow's data was made, staged files were %v; want passwd's alone", seen)
	}
	for f, want := range map[string]string{"shadow": "hashed\n", "passwd": "new\n"} {
		if got, _ := os.ReadFile(p(f)); string(got) != want {
			t.Errorf("%s = %q, want %q", f, got, want)
		}
	}

	var bad tx
	bad.file(p("passwd"), []byte("newer\n"), 0o644, uid, gid)
	bad.fileFunc(p("shadow"), func() ([]byte, error) { return nil, errors.New("no hash") }, 0o640, uid, gid)
	err := bad.commit()
	if err == nil || !strings.Contains(err.Error(), "no hash") {
		t.Fatalf("commit = %v, want the data's error", err)
	}
	if got, _ := os.ReadFile(p("passwd")); string(got) != "new\n" {
		t.Errorf("passwd = %q after a failed commit, want it unchanged", got)
	}
	if left := staged(); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
