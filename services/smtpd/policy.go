package smtpd

import (
	"net/netip"
	"strings"

	"github.com/ksmg-appliance/ksmg/services/config"
)

// splitAddr returns the lower-cased address and its domain.
func splitAddr(addr string) (string, string) {
	a := strings.ToLower(addr)
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a, a[i+1:]
	}
	return a, ""
}

// matchAddr: entries are user@domain (exact), @domain or domain.
func matchAddr(list []string, addr string) bool {
	a, dom := splitAddr(addr)
	for _, e := range list {
		switch {
		case strings.HasPrefix(e, "@"):
			if dom == e[1:] {
				return true
			}
		case strings.Contains(e, "@"):
			if a == e {
				return true
			}
		default:
			if dom == e {
				return true
			}
		}
	}
	return false
}

func matchNet(list []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range list {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Route is where mail for a recipient goes next.
type Route struct {
	Addr string // host:port
	TLS  config.TLSMode
}

// RouteFor resolves the next hop for a recipient domain: the protected
// domain's route, else relay.default_route (also the smarthost for relayed
// mail from trusted networks). ok is false when there is none.
func RouteFor(c *config.Config, domain string) (r Route, protected, ok bool) {
	r = Route{Addr: c.Relay.DefaultRoute, TLS: c.Relay.DefaultTLS}
	if d, found := c.Domain(strings.ToLower(domain)); found {
		protected = true
		if d.Route != "" {
			r.Addr = d.Route
		}
		if d.TLS != "" {
			r.TLS = d.TLS
		}
	}
	return r, protected, r.Addr != ""
}
