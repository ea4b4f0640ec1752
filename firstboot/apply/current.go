package apply

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

// Current reads back what a previous Apply wrote, so that
// `ksmg-firstboot --reconfigure` opens with today's settings. The admin's
// password is returned as its hash only (never recoverable).
func Current(root string) answers.Answers {
	a := answers.Defaults()
	rd := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(root, p))
		return strings.TrimSpace(string(b))
	}
	a.Hostname = rd("/etc/hostname")
	if tz := rd("/etc/timezone"); tz != "" {
		a.Timezone = tz
	}
	if n, err := ReadNodeConfig(root); err == nil {
		a.Role, a.ControlAddress, a.JoinToken = n.Role, n.ControlAddress, n.JoinToken
		a.EULAAccepted, a.KSN = n.EULA.Accepted, n.KSN.Enabled && n.KSN.Source == "local"
		if n.Language != "" {
			a.Language = n.Language
		}
	}
	for _, l := range strings.Split(rd(NTPPath), "\n") {
		if v, ok := strings.CutPrefix(l, "NTP="); ok {
			a.NTP = strings.Fields(v)
		}
	}
	if k := rd(AuthorizedKeys); k != "" {
		a.SSHEnabled, a.SSHAuthorizedKey = true, strings.SplitN(k, "\n", 2)[0]
	}
	if shadow, err := readColonFile(filepath.Join(root, "/etc/shadow")); err == nil {
		if _, f := shadow.find(AdminUser); len(f) > 1 && answers.ValidatePasswordHash(f[1]) == nil {
			a.AdminPasswordHash = f[1]
		}
	}
	files, _ := filepath.Glob(filepath.Join(root, NetworkDir, "50-ksmg-*.network"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		ifc := answers.Interface{Mode: answers.ModeStatic}
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
			if !ok {
				continue
			}
			v6 := strings.Contains(v, ":")
			switch {
			case k == "Name":
				ifc.Name = v
			case k == "DHCP":
				ifc.Mode = answers.ModeDHCP
			case k == "Address" && v6:
				ifc.Address6 = v
			case k == "Address":
				ifc.Address4 = v
			case k == "Gateway" && v6:
				ifc.Gateway6 = v
			case k == "Gateway":
				ifc.Gateway4 = v
			case k == "DNS":
				ifc.DNS = append(ifc.DNS, v)
			case k == "Domains":
				ifc.SearchDomain = v
			}
		}
		if ifc.Name != "" {
			a.Interfaces = append(a.Interfaces, ifc)
		}
	}
	return a
}
