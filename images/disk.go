package images

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/appliance"
)

// GPT partition type GUIDs (Discoverable Partitions Specification).
const (
	typeESP     = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	typeRootX64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	typeVar     = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
)

const sector = 512

// diskIDs are the fixed identifiers of one image: derived from the spec's
// name and version, so rebuilds are identical and versions differ.
type diskIDs struct {
	Disk, ESPPart, RootPart, VarPart string // GPT GUIDs
	RootUUID, VarUUID                string // ext4 UUIDs
	RootSeed, VarSeed                string // ext4 directory hash seeds
	ESPVolID                         string // FAT volume id, 8 hex digits
	ESPUUID                          string // the same as blkid shows it: XXXX-XXXX
	Kernel, Title                    string
}

func newDiskIDs(s *appliance.Spec) diskIDs {
	id := func(label string) string {
		h := sha256.Sum256([]byte("ksmg-image\x00" + s.Name + "\x00" + s.Version + "\x00" + label))
		h[6] = h[6]&0x0f | 0x80 // version 8 (custom), RFC 9562
		h[8] = h[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}
	vol := strings.ToUpper(id("esp-volume")[:8])
	return diskIDs{
		Disk: id("disk"), ESPPart: id("esp-part"), RootPart: id("root-part"), VarPart: id("var-part"),
		RootUUID: id("root-fs"), VarUUID: id("var-fs"), RootSeed: id("root-seed"), VarSeed: id("var-seed"),
		ESPVolID: vol, ESPUUID: vol[:4] + "-" + vol[4:],
		Title: s.Name + " " + s.Version,
	}
}

// assemble turns the root file system into the raw disk.
func (b *builder) assemble(ctx context.Context, rootfs, work, raw string, ids diskIDs) error {
	s := b.spec
	// The image's own mke2fs (e2fsprogs 1.47.2 from trixie), run from the
	// root file system with its own dynamic loader and libraries: unlike
	// Debian 12's 1.47.0 it sets every inode's times from SOURCE_DATE_EPOCH
	// (the host's copies ctime and atime from the build tree, which no
	// build can control), and it formats with the options the image's
	// e2fsck and kernel expect. No chroot and no mounts are needed.
	libdir := filepath.Join(rootfs, "usr/lib/x86_64-linux-gnu")
	mke2fs := []string{filepath.Join(libdir, "ld-linux-x86-64.so.2"), "--library-path", libdir, filepath.Join(rootfs, "usr/sbin/mke2fs")}
	env := []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(b.sde, 10), "MKE2FS_CONFIG=" + filepath.Join(rootfs, "etc/mke2fs.conf")}
	kernels, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("want exactly one kernel in /boot, found %d (spec packages must name one kernel)", len(kernels))
	}
	ids.Kernel = strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")

	// /var becomes its own file system: move it aside, leave the mount point.
	varfs := filepath.Join(work, "varfs")
	if err := os.Rename(filepath.Join(rootfs, "var"), varfs); err != nil {
		return err
	}
	for _, mp := range []string{"var", "boot/efi"} {
		if err := os.MkdirAll(filepath.Join(rootfs, mp), 0o755); err != nil {
			return err
		}
	}
	if err := clampTimes(rootfs, b.sde); err != nil {
		return err
	}

	// ESP: Debian's signed shim as the removable-media loader, signed GRUB
	// next to it, GRUB's config where its built-in prefix (/EFI/debian)
	// looks. No fbx64.efi: a new VM has no boot entries to restore.
	b.stage("esp")
	esp := filepath.Join(work, "esp")
	grubCfg, err := render("grub.cfg.tmpl", ids)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		src  string
		data []byte
		dst  string
	}{
		{src: "usr/lib/shim/shimx64.efi.signed", dst: "EFI/BOOT/BOOTX64.EFI"},
		{src: "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", dst: "EFI/BOOT/grubx64.efi"},
		{data: grubCfg, dst: "EFI/debian/grub.cfg"},
	} {
		data := f.data
		if f.src != "" {
			if data, err = os.ReadFile(filepath.Join(rootfs, f.src)); err != nil {
				return fmt.Errorf("boot loader (packages shim-signed, grub-efi-amd64-signed): %w", err)
			}
		}
		p := filepath.Join(esp, f.dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	if err := clampTimes(esp, b.sde); err != nil {
		return err
	}
	parts := s.Disk.Partitions
	images := map[string]string{}
	for _, p := range parts {
		img := filepath.Join(work, p.Name+".img")
		images[p.Type] = img
		switch p.Type {
		case appliance.PartESP:
			if err := b.run(ctx, nil, "mkfs.fat", "-C", "-F", "32", "-s", "1", "--invariant", "-i", ids.ESPVolID, "-n", "ESP", img, strconv.FormatInt(int64(p.Size)/1024, 10)); err != nil {
				return err
			}
			if err := b.run(ctx, nil, "mcopy", "-s", "-m", "-i", img, filepath.Join(esp, "EFI"), "::/"); err != nil {
				return err
			}
		case appliance.PartRoot, appliance.PartVar:
			b.stage("filesystem " + p.Name)
			src, uuid, seed := rootfs, ids.RootUUID, ids.RootSeed
			if p.Type == appliance.PartVar {
				src, uuid, seed = varfs, ids.VarUUID, ids.VarSeed
			}
			args := append(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-L", p.Name, "-U", uuid,
				"-E", "hash_seed="+seed+",lazy_itable_init=0,lazy_journal_init=0",
				"-d", src, img, strconv.FormatInt(int64(p.Size)/1024, 10)+"k")
			err := b.run(ctx, env, args[0], args[1:]...)
			if err != nil {
				return fmt.Errorf("partition %s (%s in %s): the files may not fit: %w", p.Name, p.Size, s.Source, err)
			}
		}
	}

	b.stage("partition table")
	f, err := os.OpenFile(raw, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(s.Disk.Size)); err != nil {
		return err
	}
	args := []string{"--disk-guid=" + ids.Disk}
	start := int64(2048) // 1 MiB alignment
	type placed struct {
		img    string
		offset int64
	}
	var place []placed
	guid := map[string]string{appliance.PartESP: ids.ESPPart, appliance.PartRoot: ids.RootPart, appliance.PartVar: ids.VarPart}
	typ := map[string]string{appliance.PartESP: typeESP, appliance.PartRoot: typeRootX64, appliance.PartVar: typeVar}
	for i, p := range parts {
		n := strconv.Itoa(i + 1)
		end := start + int64(p.Size)/sector - 1
		args = append(args,
			"--new="+n+":"+strconv.FormatInt(start, 10)+":"+strconv.FormatInt(end, 10),
			"--typecode="+n+":"+typ[p.Type], "--partition-guid="+n+":"+guid[p.Type], "--change-name="+n+":"+p.Name)
		place = append(place, placed{images[p.Type], start * sector})
		start = end + 1
	}
	if err := b.run(ctx, nil, "sgdisk", append(args, raw)...); err != nil {
		return err
	}
	b.stage("write partitions")
	for _, p := range place {
		src, err := os.Open(p.img)
		if err != nil {
			return err
		}
		st, err := src.Stat()
		if err == nil {
			err = writeSparseAt(ctx, f, src, p.offset, st.Size())
		}
		src.Close()
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Base(p.img), err)
		}
		b.bytes += st.Size()
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}
