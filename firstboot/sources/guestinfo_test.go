package sources

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestGuestInfoSet: the completion signal goes to vmware-rpctool as one
// info-set command; outside VMware (the tool fails) or without the tool it
// is ErrAbsent. The tool is a script standing in for VMware Tools, which
// cannot run outside a VMware guest.
func TestGuestInfoSet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	tool := filepath.Join(dir, "vmware-rpctool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > "+args+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	vmware := vendorFile(t, dir, "vmware", "VMware, Inc.\n")
	if err := (GuestInfo{Tool: tool, Vendor: vmware}).Set(context.Background(), GuestInfoDoneKey, DoneValue); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(args)
	if string(got) != "info-set guestinfo.ksmg.firstboot done\n" {
		t.Errorf("rpctool got %q", got)
	}
	failing := filepath.Join(dir, "failing")
	if err := os.WriteFile(failing, []byte("#!/bin/sh\necho 'Failed sending message to VMware.' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tl := range []string{failing, filepath.Join(dir, "missing")} {
		if err := (GuestInfo{Tool: tl, Vendor: vmware}).Set(context.Background(), GuestInfoDoneKey, DoneValue); !errors.Is(err, ErrAbsent) {
			t.Errorf("%s: %v, want ErrAbsent", tl, err)
		}
	}
	// On another maker's machine the tool is not run at all.
	_ = os.Remove(args)
	qemu := vendorFile(t, dir, "qemu", "QEMU\n")
	if err := (GuestInfo{Tool: tool, Vendor: qemu}).Set(context.Background(), GuestInfoDoneKey, DoneValue); !errors.Is(err, ErrAbsent) {
		t.Errorf("QEMU: %v, want ErrAbsent", err)
	}
	if _, err := os.Stat(args); err == nil {
		t.Error("rpctool was run on a QEMU machine")
	}
	// A vendor that cannot be read is no answer: the tool is asked.
	if err := (GuestInfo{Tool: tool, Vendor: filepath.Join(dir, "no-dmi")}).Set(context.Background(), GuestInfoDoneKey, DoneValue); err != nil {
		t.Errorf("no DMI: %v", err)
	}
	if _, err := os.Stat(args); err != nil {
		t.Error("without DMI, rpctool was not asked")
	}
}

// vendorFile writes a stand-in for /sys/class/dmi/id/sys_vendor.
func vendorFile(t *testing.T, dir, name, vendor string) string {
	t.Helper()
	p := filepath.Join(dir, name+".sys_vendor")
	if err := os.WriteFile(p, []byte(vendor), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
