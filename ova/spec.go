package ova

import (
	"errors"
	"fmt"

	"github.com/ksmg-appliance/ksmg/appliance"
)

// Product is what the deploy wizard shows as the appliance's product.
var Product = ProductInfo{
	Name:   "KSMG mail security gateway",
	Vendor: "ksmg-appliance",
}

// OptionsFromSpec maps an appliance spec to Write's options: name, version,
// CPUs, memory, the disk's virtual size and the shipped EULA. The descriptor
// always describes EFI with Secure Boot, PVSCSI and VMXNET3, so a spec asking
// for other hardware is refused rather than silently ignored.
func OptionsFromSpec(s *appliance.Spec) (Options, error) {
	hw := s.Hardware
	var errs []error
	want := func(key, got, wanted string) {
		if got != wanted {
			errs = append(errs, fmt.Errorf("spec %s: hardware.%s is %q; the OVA describes %q only", s.Source, key, got, wanted))
		}
	}
	want("firmware", hw.Firmware, "efi")
	want("disk_controller", hw.DiskController, "pvscsi")
	want("network_adapter", hw.NetworkAdapter, "vmxnet3")
	if !hw.SecureBoot {
		errs = append(errs, fmt.Errorf("spec %s: hardware.secure_boot is false; the OVA always enables Secure Boot", s.Source))
	}
	if err := errors.Join(errs...); err != nil {
		return Options{}, err
	}
	return Options{
		Name:         s.Name,
		Version:      s.Version,
		Product:      Product,
		CPUs:         hw.CPUs,
		MemoryMiB:    hw.MemoryMiB,
		DiskCapacity: int64(s.Disk.Size),
		EULA:         appliance.EULA(),
	}, nil
}
