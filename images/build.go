// Package images builds the appliance disk from a spec: a Debian root file
// system made with mmdebstrap from a local package cache, our payload put in
// by the Go provisioners (as a Debian package built with nfpm), and a GPT
// disk assembled from file-system images without loop devices or mounts
// (mkfs.fat + mcopy for the ESP, the image's own mke2fs -d for root and
// /var, sgdisk for the partition table). The raw disk is sparse, reproducible for a given
// SOURCE_DATE_EPOCH and package cache, and converted into the registered
// output formats.
//
// Image builders of the field were considered: mkosi (needs a newer systemd
// than the Debian 12 build host, and is Python), debos (fakemachine VMs,
// which need KVM) and Packer (needs a hypervisor to boot an installer). The
// steps here are the same tools those use underneath, driven from Go.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
)

// DefaultSourceDateEpoch is used when SOURCE_DATE_EPOCH is not set, so that
// builds are reproducible by default (2025-01-01T00:00:00Z).
const DefaultSourceDateEpoch = 1735689600

// Options of a build.
type Options struct {
	Spec     *appliance.Spec
	OutDir   string   // final outputs
	BinDir   string   // our binaries (ksmg-gatewayd, ...)
	CacheDir string   // package cache ($KSMG_CACHE)
	Formats  []string // nil: the spec's formats
	// SourceDateEpoch is the time of every file in the image; 0 means
	// $SOURCE_DATE_EPOCH or DefaultSourceDateEpoch.
	SourceDateEpoch int64
	Log             *slog.Logger
	// Progress, if set, is told about each stage as it starts.
	Progress func(Progress)
}

// Progress reports a stage of the build.
type Progress struct {
	Stage   string
	Elapsed time.Duration // since the build started
	Bytes   int64         // bytes written so far, where the stage knows it
}

// Output is one file the build produced.
type Output struct {
	Format string
	Path   string
	Size   int64 // apparent size
	SHA256 string
}

// Result of a successful build.
type Result struct {
	Outputs   []Output
	SHA256SUM string // path of SHA256SUMS
	Fetched   bool   // the package cache was filled from the mirror
	Elapsed   time.Duration
}

type builder struct {
	opts  Options
	spec  *appliance.Spec
	log   *slog.Logger
	start time.Time
	sde   int64
	bytes int64
}

func (b *builder) stage(name string, attrs ...any) {
	b.log.Info("stage", append([]any{"stage", name, "elapsed", time.Since(b.start).Round(time.Millisecond).String(), "bytes", b.bytes}, attrs...)...)
	if b.opts.Progress != nil {
		b.opts.Progress(Progress{Stage: name, Elapsed: time.Since(b.start), Bytes: b.bytes})
	}
}

// run runs a host tool with SOURCE_DATE_EPOCH set; its output goes to the
// debug log and, on failure, into the error.
func (b *builder) run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(b.sde, 10), "LC_ALL=C.UTF-8"), env...)
	cmd.WaitDelay = 10 * time.Second
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	b.log.Debug("run", "cmd", name, "args", args)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: %w\n%s", name, err, out.String())
	}
	return nil
}

// tailBuffer keeps the last 8 KiB of a command's output for error messages.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 8192 {
		t.b = t.b[len(t.b)-8192:]
	}
	return len(p), nil
}
func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }

// Build builds the disk and the requested formats into opts.OutDir. Outputs
// and SHA256SUMS are written under temporary names and renamed when all are
// complete; the work directory (OutDir/.work-*) is removed in any case.
func Build(ctx context.Context, opts Options) (*Result, error) {
	if opts.Spec == nil {
		return nil, errors.New("build: no spec")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	names := opts.Formats
	if names == nil {
		names = opts.Spec.Formats
	}
	fmts, err := lookupFormats(names)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if len(fmts) == 0 {
		return nil, errors.New("build: no output format requested")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("build: must run as root (mmdebstrap --mode=root, file ownership in the image)")
	}
	b := &builder{opts: opts, spec: opts.Spec, log: opts.Log, start: time.Now(), sde: opts.SourceDateEpoch}
	if b.sde == 0 {
		b.sde = DefaultSourceDateEpoch
		if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
			if b.sde, err = strconv.ParseInt(v, 10, 64); err != nil || b.sde <= 0 {
				return nil, fmt.Errorf("build: SOURCE_DATE_EPOCH=%q: want a positive integer (seconds since 1970)", v)
			}
		}
	}
	for _, d := range []*string{&opts.OutDir, &opts.BinDir, &opts.CacheDir} {
		if *d == "" {
			return nil, errors.New("build: OutDir, BinDir and CacheDir must be set")
		}
		if *d, err = filepath.Abs(*d); err != nil {
			return nil, err
		}
	}
	b.opts = opts
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("build: output directory: %w", err)
	}
	removeStale(opts.OutDir, b.log)
	work, err := os.MkdirTemp(opts.OutDir, ".work-")
	if err != nil {
		return nil, fmt.Errorf("build: work directory: %w", err)
	}
	defer func() {
		if err := removeWork(work); err != nil {
			b.log.Warn("removing work directory", "dir", work, "err", err)
		}
	}()

	b.stage("packages")
	repo, fetched, err := b.ensureRepo(ctx)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	rootfs := filepath.Join(work, "rootfs")
	b.stage("rootfs", "repo", repo)
	if err := b.bootstrap(ctx, repo, rootfs); err != nil {
		return nil, fmt.Errorf("build: root file system: %w", err)
	}
	ids := newDiskIDs(b.spec)
	b.stage("payload")
	if err := b.provision(ctx, rootfs, work, ids); err != nil {
		return nil, fmt.Errorf("build: payload: %w", err)
	}
	b.stage("scrub")
	if err := b.scrub(rootfs); err != nil {
		return nil, fmt.Errorf("build: scrub: %w", err)
	}
	raw := filepath.Join(work, b.spec.ImageBase()+".raw")
	if err := b.assemble(ctx, rootfs, work, raw, ids); err != nil {
		return nil, fmt.Errorf("build: disk: %w", err)
	}

	// Formats, each into a temporary name in OutDir.
	type pending struct {
		out       Output
		tmp, path string
	}
	var outs []pending
	defer func() {
		for _, p := range outs {
			_ = os.Remove(p.tmp)
		}
	}()
	for _, f := range fmts {
		b.stage("format " + f.name)
		final := filepath.Join(opts.OutDir, b.spec.ImageBase()+"."+f.ext)
		tmp := filepath.Join(opts.OutDir, ".tmp-"+filepath.Base(final))
		_ = os.Remove(tmp)
		if f.name == "raw" {
			// The raw disk is done; it only moves (same file system).
			err = os.Rename(raw, tmp)
			if err == nil {
				err = os.Symlink(tmp, raw) // later formats still read "raw"
			}
		} else {
			err = f.fn(ctx, raw, tmp, b.spec)
		}
		if err != nil {
			_ = os.Remove(tmp)
			return nil, fmt.Errorf("build: format %s: %w", f.name, err)
		}
		outs = append(outs, pending{out: Output{Format: f.name}, tmp: tmp, path: final})
	}
	b.stage("checksums")
	var sums strings.Builder
	for i := range outs {
		p := &outs[i]
		sum, size, err := b.hashFile(ctx, p.tmp)
		if err != nil {
			return nil, fmt.Errorf("build: checksum %s: %w", p.path, err)
		}
		p.out.SHA256, p.out.Size, p.out.Path = sum, size, p.path
		fmt.Fprintf(&sums, "%s  %s\n", sum, filepath.Base(p.path))
	}
	sumsPath := filepath.Join(opts.OutDir, "SHA256SUMS")
	// All outputs are complete: switch them into place, SHA256SUMS last.
	res := &Result{Fetched: fetched, SHA256SUM: sumsPath}
	for _, p := range outs {
		if err := os.Rename(p.tmp, p.path); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		res.Outputs = append(res.Outputs, p.out)
	}
	// SHA256SUMS last, and its directory sync makes every rename durable.
	if err := atomicfile.WriteFile(sumsPath, []byte(sums.String()), 0o644); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	res.Elapsed = time.Since(b.start)
	b.stage("done")
	return res, nil
}

// removeStale deletes what an interrupted build left in the output
// directory: work directories and temporary outputs (never final files).
func removeStale(dir string, log *slog.Logger) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".work-") || strings.HasPrefix(e.Name(), ".tmp-") {
			log.Info("removing leftover of an interrupted build", "path", filepath.Join(dir, e.Name()))
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// memoMinSize: smaller files are hashed every time.
var memoMinSize int64 = 1 << 30

// hashFile returns the SHA-256 and size of a file. For large (sparse)
// files the result is memoised in the cache under the file's sparse
// fingerprint (see sparseFingerprint), so an unchanged 100 GiB disk is not
// hashed again on every rebuild.
func (b *builder) hashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	var memo string
	if st.Size() >= memoMinSize {
		if fp, err := sparseFingerprint(ctx, f); err == nil {
			memo = filepath.Join(b.opts.CacheDir, "sha256", fp)
			if sum, err := os.ReadFile(memo); err == nil && len(strings.TrimSpace(string(sum))) == 64 {
				return strings.TrimSpace(string(sum)), st.Size(), nil
			}
		}
	}
	h := sha256.New()
	n, err := hashSparse(ctx, h, f, st.Size())
	if err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if memo != "" {
		if err := os.MkdirAll(filepath.Dir(memo), 0o755); err == nil {
			_ = atomicfile.WriteFile(memo, []byte(sum+"\n"), 0o644) // a cache: best effort
		}
	}
	return sum, n, nil
}
