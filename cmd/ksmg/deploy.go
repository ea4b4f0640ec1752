package main

import "github.com/spf13/cobra"

// deployCmd is the parent of the per-target deploy commands; each lives in
// its own deploy_*.go file and adds itself in init.
var deployCmd = &cobra.Command{
	Use:   "deploy",
	Short: "Deploy the appliance to vSphere, Hyper-V or SCVMM, or a whole fleet from an inventory",
}

func init() { root.AddCommand(deployCmd) }
