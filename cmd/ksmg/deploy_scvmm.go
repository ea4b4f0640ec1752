package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/scvmm"
)

type scvmmFlags struct {
	cfg  scvmm.Config
	node nodeFlags
}

// openScvmmFunc opens an SCVMM target; tests give app another one to
// reach a fake server.
type openScvmmFunc func(ctx context.Context, name string, cfg scvmm.Config, log *slog.Logger) (deploy.Deployer, error)

// openScvmm is scvmm.Open.
func openScvmm(ctx context.Context, name string, cfg scvmm.Config, log *slog.Logger) (deploy.Deployer, error) {
	return scvmm.Open(ctx, name, cfg, log)
}

func newDeployScvmmCmd(a *app) *cobra.Command {
	f := scvmmFlags{node: nodeFlags{app: a, cmd: "scvmm", imageFlag: "vhdx", netFlag: "network"}}
	cmd := &cobra.Command{
		Use:   "scvmm --vhdx FILE --name VM --server HOST --library-share UNC (--host-group G | --cloud C) [flags]",
		Short: "Deploy the appliance VHDX through System Center Virtual Machine Manager",
		Long: `Deploy the appliance VHDX through SCVMM, over WinRM to a host with the
VirtualMachineManager PowerShell module (usually the VMM server).

The VHDX is copied over SMB to --library-share (named by its SHA-256, so an
image already there is not copied again) and the share refreshed; a
Generation 2 template with Secure Boot (MicrosoftUEFICertificateAuthority)
and an explicit SCSI adapter is made for it once. The VM is placed on the
best-rated host of --host-group or in --cloud (VM network --network, subnet
--vm-subnet), starts with its host and is shut down when the host stops;
first-boot answers (--prop, --props-file) reach the guest as Hyper-V KVP
items, set through the VM's host, their values and the host's password on
the remote shell's standard input, never in script text or on a command
line. With --wait-ip the deploy also waits, within the same time, for first
boot to report that it applied its answers (the guest's KVP item
ksmg.firstboot=done), then removes the secret ones (admin password,
password hash, join token) from the VM's settings; with --wait-ip 0 they
stay until --scrub. If first boot does not report in time the deploy fails
(retry it; the VM's console shows why) and the VM stays pending.

--plan runs every check the deploy runs, the VHDX first, before the server
is reached; bad input exits 2, from the plan as from the deploy.

The VM's Description carries ksmg.deploy=pending (and the record of what
is deployed) from its creation and ksmg.deploy=complete once the deploy
finished. A VM of the same name that ksmg finished deploying is left alone
(drift and an outdated image are reported; --apply-drift changes it in
place where safe); --replace swaps a new VM in before the old one is
removed; one still marked pending (an interrupted run) is replaced; one
without the mark is not ksmg's and is never removed unless --replace
--replace-foreign is given (exit status 2).

Passwords are never flags: the WinRM/SMB password is read from
--password-file or the variable --password-env names (default
KSMG_SCVMM_PASSWORD); the Hyper-V hosts are reached with --host-user and
its password (default: the same account).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDeployScvmm(cmd, &f)
		},
	}
	fl := cmd.Flags()
	f.addTarget(fl)
	f.node.add(fl, nodeHelp{
		image:   "appliance VHDX file (required)",
		cpus:    "virtual CPUs (default: the template's, 2)",
		memory:  "memory in MiB (default: the template's, 4096)",
		replace: "replace a VM of the same name that ksmg deployed: a new one is deployed under a temporary name, checked, swapped in, and only then the old one removed",
	})
	return cmd
}

// addTarget adds the flags that say how to reach the VMM server and the
// hosts (shared with `ksmg deploy remove scvmm`).
func (f *scvmmFlags) addTarget(fl *pflag.FlagSet) {
	c := &f.cfg
	fl.StringVar(&c.Server, "server", "", "WinRM host with the VirtualMachineManager module (required)")
	fl.IntVar(&c.Port, "port", 0, "WinRM port (default 5986, or 5985 with --http)")
	fl.BoolVar(&c.HTTP, "http", false, "WinRM over plain HTTP (needs --ntlm, which then encrypts every message)")
	fl.BoolVar(&c.NTLM, "ntlm", false, "NTLM authentication instead of Basic")
	fl.BoolVar(&c.Insecure, "insecure", false, "skip TLS certificate verification")
	fl.StringVar(&c.CACert, "ca-cert", "", "PEM file with the CA of the WinRM listener's certificate")
	fl.StringVar(&c.User, "user", "", `user, DOMAIN\user or user@domain (required)`)
	fl.StringVar(&c.PasswordEnv, "password-env", "", "environment variable holding the password (default "+scvmm.DefaultPasswordEnv+")")
	fl.StringVar(&c.PasswordFile, "password-file", "", "file holding the password")
	fl.StringVar(&c.LibraryShare, "library-share", "", `UNC folder on a library share, e.g. \\lib.example.com\MSSCVMMLibrary\ksmg (required)`)
	fl.StringVar(&c.LibraryServer, "library-server", "", "library server name in SCVMM, if several serve the share")
	fl.StringVar(&c.HostGroup, "host-group", "", `host group name or path, e.g. "All Hosts\Prague"`)
	fl.StringVar(&c.Cloud, "cloud", "", "private cloud to deploy into (instead of --host-group)")
	fl.StringVar(&c.PlacementPath, "placement-path", "", "VM folder on the chosen host (default: the host's first VM path)")
	fl.StringVar(&c.Network, "network", "", "SCVMM VM network for the appliance's NIC")
	fl.StringVar(&c.VMSubnet, "vm-subnet", "", "VM subnet of --network (needed when it has several)")
	fl.IntVar(&c.VLAN, "vlan", 0, "VLAN ID on the VM network (0: untagged)")
	fl.StringVar(&c.TemplatePrefix, "template-prefix", "", "name prefix of the library disk, template and hardware profile (default ksmg)")
	fl.StringVar(&c.OperatingSystem, "operating-system", "", `SCVMM operating system of the template, e.g. "Debian GNU/Linux 12 (64 bit)"`)
	fl.StringVar(&c.VMMServer, "vmm-server", "", "VMM server Get-SCVMMServer connects to (default localhost: --server is the VMM server)")
	fl.StringVar(&c.HostUser, "host-user", "", "account for the Hyper-V hosts (KVP items); default --user")
	fl.StringVar(&c.HostPasswordEnv, "host-password-env", "", "environment variable holding --host-user's password (default: the WinRM password)")
	fl.StringVar(&c.HostPasswordFile, "host-password-file", "", "file holding --host-user's password")
	fl.DurationVar(&c.PollInterval, "poll-interval", 0, "how often SCVMM jobs and the guest's address are polled (default 5s)")
}

func runDeployScvmm(cmd *cobra.Command, f *scvmmFlags) error {
	if f.node.image == "" || f.node.name == "" || f.cfg.Server == "" {
		return usage("deploy scvmm: --vhdx, --name and --server are required")
	}
	n, err := f.node.node(cmd)
	if err != nil {
		return err
	}
	// The VHDX is checked before the server is reached.
	if !f.node.scrub {
		if _, err := scvmm.CheckImage(n.Image); err != nil {
			return permanentIsUsage(err)
		}
	}
	d, err := f.open(cmd)
	if err != nil {
		return err
	}
	return f.node.run(cmd, d, n, f.node.app.logger())
}

// open reaches the VMM server.
func (f *scvmmFlags) open(cmd *cobra.Command) (deploy.Deployer, error) {
	d, err := f.node.app.openScvmm(cmd.Context(), f.cfg.Server, f.cfg, f.node.app.logger())
	return d, permanentIsUsage(err)
}
