package vspheretest

import (
	"context"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// SafeFindChild works around a govmomi v0.56.0 simulator bug that a fleet
// deploying in parallel hits: vcsim's CreateVM adds the new VM to its
// folder before the VM has a name, and a concurrent SearchIndex.FindChild
// on that folder (the vsphere driver's look-up by name) then panics in the
// simulator ("does not have a Name") while holding the SearchIndex's lock,
// which is never released, so every later FindChild hangs. A real vCenter
// names a VM from its first moment; this makes vcsim's FindChild skip the
// unnamed VM instead, as if the creation had not reached the folder yet,
// by putting a wrapper of the SearchIndex singleton into the simulator's
// registry (vcsim dispatches calls to whatever object the registry holds).
// Everything else the SearchIndex does is vcsim's own code. ctx is the
// context simulator.Test or Model.Run passes, c its client.
func SafeFindChild(ctx context.Context, c *vim25.Client) {
	m := simulator.Map(ctx)
	if si, ok := m.Get(*c.ServiceContent.SearchIndex).(*simulator.SearchIndex); ok {
		m.Put(&searchIndex{si})
	}
}

type searchIndex struct{ *simulator.SearchIndex }

func (s *searchIndex) FindChild(ctx *simulator.Context, req *types.FindChild) soap.HasFault {
	f, ok := ctx.Map.Get(req.Entity).(*simulator.Folder)
	if !ok {
		return s.SearchIndex.FindChild(ctx, req)
	}
	children := make([]types.ManagedObjectReference, 0, len(f.ChildEntity))
	for _, ref := range f.ChildEntity {
		if vm, ok := ctx.Map.Get(ref).(*simulator.VirtualMachine); ok && vm.Name == "" {
			continue // being created
		}
		children = append(children, ref)
	}
	body := &methods.FindChildBody{Res: new(types.FindChildResponse)}
	if match := ctx.Map.FindByName(req.Name, children); match != nil {
		ref := match.Reference()
		body.Res.Returnval = &ref
	}
	return body
}
