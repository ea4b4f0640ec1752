// Package imagefs reads a built appliance disk without mounting it: the GPT
// partition table, and a copy of the file systems as one tree (root, /var
// and the ESP at /boot/efi, as the booted appliance sees them). Auditors
// (OpenSCAP, the permission tests) read that copy; nothing is mounted, no
// loop device is used and the disk is never written.
//
// The ext4 file systems are copied with e2fsprogs' debugfs (rdump) and the
// ESP with mtools (mcopy), the tools the build itself uses. debugfs rdump
// drops the set-user-ID, set-group-ID and sticky bits, so Extract lists
// every directory once more (debugfs "ls -p") and puts them back: a scan of
// a copy without them would report /tmp as world-writable without sticky
// bit and miss every set-uid program.
//
// The GPT reader is hand-written: it is 60 lines for a read-only walk of one
// well-specified table, where a disk library (go-diskfs) would add a large
// dependency for the same.
package imagefs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf16"
)

// GPT partition type GUIDs (Discoverable Partitions Specification) of the
// appliance's partitions.
const (
	TypeESP     = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRootX64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeVar     = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
)

const sector = 512

// Partition is one GPT entry.
type Partition struct {
	Number int    // 1-based
	Name   string // GPT partition name (the spec's name: esp, root, var, ...)
	Type   string // type GUID, upper case
	Offset int64  // bytes from the start of the disk
	Size   int64  // bytes
}

// Partitions reads the primary GPT of a raw disk.
func Partitions(raw string) ([]Partition, error) {
	f, err := os.Open(raw)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hdr := make([]byte, sector)
	if _, err := f.ReadAt(hdr, sector); err != nil {
		return nil, fmt.Errorf("%s: read GPT header: %w", raw, err)
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, fmt.Errorf("%s: no GPT header at LBA 1", raw)
	}
	le := binary.LittleEndian
	entriesLBA, n, size := int64(le.Uint64(hdr[72:])), int(le.Uint32(hdr[80:])), int(le.Uint32(hdr[84:]))
	if n <= 0 || n > 1024 || size < 128 || size > 4096 {
		return nil, fmt.Errorf("%s: implausible GPT entry table (%d entries of %d bytes)", raw, n, size)
	}
	table := make([]byte, n*size)
	if _, err := f.ReadAt(table, entriesLBA*sector); err != nil {
		return nil, fmt.Errorf("%s: read GPT entries: %w", raw, err)
	}
	var parts []Partition
	for i := range n {
		e := table[i*size : (i+1)*size]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
		u16 := make([]uint16, 36)
		for j := range u16 {
			u16[j] = le.Uint16(e[56+2*j:])
		}
		name := string(utf16.Decode(u16))
		if k := strings.IndexByte(name, 0); k >= 0 {
			name = name[:k]
		}
		parts = append(parts, Partition{
			Number: i + 1, Name: name, Type: guid(e[:16]),
			Offset: first * sector, Size: (last - first + 1) * sector,
		})
	}
	return parts, nil
}

// guid formats a GPT GUID (first three fields little-endian).
func guid(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}

// Find returns the first partition of the type.
func Find(parts []Partition, typ string) (Partition, bool) {
	for _, p := range parts {
		if strings.EqualFold(p.Type, typ) {
			return p, true
		}
	}
	return Partition{}, false
}

// Extract copies the disk's file systems into dst (which must not exist or
// be empty): the root file system at dst, the /var partition at dst/var and
// the ESP at dst/boot/efi. Owners, modes (with the special bits) and times
// are kept; device nodes are not copied (an image has none).
func Extract(ctx context.Context, raw, dst string) error {
	parts, err := Partitions(raw)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dst); err != nil || len(ents) > 0 {
		return fmt.Errorf("extract %s: destination %s is not an empty directory", raw, dst)
	}
	root, ok := Find(parts, TypeRootX64)
	if !ok {
		return fmt.Errorf("%s: no root partition (type %s)", raw, TypeRootX64)
	}
	if err := ExtractExt4(ctx, raw, root, dst); err != nil {
		return err
	}
	if v, ok := Find(parts, TypeVar); ok {
		if err := ExtractExt4(ctx, raw, v, filepath.Join(dst, "var")); err != nil {
			return err
		}
	}
	if esp, ok := Find(parts, TypeESP); ok {
		if err := extractFAT(ctx, raw, esp, filepath.Join(dst, "boot/efi")); err != nil {
			return err
		}
	}
	return nil
}

// ExtractExt4 copies one ext4 partition's tree into dir (created if missing).
func ExtractExt4(ctx context.Context, raw string, p Partition, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// e2fsprogs opens "file?offset=N" at that byte offset (unix_io options).
	dev := raw + "?offset=" + strconv.FormatInt(p.Offset, 10)
	if out, err := debugfs(ctx, dev, "rdump / "+dir); err != nil {
		return fmt.Errorf("partition %s: debugfs rdump: %w\n%s", p.Name, err, out)
	}
	return restoreSpecialBits(ctx, dev, dir, p.Name)
}

func debugfs(ctx context.Context, dev string, requests ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "debugfs", "-f", "-", dev)
	cmd.Stdin = strings.NewReader(strings.Join(requests, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.Bytes()...), err
	}
	return out, nil
}

// restoreSpecialBits lists every directory of the copy in the file system
// (one debugfs run) and sets the set-uid, set-gid and sticky bits that
// rdump left out.
func restoreSpecialBits(ctx context.Context, dev, dir, name string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			dirs = append(dirs, "/"+filepath.ToSlash(strings.TrimPrefix(rel, ".")))
		}
		return nil
	})
	if err != nil {
		return err
	}
	var reqs []string
	for _, d := range dirs {
		if strings.ContainsAny(d, "\n\"") {
			return fmt.Errorf("partition %s: directory name %q cannot be passed to debugfs", name, d)
		}
		reqs = append(reqs, `ls -p "`+d+`"`)
	}
	out, err := debugfs(ctx, dev, reqs...)
	if err != nil {
		return fmt.Errorf("partition %s: debugfs ls: %w\n%s", name, err, out)
	}
	// "debugfs: ls -p "/dir"" echoes the request, then one line per entry:
	// /inode/mode/uid/gid/name/size/
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, `debugfs: ls -p "`); ok {
			cur = strings.TrimSuffix(rest, `"`)
			continue
		}
		f := strings.Split(line, "/")
		if len(f) < 7 || f[0] != "" {
			continue
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil || mode&0o7000 == 0 || f[5] == "." || f[5] == ".." {
			continue
		}
		p := filepath.Join(dir, cur, f[5])
		st, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // not copied (device node)
			}
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			continue
		}
		m := st.Mode().Perm()
		if mode&0o4000 != 0 {
			m |= fs.ModeSetuid
		}
		if mode&0o2000 != 0 {
			m |= fs.ModeSetgid
		}
		if mode&0o1000 != 0 {
			m |= fs.ModeSticky
		}
		if err := os.Chmod(p, m); err != nil {
			return err
		}
	}
	return sc.Err()
}

// extractFAT copies the ESP's tree with mcopy ("image@@offset") and gives
// it the modes the image's own /etc/fstab mounts it with (FAT has none:
// the kernel derives them from umask/fmask/dmask, without showexec every
// file looks executable).
func extractFAT(ctx context.Context, raw string, p Partition, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	img := raw + "@@" + strconv.FormatInt(p.Offset, 10)
	cmd := exec.CommandContext(ctx, "mcopy", "-s", "-p", "-m", "-n", "-i", img, "::/", dir)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("partition %s: mcopy: %w\n%s", p.Name, err, out)
	}
	fstab, _ := os.ReadFile(filepath.Join(dir, "../../etc/fstab"))
	fmask, dmask := fatMasks(fstab, "/boot/efi")
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o777&^dmask)
		}
		return os.Chmod(path, 0o777&^fmask)
	})
}

// fatMasks returns the file and directory masks of the fstab entry for
// mountpoint (the kernel's default umask 0022 if there is none).
func fatMasks(fstab []byte, mountpoint string) (fmask, dmask fs.FileMode) {
	fmask, dmask = 0o022, 0o022
	for _, line := range strings.Split(string(fstab), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[1] != mountpoint {
			continue
		}
		for _, o := range strings.Split(f[3], ",") {
			k, v, _ := strings.Cut(o, "=")
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				continue
			}
			switch k {
			case "umask":
				fmask, dmask = fs.FileMode(n), fs.FileMode(n)
			case "fmask":
				fmask = fs.FileMode(n)
			case "dmask":
				dmask = fs.FileMode(n)
			}
		}
	}
	return fmask, dmask
}

// ReadFile reads one file of an ext4 partition without extracting the rest.
func ReadFile(ctx context.Context, raw string, p Partition, path string) ([]byte, error) {
	dev := raw + "?offset=" + strconv.FormatInt(p.Offset, 10)
	cmd := exec.CommandContext(ctx, "debugfs", "-R", "cat "+path, dev)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("debugfs cat %s: %w: %s", path, err, stderr.String())
	}
	if strings.Contains(stderr.String(), "File not found") {
		return nil, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	return out, nil
}
