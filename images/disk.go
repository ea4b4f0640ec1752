package images

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
)

// GPT partition type GUIDs (Discoverable Partitions Specification).
const (
	typeESP     = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	typeRootX64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	typeVar     = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
)

const sector = 512

// firstLBA is where the first partition starts: 1 MiB, the alignment every
// partitioning tool uses.
const firstLBA = 2048

// diskIDs are the fixed identifiers of one image: derived from the spec's
// name and version, so rebuilds are identical and versions differ.
type diskIDs struct {
	Disk, ESPPart, RootPart, VarPart string // GPT GUIDs
	RootUUID, VarUUID                string // ext4 UUIDs
	RootSeed, VarSeed                string // ext4 directory hash seeds
	ESPVolID                         string // FAT volume id, 8 hex digits
	ESPUUID                          string // the same as blkid shows it: XXXX-XXXX
	Kernel, Title                    string
	Cmdline                          string // GRUB_CMDLINE_LINUX of the image's /etc/default/grub
	GrubLock                         string // the GRUB superuser's password hash no password produces
}

// grubLock is a GRUB PBKDF2 entry whose hash is all zero bits: no password
// maps to it (that would be a PBKDF2-SHA512 preimage), so GRUB's editor and
// shell stay closed to everyone.
var grubLock = "grub.pbkdf2.sha512.10000." + strings.Repeat("00", 64) + "." + strings.Repeat("00", 64)

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

// diskDirs are the places the disk is made from and written to.
type diskDirs struct {
	Rootfs string // the root file system (less /var)
	Varfs  string // /var, moved aside
	ESP    string // the ESP's files
	Work   string // scratch: the partition images
	Disk   string // the raw disk file
}

// command is one host tool run: argv and extra environment.
type command struct {
	Env  []string
	Args []string
}

// partLayout is one partition: where it goes on the disk and the commands
// that make its file-system image.
type partLayout struct {
	Index             int
	Name, Type        string // Type is appliance.PartESP, PartRoot or PartVar
	TypeGUID, GUID    string
	FirstLBA, LastLBA int64
	Offset, Size      int64  // bytes
	Image             string // the file-system image, made by Mkfs
	Filesystem        string // "vfat" or "ext4"
	Mkfs              []command
}

// diskLayout is everything about the disk that is arithmetic: partition
// offsets, GUIDs and the exact mkfs.fat/mcopy/mke2fs/sgdisk arguments. It
// is a pure function of the spec, the identifiers, the directories and the
// source date, so it is tested against a golden file without root or QEMU.
type diskLayout struct {
	Size   int64
	Parts  []partLayout
	Sgdisk command // writes the GPT into dirs.Disk
}

// planDisk lays the spec's partitions out one after another from 1 MiB.
func planDisk(s *appliance.Spec, ids diskIDs, d diskDirs, sde int64) diskLayout {
	// The image's own mke2fs (e2fsprogs 1.47.2 from trixie), run from the
	// root file system with its own dynamic loader and libraries: unlike
	// Debian 12's 1.47.0 it sets every inode's times from SOURCE_DATE_EPOCH
	// (the host's copies ctime and atime from the build tree, which no
	// build can control), and it formats with the options the image's
	// e2fsck and kernel expect. No chroot and no mounts are needed.
	libdir := filepath.Join(d.Rootfs, "usr/lib/x86_64-linux-gnu")
	mke2fs := []string{filepath.Join(libdir, "ld-linux-x86-64.so.2"), "--library-path", libdir, filepath.Join(d.Rootfs, "usr/sbin/mke2fs")}
	mke2fsEnv := []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(sde, 10), "MKE2FS_CONFIG=" + filepath.Join(d.Rootfs, "etc/mke2fs.conf")}
	guid := map[string]string{appliance.PartESP: ids.ESPPart, appliance.PartRoot: ids.RootPart, appliance.PartVar: ids.VarPart}
	typ := map[string]string{appliance.PartESP: typeESP, appliance.PartRoot: typeRootX64, appliance.PartVar: typeVar}

	l := diskLayout{Size: int64(s.Disk.Size)}
	sg := []string{"sgdisk", "--disk-guid=" + ids.Disk}
	start := int64(firstLBA)
	for i, p := range s.Disk.Partitions {
		end := start + int64(p.Size)/sector - 1
		pl := partLayout{
			Index: i + 1, Name: p.Name, Type: p.Type, TypeGUID: typ[p.Type], GUID: guid[p.Type],
			FirstLBA: start, LastLBA: end, Offset: start * sector, Size: int64(p.Size),
			Image: filepath.Join(d.Work, p.Name+".img"),
		}
		kib := strconv.FormatInt(int64(p.Size)/1024, 10)
		switch p.Type {
		case appliance.PartESP:
			pl.Filesystem = "vfat"
			pl.Mkfs = []command{
				{Args: []string{"mkfs.fat", "-C", "-F", "32", "-s", "1", "--invariant", "-i", ids.ESPVolID, "-n", "ESP", pl.Image, kib}},
				{Args: []string{"mcopy", "-s", "-m", "-i", pl.Image, filepath.Join(d.ESP, "EFI"), "::/"}},
			}
		case appliance.PartRoot, appliance.PartVar:
			src, uuid, seed := d.Rootfs, ids.RootUUID, ids.RootSeed
			if p.Type == appliance.PartVar {
				src, uuid, seed = d.Varfs, ids.VarUUID, ids.VarSeed
			}
			pl.Filesystem = "ext4"
			args := append(append([]string(nil), mke2fs...), "-q", "-F", "-t", "ext4", "-b", "4096", "-L", p.Name, "-U", uuid,
				"-E", "hash_seed="+seed+",lazy_itable_init=0,lazy_journal_init=0",
				"-d", src, pl.Image, kib+"k")
			pl.Mkfs = []command{{Env: mke2fsEnv, Args: args}}
		}
		n := strconv.Itoa(pl.Index)
		sg = append(sg,
			"--new="+n+":"+strconv.FormatInt(start, 10)+":"+strconv.FormatInt(end, 10),
			"--typecode="+n+":"+pl.TypeGUID, "--partition-guid="+n+":"+pl.GUID, "--change-name="+n+":"+p.Name)
		l.Parts = append(l.Parts, pl)
		start = end + 1
	}
	l.Sgdisk = command{Args: append(sg, d.Disk)}
	return l
}

// espFiles are the ESP's contents: Debian's signed shim as the
// removable-media loader, signed GRUB next to it, GRUB's config where its
// built-in prefix (/EFI/debian) looks: it locks GRUB and reads the boot
// menu, /boot/grub/grub.cfg, from the root file system. No fbx64.efi: a new VM has no boot
// entries to restore.
var espFiles = []struct{ src, dst string }{
	{src: "usr/lib/shim/shimx64.efi.signed", dst: "EFI/BOOT/BOOTX64.EFI"},
	{src: "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", dst: "EFI/BOOT/grubx64.efi"},
	{dst: "EFI/debian/grub.cfg"}, // rendered from grub-esp.cfg.tmpl
}

// assemble turns the scrubbed root file system into the raw disk, written
// into disk (an empty file at d.Disk that the caller owns and commits).
func (b *builder) assemble(ctx context.Context, d diskDirs, disk *os.File, ids diskIDs) error {
	if ids.Kernel == "" {
		return errors.New("no boot menu: the boot stage did not run")
	}
	if err := b.splitVar(d); err != nil {
		return err
	}
	b.stage("esp")
	if err := b.stageESP(d, ids); err != nil {
		return err
	}
	layout := planDisk(b.spec, ids, d, b.sde)
	if err := b.makeFilesystems(ctx, layout); err != nil {
		return err
	}
	b.stage("partition table")
	return b.writeDisk(ctx, layout, disk)
}

// bootMenu finds the kernel and writes the boot menu into the finished
// root file system (before its integrity database is made, which then
// covers the menu too), and notes both in ids for the ESP.
func bootMenu(rootfs string, ids *diskIDs) error {
	kernels, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return fmt.Errorf("want exactly one kernel in /boot, found %d (spec packages must name one kernel)", len(kernels))
	}
	ids.Kernel = strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	return writeBootMenu(rootfs, ids)
}

// writeBootMenu writes the locked boot menu, /boot/grub/grub.cfg (root's
// only), with the kernel command line of the image's /etc/default/grub.
func writeBootMenu(rootfs string, ids *diskIDs) error {
	dg, err := os.ReadFile(filepath.Join(rootfs, harden.DefaultGrub))
	if err != nil {
		return fmt.Errorf("kernel command line: %w", err)
	}
	if ids.Cmdline, err = harden.KernelCmdline(dg); err != nil {
		return err
	}
	ids.GrubLock = grubLock
	menu, err := render("grub.cfg.tmpl", ids)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "boot/grub"), 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(rootfs, "boot/grub/grub.cfg"), menu, 0o600)
}

// splitVar makes /var its own file system: it moves aside, its mount point
// (and the ESP's) stays, and every time is clamped to the source date.
func (b *builder) splitVar(d diskDirs) error {
	if err := os.Rename(filepath.Join(d.Rootfs, "var"), d.Varfs); err != nil {
		return err
	}
	for _, mp := range []string{"var", "boot/efi"} {
		if err := os.MkdirAll(filepath.Join(d.Rootfs, mp), 0o755); err != nil {
			return err
		}
	}
	return clampTimes(d.Rootfs, b.sde)
}

// stageESP puts the boot loader and GRUB's configuration into d.ESP.
func (b *builder) stageESP(d diskDirs, ids diskIDs) error {
	grubCfg, err := render("grub-esp.cfg.tmpl", ids)
	if err != nil {
		return err
	}
	for _, f := range espFiles {
		data := grubCfg
		if f.src != "" {
			if data, err = os.ReadFile(filepath.Join(d.Rootfs, f.src)); err != nil {
				return fmt.Errorf("boot loader (packages shim-signed, grub-efi-amd64-signed): %w", err)
			}
		}
		p := filepath.Join(d.ESP, f.dst)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return clampTimes(d.ESP, b.sde)
}

// makeFilesystems makes every partition's file-system image.
func (b *builder) makeFilesystems(ctx context.Context, l diskLayout) error {
	for _, p := range l.Parts {
		if p.Filesystem == "ext4" {
			b.stage("filesystem " + p.Name)
		}
		for _, c := range p.Mkfs {
			if err := b.run(ctx, c.Env, c.Args[0], c.Args[1:]...); err != nil {
				if p.Filesystem == "ext4" {
					return fmt.Errorf("partition %s (%s in %s): the files may not fit: %w", p.Name, appliance.Size(p.Size), b.spec.Source, err)
				}
				return err
			}
		}
	}
	return nil
}

// writeDisk sizes the disk, writes the partition table and copies every
// partition image to its offset, keeping holes.
func (b *builder) writeDisk(ctx context.Context, l diskLayout, f *os.File) error {
	if err := f.Truncate(l.Size); err != nil {
		return err
	}
	if err := b.run(ctx, l.Sgdisk.Env, l.Sgdisk.Args[0], l.Sgdisk.Args[1:]...); err != nil {
		return err
	}
	b.stage("write partitions")
	for _, p := range l.Parts {
		src, err := os.Open(p.Image)
		if err != nil {
			return err
		}
		st, err := src.Stat()
		if err == nil {
			err = writeSparseAt(ctx, f, src, p.Offset, st.Size())
		}
		src.Close()
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Base(p.Image), err)
		}
		b.bytes += st.Size()
	}
	return f.Sync()
}
