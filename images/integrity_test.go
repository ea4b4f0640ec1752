package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestZeroAIDEInodes(t *testing.T) {
	const spec = "@@begin_db\n@@db_spec name lname perm uid gid size mtime inode attr sha512 xattrs capabilities\n"
	for _, tc := range []struct {
		name, in, want, err string
	}{
		{"entries", spec + "/boot 0 40700 0 0 0 0 5382150 42949672989 0 0 0\n/boot/x 0 100644 0 0 83 1735689600 5388085 45097156925 Mmo== 0 0\n@@end_db\n",
			spec + "/boot 0 40700 0 0 0 0 0 42949672989 0 0 0\n/boot/x 0 100644 0 0 83 1735689600 0 45097156925 Mmo== 0 0\n@@end_db\n", ""},
		{"inode elsewhere", "@@db_spec name inode perm\n/a 77 100644\n", "@@db_spec name inode perm\n/a 0 100644\n", ""},
		{"no spec", "/a 0 100644\n", "", "no @@db_spec"},
		{"short line", spec + "/a 0 1\n", "", "line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "aide.db")
			if err := os.WriteFile(p, []byte(tc.in), 0o600); err != nil {
				t.Fatal(err)
			}
			err := zeroAIDEInodes(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(p)
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600 kept", fi.Mode().Perm())
			}
		})
	}
}
