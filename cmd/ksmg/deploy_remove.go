package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// newDeployRemoveCmd is `ksmg deploy remove`: one VM by name on a target
// (the deploy command's target flags), or the nodes of an inventory.
func newDeployRemoveCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove deployed appliances: a guest shutdown, then the VM and its disks (ksmg's VMs only)",
		Long: `Remove an appliance ksmg deployed: its guest is shut down (VMware Tools,
Hyper-V integration services, SCVMM), turned off if it has not stopped
within --shutdown-timeout, and the VM is deleted with its disks. Only a VM
that carries ksmg's deploy mark is ever removed; one that does not is
reported (exit status 2) and left alone. --plan says what would go and
touches nothing. The target flags are those of the deploy command.`,
		Args: noSubcommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newRemoveVSphereCmd(a), newRemoveHyperVCmd(a), newRemoveScvmmCmd(a), newRemoveFleetCmd(a))
	return cmd
}

// removeFlags are the flags of a single removal besides the target's.
type removeFlags struct {
	app     *app
	cmd     string
	name    string
	plan    bool
	timeout time.Duration
}

func (r *removeFlags) add(fl *pflag.FlagSet) {
	fl.StringVar(&r.name, "name", "", "VM name (required)")
	fl.BoolVar(&r.plan, "plan", false, "print what would be removed and touch nothing")
	fl.DurationVar(&r.timeout, "shutdown-timeout", deploy.DefaultShutdownTimeout, "how long the guest may take to shut down before the VM is turned off")
}

func (r *removeFlags) check() error {
	if r.name == "" {
		return usage("deploy remove %s: --name is required", r.cmd)
	}
	if r.timeout <= 0 {
		return usage("deploy remove %s: --shutdown-timeout %s: must be positive", r.cmd, r.timeout)
	}
	return nil
}

// run removes the VM with d and prints the result.
func (r *removeFlags) run(cmd *cobra.Command, d deploy.Deployer) error {
	defer func() {
		if err := d.Close(); err != nil {
			r.app.logger().Warn("close", "err", err)
		}
	}()
	res, err := d.Remove(cmd.Context(), deploy.RemoveRequest{Name: r.name, Plan: r.plan, ShutdownTimeout: r.timeout})
	if err == nil && !r.app.json && r.plan {
		id := res.ID
		if id == "" {
			id = "-"
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s: plan only, nothing removed\n", res.Action, res.Node, id)
		return err
	}
	return permanentIsUsage(r.app.writeResult(cmd.OutOrStdout(), res, err))
}

// newRemoveTargetCmd is `ksmg deploy remove <cmd>`: the target's flags
// (addTarget), checked (check, may be nil) before it is reached (open).
func newRemoveTargetCmd(a *app, name, short string, addTarget func(*pflag.FlagSet), check func() error, open func(*cobra.Command) (deploy.Deployer, error)) *cobra.Command {
	r := removeFlags{app: a, cmd: name}
	cmd := &cobra.Command{
		Use:   name + " --name VM [target flags]",
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := r.check(); err != nil {
				return err
			}
			if check != nil {
				if err := check(); err != nil {
					return err
				}
			}
			d, err := open(cmd)
			if err != nil {
				return err
			}
			return r.run(cmd, d)
		},
	}
	addTarget(cmd.Flags())
	r.add(cmd.Flags())
	return cmd
}

func newRemoveVSphereCmd(a *app) *cobra.Command {
	f := vsphereFlags{node: nodeFlags{app: a}}
	return newRemoveTargetCmd(a, "vsphere", "Remove an appliance from vCenter or a standalone ESXi host", f.addTarget, f.check,
		func(cmd *cobra.Command) (deploy.Deployer, error) { return f.open(cmd) })
}

func newRemoveHyperVCmd(a *app) *cobra.Command {
	f := hypervFlags{node: nodeFlags{app: a}}
	return newRemoveTargetCmd(a, "hyperv", "Remove an appliance from a Hyper-V host", f.addTarget, nil, f.open)
}

func newRemoveScvmmCmd(a *app) *cobra.Command {
	f := scvmmFlags{node: nodeFlags{app: a}}
	return newRemoveTargetCmd(a, "scvmm", "Remove an appliance through SCVMM", f.addTarget, nil, f.open)
}
