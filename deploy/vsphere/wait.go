package vsphere

import (
	"context"
	"fmt"
	"time"

	"github.com/vmware/govmomi/object"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/firstboot/sources"
)

// waiting tells n.Waiting every few polls what the deploy waits for until
// the returned stop is called.
func (d *Deployer) waiting(n deploy.Node, what string) (stop func()) {
	return deploy.Notify(n, what, 5*d.poll)
}

// waitIP waits until deadline for the guest's IPv4 address.
func (d *Deployer) waitIP(ctx context.Context, vm *object.VirtualMachine, n deploy.Node, deadline time.Time) (string, error) {
	defer d.waiting(n, "IP address")()
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ip, err := vm.WaitForIP(wctx, true)
	if err == nil {
		return ip, nil
	}
	if ctx.Err() == nil && wctx.Err() != nil {
		err = fmt.Errorf("no IPv4 address reported by the guest within %s (VMware Tools running?)", n.WaitIP)
	}
	return "", fmt.Errorf("wait for IP of %s: %w", vm.Reference().Value, err)
}

// waitFirstboot waits until deadline for first boot's completion signal:
// the guest sets guestinfo.ksmg.firstboot=done through VMware Tools once
// it applied its answers, which shows in the VM's extraConfig. An address
// alone does not tell: a DHCP lease can come before first boot read its
// answers.
func (d *Deployer) waitFirstboot(ctx context.Context, vm *object.VirtualMachine, n deploy.Node, deadline time.Time) error {
	defer d.waiting(n, "first boot to report completion")()
	for {
		e, err := d.read(ctx, vm)
		if err != nil {
			return err
		}
		if e.extra[DoneKey] == doneValue {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("first boot of %s did not report completion (%s=%s) within %s (its console shows why)", vm.Reference().Value, DoneKey, doneValue, n.WaitIP)
		}
		t := time.NewTimer(min(d.poll, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for first boot of %s: %w", vm.Reference().Value, ctx.Err())
		case <-t.C:
		}
	}
}

// doneValue is DoneKey's value once first boot is done.
const doneValue = sources.DoneValue
