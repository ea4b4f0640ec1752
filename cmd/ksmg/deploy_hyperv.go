package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/hyperv"
)

type hypervFlags struct {
	cfg  hyperv.Config
	node nodeFlags
}

// openHyperVFunc opens a Hyper-V target; tests give app another one to
// reach a fake host.
type openHyperVFunc func(ctx context.Context, name string, cfg hyperv.Config, log *slog.Logger) (deploy.Deployer, error)

// openHyperV is hyperv.Open.
func openHyperV(ctx context.Context, name string, cfg hyperv.Config, log *slog.Logger) (deploy.Deployer, error) {
	d, err := hyperv.Open(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	d.SetLogger(log)
	return d, nil
}

func newDeployHyperVCmd(a *app) *cobra.Command {
	f := hypervFlags{node: nodeFlags{app: a, cmd: "hyperv", imageFlag: "vhdx", netFlag: "switch"}}
	cmd := &cobra.Command{
		Use:   `hyperv --vhdx FILE --name VM --host HOST --share UNC --path DIR --switch NAME [flags]`,
		Short: "Deploy the appliance VHDX to a Hyper-V host as a Generation 2 VM",
		Long: `Deploy the appliance VHDX to a Hyper-V host as a Generation 2 VM with
Secure Boot (template MicrosoftUEFICertificateAuthority).

Driver winrm (default, any OS) runs PowerShell over WinRM and copies the
disk over SMB to --share, the UNC form of the host folder --path; each VM
gets <path>\<name> for its disk and configuration. Driver wmi (Windows
only) uses the Hyper-V WMI API of this machine (--host localhost) or of a
remote host.

--plan runs every check the deploy runs, the VHDX first, before any host
is reached; bad input exits 2, from the plan as from the deploy.

First-boot answers (--prop, --props-file) become host-to-guest KVP items,
set before the VM first starts; their values travel on the remote shell's
standard input, never in script text or on a command line (script-block
logging, event 4104, would record them). The VM starts with its host and is
shut down when the host stops. The guest's address is read from KVP
(--wait-ip); with --wait-ip the deploy also waits, within the same time,
for first boot to report that it applied its answers (the guest's KVP item
ksmg.firstboot=done), then removes the secret items (admin password,
password hash, join token) from the VM's settings; with --wait-ip 0 they
stay until --scrub. If first boot does not report in time the deploy fails
and the VM is left running, marked pending, for inspection (the next run
replaces it). A VM of the same name that ksmg finished deploying is left
alone (drift and an outdated image are reported; --apply-drift changes
CPUs, memory, disk growth and network in place); --replace swaps a new VM
in before the old one is removed; an unfinished one is replaced; one ksmg
did not make is touched only with --replace --replace-foreign.

The password is never a flag: it is read from --password-file or the
variable --password-env names (default KSMG_HYPERV_PASSWORD).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDeployHyperV(cmd, &f)
		},
	}
	fl := cmd.Flags()
	f.addTarget(fl)
	f.node.add(fl, nodeHelp{
		image:  "appliance VHDX file (required)",
		cpus:   "virtual CPUs (default 4, the appliance spec's)",
		memory: "memory in MiB (default 8192, the appliance spec's)",
	})
	return cmd
}

// addTarget adds the flags that say where the host is and how to reach
// it (shared with `ksmg deploy remove hyperv`).
func (f *hypervFlags) addTarget(fl *pflag.FlagSet) {
	c := &f.cfg
	fl.StringVar(&c.Host, "host", "", "Hyper-V host name or address (required for --driver winrm)")
	fl.StringVar(&c.Driver, "driver", "winrm", "winrm (PowerShell over WinRM, any OS) or wmi (Windows only)")
	fl.IntVar(&c.WinRM.Port, "port", 0, "WinRM port (default 5986, or 5985 with --http)")
	fl.BoolVar(&c.WinRM.HTTP, "http", false, "WinRM over plain HTTP (needs --ntlm, which then encrypts every message)")
	fl.BoolVar(&c.WinRM.NTLM, "ntlm", false, "NTLM authentication instead of Basic")
	fl.BoolVar(&c.WinRM.Insecure, "insecure", false, "skip TLS certificate verification")
	fl.StringVar(&c.WinRM.CACert, "ca-cert", "", "PEM file with the CA of the WinRM listener's certificate")
	fl.StringVar(&c.User, "user", "", `user, DOMAIN\user or user@domain`)
	fl.StringVar(&c.PasswordEnv, "password-env", "", "environment variable holding the password (default "+hyperv.DefaultPasswordEnv+")")
	fl.StringVar(&c.PasswordFile, "password-file", "", "file holding the password")
	fl.StringVar(&c.Share, "share", "", `UNC folder the disk is copied to, e.g. \\hv1\VMs$\ksmg`)
	fl.StringVar(&c.Path, "path", "", `the same folder as the host sees it, e.g. D:\VMs\ksmg (required)`)
	fl.StringVar(&c.Switch, "switch", "", "Hyper-V virtual switch for the appliance's NIC (required)")
	fl.IntVar(&c.VLAN, "vlan", 0, "access VLAN ID of the NIC (0: untagged)")
	fl.DurationVar(&c.PollInterval, "poll-interval", 0, "how often the guest's address and first-boot signal are polled (default 5s)")
}

func runDeployHyperV(cmd *cobra.Command, f *hypervFlags) error {
	n, err := f.node.node(cmd)
	if err != nil {
		return err
	}
	// The VHDX is checked before any host is reached.
	if !f.node.scrub {
		if _, err := hyperv.CheckImage(n.Image); err != nil {
			return permanentIsUsage(err)
		}
	}
	d, err := f.open(cmd)
	if err != nil {
		return err
	}
	return f.node.run(cmd, d, n, f.node.app.logger())
}

// open reaches the host.
func (f *hypervFlags) open(cmd *cobra.Command) (deploy.Deployer, error) {
	name := f.cfg.Host
	if name == "" {
		name = "localhost"
	}
	d, err := f.node.app.openHyperV(cmd.Context(), name, f.cfg, f.node.app.logger())
	return d, permanentIsUsage(err)
}
