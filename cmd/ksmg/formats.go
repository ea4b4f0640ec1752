package main

import (
	"context"
	"sync"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

// registerFormats registers the disk formats with images, once per
// process (images keeps a registry); here rather than in images so that
// the image build does not depend on every writer (and the writers not on
// it).
var registerFormats = sync.OnceFunc(func() {
	images.RegisterFormat("ova", "ova", func(ctx context.Context, raw, out string, spec *appliance.Spec) error {
		opts, err := ova.OptionsFromSpec(spec)
		if err != nil {
			return err
		}
		return ova.Write(ctx, raw, out, opts)
	})
	images.RegisterFormat("vhdx", "vhdx", func(ctx context.Context, raw, out string, spec *appliance.Spec) error {
		// GUIDs are derived from the image identity so rebuilds are identical.
		return vhdx.Write(ctx, raw, out, vhdx.Options{Identity: spec.Name + "-" + spec.Version})
	})
})
