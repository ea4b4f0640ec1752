package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// GuestInfoDoneKey is where first boot tells a vSphere deployer it applied
// its answers (the VMware counterpart of the KVP item DoneKey): a guestinfo
// variable, which the host shows in the VM's extraConfig.
const GuestInfoDoneKey = "guestinfo." + DoneKey

// GuestInfo sets guestinfo variables through VMware Tools' vmware-rpctool
// (the guest may write guestinfo.* keys; the host reads them).
type GuestInfo struct {
	// Tool is the rpctool binary; "" means vmware-rpctool from PATH.
	Tool string
	// Vendor is the DMI system vendor file; "" means DMIVendorPath.
	Vendor string
}

// DMIVendorPath is where the kernel shows the machine's maker, from the
// firmware's DMI tables ("VMware, Inc." on ESXi, Workstation and Fusion).
const DMIVendorPath = "/sys/class/dmi/id/sys_vendor"

// notVMware: the machine says it is not a VMware VM, so vmware-rpctool
// can only fail, after a process start that cost first boot 0.3 s under
// TCG, twice (the OVF environment, then the completion signal). A vendor
// that cannot be read is no answer: rpctool is asked then.
func notVMware(vendorPath string) bool {
	if vendorPath == "" {
		vendorPath = DMIVendorPath
	}
	b, err := os.ReadFile(vendorPath)
	return err == nil && !strings.Contains(string(b), "VMware")
}

// Set sets key (guestinfo.*) to value. ErrAbsent: no rpctool, or not a
// VMware guest.
func (g GuestInfo) Set(ctx context.Context, key, value string) error {
	if !strings.HasPrefix(key, "guestinfo.") || strings.ContainsAny(key, " \n\r\x00") || strings.ContainsAny(value, "\n\r\x00") {
		return fmt.Errorf("guestinfo %q: keys are guestinfo.* without spaces, values one line", key)
	}
	if notVMware(g.Vendor) {
		return ErrAbsent
	}
	tool := g.Tool
	if tool == "" {
		tool = "vmware-rpctool"
	}
	path, err := exec.LookPath(tool)
	if err != nil {
		return ErrAbsent
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, "info-set "+key+" "+value)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// Outside VMware the backdoor call fails.
			return fmt.Errorf("%w: vmware-rpctool: %s", ErrAbsent, strings.TrimSpace(stderr.String()))
		}
		return fmt.Errorf("vmware-rpctool: %w", err)
	}
	return nil
}
