package main

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/scvmm"
)

func init() { deployCmd.AddCommand(newDeployScvmmCmd()) }

type scvmmFlags struct {
	cfg       scvmm.Config
	vhdx      string
	name      string
	props     []string
	propsFile string
	diskSize  string
	cpus      int
	memory    int
	powerOn   bool
	waitIP    time.Duration
	replace   bool
	plan      bool
}

// openScvmm is scvmm.Open; tests replace it to reach a fake server.
var openScvmm = func(ctx context.Context, name string, cfg scvmm.Config, log *slog.Logger) (deploy.Deployer, error) {
	return scvmm.Open(ctx, name, cfg, log)
}

func newDeployScvmmCmd() *cobra.Command {
	var f scvmmFlags
	cmd := &cobra.Command{
		Use:   "scvmm --vhdx FILE --name VM --server HOST --library-share UNC (--host-group G | --cloud C) [flags]",
		Short: "Deploy the appliance VHDX through System Center Virtual Machine Manager",
		Long: `Deploy the appliance VHDX through SCVMM, over WinRM to a host with the
VirtualMachineManager PowerShell module (usually the VMM server).

The VHDX is copied over SMB to --library-share (named by its SHA-256, so an
image already there is not copied again) and the share refreshed; a
Generation 2 template with Secure Boot (MicrosoftUEFICertificateAuthority)
is made for it once. The VM is placed on the best-rated host of
--host-group or in --cloud; first-boot answers (--prop, --props-file) reach
the guest as Hyper-V KVP items, set through the VM's host. With --wait-ip
the deploy also waits, within the same time, for first boot to report that
it applied its answers (the guest's KVP item ksmg.firstboot=done), then
removes the secret ones (admin password, password hash, join token) from
the VM's settings; if first boot does not report in time the deploy fails
(retry it; the VM's console shows why) and the VM stays pending.

The VM's Description carries ksmg.deploy=pending from its creation and
ksmg.deploy=complete once the deploy finished. A VM of the same name that
ksmg finished deploying is left alone unless --replace is given; one still
marked pending (an interrupted run) is replaced; one without the mark is
not ksmg's and is never removed unless --replace is given (exit status 2).

Passwords are never flags: the WinRM/SMB password is read from
--password-file or the variable --password-env names (default
KSMG_SCVMM_PASSWORD); the Hyper-V hosts are reached with --host-user and
its password (default: the same account).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDeployScvmm(cmd, &f)
		},
	}
	fl := cmd.Flags()
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
	fl.StringVar(&c.VMMServer, "vmm-server", "", "VMM server Get-SCVMMServer connects to (default localhost: --server is the VMM server)")
	fl.StringVar(&c.LibraryShare, "library-share", "", `UNC folder on a library share, e.g. \\lib.example.com\MSSCVMMLibrary\ksmg (required)`)
	fl.StringVar(&c.LibraryServer, "library-server", "", "library server name in SCVMM, if several serve the share")
	fl.StringVar(&c.HostGroup, "host-group", "", `host group name or path, e.g. "All Hosts\Prague"`)
	fl.StringVar(&c.Cloud, "cloud", "", "private cloud to deploy into (instead of --host-group)")
	fl.StringVar(&c.PlacementPath, "placement-path", "", "VM folder on the chosen host (default: the host's first VM path)")
	fl.StringVar(&c.Network, "network", "", "SCVMM VM network for the appliance's NIC")
	fl.IntVar(&c.VLAN, "vlan", 0, "VLAN ID on the VM network (0: untagged)")
	fl.StringVar(&c.TemplatePrefix, "template-prefix", "", "name prefix of the library disk, template and hardware profile (default ksmg)")
	fl.StringVar(&c.OperatingSystem, "operating-system", "", `SCVMM operating system of the template, e.g. "Debian GNU/Linux 12 (64 bit)"`)
	fl.StringVar(&c.HostUser, "host-user", "", "account for the Hyper-V hosts (KVP items); default --user")
	fl.StringVar(&c.HostPasswordEnv, "host-password-env", "", "environment variable holding --host-user's password (default: the WinRM password)")
	fl.StringVar(&c.HostPasswordFile, "host-password-file", "", "file holding --host-user's password")
	fl.DurationVar(&c.PollInterval, "poll-interval", 0, "how often SCVMM jobs and the guest's address are polled (default 5s)")
	fl.StringVar(&f.vhdx, "vhdx", "", "appliance VHDX file (required)")
	fl.StringVar(&f.name, "name", "", "VM name (required)")
	fl.StringArrayVar(&f.props, "prop", nil, "first-boot answer key=value, e.g. ksmg.hostname=mx1.example.com (repeatable)")
	fl.StringVar(&f.propsFile, "props-file", "", "YAML/JSON map of first-boot answers")
	fl.StringVar(&f.diskSize, "disk-size", "", "grow the disk to this size in GiB, e.g. 100 or 100G")
	fl.IntVar(&f.cpus, "cpus", 0, "virtual CPUs (default: the template's, 2)")
	fl.IntVar(&f.memory, "memory", 0, "memory in MiB (default: the template's, 4096)")
	fl.BoolVar(&f.powerOn, "power-on", true, "start the VM")
	fl.DurationVar(&f.waitIP, "wait-ip", 0, "wait this long for the guest's IPv4 address, e.g. 10m (0: do not wait)")
	fl.BoolVar(&f.replace, "replace", false, "replace a VM of the same name that ksmg finished deploying, or one ksmg did not make")
	fl.BoolVar(&f.plan, "plan", false, "print what would be done and change nothing")
	return cmd
}

func runDeployScvmm(cmd *cobra.Command, f *scvmmFlags) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	if f.vhdx == "" || f.name == "" || f.cfg.Server == "" {
		return usage("deploy scvmm: --vhdx, --name and --server are required")
	}
	props := map[string]string{}
	if f.propsFile != "" {
		fileProps, nets, err := readPropsFile(f.propsFile)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		if len(nets) > 0 {
			return usage("--props-file %s: network mappings are for vSphere; use --network", f.propsFile)
		}
		maps.Copy(props, fileProps)
	}
	for _, kv := range f.props {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usage("--prop %q: expected key=value", redactProp(kv))
		}
		props[k] = v
	}
	diskGiB, err := parseGiB(f.diskSize)
	if err != nil {
		return usage("--disk-size %q: %v", f.diskSize, err)
	}
	n := deploy.Node{
		Name: f.name, Image: f.vhdx, CPUs: f.cpus, MemoryMiB: f.memory, DiskGiB: diskGiB,
		Properties: props, PowerOn: f.powerOn, WaitIP: f.waitIP, Replace: f.replace,
	}
	if err := n.Validate(); err != nil {
		return usage("deploy scvmm: %v", err)
	}
	log := logger()
	if !f.plan {
		n.Progress = uploadProgress(cmd.ErrOrStderr())
	}
	d, err := openScvmm(ctx, f.cfg.Server, f.cfg, log)
	if err != nil {
		if deploy.IsPermanent(err) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	defer func() {
		if err := d.Close(); err != nil {
			log.Warn("close", "err", err)
		}
	}()
	if f.plan {
		p, err := d.Plan(ctx, n)
		if err != nil {
			if deploy.IsPermanent(err) {
				return &exitError{code: 2, err: err}
			}
			return err
		}
		return writePlan(out, p)
	}
	log.Info("deploying", "target", d.Target(), "vm", n.Name, "vhdx", n.Image, "properties", deploy.Redact(n.Properties))
	res, err := d.Deploy(ctx, n)
	if err = writeResult(out, res, err); err != nil && deploy.IsPermanent(err) {
		return &exitError{code: 2, err: err}
	}
	return err
}
