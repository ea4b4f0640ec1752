package main

import (
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ksmg-appliance/ksmg/deploy/vsphere"
)

// vsphereFlags are the command's flags beyond the driver's Config.
type vsphereFlags struct {
	cfg        vsphere.Config
	networkMap []string
	node       nodeFlags
}

func newDeployVSphereCmd(a *app) *cobra.Command {
	f := vsphereFlags{node: nodeFlags{app: a, cmd: "vsphere", imageFlag: "ova"}}
	f.node.networks = f.networks
	cmd := &cobra.Command{
		Use:   "vsphere --ova FILE --name VM [flags]",
		Short: "Deploy the appliance OVA to vCenter or a standalone ESXi host",
		Long: `Deploy the appliance OVA to vCenter or a standalone ESXi host.

The OVA is verified (manifest, descriptor, disk) before anything is uploaded.
First-boot answers are vApp property values (--prop, --props-file); on a
standalone ESXi host they are written to guestinfo.ovfEnv. A VM of the same
name that ksmg finished deploying is left alone unless --replace is given.

The password is never a flag: it is read from --password-file, or from the
variable --password-env names (default KSMG_VSPHERE_PASSWORD), or from
GOVC_PASSWORD. GOVC_URL and GOVC_USERNAME are the defaults of --url and
--username, as for govc.

--props-file takes a YAML or JSON map of key: value, or the options JSON
that "govc import.spec" emits (its PropertyMapping and NetworkMapping are
used; flags win over the file).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDeployVSphere(cmd, &f)
		},
	}
	fl := cmd.Flags()
	c := &f.cfg
	fl.StringVar(&c.URL, "url", "", "vCenter or ESXi SDK URL, e.g. https://vc.example.com/sdk (default $GOVC_URL)")
	fl.StringVar(&c.Username, "username", "", "user name (default $GOVC_USERNAME)")
	fl.StringVar(&c.PasswordEnv, "password-env", "", "environment variable holding the password (default "+vsphere.DefaultPasswordEnv+", then GOVC_PASSWORD)")
	fl.StringVar(&c.PasswordFile, "password-file", "", "file holding the password")
	fl.BoolVar(&c.Insecure, "insecure", false, "skip TLS certificate verification")
	fl.StringVar(&c.Thumbprint, "thumbprint", "", "expected TLS certificate thumbprint of the host")
	fl.StringVar(&c.Datacenter, "datacenter", "", "datacenter (default: the only one)")
	fl.StringVar(&c.Cluster, "cluster", "", "cluster whose resource pool receives the VM")
	fl.StringVar(&c.Host, "host", "", "ESXi host to place the VM on")
	fl.StringVar(&c.ResourcePool, "resource-pool", "", "resource pool (overrides --cluster/--host)")
	fl.StringVar(&c.Folder, "folder", "", "VM folder (default: the datacenter's VM folder)")
	fl.StringVar(&c.Datastore, "datastore", "", "datastore (default: the only one)")
	fl.StringVar(&c.Network, "network", "", "port group for the appliance's NIC")
	fl.StringArrayVar(&f.networkMap, "network-map", nil, "OVF network name=port group (repeatable)")
	fl.StringVar(&c.DiskProvisioning, "disk-provisioning", vsphere.Thin, "thin, thick or eagerZeroedThick")
	f.node.add(fl, nodeHelp{
		image:     "appliance OVA file (required)",
		prop:      "first-boot property key=value, e.g. ksmg.hostname=mx1.example.com (repeatable)",
		propsFile: "YAML/JSON map of properties, or govc import.spec options JSON",
		cpus:      "virtual CPUs (default: the OVA's)",
		memory:    "memory in MiB (default: the OVA's)",
		powerOn:   "power the VM on",
	})
	return cmd
}

func runDeployVSphere(cmd *cobra.Command, f *vsphereFlags) error {
	n, err := f.node.node(cmd)
	if err != nil {
		return err
	}
	log := f.node.app.logger()
	d, err := vsphere.Open(cmd.Context(), targetName(f.cfg.URL), f.cfg)
	if err != nil {
		return permanentIsUsage(err)
	}
	d.SetLogger(log)
	return f.node.run(cmd, d, n, log)
}

// networks merges the network mappings of a govc import.spec --props-file
// and then --network-map (which wins) into the driver's Config.
func (f *vsphereFlags) networks(fromFile map[string]string) error {
	for k, v := range fromFile {
		if f.cfg.NetworkMap == nil {
			f.cfg.NetworkMap = map[string]string{}
		}
		f.cfg.NetworkMap[k] = v
	}
	for _, kv := range f.networkMap {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			return usage("--network-map %q: expected OVF-network=port-group", kv)
		}
		if f.cfg.NetworkMap == nil {
			f.cfg.NetworkMap = map[string]string{}
		}
		f.cfg.NetworkMap[k] = v
	}
	return nil
}

// targetName names the target after the URL's host, for messages.
func targetName(raw string) string {
	if raw == "" {
		raw = os.Getenv("GOVC_URL")
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	if u, err := url.Parse(raw); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "vsphere"
}
