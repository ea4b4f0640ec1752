// Package routing decides where mail goes next and under which name the
// gateway speaks. Both sides of the gateway use it: the SMTP server
// (services/smtpd) to refuse recipients it could never deliver, and the
// relay (services/relay) to deliver them; neither depends on the other.
package routing

import (
	"os"
	"strings"

	"github.com/ksmg-appliance/ksmg/services/config"
)

// Route is where mail for a recipient goes next.
type Route struct {
	Addr string // host:port
	TLS  config.TLSMode
}

// For resolves the next hop for a recipient domain: the protected domain's
// route, else relay.default_route (also the smarthost for relayed mail from
// trusted networks). ok is false when there is none.
func For(c *config.Config, domain string) (r Route, protected, ok bool) {
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

// Hostname is the banner, EHLO and DSN name: hostname from the
// configuration, else the machine's.
func Hostname(c *config.Config) string {
	if c.Hostname != "" {
		return c.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}
