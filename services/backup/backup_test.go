package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCapDeletesOldestFirst(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("x", 1000)
	s, err := Open(dir, 5600)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := s.Put(fmt.Sprintf("%016X", i+1), "a@x.test", []string{"b@y.test"}, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		if s.Size() > 5600 {
			t.Fatalf("after %d copies size %d exceeds cap", i+1, s.Size())
		}
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	var total int64
	for _, e := range ents {
		fi, _ := e.Info()
		total += fi.Size()
		names = append(names, e.Name())
	}
	// Each copy is 1000 bytes plus ~100 bytes of envelope: 5 fit.
	if len(names) != 5 || names[0] != fmt.Sprintf("%016X.eml", 6) || names[4] != fmt.Sprintf("%016X.eml", 10) {
		t.Fatalf("kept %v, want the 5 newest", names)
	}
	if total != s.Size() || total > 5600 {
		t.Fatalf("disk total %d, accounted %d, cap 5600", total, s.Size())
	}
	b, _ := os.ReadFile(filepath.Join(dir, names[4]))
	if !strings.HasPrefix(string(b), "X-KSMG-Queue-ID: 000000000000000A\r\nX-KSMG-Envelope-From: <a@x.test>\r\nX-KSMG-Envelope-To: <b@y.test>\r\n"+body) {
		t.Fatalf("copy = %q", b[:120])
	}
	fi, _ := os.Stat(filepath.Join(dir, names[4]))
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}

	// A restart with a smaller cap (config) enforces it on the files found.
	os.WriteFile(filepath.Join(dir, ".0000000000000FFF.tmp"), []byte("half"), 0o640)
	s2, err := Open(dir, 2500)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ = os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != fmt.Sprintf("%016X.eml", 9) || s2.Size() > 2500 {
		t.Fatalf("after reopen with cap 2500: %d files (first %s), size %d", len(ents), ents[0].Name(), s2.Size())
	}
	s2.SetMax(1)
	if ents, _ = os.ReadDir(dir); len(ents) != 0 || s2.Size() != 0 {
		t.Fatalf("SetMax(1) left %d files", len(ents))
	}
}

func TestPutRejectsPathIDs(t *testing.T) {
	s, _ := Open(t.TempDir(), 1<<20)
	for _, id := range []string{"", "../x", ".hidden", "a/b"} {
		if err := s.Put(id, "", []string{"b@y"}, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) accepted", id)
		}
	}
}
