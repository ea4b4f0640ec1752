//go:build linux

package provisioner

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newRoot(t *testing.T) *DirTarget {
	t.Helper()
	root := t.TempDir()
	for p, data := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nkluser:x:990:990::/var/opt/kaspersky:/usr/sbin/nologin\n",
		"etc/group":  "root:x:0:\nkluser:x:990:\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &DirTarget{Root: root}
}

func TestDirTargetFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tg := newRoot(t)
	if err := tg.WriteFile(ctx, "/etc/opt/x.yaml", []byte("a: 1\n"), 0o640, "root", "kluser"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(tg.Root, "etc/opt/x.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o640 || statGID(st) != 990 || statUID(st) != 0 {
		t.Errorf("file mode %v uid %d gid %d, want 0640 0:990", st.Mode(), statUID(st), statGID(st))
	}
	if err := tg.Mkdir(ctx, "/var/opt/kaspersky/ksmg", 0o750, "kluser", "kluser"); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(filepath.Join(tg.Root, "var/opt/kaspersky/ksmg"))
	if !st.IsDir() || st.Mode().Perm() != 0o750 || statUID(st) != 990 {
		t.Errorf("dir %v uid %d", st.Mode(), statUID(st))
	}
	if err := tg.Symlink(ctx, "../run/x", "/etc/link"); err != nil {
		t.Fatal(err)
	}
	if l, _ := os.Readlink(filepath.Join(tg.Root, "etc/link")); l != "../run/x" {
		t.Errorf("symlink = %q", l)
	}
	// No temporary names stay behind.
	ents, _ := os.ReadDir(filepath.Join(tg.Root, "etc/opt"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("left %s", e.Name())
		}
	}
}

func TestDirTargetErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tg := newRoot(t)
	outside := t.TempDir()
	// An absolute symlink inside the root (like Debian's /var/run -> /run)
	// must not lead a write onto the host.
	if err := os.Symlink(outside, filepath.Join(tg.Root, "escape")); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"unknown user":     tg.WriteFile(ctx, "/etc/a", nil, 0o644, "nobody7", ""),
		"unknown group":    tg.Mkdir(ctx, "/srv/a", 0o755, "root", "nogroup7"),
		"relative path":    tg.WriteFile(ctx, "etc/a", nil, 0o644, "", ""),
		"escaping symlink": tg.WriteFile(ctx, "/escape/owned", []byte("x"), 0o644, "", ""),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "owned")); err == nil {
		t.Errorf("write escaped the root through a symlink")
	}
}

// TestBuildDeb builds our package and inspects it with the real dpkg-deb.
func TestBuildDeb(t *testing.T) {
	t.Parallel()
	p := Package{
		Name: "ksmg-test", Version: "0.1.0", Maintainer: "t <t@localhost>", Description: "test",
		Files: []PackageFile{
			{Dst: "/usr/sbin/ksmg-x", Data: []byte("#!/bin/sh\necho hi\n"), Mode: 0o755},
			{Dst: "/usr/lib/systemd/system/ksmg-x.service", Data: []byte("[Service]\nExecStart=/usr/sbin/ksmg-x\n"), Mode: 0o644},
		},
		MTime: time.Unix(1735689600, 0),
	}
	a, err := BuildDeb(p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildDeb(p, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("two builds of the same package differ")
	}
	deb := filepath.Join(t.TempDir(), "x.deb")
	if err := os.WriteFile(deb, a, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, out)
	}
	for _, want := range []string{"-rwxr-xr-x root/root", "./usr/sbin/ksmg-x", "2025-01-01 00:00 ./usr/lib/systemd/system/ksmg-x.service"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("contents lack %q:\n%s", want, out)
		}
	}
	out, err = exec.Command("dpkg-deb", "--field", deb, "Package", "Version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Package: ksmg-test") || !strings.Contains(string(out), "Version: 0.1.0") {
		t.Errorf("fields: %v\n%s", err, out)
	}
	p.Files = append(p.Files, PackageFile{Dst: "relative", Mode: 0o644})
	if _, err := BuildDeb(p, t.TempDir()); err == nil || !strings.Contains(err.Error(), "relative") {
		t.Errorf("relative destination: err = %v", err)
	}
}
