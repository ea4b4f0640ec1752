package ova

import (
	"fmt"
	"regexp"
	"strings"
)

// Property is one first-boot setting offered in the deploy wizard and
// delivered to the guest through guestinfo.ovfEnv.
type Property struct {
	Key         string `json:"key"`
	Type        string `json:"type"` // OVF type: string, boolean, uint8
	Default     string `json:"default"`
	Password    bool   `json:"password,omitempty"`
	Qualifiers  string `json:"qualifiers,omitempty"` // OVF qualifiers, e.g. ValueMap{"a","b"}
	Category    string `json:"category"`
	Label       string `json:"label"`
	Description string `json:"description"`
}

// Property categories, in wizard order.
const (
	CategoryNetwork = "1. Network"
	CategoryAdmin   = "2. Administrator"
	CategoryCluster = "3. Cluster"
	CategoryLicense = "4. License and data provision"
	CategoryRegion  = "5. Language and time"
)

// Properties returns the product's first-boot properties (a fresh slice).
func Properties() []Property {
	return []Property{
		{Key: "ksmg.hostname", Type: "string", Default: "ksmg", Qualifiers: "MinLen(1) MaxLen(253)", Category: CategoryNetwork,
			Label: "Host name", Description: "Host name of the gateway, short or fully qualified (e.g. mx1.example.com)."},
		{Key: "ksmg.network.mode", Type: "string", Default: "dhcp", Qualifiers: `ValueMap{"dhcp","static"}`, Category: CategoryNetwork,
			Label: "Network configuration", Description: "dhcp: take address, gateway and DNS from DHCP. static: use the values below."},
		{Key: "ksmg.network.address", Type: "string", Category: CategoryNetwork,
			Label: "IPv4 address", Description: "Static mode only: the gateway's IPv4 address, e.g. 192.0.2.10."},
		{Key: "ksmg.network.prefix", Type: "uint8", Default: "24", Qualifiers: "MinValue(1) MaxValue(32)", Category: CategoryNetwork,
			Label: "Prefix length", Description: "Static mode only: network prefix length, e.g. 24 for 255.255.255.0."},
		{Key: "ksmg.network.gateway", Type: "string", Category: CategoryNetwork,
			Label: "Default gateway", Description: "Static mode only: IPv4 address of the default gateway."},
		{Key: "ksmg.network.dns", Type: "string", Category: CategoryNetwork,
			Label: "DNS servers", Description: "Comma-separated DNS server addresses. Empty with DHCP: use the DHCP-provided servers."},
		{Key: "ksmg.network.search", Type: "string", Category: CategoryNetwork,
			Label: "DNS search domain", Description: "Static mode only, optional: DNS search domain, e.g. example.com."},
		{Key: "ksmg.network.ipv6.address", Type: "string", Category: CategoryNetwork,
			Label: "IPv6 address", Description: "Static mode only, optional: the gateway's IPv6 address with prefix, e.g. 2001:db8::10/64."},
		{Key: "ksmg.network.ipv6.gateway", Type: "string", Category: CategoryNetwork,
			Label: "IPv6 default gateway", Description: "Static mode only, optional: IPv6 address of the default gateway."},
		{Key: "ksmg.network.ntp", Type: "string", Category: CategoryNetwork,
			Label: "NTP servers", Description: "Comma-separated NTP server names or addresses. Empty: Debian's pool."},
		{Key: "ksmg.admin.password", Type: "string", Password: true, Qualifiers: "MinLen(0) MaxLen(128)", Category: CategoryAdmin,
			Label: "Administrator password", Description: "Initial password of the web and console administrator. Leave empty to set it on the VM console at first boot. No default password exists."},
		{Key: "ksmg.admin.password_hash", Type: "string", Password: true, Qualifiers: "MinLen(0) MaxLen(256)", Category: CategoryAdmin,
			Label: "Administrator password hash", Description: "Instead of the password: its crypt(3) hash ($6$ or $y$), e.g. from mkpasswd. Leave empty when a password is given above."},
		{Key: "ksmg.ssh.enabled", Type: "boolean", Default: "False", Category: CategoryAdmin,
			Label: "Enable SSH", Description: "SSH is off unless turned on here or later on the console."},
		{Key: "ksmg.ssh.authorized_key", Type: "string", Category: CategoryAdmin,
			Label: "SSH public key", Description: "One OpenSSH public key line allowed to log in as the administrator (with SSH enabled)."},
		{Key: "ksmg.ssh.root_login", Type: "boolean", Default: "False", Category: CategoryAdmin,
			Label: "Allow root SSH login", Description: "Let the SSH key above log in as root as well (key only, never a password). Off unless granted here or later on the console; needs SSH enabled."},
		{Key: "ksmg.cluster.role", Type: "string", Default: "control", Qualifiers: `ValueMap{"control","secondary"}`, Category: CategoryCluster,
			Label: "Node role", Description: "control: this node manages the cluster. secondary: this node joins the Control node below."},
		{Key: "ksmg.cluster.control_address", Type: "string", Category: CategoryCluster,
			Label: "Control node address", Description: "Secondary nodes only: address or name of the cluster's Control node."},
		{Key: "ksmg.cluster.join_token", Type: "string", Password: true, Qualifiers: "MinLen(0) MaxLen(512)", Category: CategoryCluster,
			Label: "Join token", Description: "Secondary nodes only: the token the Control node shows when a node is added."},
		{Key: "ksmg.eula.accepted", Type: "boolean", Default: "False", Category: CategoryLicense,
			Label: "I accept the End User License Agreement", Description: "The EULA lists the licensing data the product always sends. The node does not process mail until it is accepted."},
		{Key: "ksmg.ksn.consent", Type: "boolean", Default: "False", Category: CategoryLicense,
			Label: "Join Kaspersky Security Network (KSN)", Description: "Voluntary: send reputation requests and statistics to the KSN cloud. Off unless turned on here or later; set on the Control node, applied to all Secondary nodes."},
		{Key: "ksmg.language", Type: "string", Default: "en", Qualifiers: `ValueMap{"en","cs","ru"}`, Category: CategoryRegion,
			Label: "Language", Description: "Language of the product: en, cs or ru."},
		{Key: "ksmg.timezone", Type: "string", Default: "UTC", Qualifiers: "MinLen(1) MaxLen(64)", Category: CategoryRegion,
			Label: "Time zone", Description: "IANA time zone, e.g. Europe/Prague."},
	}
}

var keyRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$`)

func validateProperties(ps []Property) error {
	seen := map[string]bool{}
	for i, p := range ps {
		where := fmt.Sprintf("property %d (%q)", i, p.Key)
		switch {
		case !keyRE.MatchString(p.Key):
			return fmt.Errorf("%s: key must be dot-separated lower-case words", where)
		case seen[p.Key]:
			return fmt.Errorf("%s: duplicate key", where)
		case p.Type != "string" && p.Type != "boolean" && p.Type != "uint8" && p.Type != "uint16" && p.Type != "uint32":
			return fmt.Errorf("%s: type %q, want string, boolean or uint8/16/32", where, p.Type)
		case p.Password && p.Type != "string":
			return fmt.Errorf("%s: a password property must be of type string", where)
		case p.Password && p.Default != "":
			return fmt.Errorf("%s: a password property must not ship a default value", where)
		case p.Type == "boolean" && p.Default != "True" && p.Default != "False":
			return fmt.Errorf("%s: boolean default %q, want True or False", where, p.Default)
		case strings.TrimSpace(p.Label) == "" || strings.TrimSpace(p.Category) == "":
			return fmt.Errorf("%s: needs a Label and a Category for the deploy wizard", where)
		}
		seen[p.Key] = true
	}
	return nil
}
