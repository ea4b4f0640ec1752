package answers

import (
	"sort"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// Key is one unattended setting: its name as used by every source (OVF
// property key, KVP key, credential name, seed-file key), whether it is a
// secret, and how it lands in Answers. This table is the only place that
// names the keys; the OVA helper's ova.Properties use the same names.
type Key struct {
	Name   string
	Secret bool
	Help   string
	set    func(a *Answers, primary string, v string) error
}

// Keys lists every key the sources understand.
var Keys = []Key{
	{Name: "ksmg.language", Help: "product language: en, cs or ru", set: func(a *Answers, _, v string) error {
		a.Language = v
		return ValidateLanguage(v)
	}},
	{Name: "ksmg.eula.accepted", Help: "true to accept the EULA (required)", set: func(a *Answers, _, v string) error {
		// "False" (the OVF default) is not an invalid answer, only not
		// yet an acceptance: the wizard asks.
		b, err := parseBool(v)
		a.EULAAccepted = b
		return err
	}},
	{Name: "ksmg.ksn.consent", Help: "true to join KSN (off by default)", set: func(a *Answers, _, v string) (err error) {
		a.KSN, err = parseBool(v)
		return err
	}},
	{Name: "ksmg.admin.password", Secret: true, Help: "admin password (strength rule applies)", set: func(a *Answers, _, v string) error {
		a.AdminPassword = v
		return ValidatePassword(v)
	}},
	{Name: "ksmg.admin.password_hash", Secret: true, Help: "admin password as a $6$ or $y$ crypt hash", set: func(a *Answers, _, v string) error {
		a.AdminPasswordHash = v
		return ValidatePasswordHash(v)
	}},
	{Name: "ksmg.hostname", Help: "host name or FQDN", set: func(a *Answers, _, v string) error {
		a.Hostname = strings.ToLower(v)
		return ValidateHostname(a.Hostname)
	}},
	{Name: "ksmg.network.interface", Help: "NIC the network keys configure (default: the first NIC)", set: func(a *Answers, primary, v string) error {
		return nil // resolved before the other network keys, see FromKeys
	}},
	{Name: "ksmg.network.mode", Help: "dhcp or static", set: func(a *Answers, p, v string) error {
		a.Interface(p).Mode = v
		return ValidateMode(v)
	}},
	{Name: "ksmg.network.address", Help: "static IPv4 address, with /prefix or with ksmg.network.prefix", set: func(a *Answers, p, v string) error {
		a.Interface(p).Address4 = v
		return ValidatePrefix4(v)
	}},
	{Name: "ksmg.network.prefix", Help: "static IPv4 prefix length 1-32 (with ksmg.network.address)", set: func(a *Answers, p, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 32 {
			return i18n.Errorf("prefix length %q must be 1-32", v)
		}
		return nil // combined with the address in FromKeys
	}},
	{Name: "ksmg.network.gateway", Help: "IPv4 default gateway", set: func(a *Answers, p, v string) error {
		a.Interface(p).Gateway4 = v
		return ValidateAddress(v)
	}},
	{Name: "ksmg.network.ipv6.address", Help: "static IPv6 address/prefix", set: func(a *Answers, p, v string) error {
		a.Interface(p).Address6 = v
		return ValidatePrefix6(v)
	}},
	{Name: "ksmg.network.ipv6.gateway", Help: "IPv6 default gateway", set: func(a *Answers, p, v string) error {
		a.Interface(p).Gateway6 = v
		return ValidateAddress(v)
	}},
	{Name: "ksmg.network.dns", Help: "DNS servers, comma separated", set: func(a *Answers, p, v string) error {
		a.Interface(p).DNS = SplitList(v)
		return ValidateList(a.Interface(p).DNS, ValidateAddress)
	}},
	{Name: "ksmg.network.search", Help: "DNS search domain", set: func(a *Answers, p, v string) error {
		a.Interface(p).SearchDomain = v
		return ValidateDomain(v)
	}},
	{Name: "ksmg.network.ntp", Help: "NTP servers, comma separated", set: func(a *Answers, _, v string) error {
		a.NTP = SplitList(v)
		return ValidateList(a.NTP, ValidateServer)
	}},
	{Name: "ksmg.timezone", Help: "IANA time zone, e.g. Europe/Prague", set: func(a *Answers, _, v string) error {
		a.Timezone = v
		return ValidateTimezone(v)
	}},
	{Name: "ksmg.cluster.role", Help: "control or secondary", set: func(a *Answers, _, v string) error {
		a.Role = v
		return ValidateRole(v)
	}},
	{Name: "ksmg.cluster.control_address", Help: "control node host[:port] (secondary only)", set: func(a *Answers, _, v string) error {
		a.ControlAddress = v
		return ValidateControlAddress(v)
	}},
	{Name: "ksmg.cluster.join_token", Secret: true, Help: "join token from the control node (secondary only)", set: func(a *Answers, _, v string) error {
		a.JoinToken = v
		return ValidateJoinToken(v)
	}},
	{Name: "ksmg.ssh.enabled", Help: "true to enable SSH (off by default)", set: func(a *Answers, _, v string) (err error) {
		a.SSHEnabled, err = parseBool(v)
		return err
	}},
	{Name: "ksmg.ssh.authorized_key", Help: "one OpenSSH public key line", set: func(a *Answers, _, v string) error {
		a.SSHAuthorizedKey = strings.TrimSpace(v)
		return ValidateAuthorizedKey(v)
	}},
	{Name: "ksmg.ssh.root_login", Help: "true to let the authorized key log in as root too (off by default; needs ksmg.ssh.enabled)", set: func(a *Answers, _, v string) (err error) {
		a.SSHRootLogin, err = parseBool(v)
		return err
	}},
}

// Prefix starts every key; other keys in a shared source (KVP pool, OVF
// environment) belong to someone else and are ignored.
const Prefix = "ksmg."

// IsSecret reports whether the key's value must never be logged and must
// be scrubbed from the source after use.
func IsSecret(name string) bool {
	for _, k := range Keys {
		if k.Name == name {
			return k.Secret
		}
	}
	return false
}

func lookup(name string) (Key, bool) {
	for _, k := range Keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "1", "on":
		return true, nil
	case "false", "no", "0", "off", "":
		return false, nil
	}
	return false, i18n.Errorf("%q is not true/false", v)
}

// FromKeys turns unattended key/values into Answers, starting from
// Defaults. An invalid value is reported and left out, so the wizard can
// open with only the valid answers prefilled. primary is the NIC the
// ksmg.network.* keys configure unless ksmg.network.interface names one.
// Messages never contain values, since some are secrets.
func FromKeys(kv map[string]string, primary string) (Answers, []error) {
	a := Defaults()
	var errs []error
	if v, ok := kv["ksmg.network.interface"]; ok && strings.TrimSpace(v) != "" {
		if v == "" || strings.ContainsAny(v, "/ \t\n") || len(v) > 15 {
			errs = append(errs, &FieldError{Key: "ksmg.network.interface", Err: i18n.Errorf("not a valid interface name")})
		} else {
			primary = v
		}
	}
	// An empty value means "not given": the OVF environment carries every
	// property the deployer left blank.
	given := map[string]string{}
	for k, v := range kv {
		if v = strings.TrimSpace(v); v != "" {
			given[k] = v
		}
	}
	kv = given
	if addr, ok := kv["ksmg.network.address"]; ok && !strings.Contains(addr, "/") {
		if p, ok := kv["ksmg.network.prefix"]; ok {
			kv["ksmg.network.address"] = addr + "/" + p
		} else {
			errs = append(errs, &FieldError{Key: "ksmg.network.address", Err: i18n.Errorf("needs a prefix length: give address/prefix or ksmg.network.prefix")})
			delete(kv, "ksmg.network.address")
		}
	}
	names := make([]string, 0, len(kv))
	for k := range kv {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		k, ok := lookup(name)
		if !ok {
			errs = append(errs, &FieldError{Key: name, Err: i18n.Errorf("unknown key")})
			continue
		}
		trial := a
		trial.Interfaces = append([]Interface(nil), a.Interfaces...)
		if err := k.set(&trial, primary, strings.TrimSpace(kv[name])); err != nil {
			errs = append(errs, &FieldError{Key: name, Err: err})
			continue
		}
		a = trial
	}
	// Cross-field checks (a gateway outside its prefix, say) drop the
	// dependent value only.
	for i := range a.Interfaces {
		ifc := &a.Interfaces[i]
		if ifc.Gateway4 != "" && ValidateGateway(ifc.Gateway4, ifc.Address4, true) != nil {
			errs = append(errs, &FieldError{Key: "ksmg.network.gateway", Err: ValidateGateway(ifc.Gateway4, ifc.Address4, true)})
			ifc.Gateway4 = ""
		}
		if ifc.Gateway6 != "" && ValidateGateway(ifc.Gateway6, ifc.Address6, false) != nil {
			errs = append(errs, &FieldError{Key: "ksmg.network.ipv6.gateway", Err: ValidateGateway(ifc.Gateway6, ifc.Address6, false)})
			ifc.Gateway6 = ""
		}
	}
	return a, errs
}
