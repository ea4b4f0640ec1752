package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var noEnv []string

// environ turns a map into os.Environ's form.
func environ(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("", nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxMessageSize != 50_000_000 || c.Limits.MaxRecipients != 100 || c.Limits.IdleTimeout != 5*time.Minute {
		t.Errorf("limits = %+v", c.Limits)
	}
	if c.Backup.MaxSize != 7_000_000_000 || c.Logging.EventsMaxSize != 1_000_000_000 || c.Logging.EventsRetention != 72*time.Hour {
		t.Errorf("caps: backup %d events %d %v", c.Backup.MaxSize, c.Logging.EventsMaxSize, c.Logging.EventsRetention)
	}
	if c.SpoolDir != "/var/opt/kaspersky/ksmg/queue" || c.Relay.DefaultTLS != TLSOpportunistic || len(c.TrustedNetworks) != 2 {
		t.Errorf("defaults: %+v", c)
	}
	if c.Logging.Trace {
		t.Error("trace must be off by default")
	}
}

func TestFileAndEnv(t *testing.T) {
	t.Parallel()
	file := `
hostname: gw.example.com
protected_domains:
  - {name: Example.COM, route: "mx.internal:2525", tls: required}
  - name: example.org
relay: {default_route: "smarthost:25"}
limits: {max_message_size: 1GiB}
lists:
  deny: {senders: ["@spam.test"], networks: ["192.0.2.0/24", "2001:db8::1"]}
`
	env := map[string]string{
		"KSMG_RELAY_DEFAULT_ROUTE":   "smarthost:25",
		"KSMG_LIMITS_MAX_RECIPIENTS": "7",
		"KSMG_TRUSTED_NETWORKS":      "10.0.0.0/8, 127.0.0.1",
		"KSMG_BIN_DIR":               "/not/a/config/key", // unrelated KSMG_ variables are ignored
	}
	c, err := Parse("/etc/x.yaml", []byte(file), environ(env))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := c.Domain("example.com"); !ok || d.Route != "mx.internal:2525" || d.TLS != TLSRequired {
		t.Errorf("domain = %+v %v", d, ok)
	}
	if _, ok := c.Domain("example.org"); !ok {
		t.Error("example.org missing")
	}
	if c.Limits.MaxMessageSize != 1<<30 || c.Limits.MaxRecipients != 7 || c.Relay.DefaultRoute != "smarthost:25" {
		t.Errorf("got size %d rcpts %d route %q", c.Limits.MaxMessageSize, c.Limits.MaxRecipients, c.Relay.DefaultRoute)
	}
	if len(c.TrustedNetworks) != 2 || c.TrustedNetworks[1].String() != "127.0.0.1/32" {
		t.Errorf("trusted = %v", c.TrustedNetworks)
	}
	if len(c.Lists.Deny.Networks) != 2 || c.Lists.Deny.Senders[0] != "@spam.test" {
		t.Errorf("deny = %+v", c.Lists.Deny)
	}
	if c.Limits.MaxLineLength != 2000 {
		t.Errorf("untouched default lost: %d", c.Limits.MaxLineLength)
	}
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		want       string // substring of the message
	}{
		{"not a number", "limits: {max_recipients: abc}", nil, `/etc/g.yaml: key limits.max_recipients: expected a positive integer, got "abc"`},
		{"zero", "limits: {max_recipients: 0}", nil, `key limits.max_recipients: expected a positive integer, got "0"`},
		{"unknown key", "limits: {max_recipient: 5}", nil, `key limits.max_recipient: expected a known key`},
		{"unknown top", "relay_host: x", nil, `key relay_host: expected a known key`},
		{"bad size", "backup: {max_size: 7 lots}", nil, `key backup.max_size: expected a positive size`},
		{"bad duration", "relay: {retry_initial: 5}", nil, `key relay.retry_initial: expected a positive duration`},
		{"bad tls", "relay: {default_tls: maybe}", nil, `key relay.default_tls: expected one of none, opportunistic, required, got "maybe"`},
		{"bad route", "relay: {default_route: nohostport}", nil, `key relay.default_route: expected a host:port route`},
		{"bad network", "trusted_networks: [10.0.0.0/33]", nil, `key trusted_networks: expected a list of networks`},
		{"bad domain", "protected_domains: [{name: 'bad domain'}]", nil, `key protected_domains[0].name: expected a domain name`},
		{"bad domain key", "protected_domains: [{name: a.com, rout: x:25}]", nil, `key protected_domains[0].rout: expected one of name, route, tls`},
		{"relative path", "spool_dir: queue", nil, `key spool_dir: expected an absolute path, got "queue"`},
		{"section scalar", "limits: 5", nil, `key limits: expected a mapping of keys`},
		{"yaml syntax", "limits: [", nil, `/etc/g.yaml: valid YAML`},
		{"retry order", "relay: {retry_initial: 2h, retry_max: 1h}", nil, `key relay.retry_max: expected a duration >= relay.retry_initial`},
		{"no route", "protected_domains: [a.com]", nil, `key protected_domains[0].route: expected a host:port route (relay.default_route is empty), got none for "a.com"`},
		{"duplicate domain", "relay: {default_route: 'h:25'}\nprotected_domains: [a.com, a.com]", nil, `key protected_domains[1].name: expected each domain once`},
		{"env", "", map[string]string{"KSMG_LIMITS_MAX_SESSIONS": "many"}, `environment KSMG_LIMITS_MAX_SESSIONS: key limits.max_sessions: expected a positive integer, got "many"`},
		{"bool", "logging: {trace: perhaps}", nil, `key logging.trace: expected true or false`},
		// Issue 11.9: a typo in a variable name is refused like one in a key.
		{"env typo", "", map[string]string{"KSMG_LIMITS_MAX_RECIPENTS": "5"}, `environment KSMG_LIMITS_MAX_RECIPENTS: key (variable name): expected a variable that names a configuration key (KSMG_<KEY>, see ksmg-gatewayd --print-default-config); did you mean KSMG_LIMITS_MAX_RECIPIENTS?, got an unknown variable`},
		{"env unknown", "", map[string]string{"KSMG_FROBNICATE": "1"}, `environment KSMG_FROBNICATE: key (variable name): expected a variable that names a configuration key`},
		// Issue 11.9: public address space in trusted_networks is an open relay.
		{"open relay v4", `trusted_networks: ["0.0.0.0/0"]`, nil, `key trusted_networks[0]: expected a private, loopback, link-local or documentation network`},
		{"open relay v6", `trusted_networks: ["10.0.0.0/8", "::/0"]`, nil, `key trusted_networks[1]: expected a private`},
		{"public /8", `trusted_networks: ["8.0.0.0/8"]`, nil, `set allow_public_trusted_networks: true), got "8.0.0.0/8"`},
		{"spans private", `trusted_networks: ["10.0.0.0/7"]`, nil, `got "10.0.0.0/7"`},
		{"public host", `trusted_networks: ["198.18.0.1"]`, nil, `got "198.18.0.1/32"`},
		{"mapped public", `trusted_networks: ["::ffff:8.8.8.0/120"]`, nil, `trusted_networks[0]`},
		{"public by env", "", map[string]string{"KSMG_TRUSTED_NETWORKS": "0.0.0.0/0"}, `trusted_networks[0]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("/etc/g.yaml", []byte(tc.file), environ(tc.env))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n does not contain %q", err, tc.want)
			}
		})
	}
}

// Private, loopback, link-local and documentation ranges are trusted
// without the override; public ones only with it.
func TestTrustedNetworks(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"127.0.0.0/8", "::1", "10.1.0.0/16", "172.16.0.0/12", "192.168.1.0/24", "100.64.0.0/10", "fd00::/8",
		"fe80::/64", "192.0.2.0/24", "2001:db8::/48", "::ffff:10.0.0.0/104", "169.254.1.1"} {
		if _, err := Parse("", []byte(fmt.Sprintf("trusted_networks: [%q]", ok)), noEnv); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	c, err := Parse("", []byte("trusted_networks: [\"0.0.0.0/0\", \"203.0.0.0/8\"]\nallow_public_trusted_networks: true\n"), noEnv)
	if err != nil || len(c.TrustedNetworks) != 2 {
		t.Fatalf("with the override: %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "none.yaml")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("explicit missing file: err = %v", err)
	}
	good := filepath.Join(t.TempDir(), "g.yaml")
	if err := os.WriteFile(good, []byte("hostname: a.b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil || c.Hostname != "a.b" || c.Source != good {
		t.Fatalf("Load = %+v, %v", c, err)
	}
}

// Every key has a documented default and can be overridden by environment.
func TestEveryKeyHasEnv(t *testing.T) {
	t.Parallel()
	for _, k := range Keys() {
		if !strings.Contains(string(DefaultYAML), k[strings.LastIndex(k, ".")+1:]+":") {
			t.Errorf("key %s not documented in default.yaml", k)
		}
		_, err := Parse("", nil, []string{EnvName(k) + "=\x01invalid\x01"})
		if err == nil || !strings.Contains(err.Error(), EnvName(k)) {
			t.Errorf("override of %s by %s not applied/validated: %v", k, EnvName(k), err)
		}
	}
}
