package ova

import (
	"os"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/appliance"
)

func TestOptionsFromSpec(t *testing.T) {
	t.Parallel()
	spec, err := appliance.Parse("default", appliance.DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	opts, err := OptionsFromSpec(spec)
	if err != nil {
		t.Fatalf("default spec: %v", err)
	}
	if opts.Name != spec.Name || opts.Version != spec.Version || opts.CPUs != spec.Hardware.CPUs ||
		opts.MemoryMiB != spec.Hardware.MemoryMiB || opts.DiskCapacity != int64(spec.Disk.Size) || opts.EULA != appliance.EULA() {
		t.Errorf("options %+v do not follow the spec", opts)
	}
	opts.Properties = Properties() // what Write fills in
	if err := opts.validate(); err != nil {
		t.Errorf("options from the default spec are invalid: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*appliance.Spec)
		want string
	}{
		{"bios", func(s *appliance.Spec) { s.Hardware.Firmware = "bios" }, "hardware.firmware"},
		{"lsilogic", func(s *appliance.Spec) { s.Hardware.DiskController = "lsilogic" }, "hardware.disk_controller"},
		{"e1000", func(s *appliance.Spec) { s.Hardware.NetworkAdapter = "e1000" }, "hardware.network_adapter"},
		{"no secure boot", func(s *appliance.Spec) { s.Hardware.SecureBoot = false }, "hardware.secure_boot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := *spec
			tc.edit(&s)
			if _, err := OptionsFromSpec(&s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// TestPropertiesDocumented keeps the package doc's table (what the
// first-boot side reads) in step with Properties.
func TestPropertiesDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Properties() {
		found := false
		for _, line := range strings.Split(string(doc), "\n") {
			f := strings.Fields(strings.TrimPrefix(line, "//"))
			if len(f) >= 2 && f[0] == p.Key {
				found = true
				typ := p.Type
				if p.Password {
					typ = "password"
				}
				if f[1] != typ || (p.Default != "" && (len(f) < 3 || f[2] != p.Default)) {
					t.Errorf("doc.go row %q does not say type %s default %q", strings.TrimSpace(line), typ, p.Default)
				}
			}
		}
		if !found {
			t.Errorf("property %s is not documented in doc.go", p.Key)
		}
	}
}
