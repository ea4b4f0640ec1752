// Package answers holds the first-boot answers, the validation of every
// wizard step and the one table that maps unattended keys (OVF properties,
// Hyper-V KVP keys, systemd credentials, seed-file keys) onto them.
//
// The validators are shared by the TUI (inline errors) and by unattended
// sources, so both paths accept exactly the same input.
package answers

import (
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"
	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// Network modes of an interface.
const (
	ModeDHCP   = "dhcp"
	ModeStatic = "static"
)

// Node roles.
const (
	RoleControl   = "control"
	RoleSecondary = "secondary"
)

// Languages the product ships (the seeds are English, Czech and Russian).
var Languages = i18n.Languages

// Interface is the network configuration of one NIC.
type Interface struct {
	Name         string   `yaml:"name"`
	Mode         string   `yaml:"mode"`          // dhcp or static
	Address4     string   `yaml:"ipv4_address"`  // CIDR, static only
	Gateway4     string   `yaml:"ipv4_gateway"`  // static only, optional
	Address6     string   `yaml:"ipv6_address"`  // CIDR, static only
	Gateway6     string   `yaml:"ipv6_gateway"`  // static only, optional
	DNS          []string `yaml:"dns"`           // static only
	SearchDomain string   `yaml:"search_domain"` // optional
}

// Answers is everything the wizard asks. Secret fields are never logged.
type Answers struct {
	Language          string      `yaml:"language"`
	EULAAccepted      bool        `yaml:"eula_accepted"`
	KSN               bool        `yaml:"ksn"`
	AdminPassword     string      `yaml:"-"` // secret
	AdminPasswordHash string      `yaml:"-"` // secret; a crypt(3) hash given instead of a password
	Hostname          string      `yaml:"hostname"`
	Interfaces        []Interface `yaml:"interfaces"`
	NTP               []string    `yaml:"ntp"`
	Timezone          string      `yaml:"timezone"`
	Role              string      `yaml:"role"`
	ControlAddress    string      `yaml:"control_address"`
	JoinToken         string      `yaml:"-"` // secret
	SSHEnabled        bool        `yaml:"ssh_enabled"`
	SSHAuthorizedKey  string      `yaml:"ssh_authorized_key"`
	// SSHRootLogin lets the authorized key log in as root as well: the
	// vendor's documentation has the local administrator grant root SSH
	// access explicitly; it is off unless asked for, and needs SSH on.
	SSHRootLogin bool `yaml:"ssh_root_login"`
}

// Defaults are the answers before anyone says anything: consent and SSH
// off, no password.
func Defaults() Answers {
	return Answers{Language: "en", Timezone: "UTC", Role: RoleControl}
}

// Interface returns the configuration of the named NIC, creating a DHCP
// entry when there is none yet.
func (a *Answers) Interface(name string) *Interface {
	for i := range a.Interfaces {
		if a.Interfaces[i].Name == name {
			return &a.Interfaces[i]
		}
	}
	a.Interfaces = append(a.Interfaces, Interface{Name: name, Mode: ModeDHCP})
	return &a.Interfaces[len(a.Interfaces)-1]
}

// FieldError names the answer key that is wrong and why.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }

// Localize tells the error in p's language; the key stays as it is typed.
func (e *FieldError) Localize(p *message.Printer) string { return e.Key + ": " + i18n.Error(p, e.Err) }
func (e *FieldError) Unwrap() error                      { return e.Err }

// --- per-step validators; each returns an error a person can act on, ---
// --- an i18n.Msg: English as an error, any language through Localize. ---

// ValidateLanguage accepts one of Languages.
func ValidateLanguage(s string) error {
	for _, l := range Languages {
		if s == l {
			return nil
		}
	}
	languages := strings.Join(Languages, ", ")
	return i18n.Errorf("language %q is not one of %s", s, languages)
}

// ValidateEULA requires acceptance: the product cannot run without it.
func ValidateEULA(accepted bool) error {
	if !accepted {
		return i18n.Errorf("the license agreement must be accepted to continue")
	}
	return nil
}

// MinPasswordLen is the shortest admin password accepted.
const MinPasswordLen = 12

// ValidatePassword is the strength rule: at least MinPasswordLen
// characters, at most 256, from at least three of the classes lower case,
// upper case, digits and other characters, and no control characters.
func ValidatePassword(pw string) error {
	n := len([]rune(pw))
	if n < MinPasswordLen {
		return i18n.Errorf("password is too short: it has %d characters, the minimum is %d", n, MinPasswordLen)
	}
	if n > 256 {
		return i18n.Errorf("password must be at most 256 characters")
	}
	var lower, upper, digit, other bool
	for _, r := range pw {
		switch {
		case unicode.IsControl(r):
			return i18n.Errorf("password must not contain control characters")
		case unicode.IsLower(r):
			lower = true
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsDigit(r):
			digit = true
		default:
			other = true
		}
	}
	classes := 0
	for _, b := range []bool{lower, upper, digit, other} {
		if b {
			classes++
		}
	}
	if classes < 3 {
		return i18n.Errorf("password must mix at least three of: lower case, upper case, digits, other characters")
	}
	return nil
}

// ValidateConfirm checks the second entry of the password.
func ValidateConfirm(pw, confirm string) error {
	if pw != confirm {
		return i18n.Errorf("the passwords do not match")
	}
	return nil
}

var cryptHashRE = regexp.MustCompile(`^\$(6|y)\$[./0-9A-Za-z$=,]+$`)

// ValidatePasswordHash accepts a SHA-512 crypt ($6$) or yescrypt ($y$)
// hash, the two formats Debian's libxcrypt verifies by default.
func ValidatePasswordHash(h string) error {
	if !cryptHashRE.MatchString(h) {
		return i18n.Errorf("password hash must be a SHA-512 crypt ($6$...) or yescrypt ($y$...) string")
	}
	return nil
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateHostname accepts an RFC 1123 host name or FQDN, lower case,
// at most 253 characters with labels of at most 63.
func ValidateHostname(h string) error {
	if h == "" {
		return i18n.Errorf("host name is required")
	}
	if len(h) > 253 {
		return i18n.Errorf("host name must be at most 253 characters")
	}
	for _, l := range strings.Split(h, ".") {
		if !labelRE.MatchString(l) {
			return i18n.Errorf("host name label %q must be 1-63 of a-z, 0-9 and inner '-'", l)
		}
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return i18n.Errorf("host name must be a name, not an address")
	}
	return nil
}

// ValidateMode accepts dhcp or static.
func ValidateMode(m string) error {
	if m != ModeDHCP && m != ModeStatic {
		return i18n.Errorf("network mode %q must be %q or %q", m, ModeDHCP, ModeStatic)
	}
	return nil
}

// ValidatePrefix4 accepts an IPv4 address with prefix length, e.g. 192.0.2.10/24.
func ValidatePrefix4(s string) error { return validatePrefix(s, true) }

// ValidatePrefix6 accepts an IPv6 address with prefix length, e.g. 2001:db8::10/64.
func ValidatePrefix6(s string) error { return validatePrefix(s, false) }

func validatePrefix(s string, v4 bool) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		example := map[bool]string{true: "192.0.2.10/24", false: "2001:db8::10/64"}[v4]
		return i18n.Errorf("%q is not address/prefix (e.g. %s)", s, example)
	}
	a := p.Addr()
	if a.Is4() != v4 || a.Is4In6() {
		version := map[bool]string{true: "4", false: "6"}[v4]
		return i18n.Errorf("%q is not an IPv%s address", s, version)
	}
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return i18n.Errorf("%q is not a usable host address", s)
	}
	if v4 && (p.Bits() < 1 || p.Bits() > 32) || !v4 && (p.Bits() < 1 || p.Bits() > 128) {
		return i18n.Errorf("%q has an invalid prefix length", s)
	}
	if v4 && p.Bits() < 31 && (a == p.Masked().Addr() || isBroadcast(p)) {
		return i18n.Errorf("%q is the network or broadcast address of its prefix", s)
	}
	return nil
}

func isBroadcast(p netip.Prefix) bool {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return v&host == host
}

// ValidateGateway checks a gateway is an address of the right family
// inside the interface's prefix (IPv6 link-local gateways are allowed).
func ValidateGateway(gw, prefix string, v4 bool) error {
	a, err := netip.ParseAddr(gw)
	if err != nil || a.Is4() != v4 || a.Zone() != "" {
		version := map[bool]string{true: "4", false: "6"}[v4]
		return i18n.Errorf("gateway %q is not an IPv%s address", gw, version)
	}
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return i18n.Errorf("gateway %q needs a valid interface address first", gw)
	}
	if a == p.Addr() {
		return i18n.Errorf("gateway %q is the interface's own address", gw)
	}
	if !p.Masked().Contains(a) && !(a.Is6() && a.IsLinkLocalUnicast()) {
		return i18n.Errorf("gateway %q is not inside %s", gw, p.Masked())
	}
	return nil
}

// ValidateAddress accepts one IPv4 or IPv6 address (DNS servers).
func ValidateAddress(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return i18n.Errorf("%q is not a usable IP address", s)
	}
	return nil
}

// ValidateServer accepts a host name or an IP address (NTP servers, the
// control node).
func ValidateServer(s string) error {
	if ValidateAddress(s) == nil {
		return nil
	}
	if err := ValidateHostname(strings.ToLower(s)); err != nil || s != strings.ToLower(s) {
		return i18n.Errorf("%q is neither an IP address nor a host name", s)
	}
	return nil
}

// ValidateDomain accepts a DNS search domain.
func ValidateDomain(s string) error {
	if err := ValidateHostname(s); err != nil {
		return i18n.Errorf("search domain: %v", err)
	}
	return nil
}

var tzRE = regexp.MustCompile(`^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$`)

// ValidateTimezone accepts an IANA zone name known to the tz database.
func ValidateTimezone(tz string) error {
	if tz == "" || !tzRE.MatchString(tz) || tz == "Local" {
		return i18n.Errorf("time zone %q is not an IANA zone name like Europe/Prague", tz)
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return i18n.Errorf("time zone %q is not in the tz database", tz)
	}
	return nil
}

// ValidateRole accepts control or secondary.
func ValidateRole(r string) error {
	if r != RoleControl && r != RoleSecondary {
		return i18n.Errorf("node role %q must be %q or %q", r, RoleControl, RoleSecondary)
	}
	return nil
}

// ValidateControlAddress accepts host[:port] of the control node.
func ValidateControlAddress(s string) error {
	host := s
	if h, port, err := splitHostPort(s); err == nil {
		host = h
		if port == "" {
			return i18n.Errorf("control node %q has an empty port", s)
		}
		for _, c := range port {
			if c < '0' || c > '9' {
				return i18n.Errorf("control node %q has a non-numeric port", s)
			}
		}
		if len(port) > 5 || atoi(port) == 0 || atoi(port) > 65535 {
			return i18n.Errorf("control node %q has a port outside 1-65535", s)
		}
	}
	if host == "" {
		return i18n.Errorf("control node address is required on a Secondary node")
	}
	if err := ValidateServer(host); err != nil {
		return i18n.Errorf("control node: %v", err)
	}
	return nil
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// splitHostPort splits "host:port" and "[v6]:port"; a bare IPv6 address
// is not split.
func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", errors.New("missing ]")
		}
		rest := s[end+1:]
		if rest == "" {
			return s[1:end], "443", nil
		}
		if !strings.HasPrefix(rest, ":") {
			return "", "", errors.New("junk after ]")
		}
		return s[1:end], rest[1:], nil
	}
	if strings.Count(s, ":") == 1 {
		i := strings.Index(s, ":")
		return s[:i], s[i+1:], nil
	}
	return "", "", errors.New("no port")
}

// tokenRE is the alphabet only: with the length as a repeat count
// ({16,512}), compiling it took 5.7 ms and 330 kB at every start of
// ksmg-firstboot (the expression is unrolled), about a third of the
// program's initialisation (GODEBUG=inittrace=1).
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]+$`)

// ValidateJoinToken accepts the control node's join token: 16-512
// characters of a URL/base64 alphabet.
func ValidateJoinToken(t string) error {
	if len(t) < 16 || len(t) > 512 || !tokenRE.MatchString(t) {
		return i18n.Errorf("join token must be 16-512 characters of A-Z a-z 0-9 . _ ~ + / = -")
	}
	return nil
}

// ValidateAuthorizedKey accepts exactly one OpenSSH public key line.
func ValidateAuthorizedKey(k string) error {
	k = strings.TrimSpace(k)
	if k == "" {
		return i18n.Errorf("an authorized public key is required to enable SSH")
	}
	if strings.ContainsAny(k, "\r\n") {
		return i18n.Errorf("give exactly one public key (one line)")
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
		return i18n.Errorf("not an OpenSSH public key line (ssh-ed25519 AAAA... comment)")
	}
	return nil
}

// ValidateList applies v to each non-empty entry of a comma/space list.
func ValidateList(items []string, v func(string) error) error {
	for _, it := range items {
		if err := v(it); err != nil {
			return err
		}
	}
	return nil
}

// SplitList splits "a, b c" into [a b c].
func SplitList(s string) []string {
	out := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == ';' })
	if len(out) == 0 {
		return nil // "no servers", same as not given
	}
	return out
}

// ValidateInterface checks one NIC's settings.
func ValidateInterface(ifc Interface) []error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, &FieldError{Key: "network." + ifc.Name + "." + key, Err: err})
		}
	}
	if ifc.Name == "" {
		errs = append(errs, &FieldError{Key: "network.interface", Err: i18n.Errorf("interface name is required")})
	}
	add("mode", ValidateMode(ifc.Mode))
	// DNS servers and a search domain may also complement DHCP.
	add("dns", ValidateList(ifc.DNS, ValidateAddress))
	if ifc.SearchDomain != "" {
		add("search", ValidateDomain(ifc.SearchDomain))
	}
	if ifc.Mode != ModeStatic {
		return errs
	}
	if ifc.Address4 == "" && ifc.Address6 == "" {
		add("ipv4.address", i18n.Errorf("a static interface needs an IPv4 or IPv6 address"))
	}
	if ifc.Address4 != "" {
		add("ipv4.address", ValidatePrefix4(ifc.Address4))
		if ifc.Gateway4 != "" {
			add("ipv4.gateway", ValidateGateway(ifc.Gateway4, ifc.Address4, true))
		}
	} else if ifc.Gateway4 != "" {
		add("ipv4.gateway", i18n.Errorf("an IPv4 gateway needs an IPv4 address"))
	}
	if ifc.Address6 != "" {
		add("ipv6.address", ValidatePrefix6(ifc.Address6))
		if ifc.Gateway6 != "" {
			add("ipv6.gateway", ValidateGateway(ifc.Gateway6, ifc.Address6, false))
		}
	} else if ifc.Gateway6 != "" {
		add("ipv6.gateway", i18n.Errorf("an IPv6 gateway needs an IPv6 address"))
	}
	return errs
}

// Validate checks every step; nil means the answers can be applied.
func (a *Answers) Validate() error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, &FieldError{Key: key, Err: err})
		}
	}
	add("language", ValidateLanguage(a.Language))
	add("eula.accepted", ValidateEULA(a.EULAAccepted))
	switch {
	case a.AdminPasswordHash != "":
		add("admin.password_hash", ValidatePasswordHash(a.AdminPasswordHash))
	default:
		add("admin.password", ValidatePassword(a.AdminPassword))
	}
	add("hostname", ValidateHostname(a.Hostname))
	if len(a.Interfaces) == 0 {
		add("network.mode", i18n.Errorf("at least one interface must be configured"))
	}
	seen := map[string]bool{}
	for _, ifc := range a.Interfaces {
		if seen[ifc.Name] {
			add("network.interface", i18n.Errorf("interface %q configured twice", ifc.Name))
		}
		seen[ifc.Name] = true
		errs = append(errs, ValidateInterface(ifc)...)
	}
	add("ntp", ValidateList(a.NTP, ValidateServer))
	add("timezone", ValidateTimezone(a.Timezone))
	add("node.role", ValidateRole(a.Role))
	if a.Role == RoleSecondary {
		add("node.control_address", ValidateControlAddress(a.ControlAddress))
		add("node.join_token", ValidateJoinToken(a.JoinToken))
	}
	if a.SSHEnabled {
		add("ssh.authorized_key", ValidateAuthorizedKey(a.SSHAuthorizedKey))
	} else if a.SSHRootLogin {
		add("ssh.root_login", errors.New("root login over SSH needs SSH enabled (ksmg.ssh.enabled=true)"))
	}
	return errors.Join(errs...)
}
