package vspheretest

import (
	"context"
	"testing"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

// TestSafeFindChild puts the simulator in the state a parallel import
// passes through (a VM in its folder, not yet named) and looks VMs up by
// name: the patched FindChild skips the unnamed VM and finds the named one.
// (vcsim's own FindChild panics there and then hangs every later call, the
// simulator's shutdown included, so it cannot be shown failing in-process.)
func TestSafeFindChild(t *testing.T) {
	t.Parallel()
	{
		simulator.Test(func(ctx context.Context, c *vim25.Client) {
			SafeFindChild(ctx, c)
			si := object.NewSearchIndex(c)
			folderRef, err := si.FindByInventoryPath(ctx, "/DC0/vm")
			if err != nil || folderRef == nil {
				t.Fatalf("VM folder: %v", err)
			}
			m := simulator.Map(ctx)
			ghost := &simulator.VirtualMachine{}
			ghost.Self = types.ManagedObjectReference{Type: "VirtualMachine", Value: "vm-being-created"}
			m.Put(ghost)
			folder := m.Get(folderRef.Reference()).(*simulator.Folder)
			folder.ChildEntity = append([]types.ManagedObjectReference{ghost.Self}, folder.ChildEntity...)

			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			ref, err := si.FindChild(tctx, folderRef.(*object.Folder), "DC0_H0_VM0")
			if err != nil || ref == nil || ref.Reference().Type != "VirtualMachine" {
				t.Errorf("patched FindChild: %v, %v; want DC0_H0_VM0", ref, err)
			}
			if ref, err := si.FindChild(tctx, folderRef.(*object.Folder), "missing"); err != nil || ref != nil {
				t.Errorf("patched FindChild of a missing name: %v, %v", ref, err)
			}
			// other containers still go to vcsim's own FindChild
			dc, err := si.FindByInventoryPath(tctx, "/DC0")
			if err != nil || dc == nil {
				t.Fatalf("DC0: %v", err)
			}
			if ref, err := si.FindChild(tctx, dc, "vm"); err != nil || ref == nil || ref.Reference() != folderRef.Reference() {
				t.Errorf("FindChild(DC0, vm) = %v, %v; want the VM folder", ref, err)
			}
		}, simulator.VPX())
	}
}
