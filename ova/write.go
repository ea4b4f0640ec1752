package ova

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/ova/vmdk"
)

// ProductInfo is shown in the deploy wizard.
type ProductInfo struct {
	Name        string // e.g. "Kaspersky Secure Mail Gateway"
	Vendor      string
	FullVersion string // e.g. "0.1.0 (build 42)"; defaults to the version
	ProductURL  string
	VendorURL   string
}

// Options describe the VM the OVA creates.
type Options struct {
	Name         string // VM and file base name, e.g. "ksmg"
	Version      string // e.g. "0.1.0"
	Product      ProductInfo
	CPUs         int
	MemoryMiB    int
	DiskCapacity int64  // virtual disk size in bytes; 0 = the raw disk's size
	EULA         string // full EULA text
	// Properties offered at deploy time; nil means Properties().
	Properties []Property
	// Level and Workers tune the VMDK compression (vmdk.Options).
	Level   int
	Workers int
	Logger  *slog.Logger // nil: slog.Default()
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,39}$`)

func (o *Options) validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("ova option %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !nameRE.MatchString(o.Name) {
		bad("Name", "%q: want 1-40 of a-z, 0-9, '.', '_', '-'", o.Name)
	}
	if !nameRE.MatchString(o.Version) {
		bad("Version", "%q: want 1-40 of a-z, 0-9, '.', '_', '-'", o.Version)
	}
	if strings.TrimSpace(o.Product.Name) == "" {
		bad("Product.Name", "empty")
	}
	if strings.TrimSpace(o.Product.Vendor) == "" {
		bad("Product.Vendor", "empty")
	}
	if o.CPUs < 1 || o.CPUs > 768 {
		bad("CPUs", "%d: want 1..768", o.CPUs)
	}
	if o.MemoryMiB < 256 || o.MemoryMiB > 24<<20 {
		bad("MemoryMiB", "%d: want 256..%d", o.MemoryMiB, 24<<20)
	}
	if o.DiskCapacity < 0 || o.DiskCapacity%vmdk.SectorSize != 0 {
		bad("DiskCapacity", "%d: want a non-negative multiple of 512 bytes", o.DiskCapacity)
	}
	if strings.TrimSpace(o.EULA) == "" {
		bad("EULA", "empty: the OVA must carry the EULA the deployer accepts")
	}
	if err := validateProperties(o.Properties); err != nil {
		errs = append(errs, fmt.Errorf("ova option Properties: %w", err))
	}
	return errors.Join(errs...)
}

// Names are the archive's member names for a name and version.
type Names struct{ OVF, MF, VMDK string }

// MemberNames returns the member names Write uses.
func MemberNames(name, version string) Names {
	base := name + "-" + version
	return Names{OVF: base + ".ovf", MF: base + ".mf", VMDK: base + "-disk1.vmdk"}
}

// modTime is every member's mtime: fixed, so equal inputs give equal bytes.
var modTime = time.Unix(0, 0)

// Write packages the raw disk image at rawPath as an OVA at outPath. The
// archive is built under a temporary name next to outPath (atomicfile),
// synced and renamed into place only when complete; on error nothing is
// left at outPath.
func Write(ctx context.Context, rawPath, outPath string, opts Options) error {
	out, err := atomicfile.Create(outPath, 0o644)
	if err != nil {
		return fmt.Errorf("ova: create temporary archive: %w", err)
	}
	defer out.Cleanup()
	if err := WriteTo(ctx, rawPath, out.File, opts); err != nil {
		return err
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	return nil
}

// WriteTo packages the raw disk image at rawPath as an OVA into out, an
// empty file the caller has staged: it is written from offset 0 and neither
// synced, closed nor renamed here (the caller publishes it). The VMDK is
// compressed into a scratch file next to out first, because the manifest
// that precedes it in the archive holds its digest.
func WriteTo(ctx context.Context, rawPath string, out *os.File, opts Options) error {
	if opts.Properties == nil {
		opts.Properties = Properties()
	}
	if opts.Product.FullVersion == "" {
		opts.Product.FullVersion = opts.Version
	}
	if err := opts.validate(); err != nil {
		return err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	names := MemberNames(opts.Name, opts.Version)
	raw, err := os.Open(rawPath)
	if err != nil {
		return fmt.Errorf("ova: open raw disk: %w", err)
	}
	defer raw.Close()

	dir := filepath.Dir(out.Name())
	disk, err := os.CreateTemp(dir, "."+filepath.Base(out.Name())+".*.vmdk")
	if err != nil {
		return fmt.Errorf("ova: create temporary VMDK: %w", err)
	}
	defer func() { disk.Close(); os.Remove(disk.Name()) }()
	start := time.Now()
	res, err := vmdk.Convert(ctx, raw, disk, vmdk.Options{
		Capacity:   opts.DiskCapacity,
		Level:      opts.Level,
		Workers:    opts.Workers,
		ExtentName: names.VMDK,
	})
	if err != nil {
		return fmt.Errorf("ova: convert %s: %w", rawPath, err)
	}
	log.Info("vmdk written", "grains", res.Grains, "bytes", res.Size, "capacity", res.Capacity, "elapsed", time.Since(start).Round(time.Millisecond))

	ovfData, err := renderOVF(ovfParams{
		Opts: opts, VMDKName: names.VMDK, VMDKSize: res.Size,
		Capacity: res.Capacity, PopulatedSize: res.PopulatedSize,
		Groups: groupProperties(opts.Properties),
	})
	if err != nil {
		return err
	}
	if err := out.Truncate(0); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("ova: %w", err)
	}
	if err := assemble(ctx, out, names, ovfData, disk, res.Size); err != nil {
		return fmt.Errorf("ova: write %s: %w", out.Name(), err)
	}
	log.Info("ova written", "path", out.Name(), "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// assemble writes the three members. The manifest precedes the disk but
// holds the disk's digest, so it is written as a placeholder of its final
// length and filled in once the disk has been hashed on its way in.
func assemble(ctx context.Context, out *os.File, names Names, ovfData []byte, disk *os.File, diskSize int64) error {
	var off int64
	write := func(b []byte) error {
		n, err := out.Write(b)
		off += int64(n)
		return err
	}
	member := func(name string, size int64) error {
		var hb bytes.Buffer
		if err := tar.NewWriter(&hb).WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644,
			ModTime: modTime, Format: tar.FormatUSTAR,
		}); err != nil {
			return fmt.Errorf("tar header for %s: %w", name, err)
		}
		return write(hb.Bytes())
	}
	pad := func() error {
		if r := off % 512; r != 0 {
			return write(make([]byte, 512-r))
		}
		return nil
	}
	ovfSum := sha256.Sum256(ovfData)
	mf := func(diskSum []byte) []byte {
		return fmt.Appendf(nil, "SHA256(%s)= %s\nSHA256(%s)= %s\n",
			names.OVF, hex.EncodeToString(ovfSum[:]), names.VMDK, hex.EncodeToString(diskSum))
	}
	placeholder := mf(make([]byte, sha256.Size))

	if err := member(names.OVF, int64(len(ovfData))); err != nil {
		return err
	}
	if err := write(ovfData); err != nil {
		return err
	}
	if err := pad(); err != nil {
		return err
	}
	if err := member(names.MF, int64(len(placeholder))); err != nil {
		return err
	}
	mfOff := off
	if err := write(placeholder); err != nil {
		return err
	}
	if err := pad(); err != nil {
		return err
	}
	if err := member(names.VMDK, diskSize); err != nil {
		return err
	}
	if _, err := disk.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(out, h), &ctxReader{ctx, disk}, make([]byte, 1<<20))
	off += n
	if err != nil {
		return fmt.Errorf("copy %s: %w", names.VMDK, err)
	}
	if n != diskSize {
		return fmt.Errorf("copy %s: %d bytes, want %d", names.VMDK, n, diskSize)
	}
	if err := pad(); err != nil {
		return err
	}
	if err := write(make([]byte, 1024)); err != nil { // end-of-archive: two zero blocks
		return err
	}
	final := mf(h.Sum(nil))
	if len(final) != len(placeholder) {
		return errors.New("manifest length changed") // cannot happen: fixed-width digests
	}
	_, err = out.WriteAt(final, mfOff)
	return err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
