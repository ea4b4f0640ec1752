package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vmware/govmomi/ovf/importer"
	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// The single-node deploy commands (vsphere, hyperv, scvmm) share the node
// flags, how a deploy.Node is built from them, and the plan/deploy tail;
// each command keeps its connection and placement flags.

// nodeFlags are the flags that describe one node, whatever the target.
type nodeFlags struct {
	app       *app
	cmd       string // the command's name, for messages: "deploy <cmd>: ..."
	imageFlag string // "ova" or "vhdx"
	// netFlag is the target's own network flag: a --props-file with
	// network mappings (govc import.spec) is refused, pointing to it.
	// Unused when networks is set.
	netFlag string
	// networks, if set, takes the network mappings of --props-file (nil
	// without one) once --prop is parsed; its error is returned as is.
	networks func(fromFile map[string]string) error

	image, name    string
	props          []string
	propsFile      string
	diskSize       string
	cpus           int
	memory         int
	powerOn        bool
	waitIP         time.Duration
	replace        bool
	replaceForeign bool
	applyDrift     bool
	scrub          bool
	plan           bool
}

// nodeHelp is the help text of the node flags that differ by target; an
// empty field takes the text most targets use.
type nodeHelp struct {
	image, prop, propsFile, cpus, memory, powerOn, waitIP, replace string
}

// add registers the node flags on fl.
func (f *nodeFlags) add(fl *pflag.FlagSet, h nodeHelp) {
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	fl.StringVar(&f.image, f.imageFlag, "", h.image)
	fl.StringVar(&f.name, "name", "", "VM name (required)")
	fl.StringArrayVar(&f.props, "prop", nil, or(h.prop, "first-boot answer key=value, e.g. ksmg.hostname=mx1.example.com (repeatable; secrets only in --props-file)"))
	fl.StringVar(&f.propsFile, "props-file", "", or(h.propsFile, "YAML/JSON map of first-boot answers"))
	fl.StringVar(&f.diskSize, "disk-size", "", "grow the disk to this size in GiB, e.g. 100 or 100G")
	fl.IntVar(&f.cpus, "cpus", 0, h.cpus)
	fl.IntVar(&f.memory, "memory", 0, h.memory)
	fl.BoolVar(&f.powerOn, "power-on", true, or(h.powerOn, "start the VM"))
	fl.DurationVar(&f.waitIP, "wait-ip", deploy.DefaultWaitIP, or(h.waitIP, "wait this long for the guest's address and first boot's completion, then clear the secret answers from the VM's settings (0: do not wait; the secrets stay until --scrub)"))
	fl.BoolVar(&f.replace, "replace", false, or(h.replace, "replace a VM of the same name that ksmg deployed: a new one is deployed under a temporary name, checked, swapped in, and only then the old one removed"))
	fl.BoolVar(&f.replaceForeign, "replace-foreign", false, "with --replace, also replace a VM of the name that ksmg did not make (never done otherwise)")
	fl.BoolVar(&f.applyDrift, "apply-drift", false, "change a deployed VM whose settings drifted in place where that is safe (CPUs, memory, disk growth, network); say what cannot")
	fl.BoolVar(&f.scrub, "scrub", false, "clear the secret answers (admin password, hash, join token) from a deployed VM's settings once its first boot reported completion, and deploy nothing")
	fl.BoolVar(&f.plan, "plan", false, "run every check a deploy runs and print what it would do; change nothing")
}

// node builds and validates the node the flags describe; bad input is a
// usage error (exit status 2). Upload progress goes to cmd's stderr,
// except with --plan.
func (f *nodeFlags) node(cmd *cobra.Command) (deploy.Node, error) {
	if f.image == "" || f.name == "" {
		return deploy.Node{}, usage("deploy %s: --%s and --name are required", f.cmd, f.imageFlag)
	}
	props := map[string]string{}
	var nets map[string]string
	if f.propsFile != "" {
		fileProps, fileNets, err := readPropsFile(f.propsFile)
		if err != nil {
			return deploy.Node{}, &exitError{code: 2, err: err}
		}
		if err := checkSecretFile(f.propsFile, fileProps); err != nil {
			return deploy.Node{}, &exitError{code: 2, err: err}
		}
		if f.networks == nil && len(fileNets) > 0 {
			return deploy.Node{}, usage("--props-file %s: network mappings are for vSphere; use --%s", f.propsFile, f.netFlag)
		}
		maps.Copy(props, fileProps)
		nets = fileNets
	}
	for _, kv := range f.props {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return deploy.Node{}, usage("--prop %q: expected key=value", redactProp(kv))
		}
		if answers.IsSecret(k) {
			return deploy.Node{}, usage("--prop %s: a secret answer never goes on the command line (every local user sees it in the process list, the shell keeps it in its history); put it in --props-file, readable only by you", k)
		}
		props[k] = v
	}
	if f.networks != nil {
		if err := f.networks(nets); err != nil {
			return deploy.Node{}, err
		}
	}
	diskGiB, err := parseGiB(f.diskSize)
	if err != nil {
		return deploy.Node{}, usage("--disk-size %q: %v", f.diskSize, err)
	}
	if f.replaceForeign && !f.replace {
		return deploy.Node{}, usage("deploy %s: --replace-foreign goes with --replace", f.cmd)
	}
	n := deploy.Node{
		Name: f.name, Image: f.image, CPUs: f.cpus, MemoryMiB: f.memory, DiskGiB: diskGiB,
		Properties: props, PowerOn: f.powerOn, WaitIP: f.waitIP,
		Replace: f.replace, ReplaceForeign: f.replaceForeign, ApplyDrift: f.applyDrift,
	}
	// The answers are checked here as first boot will check them, before
	// anything is reached: a bad one is bad input (exit 2).
	if err := n.Validate(); err != nil {
		return deploy.Node{}, usage("deploy %s: node %s: %v", f.cmd, f.name, err)
	}
	if !f.plan {
		p := f.app.newProgress(cmd.ErrOrStderr())
		n.Progress = func(stage string, done, total int64) { p.progress(n.Name, stage, done, total) }
		n.Waiting = func(what string, elapsed time.Duration) { p.waiting(n.Name, what, elapsed) }
	}
	return n, nil
}

// run plans (--plan), scrubs (--scrub) or deploys n with d, prints the
// plan or the result (writePlan, writeResult) to cmd's stdout, and closes
// d. A deploy.Permanent error (bad settings, a VM of the name that is not
// ours) exits 2 like any bad input; others exit 1.
func (f *nodeFlags) run(cmd *cobra.Command, d deploy.Deployer, n deploy.Node, log *slog.Logger) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	defer func() {
		if err := d.Close(); err != nil {
			log.Warn("close", "err", err)
		}
	}()
	switch {
	case f.plan:
		p, err := d.Plan(ctx, n)
		if err != nil && !f.app.json {
			return permanentIsUsage(err)
		}
		// With --json the row carries the error, as a fleet's plan does.
		p.Node, p.Target = n.Name, d.Target()
		if werr := f.app.writePlan(out, p, n, err); err == nil {
			return werr
		}
		return permanentIsUsage(err)
	case f.scrub:
		res, err := d.Scrub(ctx, n)
		return permanentIsUsage(f.app.writeResult(out, res, err))
	}
	log.Info("deploying", "target", d.Target(), "vm", n.Name, f.imageFlag, n.Image, "properties", deploy.Redact(n.Properties))
	res, err := d.Deploy(ctx, n)
	if err == nil && res.SecretsLeft {
		log.Warn("the secret answers stay in the VM's settings: nothing waited for first boot to report completion; run the same command with --scrub once it has", "vm", n.Name)
	}
	return permanentIsUsage(f.app.writeResult(out, res, err))
}

// usage is a bad-input error: exit status 2.
func usage(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// permanentIsUsage gives a deploy.Permanent error exit status 2: retrying
// will not help, the input must change.
func permanentIsUsage(err error) error {
	if err != nil && deploy.IsPermanent(err) {
		return &exitError{code: 2, err: err}
	}
	return err
}

// redactProp is a malformed --prop argument as a message may show it: a
// bare first-boot key as it is, anything else (it may be a mistyped
// secret) hidden.
func redactProp(kv string) string {
	k, v, ok := strings.Cut(kv, "=")
	switch {
	case ok && deploy.Redact(map[string]string{k: v})[k] != v:
		return k + "=<secret>"
	case ok:
		return kv
	case strings.HasPrefix(kv, answers.Prefix) && !strings.ContainsAny(kv, " \t"):
		return kv
	}
	return "<value hidden>"
}

// checkSecretFile refuses a props file that holds secret answers and is
// readable by others, as the fleet refuses such a secret file.
func checkSecretFile(p string, props map[string]string) error {
	keys := deploy.SecretKeys(props)
	if len(keys) == 0 || runtime.GOOS == "windows" {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("--props-file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("--props-file %s holds secret answers (%s) and is readable by others (mode %04o); chmod 600 it", p, strings.Join(keys, ", "), st.Mode().Perm())
	}
	return nil
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
