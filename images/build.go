// Package images builds the appliance disk from a spec: a Debian root file
// system made with mmdebstrap from a local package cache, our payload put in
// by the Go provisioners (as a Debian package built with nfpm), and a GPT
// disk assembled from file-system images without loop devices or mounts
// (mkfs.fat + mcopy for the ESP, the image's own mke2fs -d for root and
// /var, sgdisk for the partition table). The raw disk is sparse, reproducible for a given
// SOURCE_DATE_EPOCH and package cache, and converted into the registered
// output formats.
//
// A build is a Pipeline of named stages, run in this order by both front
// ends (`ksmg build` and the Packer builder):
//
//	plan → packages → rootfs → payload → [provision] → scrub → sbom → disk → formats → publish
//
// provision is the hook where other provisioners (Packer's) work inside the
// root file system before it is scrubbed and becomes a disk. sbom describes
// the scrubbed root file system (images/sbom); publish signs SHA256SUMS when
// a signer is given (package sign).
//
// Image builders of the field were considered: mkosi (needs a newer systemd
// than the Debian 12 build host, and is Python), debos (fakemachine VMs,
// which need KVM) and Packer (needs a hypervisor to boot an installer). The
// steps here are the same tools those use underneath, driven from Go.
package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images/sbom"
	"github.com/ksmg-appliance/ksmg/provisioner"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
	"github.com/ksmg-appliance/ksmg/sign"
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
	// Provision, if set, runs between the payload and the scrub stages with
	// the root file system (the Packer builder runs Packer's provisioners
	// there). Files it leaves in the root become part of the disk.
	Provision func(ctx context.Context, root RootFS) error
	// Signer, if set, signs SHA256SUMS (SHA256SUMS.asc); without it an
	// earlier build's signature is removed.
	Signer *sign.Signer
}

// RootFS is the root file system a Provision hook works in.
type RootFS struct {
	Dir string // host directory of the root file system
	// Env is the environment commands run in it should get
	// (SOURCE_DATE_EPOCH).
	Env []string
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

// StageTime is how long one stage of the pipeline took.
type StageTime struct {
	Stage   string
	Elapsed time.Duration
}

// Result of a successful build.
type Result struct {
	Outputs   []Output
	SHA256SUM string // path of SHA256SUMS
	Signature string // path of SHA256SUMS.asc; "" when unsigned
	Fetched   bool   // the package cache was filled from the mirror
	Elapsed   time.Duration
	Stages    []StageTime // the pipeline's stages in order, with their times
}

// The pipeline's stages, in the order they run.
const (
	StagePlan      = "plan"
	StagePackages  = "packages"
	StageRootFS    = "rootfs"
	StagePayload   = "payload"
	StageProvision = "provision"
	StageScrub     = "scrub"
	StageBoot      = "boot menu"
	StageIntegrity = "integrity"
	StageSBOM      = "sbom"
	StageDisk      = "disk"
	StageFormats   = "formats"
	StagePublish   = "publish"
)

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

// Build builds the disk and the requested formats into opts.OutDir: Plan,
// then every stage. Outputs and SHA256SUMS are written under temporary names
// and renamed when all are complete; the work directory (OutDir/.work-*) is
// removed in any case.
func Build(ctx context.Context, opts Options) (*Result, error) {
	p, err := Plan(opts)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Run(ctx)
}

// Pipeline is one planned build. Run it once, then Close it.
type Pipeline struct {
	b       builder
	fmts    []format
	work    string
	outs    *Outputs
	stages  []StageTime
	fetched bool

	// What the stages hand on.
	repo    string
	rootfs  string
	ids     diskIDs
	disk    string // the raw disk, in work or staged as the raw output
	outputs []Output
	sums    string
	sig     string
}

// Plan checks the options and prepares the work directory: nothing else
// runs. Its errors are the caller's (bad spec, format, environment).
func Plan(opts Options) (*Pipeline, error) {
	start := time.Now()
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
	sde, err := ResolveSourceDateEpoch(opts.SourceDateEpoch)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	for _, d := range []*string{&opts.OutDir, &opts.BinDir, &opts.CacheDir} {
		if *d == "" {
			return nil, errors.New("build: OutDir, BinDir and CacheDir must be set")
		}
		if *d, err = filepath.Abs(*d); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("build: output directory: %w", err)
	}
	removeStale(opts.OutDir, opts.Log)
	work, err := os.MkdirTemp(opts.OutDir, ".work-")
	if err != nil {
		return nil, fmt.Errorf("build: work directory: %w", err)
	}
	p := &Pipeline{
		b:    builder{opts: opts, spec: opts.Spec, log: opts.Log, start: start, sde: sde},
		fmts: fmts, work: work,
		outs: NewOutputs(opts.OutDir, OutputOptions{CacheDir: opts.CacheDir, Signer: opts.Signer}),
	}
	p.stages = append(p.stages, StageTime{StagePlan, time.Since(start)})
	return p, nil
}

// ResolveSourceDateEpoch resolves a build's time: opt if set, else
// $SOURCE_DATE_EPOCH, else DefaultSourceDateEpoch.
func ResolveSourceDateEpoch(opt int64) (int64, error) {
	if opt < 0 {
		return 0, fmt.Errorf("source date epoch %d: want a positive number of seconds since 1970", opt)
	}
	if opt != 0 {
		return opt, nil
	}
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return DefaultSourceDateEpoch, nil
	}
	sde, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sde <= 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a positive integer (seconds since 1970)", v)
	}
	return sde, nil
}

// SourceDateEpoch is the time of every file in the image.
func (p *Pipeline) SourceDateEpoch() int64 { return p.b.sde }

// step is one stage of the pipeline: its name and what it does.
type step struct {
	name string
	do   func(context.Context) error
}

// Steps are the stages after plan, in order.
func (p *Pipeline) steps() []step {
	return []step{
		{StagePackages, p.packages},
		{StageRootFS, p.rootFS},
		{StagePayload, p.payload},
		{StageProvision, p.provision},
		{StageScrub, p.scrub},
		{StageBoot, p.bootMenu},
		{StageIntegrity, p.integrity},
		{StageSBOM, p.sbom},
		{StageDisk, p.makeDisk},
		{StageFormats, p.formats},
		{StagePublish, p.publish},
	}
}

// Run runs the stages in order and stops at the first error.
func (p *Pipeline) Run(ctx context.Context) (*Result, error) {
	for _, s := range p.steps() {
		start := time.Now()
		if err := s.do(ctx); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
		p.stages = append(p.stages, StageTime{s.name, time.Since(start)})
	}
	res := &Result{Outputs: p.outputs, SHA256SUM: p.sums, Signature: p.sig, Fetched: p.fetched, Elapsed: time.Since(p.b.start), Stages: p.stages}
	p.b.stage("done")
	return res, nil
}

// Close removes the work directory and any output that was staged but not
// published.
func (p *Pipeline) Close() {
	p.outs.Cleanup()
	if err := removeWork(p.work); err != nil {
		p.b.log.Warn("removing work directory", "dir", p.work, "err", err)
	}
}

// packages makes sure the local package repository for the spec exists.
func (p *Pipeline) packages(ctx context.Context) (err error) {
	p.b.stage("packages")
	p.repo, p.fetched, err = p.b.ensureRepo(ctx)
	return err
}

// rootFS bootstraps the root file system from the local repository.
func (p *Pipeline) rootFS(ctx context.Context) error {
	p.rootfs = filepath.Join(p.work, "rootfs")
	p.b.stage("rootfs", "repo", p.repo)
	if err := p.b.bootstrap(ctx, p.repo, p.rootfs); err != nil {
		return fmt.Errorf("root file system: %w", err)
	}
	return nil
}

// payload puts our package, accounts, directories and units in.
func (p *Pipeline) payload(ctx context.Context) error {
	p.ids = newDiskIDs(p.b.spec)
	p.b.stage("payload")
	if err := p.b.provision(ctx, p.rootfs, p.work, p.ids); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	return nil
}

// provision runs the caller's hook, if any, in the root file system.
func (p *Pipeline) provision(ctx context.Context) error {
	if p.b.opts.Provision == nil {
		return nil
	}
	p.b.stage("provision")
	root := RootFS{Dir: p.rootfs, Env: []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(p.b.sde, 10)}}
	if err := p.b.opts.Provision(ctx, root); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	return ctx.Err()
}

// scrub removes build-time state and checks that no credential ships.
func (p *Pipeline) scrub(context.Context) error {
	p.b.stage("scrub")
	if err := p.b.scrub(p.rootfs); err != nil {
		return fmt.Errorf("scrub: %w", err)
	}
	return nil
}

// bootMenu writes /boot/grub/grub.cfg for the disk's ids, dated
// SOURCE_DATE_EPOCH like the rest of the tree.
func (p *Pipeline) bootMenu(context.Context) error {
	p.b.stage("boot menu")
	if err := bootMenu(p.rootfs, &p.ids); err != nil {
		return fmt.Errorf("boot menu: %w", err)
	}
	return clampTimes(filepath.Join(p.rootfs, "boot"), p.b.sde)
}

// integrity records the finished root file system in AIDE's database
// (harden.IntegrityDatabase): after scrub, so that the database holds the
// files as they ship, with their clamped times. The database file itself
// then gets SOURCE_DATE_EPOCH too.
func (p *Pipeline) integrity(ctx context.Context) error {
	p.b.stage("integrity")
	t := &provisioner.DirTarget{Root: p.rootfs, Env: []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(p.b.sde, 10)}}
	if err := provisioner.Apply(ctx, t, p.b.log, harden.IntegrityDatabase); err != nil {
		return fmt.Errorf("integrity: %w", err)
	}
	if err := zeroAIDEInodes(filepath.Join(p.rootfs, harden.AIDEDatabase)); err != nil {
		return fmt.Errorf("integrity: %w", err)
	}
	if err := clampTimes(filepath.Join(p.rootfs, filepath.Dir(harden.AIDEDatabase)), p.b.sde); err != nil {
		return fmt.Errorf("integrity: %w", err)
	}
	return nil
}

// zeroAIDEInodes sets the inode column of an AIDE database to 0. AIDE
// stores every file's inode number whether its rules check it or not; the
// numbers are the build tree's, differ from build to build and mean
// nothing on the disk made from it (the appliance's rules leave inodes
// out), so without this the image would not be reproducible.
func zeroAIDEInodes(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	col := -1
	for i, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == "@@db_spec":
			col = slices.Index(f, "inode") - 1 // the columns after the marker
		case col >= 0 && strings.HasPrefix(l, "/"):
			if len(f) <= col {
				return fmt.Errorf("%s line %d: %d columns, the spec has an inode column at %d", path, i+1, len(f), col+1)
			}
			f[col] = "0"
			lines[i] = strings.Join(f, " ")
		}
	}
	if col < 0 {
		return fmt.Errorf("%s: no @@db_spec with an inode column", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), fi.Mode().Perm())
}

// sbom stages the SBOM of the scrubbed root file system as an output
// (<base>.spdx.json, listed in SHA256SUMS like the disk).
func (p *Pipeline) sbom(context.Context) error {
	p.b.stage("sbom")
	bom, err := p.b.sbom(p.rootfs)
	if err != nil {
		return err
	}
	f, err := p.outs.Create("sbom", sbom.FileName(p.b.spec.ImageBase()))
	if err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	if _, err := f.Write(bom); err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	return nil
}

// makeDisk assembles the raw disk: straight into the staged raw output when
// raw is a requested format (it is then only renamed), else into the work
// directory for the other formats to read.
func (p *Pipeline) makeDisk(ctx context.Context) error {
	name := p.b.spec.ImageBase() + ".raw"
	var f *os.File
	var err error
	if p.wants("raw") {
		if f, err = p.outs.Create("raw", name); err != nil {
			return fmt.Errorf("format raw: %w", err)
		}
		p.disk = p.outs.TempPath(name)
	} else {
		p.disk = filepath.Join(p.work, name)
		if f, err = os.OpenFile(p.disk, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
		defer f.Close()
	}
	d := diskDirs{
		Rootfs: p.rootfs, Varfs: filepath.Join(p.work, "varfs"), ESP: filepath.Join(p.work, "esp"),
		Work: p.work, Disk: p.disk,
	}
	if err := p.b.assemble(ctx, d, f, p.ids); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	return nil
}

func (p *Pipeline) wants(name string) bool {
	for _, f := range p.fmts {
		if f.name == name {
			return true
		}
	}
	return false
}

// formats converts the raw disk into every other requested format, each
// into its staged output.
func (p *Pipeline) formats(ctx context.Context) error {
	for _, f := range p.fmts {
		p.b.stage("format " + f.name)
		if f.name == "raw" {
			continue // the disk stage wrote it
		}
		out, err := p.outs.Create(f.name, p.b.spec.ImageBase()+"."+f.ext)
		if err == nil {
			err = f.fn(ctx, p.disk, out, p.b.spec)
		}
		if err != nil {
			return fmt.Errorf("format %s: %w", f.name, err)
		}
	}
	return nil
}

// publish hashes the outputs and switches them into place, SHA256SUMS last.
func (p *Pipeline) publish(ctx context.Context) (err error) {
	p.b.stage("checksums")
	p.outputs, p.sums, err = p.outs.Publish(ctx)
	if err == nil && p.b.opts.Signer != nil {
		p.sig = filepath.Join(p.b.opts.OutDir, sign.SignatureName)
	}
	return err
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
