package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/ova"
)

// imageFormat says which image a driver kind takes. The fleet knows drivers
// only through the registry, so this is the one place that names them;
// any other kind needs an explicit "image" on its target.
var imageFormat = map[string]string{"vsphere": "ova", "hyperv": "vhdx", "scvmm": "vhdx"}

// ovaDeclared are the first-boot keys the OVA declares as properties.
var ovaDeclared, ovaKeys = func() (map[string]bool, []string) {
	m := map[string]bool{}
	var ks []string
	for _, p := range ova.Properties() {
		m[p.Key] = true
		ks = append(ks, p.Key)
	}
	return m, ks
}()

// Inventory is a checked fleet.yaml: every node's deploy.Node complete
// except, on Secondary nodes, a control address only the control node's
// deploy can tell.
type Inventory struct {
	File    string
	Targets []Target
	Nodes   []Node
	Control int // index of the control node in Nodes
	// ControlAddress is what Secondary nodes are told to join: the
	// explicit cluster.control_address, else the control node's static
	// address, else "" (the IP its deploy reports).
	ControlAddress string
	Probe          Probe
	// Cluster names the cluster in every node's deploy record
	// (cluster.name, default the control node's name): a plan shows a VM
	// of the cluster that left the inventory as an orphan, and --prune
	// removes it; VMs of other clusters and single deploys are never
	// orphans.
	Cluster string
	// Dir is the inventory's directory; relative paths in it are taken
	// from there.
	Dir string
}

// Target is one hypervisor endpoint of the inventory.
type Target struct {
	Name   string
	Kind   string
	Line   int
	config *yaml.Node // the target's mapping without the fleet's keys
}

// Decode fills a driver's configuration from the target's settings (all
// but kind and image), rejecting unknown keys with file:line; it is what
// Open hands the driver's Opener.
func (t Target) Decode(file string, v any) error {
	return errors.Join(t.decode(file, v)...)
}

func (t Target) decode(file string, v any) []error {
	errs := strictDecode(file, t.config, v)
	for i, e := range errs {
		var pe *posError
		if errors.As(e, &pe) {
			errs[i] = &posError{pe.File, pe.Line, "targets." + t.Name + ": " + pe.Msg}
		}
	}
	return errs
}

// Node is one appliance of the fleet.
type Node struct {
	deploy.Node
	Target string
	Line   int
}

// Probe is the optional readiness check of the control node's SMTP port
// before Secondary nodes are deployed; Port 0 turns it off.
type Probe struct {
	Port    int
	Timeout time.Duration
}

// InventoryError lists every problem of an inventory, each as file:line: reason.
type InventoryError struct{ Errs []error }

func (e *InventoryError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("invalid inventory (%d problem(s)):\n  %s", len(e.Errs), strings.Join(msgs, "\n  "))
}

func (e *InventoryError) Unwrap() []error { return e.Errs }

type rawInventory struct {
	Images   rawImages   `yaml:"images"`
	Defaults rawDefaults `yaml:"defaults"`
	Targets  yaml.Node   `yaml:"targets"`
	Cluster  rawCluster  `yaml:"cluster"`
	Nodes    []yaml.Node `yaml:"nodes"`
}

type rawImages struct {
	OVA  string `yaml:"ova"`
	VHDX string `yaml:"vhdx"`
}

type rawDefaults struct {
	CPUs       int       `yaml:"cpus"`
	Memory     int       `yaml:"memory"` // MiB
	Disk       int       `yaml:"disk"`   // GiB
	Network    string    `yaml:"network"`
	VLAN       int       `yaml:"vlan"`
	PowerOn    *bool     `yaml:"power_on"`
	WaitIP     string    `yaml:"wait_ip"`
	Properties yaml.Node `yaml:"properties"`
}

type rawCluster struct {
	Name              string    `yaml:"name"`
	JoinToken         yaml.Node `yaml:"join_token"`
	AdminPassword     yaml.Node `yaml:"admin_password"`
	AdminPasswordHash yaml.Node `yaml:"admin_password_hash"`
	ControlAddress    string    `yaml:"control_address"`
	ControlProbe      *struct {
		Port    int    `yaml:"port"`
		Timeout string `yaml:"timeout"`
	} `yaml:"control_probe"`
}

type rawNode struct {
	Name       string    `yaml:"name"`
	Target     string    `yaml:"target"`
	Role       string    `yaml:"role"`
	Hostname   string    `yaml:"hostname"`
	Addresses  yaml.Node `yaml:"addresses"`
	CPUs       *int      `yaml:"cpus"`
	Memory     *int      `yaml:"memory"`
	Disk       *int      `yaml:"disk"`
	Network    *string   `yaml:"network"`
	VLAN       *int      `yaml:"vlan"`
	Properties yaml.Node `yaml:"properties"`
}

type rawAddresses struct {
	IPv4        string   `yaml:"ipv4"`
	Gateway     string   `yaml:"gateway"`
	IPv6        string   `yaml:"ipv6"`
	IPv6Gateway string   `yaml:"ipv6_gateway"`
	DNS         []string `yaml:"dns"`
	Search      string   `yaml:"search"`
}

// fleetKeys are first-boot keys the fleet sets from a node's own fields
// (hostname, role, addresses) or from the cluster section; a node's or the
// defaults' properties must not set them too.
var fleetKeys = map[string]string{
	"ksmg.hostname":                "the node's hostname",
	"ksmg.cluster.role":            "the node's role",
	"ksmg.cluster.control_address": "cluster.control_address or the control node's address",
	"ksmg.cluster.join_token":      "cluster.join_token",
	"ksmg.admin.password":          "cluster.admin_password",
	"ksmg.admin.password_hash":     "cluster.admin_password_hash",
	"ksmg.network.mode":            "the node's addresses",
	"ksmg.network.address":         "the node's addresses.ipv4",
	"ksmg.network.prefix":          "the node's addresses.ipv4 (address/prefix)",
	"ksmg.network.gateway":         "the node's addresses.gateway",
	"ksmg.network.ipv6.address":    "the node's addresses.ipv6",
	"ksmg.network.ipv6.gateway":    "the node's addresses.ipv6_gateway",
}

// checker collects problems with their lines.
type checker struct {
	file string
	dir  string
	errs []error
	seen map[string]bool
}

func (c *checker) at(line int, format string, args ...any) {
	e := &posError{c.file, line, fmt.Sprintf(format, args...)}
	if c.seen[e.Error()] {
		return // a default's problem shows up once, not once per node
	}
	c.seen[e.Error()] = true
	c.errs = append(c.errs, e)
}

func (c *checker) add(errs []error) {
	for _, err := range errs {
		if c.seen[err.Error()] {
			continue
		}
		c.seen[err.Error()] = true
		c.errs = append(c.errs, err)
	}
}

// Load reads and checks an inventory completely: structure, unknown keys,
// targets' kinds, images, secrets, node names, roles and every node's
// first-boot answers. It touches no target; every problem is reported at
// once, each with file:line and the reason.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	return Parse(path, data)
}

// Parse checks an inventory held in memory; path names it in errors and
// relative image and secret-file paths are taken from its directory.
func Parse(path string, data []byte) (*Inventory, error) {
	c := &checker{file: path, dir: filepath.Dir(path), seen: map[string]bool{}}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &InventoryError{[]error{fmt.Errorf("%s: the file is empty; an inventory is a mapping with images, defaults, targets, cluster and nodes (see deploy/fleet/example/fleet.yaml)", path)}}
		}
		msg := err.Error()
		if sm := typeErrLine.FindStringSubmatch(strings.TrimPrefix(msg, "yaml: ")); sm != nil {
			return nil, &InventoryError{[]error{fmt.Errorf("%s:%s: %s", path, sm[1], sm[2])}}
		}
		return nil, &InventoryError{[]error{fmt.Errorf("%s: %s", path, msg)}}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &InventoryError{[]error{&posError{path, doc.Line, "expected a mapping with images, defaults, targets, cluster and nodes"}}}
	}
	top := doc.Content[0]
	var raw rawInventory
	c.add(strictDecode(path, top, &raw))
	inv := &Inventory{File: path, Control: -1, Dir: c.dir}

	images := c.images(top, raw.Images)
	defProps, defLines := c.properties(&raw.Defaults.Properties, "defaults.properties")
	def := c.defaults(top, raw.Defaults)
	def.props, def.lines = defProps, defLines
	c.targets(inv, top, &raw.Targets, images)
	secrets := c.cluster(inv, top, raw.Cluster)
	c.nodes(inv, top, raw.Nodes, nodeInputs{images: images, def: def, sec: secrets})

	if len(c.errs) > 0 {
		return nil, &InventoryError{c.errs}
	}
	return inv, nil
}

// keyLine is the line of key's value in mapping m, or m's own line.
func keyLine(m *yaml.Node, key string) int {
	if m != nil && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1].Line
			}
		}
	}
	if m == nil {
		return 0
	}
	return m.Line
}

func child(m *yaml.Node, key string) *yaml.Node {
	if m != nil && m.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
	}
	return nil
}

func (c *checker) images(top *yaml.Node, im rawImages) map[string]string {
	out := map[string]string{}
	imNode := child(top, "images")
	for _, format := range []string{"ova", "vhdx"} {
		p := map[string]string{"ova": im.OVA, "vhdx": im.VHDX}[format]
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.dir, p)
		}
		st, err := os.Stat(p)
		switch {
		case err != nil:
			c.at(keyLine(imNode, format), "images.%s: %v", format, errors.Unwrap(err))
		case !st.Mode().IsRegular():
			c.at(keyLine(imNode, format), "images.%s: %s is not a regular file", format, p)
		default:
			out[format] = p
		}
	}
	return out
}

type defaults struct {
	cpus, memory, disk, vlan int
	network                  string
	powerOn                  bool
	waitIP                   time.Duration
	props                    map[string]string // defaults.properties
	lines                    map[string]int    // their lines
}

func (c *checker) defaults(top *yaml.Node, d rawDefaults) defaults {
	out := defaults{cpus: d.CPUs, memory: d.Memory, disk: d.Disk, vlan: d.VLAN, network: d.Network, powerOn: true, waitIP: deploy.DefaultWaitIP}
	dn := child(top, "defaults")
	if d.PowerOn != nil {
		out.powerOn = *d.PowerOn
	}
	if d.WaitIP != "" {
		w, err := time.ParseDuration(d.WaitIP)
		if err != nil || w < 0 {
			c.at(keyLine(dn, "wait_ip"), "defaults.wait_ip: %q is not a duration like 10m (0 does not wait)", d.WaitIP)
		}
		out.waitIP = w
	}
	c.sizes(dn, "defaults.", d.CPUs, d.Memory, d.Disk, d.VLAN)
	return out
}

func (c *checker) sizes(m *yaml.Node, where string, cpus, mem, disk, vlan int) {
	if cpus < 0 || cpus > 768 {
		c.at(keyLine(m, "cpus"), "%scpus: %d is not 0 (image default) to 768", where, cpus)
	}
	if mem != 0 && (mem < 1024 || mem > 24<<20) {
		c.at(keyLine(m, "memory"), "%smemory: %d MiB is not 0 (image default) or 1024 MiB to 24 TiB", where, mem)
	}
	if disk < 0 || disk > 62<<10 {
		c.at(keyLine(m, "disk"), "%sdisk: %d GiB is not 0 (image size) to 63488 GiB", where, disk)
	}
	if vlan < 0 || vlan > 4094 {
		c.at(keyLine(m, "vlan"), "%svlan: %d is not 0 (untagged) to 4094", where, vlan)
	}
}

// properties reads a mapping of first-boot keys to scalar values and the
// line of each.
func (c *checker) properties(m *yaml.Node, where string) (map[string]string, map[string]int) {
	props, lines := map[string]string{}, map[string]int{}
	if m == nil || m.Kind == 0 {
		return props, lines
	}
	if m.Kind != yaml.MappingNode {
		c.at(m.Line, "%s: expected a mapping of ksmg.* keys to values", where)
		return props, lines
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case v.Kind != yaml.ScalarNode:
			c.at(v.Line, "%s.%s: expected a single value", where, k.Value)
		case !strings.HasPrefix(k.Value, answers.Prefix):
			c.at(k.Line, "%s: key %q: first-boot keys start with %q", where, k.Value, answers.Prefix)
		case fleetKeys[k.Value] != "":
			how := "set it through " + fleetKeys[k.Value]
			if answers.IsSecret(k.Value) {
				how = "inline secrets are not allowed; give " + fleetKeys[k.Value] + " as {env: NAME} or {file: PATH}"
			}
			c.at(k.Line, "%s: key %q: %s", where, k.Value, how)
		default:
			props[k.Value], lines[k.Value] = v.Value, k.Line
		}
	}
	return props, lines
}

func (c *checker) targets(inv *Inventory, top *yaml.Node, m *yaml.Node, images map[string]string) {
	if m.Kind == 0 {
		c.at(top.Line, "targets: missing (name: {kind: vsphere|hyperv|scvmm, ...driver settings})")
		return
	}
	if m.Kind != yaml.MappingNode {
		c.at(m.Line, "targets: expected a mapping of target name to settings")
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		name := k.Value
		if name == "" || strings.ContainsAny(name, " \t/\\\"'$") {
			c.at(k.Line, "targets: name %q must be non-empty without spaces, slashes, quotes or $", name)
		}
		if v.Kind != yaml.MappingNode {
			c.at(v.Line, "targets.%s: expected a mapping with kind and the driver's settings", name)
			continue
		}
		t := Target{Name: name, Line: k.Line}
		rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column}
		var image string
		for j := 0; j+1 < len(v.Content); j += 2 {
			kk, vv := v.Content[j], v.Content[j+1]
			switch kk.Value {
			case "kind":
				t.Kind = vv.Value
			case "image":
				image = vv.Value
			default:
				rest.Content = append(rest.Content, kk, vv)
			}
		}
		t.config = rest
		if t.Kind == "" {
			c.at(k.Line, "targets.%s: kind is required (one of: %s)", name, strings.Join(deploy.Drivers(), ", "))
			continue
		}
		if _, ok := deploy.Driver(t.Kind); !ok {
			c.at(keyLine(v, "kind"), "targets.%s: kind %q is not a known driver (this ksmg has: %s)", name, t.Kind, strings.Join(deploy.Drivers(), ", "))
			continue
		}
		if image != "" {
			p := image
			if !filepath.IsAbs(p) {
				p = filepath.Join(c.dir, p)
			}
			if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
				c.at(keyLine(v, "image"), "targets.%s: image %s: not a readable regular file", name, p)
			}
			images["target:"+name] = p
		} else if f := imageFormat[t.Kind]; f == "" {
			c.at(k.Line, "targets.%s: kind %q needs an image: path", name, t.Kind)
		} else if images[f] == "" && child(child(top, "images"), f) == nil {
			c.at(k.Line, "targets.%s: kind %s deploys the %s image, but images.%s is not set", name, t.Kind, strings.ToUpper(f), f)
		}
		inv.Targets = append(inv.Targets, t)
	}
}

// image is the local image path the nodes of target t get.
func image(t Target, images map[string]string) string {
	if p := images["target:"+t.Name]; p != "" {
		return p
	}
	return images[imageFormat[t.Kind]]
}

type secrets struct {
	joinToken, password, hash string
	tokenLine, pwLine         int
	pwKey                     string // cluster.admin_password or cluster.admin_password_hash
}

func (c *checker) cluster(inv *Inventory, top *yaml.Node, cl rawCluster) secrets {
	cn := child(top, "cluster")
	var s secrets
	s.joinToken, s.tokenLine = c.secret(&cl.JoinToken, "cluster.join_token")
	s.password, s.pwLine = c.secret(&cl.AdminPassword, "cluster.admin_password")
	var hl int
	s.hash, hl = c.secret(&cl.AdminPasswordHash, "cluster.admin_password_hash")
	if s.password != "" && s.hash != "" {
		c.at(hl, "cluster: give admin_password or admin_password_hash, not both")
	}
	s.pwKey = "cluster.admin_password"
	if s.hash != "" {
		s.pwLine, s.pwKey = hl, "cluster.admin_password_hash"
	}
	if cl.Name != "" {
		if err := (&deploy.Node{Name: cl.Name, Image: "-"}).Validate(); err != nil {
			c.at(keyLine(cn, "name"), "cluster.name: %v", err)
		}
		inv.Cluster = cl.Name
	}
	if cl.ControlAddress != "" {
		if err := answers.ValidateControlAddress(cl.ControlAddress); err != nil {
			c.at(keyLine(cn, "control_address"), "cluster.control_address: %v", err)
		}
		inv.ControlAddress = cl.ControlAddress
	}
	if p := cl.ControlProbe; p != nil {
		pn := child(cn, "control_probe")
		if p.Port < 1 || p.Port > 65535 {
			c.at(keyLine(pn, "port"), "cluster.control_probe.port: %d is not 1-65535", p.Port)
		}
		inv.Probe = Probe{Port: p.Port, Timeout: 5 * time.Minute}
		if p.Timeout != "" {
			d, err := time.ParseDuration(p.Timeout)
			if err != nil || d <= 0 {
				c.at(keyLine(pn, "timeout"), "cluster.control_probe.timeout: %q is not a positive duration like 5m", p.Timeout)
			}
			inv.Probe.Timeout = d
		}
	}
	return s
}

// secret resolves a secret reference: {env: NAME} or {file: PATH}. A
// plain value is refused: an inventory is checked in and shared, secrets
// are not. Values never appear in messages.
func (c *checker) secret(n *yaml.Node, where string) (string, int) {
	if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return "", 0
	}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 || n.Content[1].Kind != yaml.ScalarNode {
		c.at(n.Line, "%s: inline secrets are not allowed; give {env: NAME} or {file: PATH}", where)
		return "", n.Line
	}
	kind, ref := n.Content[0].Value, n.Content[1].Value
	switch kind {
	case "env":
		v, ok := os.LookupEnv(ref)
		if !ok || v == "" {
			c.at(n.Line, "%s: environment variable %s is not set", where, ref)
			return "", n.Line
		}
		return v, n.Line
	case "file":
		p := ref
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.dir, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			c.at(n.Line, "%s: secret file: %v", where, err)
			return "", n.Line
		}
		if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
			c.at(n.Line, "%s: secret file %s is readable by others (mode %04o); chmod 600 it", where, p, st.Mode().Perm())
			return "", n.Line
		}
		b, err := os.ReadFile(p)
		if err != nil {
			c.at(n.Line, "%s: secret file: %v", where, err)
			return "", n.Line
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			c.at(n.Line, "%s: secret file %s is empty", where, p)
		}
		return v, n.Line
	}
	c.at(n.Line, "%s: %q: expected {env: NAME} or {file: PATH}", where, kind)
	return "", n.Line
}

// addresses turns a node's addresses (dhcp, or a mapping of static
// settings) into first-boot keys.
func (c *checker) addresses(m *yaml.Node, where string, props map[string]string, lines map[string]int, seen map[netip.Addr]int) {
	if m.Kind == 0 || (m.Kind == yaml.ScalarNode && m.Value == answers.ModeDHCP) {
		props["ksmg.network.mode"], lines["ksmg.network.mode"] = answers.ModeDHCP, m.Line
		return
	}
	if m.Kind != yaml.MappingNode {
		c.at(m.Line, "%s.addresses: expected dhcp or a mapping {ipv4: ADDRESS/PREFIX, gateway, ipv6, ipv6_gateway, dns: [...], search}", where)
		return
	}
	var a rawAddresses
	errs := strictDecodeAt(c.file, m, &a, where+".addresses")
	c.add(errs)
	if len(errs) > 0 {
		return
	}
	set := func(key, yamlKey, v string) {
		if v != "" {
			props[key], lines[key] = v, keyLine(m, yamlKey)
		}
	}
	props["ksmg.network.mode"], lines["ksmg.network.mode"] = answers.ModeStatic, m.Line
	// address and prefix apart, as the OVA declares them; FromKeys joins them
	if ip, bits, ok := strings.Cut(a.IPv4, "/"); ok {
		set("ksmg.network.address", "ipv4", ip)
		set("ksmg.network.prefix", "ipv4", bits)
	} else {
		set("ksmg.network.address", "ipv4", a.IPv4)
	}
	set("ksmg.network.gateway", "gateway", a.Gateway)
	set("ksmg.network.ipv6.address", "ipv6", a.IPv6)
	set("ksmg.network.ipv6.gateway", "ipv6_gateway", a.IPv6Gateway)
	set("ksmg.network.dns", "dns", strings.Join(a.DNS, ","))
	set("ksmg.network.search", "search", a.Search)
	if a.IPv4 == "" && a.IPv6 == "" {
		c.at(m.Line, "%s.addresses: a static node needs ipv4 and/or ipv6 (ADDRESS/PREFIX); write addresses: dhcp otherwise", where)
	}
	for _, k := range []string{"ipv4", "ipv6"} {
		v := map[string]string{"ipv4": a.IPv4, "ipv6": a.IPv6}[k]
		if p, err := netip.ParsePrefix(v); err == nil {
			if prev, dup := seen[p.Addr()]; dup {
				c.at(keyLine(m, k), "%s.addresses.%s: address %s is used twice (also at line %d)", where, k, p.Addr(), prev)
			} else {
				seen[p.Addr()] = keyLine(m, k)
			}
		}
	}
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
