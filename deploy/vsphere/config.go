package vsphere

import (
	"crypto/sha1" //nolint:gosec // vSphere thumbprints may be SHA-1; only their length is checked
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// DefaultPasswordEnv is the environment variable the password is read from
// when neither password_env nor password_file is set.
const DefaultPasswordEnv = "KSMG_VSPHERE_PASSWORD"

// Disk provisioning types (OvfCreateImportSpecParamsDiskProvisioningType).
const (
	Thin             = string(types.OvfCreateImportSpecParamsDiskProvisioningTypeThin)
	Thick            = string(types.OvfCreateImportSpecParamsDiskProvisioningTypeThick)
	EagerZeroedThick = string(types.OvfCreateImportSpecParamsDiskProvisioningTypeEagerZeroedThick)
)

// Config is one vCenter or standalone ESXi target. Inventories hold it
// under a target of kind "vsphere"; `ksmg deploy vsphere` fills it from
// flags. There is deliberately no password field: the password comes from
// a file or an environment variable, never from a flag or an inventory.
type Config struct {
	// URL of the SDK, e.g. https://vc.example.com/sdk; a bare host name is
	// completed to that. Default: $GOVC_URL (which, as govc allows, may
	// carry user:password).
	URL      string `yaml:"url"`
	Username string `yaml:"username"` // default: $GOVC_USERNAME or the URL's user
	// PasswordEnv names the variable holding the password (default
	// KSMG_VSPHERE_PASSWORD, then GOVC_PASSWORD); PasswordFile is read
	// instead when set (trailing newline ignored).
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	Insecure     bool   `yaml:"insecure"` // skip TLS verification
	// Thumbprint pins the host's certificate: its SHA-256 or SHA-1
	// thumbprint, hex in any case, with or without colons.
	Thumbprint string `yaml:"thumbprint"`
	// CACert is a PEM file of CA certificates the host's certificate
	// must chain to (instead of the system's roots). Default:
	// $GOVC_TLS_CA_CERTS (a list of files), as for govc.
	CACert string `yaml:"ca_cert"`
	// KnownHosts is a file of "host thumbprint" lines as govc keeps them;
	// default $GOVC_TLS_KNOWN_HOSTS.
	KnownHosts string `yaml:"known_hosts"`

	Datacenter   string `yaml:"datacenter"`    // default: the only one
	Cluster      string `yaml:"cluster"`       // vCenter cluster whose root pool receives the VM
	Host         string `yaml:"host"`          // ESXi host (inventory path or name)
	ResourcePool string `yaml:"resource_pool"` // overrides cluster/host pool
	Folder       string `yaml:"folder"`        // VM folder; default: the datacenter's vm folder
	Datastore    string `yaml:"datastore"`     // default: the only one
	// Network is the port group the appliance's NIC is connected to when a
	// node names none; NetworkMap maps OVF network names to port groups.
	Network          string            `yaml:"network"`
	NetworkMap       map[string]string `yaml:"network_map"`
	DiskProvisioning string            `yaml:"disk_provisioning"` // thin (default), thick, eagerZeroedThick

	urlFromEnv bool
}

// resolve takes the configuration's relative file paths from dir (the
// inventory's directory).
func (c *Config) resolve(dir string) {
	c.PasswordFile = deploy.Path(dir, c.PasswordFile)
	c.CACert = deploy.Path(dir, c.CACert)
	c.KnownHosts = deploy.Path(dir, c.KnownHosts)
}

// NormalizeThumbprint returns a certificate thumbprint in the form govmomi
// compares (upper-case hex pairs joined by colons) from any common
// spelling: either case, with or without colons, spaces or dashes; it must
// be a SHA-256 (32 bytes) or SHA-1 (20 bytes) digest.
func NormalizeThumbprint(s string) (string, error) {
	hexOnly := strings.Map(func(r rune) rune {
		switch r {
		case ':', ' ', '-':
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	b, err := hex.DecodeString(hexOnly)
	if err != nil {
		return "", fmt.Errorf("thumbprint %q: not hexadecimal", s)
	}
	if len(b) != sha256.Size && len(b) != sha1.Size {
		return "", fmt.Errorf("thumbprint %q: %d bytes, want a SHA-256 (32 bytes) or SHA-1 (20 bytes) thumbprint", s, len(b))
	}
	pairs := make([]string, len(b))
	for i, c := range b {
		pairs[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(pairs, ":"), nil
}

// applyEnv fills the defaults govc users expect from the environment.
func (c *Config) applyEnv(getenv func(string) string) {
	if c.URL == "" {
		c.URL = getenv("GOVC_URL")
		c.urlFromEnv = c.URL != ""
	}
	if c.Username == "" {
		c.Username = getenv("GOVC_USERNAME")
	}
	if c.DiskProvisioning == "" {
		c.DiskProvisioning = Thin
	}
	// govc's TLS settings, where they mean the same: a CA list and known
	// host thumbprints; insecure skips both.
	if c.CACert == "" && !c.Insecure {
		c.CACert = getenv("GOVC_TLS_CA_CERTS")
	}
	if c.KnownHosts == "" && !c.Insecure {
		c.KnownHosts = getenv("GOVC_TLS_KNOWN_HOSTS")
	}
}

// Validate checks the configuration without contacting the target.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.URL == "" {
		bad("url: must be set (or GOVC_URL), e.g. https://vc.example.com/sdk")
	} else if u, err := soap.ParseURL(c.URL); err != nil || u == nil {
		bad("url %q: not a URL: %v", redactURL(c.URL), err)
	} else {
		if pw, _ := u.User.Password(); pw != "" && !c.urlFromEnv {
			bad("url: must not carry a password; use password_file or password_env")
		}
		if u.Scheme != "https" && !c.Insecure {
			bad("url %q: scheme %s; only https is allowed unless insecure is set", redactURL(c.URL), u.Scheme)
		}
	}
	switch c.DiskProvisioning {
	case "", Thin, Thick, EagerZeroedThick:
	default:
		bad("disk_provisioning %q: expected %s, %s or %s", c.DiskProvisioning, Thin, Thick, EagerZeroedThick)
	}
	if c.Insecure && c.Thumbprint != "" {
		bad("insecure and thumbprint: set one of them, not both")
	}
	if c.Thumbprint != "" {
		if _, err := NormalizeThumbprint(c.Thumbprint); err != nil {
			bad("%v", err)
		}
	}
	if c.Insecure && c.CACert != "" {
		bad("insecure and ca_cert: set one of them, not both")
	}
	if c.PasswordEnv != "" && c.PasswordFile != "" {
		bad("password_env and password_file: set one of them, not both")
	}
	for k, v := range c.NetworkMap {
		if k == "" || v == "" {
			bad("network_map: %q -> %q: names must not be empty", k, v)
		}
	}
	return errors.Join(errs...)
}

// credentials returns the user and password for the session.
func (c *Config) credentials(u *url.URL, getenv func(string) string) (*url.Userinfo, error) {
	user := c.Username
	if user == "" && u.User != nil {
		user = u.User.Username()
	}
	if user == "" {
		return nil, errors.New("username: must be set (or GOVC_USERNAME)")
	}
	var pw string
	switch {
	case c.PasswordFile != "":
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		pw = strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return nil, fmt.Errorf("password_file %s: empty", c.PasswordFile)
		}
	case c.PasswordEnv != "":
		if pw = getenv(c.PasswordEnv); pw == "" {
			return nil, fmt.Errorf("password_env: variable %s is empty or unset", c.PasswordEnv)
		}
	default:
		pw = getenv(DefaultPasswordEnv)
		if pw == "" {
			pw = getenv("GOVC_PASSWORD")
		}
		if pw == "" && u.User != nil && c.urlFromEnv {
			pw, _ = u.User.Password()
		}
		if pw == "" {
			return nil, fmt.Errorf("password: set %s or GOVC_PASSWORD, or password_file", DefaultPasswordEnv)
		}
	}
	return url.UserPassword(user, pw), nil
}

// redactURL drops credentials from a URL for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "<redacted>@" + s[i+1:]
		}
		return s
	}
	u.User = nil
	return u.String()
}
