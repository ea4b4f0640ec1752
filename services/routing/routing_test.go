package routing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/services/config"
)

func TestFor(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("/t.yaml", []byte(`
protected_domains:
  - {name: example.com, route: "mx.internal:25", tls: required}
  - {name: other.test}
relay: {default_route: "smarthost:2525", default_tls: none}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain              string
		want                Route
		protected, routedOK bool
	}{
		{"example.com", Route{"mx.internal:25", config.TLSRequired}, true, true},
		{"EXAMPLE.COM", Route{"mx.internal:25", config.TLSRequired}, true, true},
		{"other.test", Route{"smarthost:2525", config.TLSNone}, true, true},
		{"elsewhere.test", Route{"smarthost:2525", config.TLSNone}, false, true},
	} {
		r, p, ok := For(cfg, tc.domain)
		if r != tc.want || p != tc.protected || ok != tc.routedOK {
			t.Errorf("For(%q) = %v %v %v, want %v %v %v", tc.domain, r, p, ok, tc.want, tc.protected, tc.routedOK)
		}
	}
	cfg.Relay.DefaultRoute = ""
	if _, _, ok := For(cfg, "elsewhere.test"); ok {
		t.Error("a route without relay.default_route")
	}
}

func TestHostname(t *testing.T) {
	if h := Hostname(&config.Config{Hostname: "gw.example.com"}); h != "gw.example.com" {
		t.Errorf("Hostname = %q", h)
	}
	if h := Hostname(&config.Config{}); h == "" {
		t.Error("empty host name without a configured one")
	}
	running, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Cleanup(func() { staticHostnamePath = "/etc/hostname" })
	for _, tc := range []struct {
		name, file, want string
	}{
		{"static name", "gw2.example.com\n", "gw2.example.com"},
		{"comments and blank lines first", "# set by first boot\n\n  gw3  \n", "gw3"},
		{"no name in the file", "# nothing\n\n", running},
		{"not a host name", "gw 4\n", running},
		{"no file", "", running},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if tc.file != "" {
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		staticHostnamePath = path
		if h := Hostname(&config.Config{}); h != tc.want {
			t.Errorf("%s: Hostname = %q, want %q", tc.name, h, tc.want)
		}
		// The configuration's name still comes first.
		if h := Hostname(&config.Config{Hostname: "gw.example.com"}); h != "gw.example.com" {
			t.Errorf("%s: Hostname with a configured name = %q", tc.name, h)
		}
	}
}
