//go:build linux

package imagefs

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// testDisk builds a small GPT disk like the appliance's (ESP, root, var)
// with the same tools the build uses, from trees with set-uid programs, a
// sticky directory and a file owned by another user.
func testDisk(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: file owners in the test trees (make test runs as root)")
	}
	dir := t.TempDir()
	root, varfs, esp := filepath.Join(dir, "rootfs"), filepath.Join(dir, "varfs"), filepath.Join(dir, "esp")
	for _, d := range []string{root + "/usr/bin", root + "/tmp", root + "/etc", varfs + "/opt/app", esp + "/EFI/BOOT"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(root+"/usr/bin/su", []byte("su"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root+"/usr/bin/su", 0o755|fs.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/usr/bin/wall", []byte("wall"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root+"/usr/bin/wall", 0o755|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root+"/tmp", 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/etc/fstab", []byte("UUID=X /boot/efi vfat umask=0077 0 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(varfs+"/opt/app/data", []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(varfs+"/opt/app/data", 950, 950); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(varfs+"/opt/app", 950, 950); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(varfs+"/opt/app", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(esp+"/EFI/BOOT/BOOTX64.EFI", []byte("shim"), 0o644); err != nil {
		t.Fatal(err)
	}

	esp1, root1, var1 := filepath.Join(dir, "esp.img"), filepath.Join(dir, "root.img"), filepath.Join(dir, "var.img")
	run(t, "mkfs.fat", "-C", "-F", "32", "-n", "ESP", esp1, strconv.Itoa(34*1024))
	run(t, "mcopy", "-s", "-m", "-i", esp1, esp+"/EFI", "::/")
	run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", root, root1, "16M")
	run(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", varfs, var1, "16M")
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(80 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "sgdisk",
		"--new=1:2048:+34M", "--typecode=1:"+TypeESP, "--change-name=1:esp",
		"--new=2:0:+16M", "--typecode=2:"+TypeRootX64, "--change-name=2:root",
		"--new=3:0:+16M", "--typecode=3:"+TypeVar, "--change-name=3:var", raw)
	parts, err := Partitions(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		img := map[string]string{"esp": esp1, "root": root1, "var": var1}[p.Name]
		run(t, "dd", "if="+img, "of="+raw, "bs=1M", "seek="+strconv.FormatInt(p.Offset>>20, 10), "conv=notrunc,sparse", "status=none")
	}
	return raw
}

func TestPartitions(t *testing.T) {
	raw := testDisk(t)
	parts, err := Partitions(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Fatalf("partitions: %+v", parts)
	}
	want := []struct {
		name, typ string
		off, size int64
	}{{"esp", TypeESP, 1 << 20, 34 << 20}, {"root", TypeRootX64, 35 << 20, 16 << 20}, {"var", TypeVar, 51 << 20, 16 << 20}}
	for i, w := range want {
		p := parts[i]
		if p.Name != w.name || p.Type != w.typ || p.Offset != w.off || p.Size != w.size || p.Number != i+1 {
			t.Errorf("partition %d: %+v, want %+v", i+1, p, w)
		}
	}
	if _, err := Partitions(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("no error for a missing disk")
	}
	empty := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(empty, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Partitions(empty); err == nil {
		t.Error("no error for a disk without GPT")
	}
}

func TestExtract(t *testing.T) {
	raw := testDisk(t)
	dst := filepath.Join(t.TempDir(), "tree")
	if err := Extract(context.Background(), raw, dst); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path     string
		mode     fs.FileMode
		uid, gid uint32
	}{
		{"usr/bin/su", 0o755 | fs.ModeSetuid, 0, 0},
		{"usr/bin/wall", 0o755 | fs.ModeSetgid, 0, 0},
		{"tmp", 0o777 | fs.ModeSticky | fs.ModeDir, 0, 0},
		{"var/opt/app", 0o750 | fs.ModeDir, 950, 950},
		{"var/opt/app/data", 0o640, 950, 950},
		// The ESP as the image's fstab mounts it: umask=0077 (vfat shows
		// every file executable).
		{"boot/efi/EFI/BOOT/BOOTX64.EFI", 0o700, 0, 0},
		{"boot/efi/EFI", 0o700 | fs.ModeDir, 0, 0},
	} {
		st, err := os.Lstat(filepath.Join(dst, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode() != c.mode || sys.Uid != c.uid || sys.Gid != c.gid {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", c.path, st.Mode(), sys.Uid, sys.Gid, c.mode, c.uid, c.gid)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dst, "var/opt/app/data")); err != nil || string(b) != "data" {
		t.Errorf("var/opt/app/data: %q %v", b, err)
	}
	if err := Extract(context.Background(), raw, dst); err == nil {
		t.Error("Extract into a non-empty directory succeeded")
	}
}
