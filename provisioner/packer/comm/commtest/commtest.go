//go:build linux

// Package commtest makes small root file systems for the tests of the
// Packer plugin's communicator, builder and provisioners: the host's own
// shell and coreutils with their libraries, so chroot can run them.
package commtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// tools are copied from the host into the test roots, with their libraries.
var tools = []string{"sh", "cat", "touch", "echo", "ls", "id", "install", "mv", "sync", "mkdir",
	"chown", "chmod", "ln", "rm", "mktemp", "getent", "printf", "stat", "readlink"}

var lddPath = regexp.MustCompile(`(/\S+) \(0x`)

// MiniRoot makes a small root file system from the host's own tools (what
// chroot needs to run /bin/sh and coreutils), with accounts root and
// kluser (950), an absolute /var/run -> /run link as Debian has, and /tmp.
func MiniRoot(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot, unshare, chown): make test runs as root")
	}
	root := t.TempDir()
	copied := map[string]bool{}
	copyFile := func(src, dst string) {
		if copied[dst] {
			return
		}
		copied[dst] = true
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range tools {
		host, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("host tool %s: %v", tool, err)
		}
		copyFile(host, "/usr/bin/"+tool)
		out, err := exec.Command("ldd", host).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", host, err)
		}
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			copyFile(m[1], m[1])
		}
	}
	for p, data := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nkluser:x:950:950::/var/opt/kaspersky:/usr/sbin/nologin\n",
		"etc/group":  "root:x:0:\nkluser:x:950:\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"proc", "run", "var", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "tmp"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"bin": "usr/bin", "var/run": "/run"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}
