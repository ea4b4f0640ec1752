package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vmware/govmomi/ovf/importer"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/vsphere"
)

func init() { deployCmd.AddCommand(newDeployVSphereCmd()) }

// vsphereFlags are the command's flags beyond the driver's Config.
type vsphereFlags struct {
	cfg        vsphere.Config
	networkMap []string
	ova, name  string
	props      []string
	propsFile  string
	diskSize   string
	cpus       int
	memory     int
	powerOn    bool
	waitIP     time.Duration
	replace    bool
	plan       bool
}

func newDeployVSphereCmd() *cobra.Command {
	var f vsphereFlags
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
	fl.StringVar(&f.ova, "ova", "", "appliance OVA file (required)")
	fl.StringVar(&f.name, "name", "", "VM name (required)")
	fl.StringArrayVar(&f.props, "prop", nil, "first-boot property key=value, e.g. ksmg.hostname=mx1.example.com (repeatable)")
	fl.StringVar(&f.propsFile, "props-file", "", "YAML/JSON map of properties, or govc import.spec options JSON")
	fl.StringVar(&f.diskSize, "disk-size", "", "grow the disk to this size in GiB, e.g. 100 or 100G")
	fl.IntVar(&f.cpus, "cpus", 0, "virtual CPUs (default: the OVA's)")
	fl.IntVar(&f.memory, "memory", 0, "memory in MiB (default: the OVA's)")
	fl.BoolVar(&f.powerOn, "power-on", true, "power the VM on")
	fl.DurationVar(&f.waitIP, "wait-ip", 0, "wait this long for the guest's IPv4 address, e.g. 10m (0: do not wait)")
	fl.BoolVar(&f.replace, "replace", false, "replace a VM of the same name")
	fl.BoolVar(&f.plan, "plan", false, "print what would be done and change nothing")
	return cmd
}

// usage is a bad-input error: exit status 2.
func usage(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func runDeployVSphere(cmd *cobra.Command, f *vsphereFlags) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	if f.ova == "" || f.name == "" {
		return usage("deploy vsphere: --ova and --name are required")
	}
	props := map[string]string{}
	if f.propsFile != "" {
		fileProps, nets, err := readPropsFile(f.propsFile)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		maps.Copy(props, fileProps)
		for k, v := range nets {
			if f.cfg.NetworkMap == nil {
				f.cfg.NetworkMap = map[string]string{}
			}
			f.cfg.NetworkMap[k] = v
		}
	}
	for _, kv := range f.props {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usage("--prop %q: expected key=value", redactProp(kv))
		}
		props[k] = v
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
	diskGiB, err := parseGiB(f.diskSize)
	if err != nil {
		return usage("--disk-size %q: %v", f.diskSize, err)
	}
	n := deploy.Node{
		Name: f.name, Image: f.ova, CPUs: f.cpus, MemoryMiB: f.memory, DiskGiB: diskGiB,
		Properties: props, PowerOn: f.powerOn, WaitIP: f.waitIP, Replace: f.replace,
	}
	if err := n.Validate(); err != nil {
		return usage("deploy vsphere: %v", err)
	}
	log := logger()
	if !f.plan {
		n.Progress = uploadProgress(cmd.ErrOrStderr())
	}

	d, err := vsphere.Open(ctx, targetName(f.cfg.URL), f.cfg)
	if err != nil {
		return err
	}
	d.SetLogger(log)
	defer func() {
		if err := d.Close(); err != nil {
			log.Warn("close", "err", err)
		}
	}()
	if f.plan {
		p, err := d.Plan(ctx, n)
		if err != nil {
			return err
		}
		return writePlan(out, p)
	}
	log.Info("deploying", "target", d.Target(), "vm", n.Name, "ova", n.Image, "properties", deploy.Redact(n.Properties))
	res, err := d.Deploy(ctx, n)
	return writeResult(out, res, err)
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

// redactProp hides the value of a key=value argument in messages.
func redactProp(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return deploy.Redact(map[string]string{k: "x"})[k] + "=…"
}

// parseGiB reads "", "100", "100G" or "100GiB" as whole GiB.
func parseGiB(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	num := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s, "iB"), "B"), "G")
	if num == s && strings.ContainsAny(s, "KkMmTt") {
		return 0, errors.New("give whole GiB, e.g. 100 or 100G")
	}
	v, err := strconv.Atoi(num)
	if err != nil || v <= 0 {
		return 0, errors.New("give a positive whole number of GiB, e.g. 100 or 100G")
	}
	return v, nil
}

// readPropsFile reads first-boot property values from a YAML or JSON map
// of key: value, or from govc import.spec options JSON (PropertyMapping,
// NetworkMapping). Scalars become strings; booleans as vSphere writes them
// (True/False).
func readPropsFile(p string) (props, networks map[string]string, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, fmt.Errorf("--props-file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil { // YAML is a superset of JSON
		return nil, nil, fmt.Errorf("--props-file %s: not a YAML or JSON map: %w", p, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil, fmt.Errorf("--props-file %s: empty", p)
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("--props-file %s line %d: expected a map of key: value", p, m.Line)
	}
	govc := false
	for i := 0; i < len(m.Content); i += 2 {
		govc = govc || m.Content[i].Value == "PropertyMapping"
	}
	if govc {
		var o importer.Options
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&o); err != nil {
			return nil, nil, fmt.Errorf("--props-file %s: govc import.spec options: %w", p, err)
		}
		props, networks = map[string]string{}, map[string]string{}
		for i, kv := range o.PropertyMapping {
			if kv.Key == "" {
				return nil, nil, fmt.Errorf("--props-file %s: PropertyMapping[%d] has no Key", p, i)
			}
			if kv.Value != "" { // import.spec lists unset properties with ""
				props[kv.Key] = kv.Value
			}
		}
		for _, nm := range o.NetworkMapping {
			if nm.Network != "" {
				networks[nm.Name] = nm.Network
			}
		}
		return props, networks, nil
	}
	props = map[string]string{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return nil, nil, fmt.Errorf("--props-file %s line %d: %s: expected a single value, got a list or map", p, v.Line, k.Value)
		}
		if _, dup := props[k.Value]; dup {
			return nil, nil, fmt.Errorf("--props-file %s line %d: %s appears twice", p, k.Line, k.Value)
		}
		val := v.Value
		if v.Tag == "!!bool" {
			b, _ := strconv.ParseBool(strings.ToLower(val))
			val = map[bool]string{true: "True", false: "False"}[b]
		}
		if v.Tag == "!!null" {
			val = ""
		}
		props[k.Value] = val
	}
	return props, nil, nil
}

// uploadProgress draws upload progress on a terminal every 5%, and logs
// it every 25% otherwise. Shared by the deploy commands (signature kept
// stable for them).
func uploadProgress(w io.Writer) func(stage string, done, total int64) {
	step := 5
	var log *slog.Logger
	if !interactive() {
		step, log = 25, logger()
	}
	last := -step
	return func(stage string, done, total int64) {
		if total <= 0 {
			return
		}
		pct := int(done * 100 / total)
		if pct/step == last/step && pct != 100 || pct == last {
			return
		}
		last = pct
		if log != nil {
			log.Info(stage, "percent", pct, "bytes", done, "total", total)
			return
		}
		fmt.Fprintf(w, "\r%s %3d%% (%d of %d MiB)", stage, pct, done>>20, total>>20)
		if done >= total {
			fmt.Fprintln(w)
		}
	}
}
