package vspheretest

import (
	"context"
	"errors"
	"testing"

	"github.com/ksmg-appliance/ksmg/ova"
)

// TestSmallOVA checks that the helper's OVA passes the product's own
// inspection and that Tampered really breaks the manifest.
func TestSmallOVA(t *testing.T) {
	t.Parallel()
	p := SmallOVA(t)
	rep, err := ova.Inspect(context.Background(), p)
	if err != nil {
		t.Fatalf("Inspect(SmallOVA): %v", err)
	}
	if len(rep.VM.Disks) != 1 || rep.VM.Disks[0].Capacity != DiskCapacity {
		t.Errorf("disks %+v, want one of %d bytes", rep.VM.Disks, DiskCapacity)
	}
	_, err = ova.Inspect(context.Background(), Tampered(t, p))
	var ce *ova.CheckError
	if !errors.As(err, &ce) || ce.Check != "digest" {
		t.Errorf("Inspect(Tampered) = %v, want a digest CheckError", err)
	}
}
