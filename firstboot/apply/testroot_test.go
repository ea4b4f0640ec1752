//go:build unix

package apply

import (
	"os"
	"path/filepath"
	"testing"
)

// newRoot makes a scratch root with the account files a Debian image has
// after the image's sysusers.d created kluser.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"/etc/passwd":   "root:x:0:0:root:/root:/bin/bash\nkluser:x:998:998::/var/opt/kaspersky:/usr/sbin/nologin\n",
		"/etc/group":    "root:x:0:\nshadow:x:42:\nkluser:x:998:\n",
		"/etc/shadow":   "root:!*:20000:0:99999:7:::\nkluser:!*:20000::::::\n",
		"/etc/gshadow":  "root:*::\nshadow:*::\nkluser:!::\n",
		"/etc/hosts":    "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost\n",
		"/etc/hostname": "debian\n",
	}
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "/etc/shadow"), 0o640); err != nil {
		t.Fatal(err)
	}
	return root
}
