package fleet

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// The nodes section is checked in named steps: each node is read with the
// defaults applied (readNode), its name, target, role and first-boot
// answers checked (nodeName, nodeTarget, nodeRole, nodeAnswers); then the
// cluster as a whole (checkControls, controlAddress) and, per node, what
// depends on the whole cluster (joinCluster, ovaProperties, checkAnswers).

// nodeInputs is what the nodes section is checked against: the sections
// read before it.
type nodeInputs struct {
	images map[string]string // format or "target:NAME" -> local path
	def    defaults
	sec    secrets
}

// nodeScope is the state shared by the checks of every node: what must be
// unique across nodes, and the nodes read so far.
type nodeScope struct {
	inv       *Inventory
	top       *yaml.Node
	in        nodeInputs
	targets   map[string]Target
	names     map[string]int // target/name -> line
	hostnames map[string]int // hostname -> line
	addrs     map[netip.Addr]int
	controls  []int // indexes into all of the control nodes
	all       []pendingNode
}

// pendingNode is a node read and checked on its own, before the checks
// that need the whole cluster.
type pendingNode struct {
	kind  string // its target's driver kind
	node  Node
	lines map[string]int // first-boot key -> line of its value
	where string         // "nodes[i] (name)" for messages
}

func (c *checker) nodes(inv *Inventory, top *yaml.Node, raws []yaml.Node, in nodeInputs) {
	if len(raws) == 0 {
		c.at(keyLine(top, "nodes"), "nodes: at least one node is required")
		return
	}
	s := &nodeScope{
		inv: inv, top: top, in: in, targets: map[string]Target{},
		names: map[string]int{}, hostnames: map[string]int{}, addrs: map[netip.Addr]int{},
	}
	for _, t := range inv.Targets {
		s.targets[t.Name] = t
	}
	for i := range raws {
		if p, ok := c.readNode(s, i, &raws[i]); ok {
			s.all = append(s.all, p)
		}
	}
	c.checkControls(s)
	c.controlAddress(s)
	hasSecondary := false
	for i := range s.all {
		p := &s.all[i]
		if p.node.Role == deploy.RoleSecondary {
			hasSecondary = true
			c.joinCluster(s, p)
		}
		c.ovaProperties(s, p)
		c.checkAnswers(s, p)
		if p.node.Role == deploy.RoleControl && len(s.controls) == 1 {
			inv.Control = len(inv.Nodes)
		}
		inv.Nodes = append(inv.Nodes, p.node)
	}
	if inv.Cluster == "" && len(s.controls) > 0 {
		inv.Cluster = s.all[s.controls[0]].node.Name
	}
	for i := range inv.Nodes {
		inv.Nodes[i].Cluster = inv.Cluster
	}
	if hasSecondary && in.sec.joinToken == "" && in.sec.tokenLine == 0 {
		c.at(keyLine(top, "cluster"), "cluster.join_token: required when there are secondary nodes ({env: NAME} or {file: PATH})")
	}
}

// readNode reads node i with the defaults applied and runs the checks that
// need only the node itself and the nodes before it.
func (c *checker) readNode(s *nodeScope, i int, rn *yaml.Node) (pendingNode, bool) {
	where := fmt.Sprintf("nodes[%d]", i)
	if rn.Kind != yaml.MappingNode {
		c.at(rn.Line, "%s: expected a mapping with name, target, role, hostname, addresses", where)
		return pendingNode{}, false
	}
	var r rawNode
	if name := child(rn, "name"); name != nil && name.Kind == yaml.ScalarNode && name.Value != "" {
		where = fmt.Sprintf("nodes[%d] (%s)", i, name.Value)
	}
	c.add(strictDecodeAt(c.file, rn, &r, where))
	n := s.in.def.node(r, rn.Line)
	c.sizes(rn, where+".", deref(r.CPUs), deref(r.Memory), deref(r.Disk), deref(r.VLAN)) // defaults are checked once

	nameOK := c.nodeName(rn, r, where)
	n.Image = c.nodeTarget(s, rn, r, where)
	if r.Role == deploy.RoleControl {
		s.controls = append(s.controls, len(s.all))
	}
	c.nodeRole(rn, r, where)
	props, lines := c.nodeAnswers(s, rn, r, where, nameOK)
	n.Properties = props
	return pendingNode{s.targets[r.Target].Kind, n, lines, where}, true
}

// node is a node's deploy settings: the defaults, overridden by the node.
func (d defaults) node(r rawNode, line int) Node {
	n := Node{Target: r.Target, Line: line}
	n.Name, n.Role = r.Name, r.Role
	n.CPUs, n.MemoryMiB, n.DiskGiB, n.VLAN, n.Network = d.cpus, d.memory, d.disk, d.vlan, d.network
	n.PowerOn, n.WaitIP = d.powerOn, d.waitIP
	if r.CPUs != nil {
		n.CPUs = *r.CPUs
	}
	if r.Memory != nil {
		n.MemoryMiB = *r.Memory
	}
	if r.Disk != nil {
		n.DiskGiB = *r.Disk
	}
	if r.VLAN != nil {
		n.VLAN = *r.VLAN
	}
	if r.Network != nil {
		n.Network = *r.Network
	}
	return n
}

// nodeName checks the VM name and reports whether it is usable (it is
// also the default host name).
func (c *checker) nodeName(rn *yaml.Node, r rawNode, where string) bool {
	if r.Name == "" {
		c.at(rn.Line, "%s: name is required", where)
		return false
	}
	if err := (&deploy.Node{Name: r.Name, Image: "-"}).Validate(); err != nil {
		c.at(keyLine(rn, "name"), "%s: %v", where, err)
		return false
	}
	return true
}

// nodeTarget checks the node's target and that its VM name is unique
// there, and returns the image the node gets ("" if the target is bad).
func (c *checker) nodeTarget(s *nodeScope, rn *yaml.Node, r rawNode, where string) string {
	t, ok := s.targets[r.Target]
	switch {
	case r.Target == "":
		c.at(rn.Line, "%s: target is required", where)
		return ""
	case !ok:
		if child(child(s.top, "targets"), r.Target) == nil {
			known := slices.Sorted(maps.Keys(s.targets))
			c.at(keyLine(rn, "target"), "%s: target %q is not defined under targets (defined: %s)", where, r.Target, strings.Join(known, ", "))
		} // else the target itself is reported
		return ""
	}
	key := r.Target + "/" + r.Name
	if prev, dup := s.names[key]; dup && r.Name != "" {
		c.at(keyLine(rn, "name"), "%s: VM name %q is used twice on target %s (also at line %d)", where, r.Name, r.Target, prev)
	} else {
		s.names[key] = keyLine(rn, "name")
	}
	return image(t, s.in.images)
}

// nodeRole checks the node's role.
func (c *checker) nodeRole(rn *yaml.Node, r rawNode, where string) {
	switch r.Role {
	case deploy.RoleControl, deploy.RoleSecondary:
	case "":
		c.at(rn.Line, "%s: role is required (control or secondary)", where)
	default:
		c.at(keyLine(rn, "role"), "%s: role %q: expected control or secondary", where, r.Role)
	}
}

// nodeAnswers collects the node's first-boot answers: the defaults, the
// node's own properties, then what the fleet sets itself (host name,
// role, admin password, addresses); with the line of each value.
func (c *checker) nodeAnswers(s *nodeScope, rn *yaml.Node, r rawNode, where string, nameOK bool) (map[string]string, map[string]int) {
	props := map[string]string{}
	lines := map[string]int{}
	for k, v := range s.in.def.props {
		props[k], lines[k] = v, s.in.def.lines[k]
	}
	np, nl := c.properties(&r.Properties, where+".properties")
	for k, v := range np {
		props[k], lines[k] = v, nl[k]
	}
	host, hostLine := r.Hostname, keyLine(rn, "hostname")
	if host == "" && nameOK {
		host, hostLine = strings.ToLower(r.Name), keyLine(rn, "name") // the name is the host name
	}
	if host != "" {
		props["ksmg.hostname"], lines["ksmg.hostname"] = host, hostLine
		if prev, dup := s.hostnames[host]; dup {
			c.at(hostLine, "%s: hostname %q is used twice (also at line %d)", where, host, prev)
		} else {
			s.hostnames[host] = hostLine
		}
	}
	if r.Role == deploy.RoleControl || r.Role == deploy.RoleSecondary {
		props["ksmg.cluster.role"], lines["ksmg.cluster.role"] = r.Role, keyLine(rn, "role")
	}
	sec := s.in.sec
	if sec.password != "" {
		props["ksmg.admin.password"], lines["ksmg.admin.password"] = sec.password, sec.pwLine
	}
	if sec.hash != "" {
		props["ksmg.admin.password_hash"], lines["ksmg.admin.password_hash"] = sec.hash, sec.pwLine
	}
	c.addresses(&r.Addresses, where, props, lines, s.addrs)
	return props, lines
}

// checkControls requires exactly one control node.
func (c *checker) checkControls(s *nodeScope) {
	switch {
	case len(s.controls) == 0:
		c.at(keyLine(s.top, "nodes"), "nodes: exactly one node must have role control (none has)")
	case len(s.controls) > 1:
		first := s.all[s.controls[0]].node.Line
		for _, i := range s.controls[1:] {
			c.at(s.all[i].node.Line, "%s: a second control node (the first is at line %d); a cluster has exactly one", s.all[i].where, first)
		}
	}
}

// controlAddress defaults the address Secondary nodes join to the control
// node's static address.
func (c *checker) controlAddress(s *nodeScope) {
	if len(s.controls) == 0 || s.inv.ControlAddress != "" {
		return
	}
	cp := s.all[s.controls[0]].node.Properties
	if a := cp["ksmg.network.address"]; a != "" {
		s.inv.ControlAddress = a
	} else if a := cp["ksmg.network.ipv6.address"]; a != "" {
		s.inv.ControlAddress = strings.Split(a, "/")[0]
	}
}

// joinCluster gives a Secondary node the join token and control address.
func (c *checker) joinCluster(s *nodeScope, p *pendingNode) {
	if sec := s.in.sec; sec.joinToken != "" {
		p.node.Properties["ksmg.cluster.join_token"], p.lines["ksmg.cluster.join_token"] = sec.joinToken, sec.tokenLine
	}
	if s.inv.ControlAddress != "" {
		p.node.Properties["ksmg.cluster.control_address"] = s.inv.ControlAddress
		p.lines["ksmg.cluster.control_address"] = keyLine(child(s.top, "cluster"), "control_address")
	}
}

// fromDefaults reports whether the node's value of key is the one of
// defaults.properties.
func (s *nodeScope) fromDefaults(p *pendingNode, key string) bool {
	l, ok := s.in.def.lines[key]
	return ok && p.lines[key] == l
}

// ovaProperties: vSphere passes only the properties the OVF declares.
func (c *checker) ovaProperties(s *nodeScope, p *pendingNode) {
	if imageFormat[p.kind] != "ova" {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(p.node.Properties)) {
		if !ovaDeclared[k] {
			where := p.where
			if s.fromDefaults(p, k) {
				where = "defaults.properties"
			}
			c.at(p.lines[k], "%s: %s is not a property of the OVA, so target %s (vsphere) cannot pass it (the OVA declares: %s)", where, k, p.node.Target, strings.Join(ovaKeys, ", "))
		}
	}
}

// checkAnswers checks the node's first-boot answers by the rules every
// deploy uses (deploy.CheckAnswerKeys), each problem at the line of the
// value; a value from the defaults or the cluster section is reported
// there, once, not once per node.
func (c *checker) checkAnswers(s *nodeScope, p *pendingNode) {
	for _, pr := range deploy.CheckAnswerKeys(p.node.Properties) {
		if pr.Key == "" {
			c.at(p.node.Line, "%s: %v", p.where, pr.Err)
			continue
		}
		if errors.Is(pr.Err, deploy.ErrGatewayWithoutAddress) {
			c.at(p.lines[pr.Key], "%s: addresses.gateway needs addresses.ipv4", p.where)
			continue
		}
		line := p.lines[pr.Key]
		if line == 0 {
			line = p.node.Line
		}
		c.at(line, "%s: %v", s.origin(p, pr.Key), pr)
	}
}

// origin is where the node's value of key was written: the node, the
// defaults, or the cluster section.
func (s *nodeScope) origin(p *pendingNode, key string) string {
	sec := s.in.sec
	switch {
	case s.fromDefaults(p, key):
		return "defaults.properties"
	case (key == "ksmg.admin.password" || key == "ksmg.admin.password_hash") && p.lines[key] == sec.pwLine:
		return sec.pwKey
	case key == "ksmg.cluster.join_token" && p.lines[key] == sec.tokenLine:
		return "cluster.join_token"
	}
	return p.where
}
