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

// staticHostnamePath is the machine's configured (static) host name.
var staticHostnamePath = "/etc/hostname"

// Hostname is the banner, EHLO and DSN name: hostname from the
// configuration, else the machine's static name (/etc/hostname), else the
// running one. The static name comes first because on the appliance's
// first boot the gateway starts once first boot has written /etc/hostname
// but without waiting for the running name to follow it
// (ksmg-hostname.service); at any other time the two are the same.
func Hostname(c *config.Config) string {
	if c.Hostname != "" {
		return c.Hostname
	}
	if h := staticHostname(staticHostnamePath); h != "" {
		return h
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

// staticHostname reads a host name file as hostname(5) defines it: the
// first line that is not empty and not a comment; "" if there is none or it
// is not a host name.
func staticHostname(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if len(l) > 253 || strings.ContainsAny(l, " \t/\\") {
			return ""
		}
		return l
	}
	return ""
}
