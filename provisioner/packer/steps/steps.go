//go:generate go tool packer-sdc mapstructure-to-hcl2 -type Config

// Package steps is the Packer provisioner component that runs Go
// provisioning steps (package provisioner) on whatever machine Packer hands
// it: the root file system of ksmg-rootfs through our chroot communicator,
// or a VM another builder made, over SSH. One Provisioner type serves every
// component; a Component names it and lists its steps, so another set of
// steps (the hardening profile) is a few lines in the plugin's main.
package steps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/provisioner"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/options"
)

// Config is what a template sets on a steps provisioner.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`
	// Path of the appliance spec (YAML) whose payload is installed. Default:
	// the spec embedded in the plugin, the one `ksmg build` uses.
	Spec string `mapstructure:"spec"`
	// Directory with the ksmg binaries the payload ships (ksmg-gatewayd,
	// ksmg-firstboot), as `make build` leaves them in bin/. Required by
	// ksmg-appliance.
	BinDir string `mapstructure:"bin_dir"`
	// Run every command on the machine with `sudo -n`, for an SSH user that
	// is not root but may use sudo without a password. Default: false (the
	// communicator's user is root, as in ksmg-rootfs).
	Sudo bool `mapstructure:"sudo"`
	// Time stamp (seconds since 1970) of the files in the payload's Debian
	// package. Default: $SOURCE_DATE_EPOCH, else 1735689600 (2025-01-01), as
	// `ksmg build`.
	SourceDateEpoch int64 `mapstructure:"source_date_epoch"`

	ctx interpolate.Context
}

// Input is what a component's steps are made from.
type Input struct {
	Spec            *appliance.Spec
	BinDir          string
	SourceDateEpoch int64
	Scratch         string // a private directory on this host, removed afterwards
}

// Component is one provisioner of the plugin.
type Component struct {
	Name          string // as templates write it, e.g. "ksmg-appliance"
	NeedsBinaries bool   // bin_dir is required
	Steps         func(ctx context.Context, in Input) ([]provisioner.Step, error)
}

// Appliance installs the ksmg payload: the steps `ksmg build` runs in its
// payload stage.
var Appliance = Component{
	Name:          "ksmg-appliance",
	NeedsBinaries: true,
	Steps: func(_ context.Context, in Input) ([]provisioner.Step, error) {
		return images.PayloadSteps(images.Payload{Spec: in.Spec, BinDir: in.BinDir, SourceDateEpoch: in.SourceDateEpoch, Scratch: in.Scratch})
	},
}

// Harden applies the OS hardening (package provisioner/harden,
// images/HARDENING.md): the steps `ksmg build` runs after the payload. It
// needs no binaries; the machine needs the packages the hardening
// configures (nftables, apparmor, auditd, rsyslog, libpam-pwquality, aide,
// acct), and the first step fails naming any that is missing before
// anything changes. Its last step records the machine in AIDE's database:
// a provisioner that changes system files after it should run
// `aide --update` (images/HARDENING.md, R76/R77).
var Harden = Component{
	Name: "ksmg-harden",
	Steps: func(context.Context, Input) ([]provisioner.Step, error) {
		return append(harden.Steps(harden.Options{}), harden.IntegrityDatabase), nil
	},
}

// Provisioner runs one Component's steps.
type Provisioner struct {
	Component Component

	config Config
	spec   *appliance.Spec
	sde    int64
}

var _ packersdk.Provisioner = (*Provisioner)(nil)

// New returns the provisioner for c.
func New(c Component) *Provisioner { return &Provisioner{Component: c} }

func (p *Provisioner) ConfigSpec() hcldec.ObjectSpec { return p.config.FlatMapstructure().HCL2Spec() }

// Prepare decodes and checks the configuration; every error names its field.
func (p *Provisioner) Prepare(raws ...interface{}) error {
	if p.Component.Steps == nil {
		return errors.New("steps provisioner without a component")
	}
	if err := config.Decode(&p.config, &config.DecodeOpts{
		PluginType:         p.Component.Name,
		Interpolate:        true,
		InterpolateContext: &p.config.ctx,
	}, raws...); err != nil {
		return err
	}
	var errs *packersdk.MultiError
	var err error
	if p.spec, err = options.Spec(p.config.Spec); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	if p.Component.NeedsBinaries {
		if err := options.BinDir(p.config.BinDir); err != nil {
			errs = packersdk.MultiErrorAppend(errs, err)
		}
	}
	if p.sde, err = options.SourceDateEpoch(p.config.SourceDateEpoch); err != nil {
		errs = packersdk.MultiErrorAppend(errs, err)
	}
	if errs != nil && len(errs.Errors) > 0 {
		return errs
	}
	return nil
}

// Provision runs the steps on the machine behind c, one by one, saying each
// with its time.
func (p *Provisioner) Provision(ctx context.Context, ui packersdk.Ui, c packersdk.Communicator, _ map[string]interface{}) error {
	scratch, err := os.MkdirTemp("", "ksmg-provision-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	steps, err := p.Component.Steps(ctx, Input{Spec: p.spec, BinDir: p.config.BinDir, SourceDateEpoch: p.sde, Scratch: scratch})
	if err != nil {
		return fmt.Errorf("%s: %w", p.Component.Name, err)
	}
	t := &comm.Target{Comm: c, Sudo: p.config.Sudo}
	defer func() {
		if err := t.Close(context.WithoutCancel(ctx)); err != nil {
			ui.Error(fmt.Sprintf("%s: removing the staging directory: %v", p.Component.Name, err))
		}
	}()
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	ui.Say(fmt.Sprintf("%s: %d steps from spec %s", p.Component.Name, len(steps), p.spec.Source))
	for _, s := range steps {
		st := time.Now()
		if err := provisioner.Apply(ctx, t, log, s); err != nil {
			return fmt.Errorf("%s: %w", p.Component.Name, err)
		}
		ui.Say(fmt.Sprintf("%s: %s (%s)", p.Component.Name, s.Name, time.Since(st).Round(time.Millisecond)))
	}
	ui.Say(fmt.Sprintf("%s: done in %s", p.Component.Name, time.Since(start).Round(time.Millisecond)))
	return nil
}
