package main

import "github.com/spf13/cobra"

// newDeployCmd is the parent of the per-target deploy commands; each lives
// in its own deploy_*.go file.
func newDeployCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy the appliance to vSphere, Hyper-V or SCVMM, or a whole fleet from an inventory",
	}
	cmd.AddCommand(newDeployVSphereCmd(a), newDeployHyperVCmd(a), newDeployScvmmCmd(a), newDeployFleetCmd(a), newDeployRemoveCmd(a))
	return cmd
}
