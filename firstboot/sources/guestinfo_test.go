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
	if err := (GuestInfo{Tool: tool}).Set(context.Background(), GuestInfoDoneKey, DoneValue); err != nil {
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
		if err := (GuestInfo{Tool: tl}).Set(context.Background(), GuestInfoDoneKey, DoneValue); !errors.Is(err, ErrAbsent) {
			t.Errorf("%s: %v, want ErrAbsent", tl, err)
		}
	}
}
