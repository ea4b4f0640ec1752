// Package formats holds the appliance's disk formats for the image build:
// "ova" (vSphere: streamOptimized VMDK, OVF descriptor with the spec's
// hardware and the first-boot properties) and "vhdx" (Hyper-V). They live
// here rather than in images so that the image build does not depend on
// every writer (and the writers not on it); the front ends call Register,
// and the Packer post-processors call OVA and VHDX directly.
package formats

import (
	"context"
	"os"
	"sync"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

// Register registers "ova" and "vhdx" with images, once per process.
var Register = sync.OnceFunc(func() {
	images.RegisterFormat("ova", "ova", OVA)
	images.RegisterFormat("vhdx", "vhdx", VHDX)
})

// OVA writes the spec's OVA of the raw disk into out (staged by the caller).
func OVA(ctx context.Context, raw string, out *os.File, spec *appliance.Spec) error {
	opts, err := ova.OptionsFromSpec(spec)
	if err != nil {
		return err
	}
	return ova.WriteTo(ctx, raw, out, opts)
}

// VHDX writes the spec's VHDX of the raw disk into out (staged by the
// caller). Its GUIDs are derived from the image identity so rebuilds are
// identical.
func VHDX(ctx context.Context, raw string, out *os.File, spec *appliance.Spec) error {
	return vhdx.WriteTo(ctx, raw, out, vhdx.Options{Identity: spec.Name + "-" + spec.Version})
}
