//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config

// Package disk holds the Packer post-processors ksmg-ova and ksmg-vhdx: they
// take the disk of any builder's artifact (our raw disk, or a qcow2, VMDK,
// VHD or VHDX disk that qemu-img converts to raw first) and write the
// appliance's OVA or VHDX with the same writers and options as `ksmg
// build`, staged and published with SHA256SUMS by the same code
// (images.Outputs). From the same raw disk and spec, the files are byte
// for byte those of `ksmg build`.
package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/images/formats"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/options"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/rootfs"
)

// Config is what a template sets on ksmg-ova and ksmg-vhdx.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`
	// Path of the appliance spec (YAML) that names the output and describes
	// the VM (the OVA's hardware, EULA and first-boot properties; the VHDX's
	// identity). Default: the spec ksmg-rootfs built the disk from, else the
	// spec embedded in the plugin.
	Spec string `mapstructure:"spec"`
	// Directory for the output and SHA256SUMS (lines for other files
	// there are kept). Default: the directory of the input disk.
	OutputDirectory string `mapstructure:"output_directory"`

	ctx interpolate.Context
}

// Format is one output format.
type Format struct {
	Name, Ext string
	Write     func(ctx context.Context, raw string, out *os.File, spec *appliance.Spec) error
}

// OVA and VHDX are the two formats.
var (
	OVA  = Format{Name: "ova", Ext: "ova", Write: formats.OVA}
	VHDX = Format{Name: "vhdx", Ext: "vhdx", Write: formats.VHDX}
)

// PostProcessor writes one Format.
type PostProcessor struct {
	Format Format

	config Config
	spec   *appliance.Spec // from the config; nil: decided per artifact
}

var _ packersdk.PostProcessor = (*PostProcessor)(nil)

// New returns the post-processor for f.
func New(f Format) *PostProcessor { return &PostProcessor{Format: f} }

func (p *PostProcessor) name() string { return "ksmg-" + p.Format.Name }

// BuilderID is the BuilderId of this post-processor's artifacts.
func (p *PostProcessor) BuilderID() string { return "ksmg-appliance." + p.Format.Name }

func (p *PostProcessor) ConfigSpec() hcldec.ObjectSpec { return p.config.FlatMapstructure().HCL2Spec() }

// Configure decodes and checks the configuration; every error names its
// field.
func (p *PostProcessor) Configure(raws ...interface{}) error {
	if p.Format.Write == nil {
		return errors.New("disk post-processor without a format")
	}
	if err := config.Decode(&p.config, &config.DecodeOpts{
		PluginType:         p.name(),
		Interpolate:        true,
		InterpolateContext: &p.config.ctx,
	}, raws...); err != nil {
		return err
	}
	var errs *packersdk.MultiError
	if p.config.Spec != "" {
		var err error
		if p.spec, err = options.Spec(p.config.Spec); err != nil {
			errs = packersdk.MultiErrorAppend(errs, err)
		}
	}
	if d := p.config.OutputDirectory; d != "" {
		if st, err := os.Stat(d); err == nil && !st.IsDir() {
			errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("output_directory: %q: want a directory (it is created if missing)", d))
		}
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}

// PostProcess writes the output next to (or into output_directory from) the
// artifact's disk. The input artifact is kept by default.
func (p *PostProcessor) PostProcess(ctx context.Context, ui packersdk.Ui, in packersdk.Artifact) (packersdk.Artifact, bool, bool, error) {
	disk, err := FindDisk(in.Files())
	if err != nil {
		return nil, false, false, fmt.Errorf("%s: artifact of builder %q: %w", p.name(), in.BuilderId(), err)
	}
	spec := p.spec
	if spec == nil {
		path := ""
		if in.BuilderId() == rootfs.BuilderID {
			path, _ = in.State(rootfs.StateSpec).(string)
		}
		if spec, err = options.Spec(path); err != nil {
			return nil, false, false, fmt.Errorf("%s: %w", p.name(), err)
		}
	}
	outDir := p.config.OutputDirectory
	if outDir == "" {
		outDir = filepath.Dir(disk.Path)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, false, false, fmt.Errorf("%s: output_directory: %w", p.name(), err)
	}
	start := time.Now()
	raw := disk.Path
	if disk.Format != "raw" {
		work, err := os.MkdirTemp(outDir, ".work-")
		if err != nil {
			return nil, false, false, fmt.Errorf("%s: %w", p.name(), err)
		}
		defer os.RemoveAll(work)
		raw = filepath.Join(work, "disk.raw")
		ui.Say(fmt.Sprintf("%s: converting %s (%s) to raw with qemu-img", p.name(), disk.Path, disk.Format))
		if err := convertToRaw(ctx, disk, raw); err != nil {
			return nil, false, false, fmt.Errorf("%s: %w", p.name(), err)
		}
	}
	name := spec.ImageBase() + "." + p.Format.Ext
	ui.Say(fmt.Sprintf("%s: writing %s from %s", p.name(), filepath.Join(outDir, name), disk.Path))
	outs := images.NewOutputs(outDir, images.OutputOptions{MergeSums: true})
	defer outs.Cleanup()
	f, err := outs.Create(p.Format.Name, name)
	if err != nil {
		return nil, false, false, fmt.Errorf("%s: %w", p.name(), err)
	}
	if err := p.Format.Write(ctx, raw, f, spec); err != nil {
		return nil, false, false, fmt.Errorf("%s: %w", p.name(), err)
	}
	res, sums, err := outs.Publish(ctx)
	if err != nil {
		return nil, false, false, fmt.Errorf("%s: %w", p.name(), err)
	}
	ui.Say(fmt.Sprintf("%s: %s  %s (%s)", p.name(), res[0].SHA256, res[0].Path, time.Since(start).Round(100*time.Millisecond)))
	return &Artifact{ID: p.BuilderID(), Path: res[0].Path, SHA256: res[0].SHA256, SumsPath: sums}, true, false, nil
}

// Disk is the disk image found in an artifact.
type Disk struct {
	Path   string
	Format string // raw, qcow2, vmdk, vhdx or vpc (qemu-img's names)
}

// FindDisk picks the one disk image among files, by content: a raw disk
// (a GPT or an MBR boot signature) if there is exactly one, else the one
// qcow2, VMDK, VHDX or VHD file. Anything else is refused with the list of
// files seen.
func FindDisk(files []string) (Disk, error) {
	var raws, others []Disk
	for _, f := range files {
		format, err := sniff(f)
		if err != nil || format == "" {
			continue
		}
		d := Disk{Path: f, Format: format}
		if format == "raw" {
			raws = append(raws, d)
		} else {
			others = append(others, d)
		}
	}
	switch {
	case len(raws) == 1:
		return raws[0], nil
	case len(raws) == 0 && len(others) == 1:
		return others[0], nil
	case len(raws)+len(others) == 0:
		return Disk{}, fmt.Errorf("no disk image among its files [%s]: want a raw disk (GPT or MBR), or a qcow2, VMDK, VHDX or VHD disk to convert", strings.Join(files, ", "))
	default:
		var names []string
		for _, d := range append(raws, others...) {
			names = append(names, d.Path+" ("+d.Format+")")
		}
		return Disk{}, fmt.Errorf("%d disk images among its files [%s]: want exactly one", len(names), strings.Join(names, ", "))
	}
}

// sniff names a file's disk format from its first bytes ("" if it is none).
func sniff(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return "", err
	}
	head := make([]byte, 1024)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return "qcow2", nil
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return "vmdk", nil
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return "vhdx", nil
	case bytes.HasPrefix(head, []byte("conectix")):
		return "vpc", nil
	}
	if st.Size() >= 1024 && st.Size()%512 == 0 && n == 1024 {
		if bytes.Equal(head[512:520], []byte("EFI PART")) || (head[510] == 0x55 && head[511] == 0xaa) {
			return "raw", nil
		}
	}
	if st.Size() >= 512 && st.Size()%512 == 0 {
		// A fixed VHD has its footer at the end only.
		foot := make([]byte, 8)
		if _, err := f.ReadAt(foot, st.Size()-512); err == nil && string(foot) == "conectix" {
			return "vpc", nil
		}
	}
	return "", nil
}

// convertToRaw converts the disk to a sparse raw file with qemu-img.
func convertToRaw(ctx context.Context, d Disk, raw string) error {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("%s is %s, not raw, and qemu-img is not installed to convert it (Debian package qemu-utils): %w", d.Path, d.Format, err)
	}
	out, err := exec.CommandContext(ctx, qemuImg, "convert", "-f", d.Format, "-O", "raw", d.Path, raw).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img convert %s (%s) to raw: %w: %s", d.Path, d.Format, err, bytes.TrimSpace(out))
	}
	return nil
}

// Artifact is the OVA or VHDX written.
type Artifact struct {
	ID       string
	Path     string
	SHA256   string
	SumsPath string
}

var _ packersdk.Artifact = (*Artifact)(nil)

func (a *Artifact) BuilderId() string { return a.ID }
func (a *Artifact) Files() []string   { return []string{a.Path} }
func (a *Artifact) Id() string        { return a.SHA256 }
func (a *Artifact) String() string    { return fmt.Sprintf("%s (sha256 %s)", a.Path, a.SHA256) }
func (a *Artifact) State(name string) interface{} {
	if name == rootfs.StateSHA256 {
		return a.SHA256
	}
	return nil
}

// Destroy removes the file and its SHA256SUMS line.
func (a *Artifact) Destroy() error { return images.RemoveOutput(a.Path) }
