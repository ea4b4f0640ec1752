package main

import (
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

--plan runs every check the deploy runs first and changes nothing: the OVA
verified (manifest, descriptor, every disk grain), the first-boot answers
checked as first boot will check them, the properties against the ones the
OVA declares, the disk size against the image's, --network-map names
against the OVF's networks; then the VM of the name is looked up and
compared with the record ksmg keeps on it. Bad input exits 2, from the plan
as from the deploy.

First-boot answers are vApp property values (--prop, --props-file); on a
standalone ESXi host they are written to guestinfo.ovfEnv. After the import
the VM is read back and what the appliance needs (EFI, Secure Boot,
disk.EnableUUID, PVSCSI, VMXNET3) is set where the host dropped it. The
deploy waits (--wait-ip) for the guest's address and first boot's
completion signal (guestinfo.ksmg.firstboot, set through VMware Tools), and
then clears the secret answers (admin password, hash, join token) from the
vApp properties and guestinfo.ovfEnv. With --wait-ip 0 they stay in the
VM's settings until --scrub clears them; the deploy says so.

A VM of the same name that ksmg finished deploying is left alone (drift and
an outdated image are reported; --apply-drift changes CPUs, memory, disk
growth and network in place); --replace deploys a new VM under a temporary
name, checks it, swaps it in and only then removes the old one. A VM ksmg
did not make is replaced only with --replace --replace-foreign.

The password is never a flag: it is read from --password-file, or from the
variable --password-env names (default KSMG_VSPHERE_PASSWORD), or from
GOVC_PASSWORD. GOVC_URL and GOVC_USERNAME are the defaults of --url and
--username, GOVC_TLS_CA_CERTS and GOVC_TLS_KNOWN_HOSTS of --ca-cert and
--known-hosts, as for govc. A certificate that cannot be verified fails
with its thumbprint and how to trust it (--thumbprint or --ca-cert).

--props-file takes a YAML or JSON map of key: value, or the options JSON
that "govc import.spec" emits (its PropertyMapping and NetworkMapping are
used; flags win over the file).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDeployVSphere(cmd, &f)
		},
	}
	fl := cmd.Flags()
	f.addTarget(fl)
	fl.StringArrayVar(&f.networkMap, "network-map", nil, "OVF network name=port group (repeatable)")
	fl.StringVar(&f.cfg.DiskProvisioning, "disk-provisioning", vsphere.Thin, "thin, thick or eagerZeroedThick")
	f.node.add(fl, nodeHelp{
		image:     "appliance OVA file (required)",
		prop:      "first-boot property key=value, e.g. ksmg.hostname=mx1.example.com (repeatable; secrets only in --props-file)",
		propsFile: "YAML/JSON map of properties, or govc import.spec options JSON",
		cpus:      "virtual CPUs (default: the OVA's)",
		memory:    "memory in MiB (default: the OVA's)",
		powerOn:   "power the VM on",
	})
	return cmd
}

// addTarget adds the flags that say where the target is and how to
// reach it (shared with `ksmg deploy remove vsphere`).
func (f *vsphereFlags) addTarget(fl *pflag.FlagSet) {
	c := &f.cfg
	fl.StringVar(&c.URL, "url", "", "vCenter or ESXi SDK URL, e.g. https://vc.example.com/sdk (default $GOVC_URL)")
	fl.StringVar(&c.Username, "username", "", "user name (default $GOVC_USERNAME)")
	fl.StringVar(&c.PasswordEnv, "password-env", "", "environment variable holding the password (default "+vsphere.DefaultPasswordEnv+", then GOVC_PASSWORD)")
	fl.StringVar(&c.PasswordFile, "password-file", "", "file holding the password")
	fl.BoolVar(&c.Insecure, "insecure", false, "skip TLS certificate verification")
	fl.StringVar(&c.Thumbprint, "thumbprint", "", "expected TLS certificate thumbprint of the host: SHA-256 or SHA-1, hex, any case, colons optional")
	fl.StringVar(&c.CACert, "ca-cert", "", "PEM file with the CA certificates the host's certificate must chain to (default $GOVC_TLS_CA_CERTS)")
	fl.StringVar(&c.KnownHosts, "known-hosts", "", `file of "host thumbprint" lines, as govc keeps them (default $GOVC_TLS_KNOWN_HOSTS)`)
	fl.StringVar(&c.Datacenter, "datacenter", "", "datacenter (default: the only one)")
	fl.StringVar(&c.Cluster, "cluster", "", "cluster whose resource pool receives the VM")
	fl.StringVar(&c.Host, "host", "", "ESXi host to place the VM on")
	fl.StringVar(&c.ResourcePool, "resource-pool", "", "resource pool (overrides --cluster/--host)")
	fl.StringVar(&c.Folder, "folder", "", "VM folder (default: the datacenter's VM folder)")
	fl.StringVar(&c.Datastore, "datastore", "", "datastore (default: the only one)")
	fl.StringVar(&c.Network, "network", "", "port group for the appliance's NIC")
}

// check validates what can be validated before connecting: a malformed
// thumbprint is bad input (exit 2), not a failed connection.
func (f *vsphereFlags) check() error {
	if f.cfg.Thumbprint != "" {
		if _, err := vsphere.NormalizeThumbprint(f.cfg.Thumbprint); err != nil {
			return usage("--%v", err)
		}
	}
	return nil
}

func runDeployVSphere(cmd *cobra.Command, f *vsphereFlags) error {
	if err := f.check(); err != nil {
		return err
	}
	n, err := f.node.node(cmd)
	if err != nil {
		return err
	}
	d, err := f.open(cmd)
	if err != nil {
		return err
	}
	return f.node.run(cmd, d, n, f.node.app.logger())
}

// open connects to the target.
func (f *vsphereFlags) open(cmd *cobra.Command) (*vsphere.Deployer, error) {
	d, err := vsphere.Open(cmd.Context(), targetName(f.cfg.URL), f.cfg)
	if err != nil {
		return nil, permanentIsUsage(err)
	}
	d.SetLogger(f.node.app.logger())
	return d, nil
}

// networks merges the network mappings of a govc import.spec --props-file
// and then --network-map (which wins) into the driver's Config; the driver
// refuses a source the OVF has no network of.
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
