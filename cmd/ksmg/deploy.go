package main

import "github.com/spf13/cobra"

// newDeployCmd is the parent of the per-target deploy commands; each lives
// in its own deploy_*.go file.
func newDeployCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Deploy the appliance to vSphere, Hyper-V or SCVMM, or a whole fleet from an inventory",
		Args:  noSubcommand,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDeployVSphereCmd(a), newDeployHyperVCmd(a), newDeployScvmmCmd(a), newDeployFleetCmd(a), newDeployRemoveCmd(a))
	return cmd
}

// noSubcommand refuses arguments to a command that only groups others: a
// mistyped subcommand is bad input (exit status 2), not a reason to print
// help and succeed.
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usage("%s: unknown command %q (see %s --help)", cmd.CommandPath(), args[0], cmd.CommandPath())
	}
	return nil
}
