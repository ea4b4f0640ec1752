// Command packer-plugin-ksmg is the Packer plugin "ksmg": the appliance
// build as a Packer builder, its Go provisioners for any builder's machine,
// and the OVA and VHDX post-processors (see docs/ and README).
//
//	source "ksmg-rootfs" "appliance" { bin_dir = "bin" }
//	provisioner "ksmg-appliance" { bin_dir = "bin" }
//	provisioner "ksmg-harden" {}
//	post-processor "ksmg-ova" {}
//	post-processor "ksmg-vhdx" {}
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/packer-plugin-sdk/plugin"
	"github.com/hashicorp/packer-plugin-sdk/version"

	"github.com/ksmg-appliance/ksmg"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/disk"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/rootfs"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/steps"
)

// provisioners are the steps components, each registered as ksmg-<name>.
var provisioners = map[string]steps.Component{
	"appliance": steps.Appliance,
	"harden":    steps.Harden,
}

// newSet is the plugin's component set; Packer names each component
// ksmg-<registered name>.
func newSet() *plugin.Set {
	pps := plugin.NewSet()
	pps.RegisterBuilder("rootfs", new(rootfs.Builder))
	for name, c := range provisioners {
		pps.RegisterProvisioner(name, steps.New(c))
	}
	pps.RegisterPostProcessor("ova", disk.New(disk.OVA))
	pps.RegisterPostProcessor("vhdx", disk.New(disk.VHDX))
	pps.SetVersion(version.NewRawVersion(ksmg.Version()))
	return pps
}

func main() {
	if err := keepInheritedFDsFromChildren(); err != nil {
		fmt.Fprintln(os.Stderr, "packer-plugin-ksmg: descriptors:", err)
		os.Exit(1)
	}
	if err := newSet().Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
