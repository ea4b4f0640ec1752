//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config

// Package rootfs is the Packer builder ksmg-rootfs: the appliance build of
// `ksmg build` (package images) with Packer's provisioners in the middle.
// It runs the pipeline's stages packages → rootfs → payload, hands Packer a
// communicator into the root file system (comm.Chroot) so that any
// provisioner (stock shell and file, ours) works inside it, and then runs
// scrub → sbom → disk → publish. Its artifact is the raw disk; ksmg-ova and
// ksmg-vhdx turn it into the OVA and VHDX.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/common"
	"github.com/hashicorp/packer-plugin-sdk/multistep"
	"github.com/hashicorp/packer-plugin-sdk/multistep/commonsteps"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/options"
)

// BuilderID identifies this builder's artifacts to post-processors.
const BuilderID = "ksmg-appliance.rootfs"

// Config is what a template sets on a ksmg-rootfs source.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`
	// Path of the appliance spec (YAML) to build. Default: the spec embedded
	// in the plugin, the one `ksmg build` uses without --spec.
	Spec string `mapstructure:"spec"`
	// Directory with the ksmg binaries the payload ships (ksmg-gatewayd,
	// ksmg-firstboot), as `make build` leaves them in bin/. Required.
	BinDir string `mapstructure:"bin_dir" required:"true"`
	// Package cache: the Debian packages and the local repository the root
	// file system is made from. Default: $KSMG_CACHE, else ~/.cache/ksmg.
	// The same cache and source date give the same disk, byte for byte.
	CacheDir string `mapstructure:"cache_dir"`
	// Directory for the raw disk and SHA256SUMS. Default: output-<build
	// name>. Outputs are written under temporary names and renamed when
	// complete; an existing disk of the same name is replaced.
	OutputDirectory string `mapstructure:"output_directory"`
	// Time stamp (seconds since 1970) of every file in the image. Default:
	// $SOURCE_DATE_EPOCH, else 1735689600 (2025-01-01), as `ksmg build`.
	SourceDateEpoch int64 `mapstructure:"source_date_epoch"`

	ctx interpolate.Context
}

// Builder is ksmg-rootfs.
type Builder struct {
	config Config
	spec   *appliance.Spec
	sde    int64
	// build runs the pipeline; a test replaces it.
	build func(context.Context, images.Options) (*images.Result, error)
}

var _ packersdk.Builder = (*Builder)(nil)

func (b *Builder) ConfigSpec() hcldec.ObjectSpec { return b.config.FlatMapstructure().HCL2Spec() }

// Prepare decodes and checks the configuration; every error names its
// field. Nothing is built or written here.
func (b *Builder) Prepare(raws ...interface{}) ([]string, []string, error) {
	if err := config.Decode(&b.config, &config.DecodeOpts{
		PluginType:         BuilderID,
		Interpolate:        true,
		InterpolateContext: &b.config.ctx,
	}, raws...); err != nil {
		return nil, nil, err
	}
	c := &b.config
	var errs *packersdk.MultiError
	var err error
	if b.spec, err = options.Spec(c.Spec); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	if err := options.BinDir(c.BinDir); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	if b.sde, err = options.SourceDateEpoch(c.SourceDateEpoch); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	if c.CacheDir == "" {
		c.CacheDir = os.Getenv("KSMG_CACHE")
	}
	if c.CacheDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("cache_dir: not set, and no home directory for ~/.cache/ksmg: %w", err))
		}
		c.CacheDir = filepath.Join(home, ".cache", "ksmg")
	}
	if st, err := os.Stat(c.CacheDir); err == nil && !st.IsDir() {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("cache_dir: %q: want a directory (it is created if missing)", c.CacheDir))
	}
	if c.OutputDirectory == "" {
		c.OutputDirectory = "output-" + c.PackerBuildName
	}
	if st, err := os.Stat(c.OutputDirectory); err == nil && !st.IsDir() {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("output_directory: %q: want a directory (it is created if missing)", c.OutputDirectory))
	}
	if errs != nil && len(errs.Errors) > 0 {
		return nil, nil, errs
	}
	return nil, nil, nil
}

// uiWriter turns the build's warning log into Packer UI messages.
type uiWriter struct{ ui packersdk.Ui }

func (w uiWriter) Write(p []byte) (int, error) {
	w.ui.Error(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Run builds the disk; between payload and scrub Packer's provisioners
// run in the root file system through the provision hook.
func (b *Builder) Run(ctx context.Context, ui packersdk.Ui, hook packersdk.Hook) (packersdk.Artifact, error) {
	build := b.build
	if build == nil {
		build = images.Build
	}
	c := b.config
	outDir, err := filepath.Abs(c.OutputDirectory)
	if err != nil {
		return nil, err
	}
	state := new(multistep.BasicStateBag)
	state.Put("instance_id", b.spec.ImageBase())
	opts := images.Options{
		Spec:            b.spec,
		OutDir:          outDir,
		BinDir:          c.BinDir,
		CacheDir:        c.CacheDir,
		Formats:         []string{"raw"},
		SourceDateEpoch: b.sde,
		Log:             slog.New(slog.NewTextHandler(uiWriter{ui}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Progress: func(p images.Progress) {
			ui.Say(fmt.Sprintf("stage %-18s at %7.1fs", p.Stage, p.Elapsed.Seconds()))
		},
		Provision: func(ctx context.Context, root images.RootFS) error {
			ui.Say("Running Packer's provisioners in the root file system " + root.Dir)
			return hook.Run(ctx, packersdk.HookProvision, ui, &comm.Chroot{Root: root.Dir, Env: root.Env}, commonsteps.PopulateProvisionHookData(state))
		},
	}
	ui.Say(fmt.Sprintf("Building %s from spec %s into %s", b.spec.ImageBase(), b.spec.Source, outDir))
	res, err := build(ctx, opts)
	if err != nil {
		return nil, err
	}
	var raw, bom *images.Output
	for i, o := range res.Outputs {
		switch o.Format {
		case "raw":
			raw = &res.Outputs[i]
		case "sbom":
			bom = &res.Outputs[i]
		default:
			return nil, fmt.Errorf("the build produced an unexpected %s output %s", o.Format, o.Path)
		}
	}
	if raw == nil {
		return nil, errors.New("the build produced no raw disk")
	}
	var timings strings.Builder
	for _, s := range res.Stages {
		fmt.Fprintf(&timings, "\n  %-10s %8.1fs", s.Stage, s.Elapsed.Seconds())
	}
	ui.Say(fmt.Sprintf("Stages:%s\n  %-10s %8.1fs", timings.String(), "total", res.Elapsed.Seconds()))
	specPath := ""
	if c.Spec != "" {
		specPath, _ = filepath.Abs(c.Spec)
	}
	art := &Artifact{Path: raw.Path, SHA256: raw.SHA256, SumsPath: res.SHA256SUM, SpecPath: specPath, Elapsed: res.Elapsed}
	if bom != nil {
		art.SBOMPath = bom.Path
	}
	return art, nil
}

// Artifact is the raw disk (with the SBOM of its root file system next to
// it).
type Artifact struct {
	Path     string
	SBOMPath string // "" when the build wrote none
	SHA256   string
	SumsPath string
	SpecPath string // "" for the embedded spec
	Elapsed  time.Duration
}

// State keys this builder's artifact answers (post-processors read them).
const (
	StateSpec   = "ksmg.spec"   // path of the spec the disk was built from ("": the embedded one)
	StateSHA256 = "ksmg.sha256" // the raw disk's SHA-256
)

var _ packersdk.Artifact = (*Artifact)(nil)

func (a *Artifact) BuilderId() string { return BuilderID }
func (a *Artifact) Files() []string   { return []string{a.Path} }
func (a *Artifact) Id() string        { return a.SHA256 }
func (a *Artifact) String() string {
	return fmt.Sprintf("raw disk %s (sha256 %s, built in %s)", a.Path, a.SHA256, a.Elapsed.Round(100*time.Millisecond))
}

func (a *Artifact) State(name string) interface{} {
	switch name {
	case StateSpec:
		return a.SpecPath
	case StateSHA256:
		return a.SHA256
	}
	return nil
}

// Destroy removes the disk, its SBOM and their SHA256SUMS lines.
func (a *Artifact) Destroy() error {
	if a.SBOMPath != "" {
		if err := images.RemoveOutput(a.SBOMPath); err != nil {
			return err
		}
	}
	return images.RemoveOutput(a.Path)
}
