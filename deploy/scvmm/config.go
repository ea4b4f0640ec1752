package scvmm

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

// DefaultPasswordEnv holds the password when neither password_env nor
// password_file is given.
const DefaultPasswordEnv = "KSMG_SCVMM_PASSWORD"

// SecureBootTemplate is the Hyper-V Secure Boot template that trusts the
// shim of a Linux distribution (the Windows template would refuse it).
const SecureBootTemplate = "MicrosoftUEFICertificateAuthority"

// Config is one SCVMM target of an inventory (YAML) or of the ksmg deploy
// scvmm command. Passwords come from the environment or a file, never from
// the inventory itself.
type Config struct {
	// Server is the WinRM endpoint: a Windows host with the
	// VirtualMachineManager PowerShell module, usually the VMM server.
	Server   string `yaml:"server"`
	Port     int    `yaml:"port"`     // 0: 5986 (HTTPS) or 5985 (http: true)
	HTTP     bool   `yaml:"http"`     // plain HTTP; needs ntlm, which then seals every message
	Insecure bool   `yaml:"insecure"` // skip TLS verification (lab servers with self-signed certificates)
	CACert   string `yaml:"ca_cert"`  // PEM file to verify the WinRM listener
	NTLM     bool   `yaml:"ntlm"`     // NTLM instead of Basic authentication
	User     string `yaml:"user"`     // DOMAIN\user or user@domain
	// PasswordEnv names the environment variable with User's password
	// (default KSMG_SCVMM_PASSWORD); PasswordFile is a file holding it.
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`
	// VMMServer is what Get-SCVMMServer connects to from Server; default
	// localhost (Server is the VMM server).
	VMMServer string `yaml:"vmm_server"`
	// LibraryShare is the UNC folder on a library share where the VHDX is
	// copied, e.g. \\lib.example.com\MSSCVMMLibrary\ksmg; LibraryServer
	// narrows the share to one library server (its name in SCVMM).
	LibraryShare  string `yaml:"library_share"`
	LibraryServer string `yaml:"library_server"`
	// HostGroup (name or path such as "All Hosts\Prague") or Cloud says
	// where VMs are placed; exactly one is required.
	HostGroup string `yaml:"host_group"`
	Cloud     string `yaml:"cloud"`
	// Network and VLAN are the defaults for nodes that name none; VMSubnet
	// picks a subnet of the VM network (needed when it has several).
	Network  string `yaml:"network"`
	VMSubnet string `yaml:"vm_subnet"`
	VLAN     int    `yaml:"vlan"`
	// TemplatePrefix names the library objects this driver creates:
	// <prefix>-<disk hash>.vhdx, template <prefix>-<disk hash> and
	// hardware profile <prefix>-<disk hash>-hw. Default "ksmg".
	TemplatePrefix string `yaml:"template_prefix"`
	// PlacementPath is the VM folder on the chosen host (host group
	// placement); default the host's first VM path.
	PlacementPath string `yaml:"placement_path"`
	// OperatingSystem is the SCVMM operating system name given to the
	// template, e.g. "Debian GNU/Linux 12 (64 bit)"; "" leaves it unset.
	OperatingSystem string `yaml:"operating_system"`
	// CPUs and MemoryMiB are the template's defaults (2 and 4096); nodes
	// may ask for more.
	CPUs      int `yaml:"cpus"`
	MemoryMiB int `yaml:"memory_mib"`
	// HostUser and its password reach the Hyper-V hosts from Server to set
	// the first-boot KVP items (a second hop, which needs its own
	// credentials); default the WinRM user and password.
	HostUser         string `yaml:"host_user"`
	HostPasswordEnv  string `yaml:"host_password_env"`
	HostPasswordFile string `yaml:"host_password_file"`
	// PollInterval is how often SCVMM jobs and the guest's address are
	// polled; default 5s.
	PollInterval time.Duration `yaml:"poll_interval"`
}

func (c *Config) defaults() {
	if c.VMMServer == "" {
		c.VMMServer = "localhost"
	}
	if c.TemplatePrefix == "" {
		c.TemplatePrefix = "ksmg"
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 4096
	}
	if c.PollInterval == 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.PasswordEnv == "" && c.PasswordFile == "" {
		c.PasswordEnv = DefaultPasswordEnv
	}
}

// Validate checks the configuration after defaults; the errors name the
// YAML keys.
func (c *Config) Validate() error {
	var errs []error
	if c.Server == "" {
		errs = append(errs, errors.New("server: must name the WinRM host with the VirtualMachineManager module"))
	}
	if c.User == "" {
		errs = append(errs, errors.New("user: must not be empty"))
	}
	if c.PasswordEnv != "" && c.PasswordFile != "" {
		errs = append(errs, errors.New("password_env and password_file: give one, not both"))
	}
	if c.HostPasswordEnv != "" && c.HostPasswordFile != "" {
		errs = append(errs, errors.New("host_password_env and host_password_file: give one, not both"))
	}
	if c.HTTP && !c.NTLM {
		errs = append(errs, errors.New("http: plain HTTP needs ntlm: true (Basic would send the password in clear)"))
	}
	if _, _, err := splitUNC(c.LibraryShare); err != nil {
		errs = append(errs, fmt.Errorf("library_share: %w", err))
	}
	if (c.HostGroup == "") == (c.Cloud == "") {
		errs = append(errs, errors.New("host_group, cloud: give exactly one"))
	}
	if c.VMSubnet != "" && c.Network == "" {
		errs = append(errs, errors.New("vm_subnet: needs network (the VM network the subnet belongs to)"))
	}
	if c.VLAN < 0 || c.VLAN > 4094 {
		errs = append(errs, fmt.Errorf("vlan %d: expected 0-4094", c.VLAN))
	}
	if c.CPUs < 1 || c.CPUs > 240 {
		errs = append(errs, fmt.Errorf("cpus %d: expected 1-240", c.CPUs))
	}
	if c.MemoryMiB < 512 {
		errs = append(errs, fmt.Errorf("memory_mib %d: expected at least 512", c.MemoryMiB))
	}
	if strings.ContainsAny(c.TemplatePrefix, `\/:*?"<>|'`+"`$") {
		errs = append(errs, fmt.Errorf("template_prefix %q: must be a plain file name", c.TemplatePrefix))
	}
	if c.PollInterval < 0 {
		errs = append(errs, errors.New("poll_interval: must not be negative"))
	}
	return errors.Join(errs...)
}

// splitUNC splits \\server\share\folder into server and the whole path
// without a trailing backslash.
func splitUNC(p string) (server, clean string, err error) {
	clean = strings.TrimRight(p, `\`)
	rest, ok := strings.CutPrefix(clean, `\\`)
	if !ok {
		return "", "", fmt.Errorf("%q: expected a UNC path such as \\\\lib.example.com\\MSSCVMMLibrary\\ksmg", p)
	}
	parts := strings.Split(rest, `\`)
	if len(parts) < 2 || slicesContainsEmpty(parts) {
		return "", "", fmt.Errorf("%q: expected \\\\server\\share[\\folder...]", p)
	}
	return parts[0], clean, nil
}

func slicesContainsEmpty(ss []string) bool {
	for _, s := range ss {
		if s == "" {
			return true
		}
	}
	return false
}

// secret reads a password from env or file; what names the setting for
// the error.
func secret(what, env, file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("%s: %s is empty", what, file)
		}
		return pw, nil
	}
	pw := os.Getenv(env)
	if pw == "" {
		return "", fmt.Errorf("%s: environment variable %s is empty or unset", what, env)
	}
	return pw, nil
}

// Credentials resolves the passwords of c.
func (c *Config) credentials() (user, pw, hostUser, hostPW string, err error) {
	pw, err = secret("password", c.PasswordEnv, c.PasswordFile)
	if err != nil {
		return
	}
	hostUser, hostPW = c.HostUser, pw
	if hostUser == "" {
		hostUser = c.User
	}
	if c.HostPasswordEnv != "" || c.HostPasswordFile != "" {
		if hostPW, err = secret("host password", c.HostPasswordEnv, c.HostPasswordFile); err != nil {
			return
		}
	}
	return c.User, pw, hostUser, hostPW, nil
}

// winrmConfig and smbConfig are how Open reaches the server and the
// library share.
func (c *Config) winrmConfig(user, pw string) (pwsh.WinRMConfig, error) {
	wc := pwsh.WinRMConfig{Host: c.Server, Port: c.Port, HTTPS: !c.HTTP, Insecure: c.Insecure, User: user, Password: pw, NTLM: c.NTLM}
	if c.CACert != "" {
		b, err := os.ReadFile(c.CACert)
		if err != nil {
			return wc, fmt.Errorf("ca_cert: %w", err)
		}
		wc.CACert = b
	}
	return wc, nil
}

func smbConfig(user, pw string) pwsh.SMBConfig {
	sc := pwsh.SMBConfig{User: user, Password: pw}
	if d, u, ok := strings.Cut(user, `\`); ok {
		sc.Domain, sc.User = d, u
	} else if u, d, ok := strings.Cut(user, "@"); ok {
		sc.Domain, sc.User = d, u
	}
	return sc
}
