// Package config loads the ksmg-gatewayd configuration
// (/etc/opt/kaspersky/ksmg-gateway.yaml) with viper: the embedded documented
// defaults (default.yaml), then the file, then KSMG_* environment overrides.
//
// Viper's own Unmarshal/UnmarshalExact were considered for the typed decode
// but their mapstructure errors do not name the file and the expected form in
// the words an administrator needs, so every key is converted here by a small
// schema that produces "FILE: key K: expected X, got Y".
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// DefaultPath is where the appliance keeps the gateway configuration.
const DefaultPath = "/etc/opt/kaspersky/ksmg-gateway.yaml"

// DefaultYAML is the documented default configuration, installed by the image.
//
//go:embed default.yaml
var DefaultYAML []byte

// TLSMode is the STARTTLS policy towards a next hop.
type TLSMode string

// Next-hop TLS policies.
const (
	TLSNone          TLSMode = "none"
	TLSOpportunistic TLSMode = "opportunistic"
	TLSRequired      TLSMode = "required"
)

// Domain is a protected domain and its internal route.
type Domain struct {
	Name  string  // lower case
	Route string  // host:port; empty = relay.default_route
	TLS   TLSMode // empty = relay.default_tls
}

// List is one allow or deny list.
type List struct {
	Senders    []string // user@domain, @domain or domain (lower case)
	Recipients []string
	Networks   []netip.Prefix
}

// Config is the validated gateway configuration.
type Config struct {
	Source   string // the file it came from ("" = defaults only)
	Hostname string
	Listen   []string
	SpoolDir string
	TLS      struct {
		CertFile, KeyFile string
		Generate          bool
	}
	Limits struct {
		MaxMessageSize int64
		MaxRecipients  int
		MaxLineLength  int
		IdleTimeout    time.Duration
		MinDataRate    int64 // bytes per second: the message deadline
		MaxSessions    int
		// MaxSessionsPerClient: sessions one client address (an IPv6 /64)
		// may hold at once; trusted networks are not limited.
		MaxSessionsPerClient int
		JunkCommands         int
	}
	ProtectedDomains []Domain
	TrustedNetworks  []netip.Prefix
	// AllowPublicTrustedNetworks: trusted_networks may hold public
	// (globally routable) addresses; see check.
	AllowPublicTrustedNetworks bool
	Lists                      struct{ Allow, Deny List }
	Relay                      struct {
		DefaultRoute     string
		DefaultTLS       TLSMode
		Workers          int
		ConnectTimeout   time.Duration
		RetryInitial     time.Duration
		RetryMax         time.Duration
		MaxQueueLifetime time.Duration
	}
	Backup struct {
		Dir     string
		MaxSize int64
	}
	Logging struct {
		MessagesFile    string
		ImportantFile   string
		TraceDir        string
		Trace           bool
		EventsDir       string
		EventsRetention time.Duration
		EventsMaxSize   int64
	}
}

// Error is an invalid configuration value; the daemon exits with status 2.
type Error struct {
	Source   string // file name or "environment KSMG_..."
	Key      string // dotted path; "" for whole-file errors
	Expected string
	Got      string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.Source, e.Expected)
	}
	return fmt.Sprintf("%s: key %s: expected %s, got %s", e.Source, e.Key, e.Expected, e.Got)
}

// Domain returns the protected domain entry for d (lower case), if any.
func (c *Config) Domain(d string) (Domain, bool) {
	for _, pd := range c.ProtectedDomains {
		if pd.Name == d {
			return pd, true
		}
	}
	return Domain{}, false
}

// Load reads the configuration. path "" means DefaultPath, which may be
// absent (defaults apply); an explicitly named file must exist.
func Load(path string) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if explicit || !errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{Source: path, Expected: fmt.Sprintf("cannot read: %v", err)}
		}
		data, path = nil, ""
	}
	return Parse(path, data, os.Environ())
}

// Parse validates a configuration file's content (data may be empty) with
// the overrides of environ (os.Environ's "KEY=value" form). A KSMG_
// variable that names no key is refused like an unknown key, unless it
// belongs to the project's other programs (OtherVariables).
func Parse(source string, data []byte, environ []string) (*Config, error) {
	src := source
	if src == "" {
		src = "built-in defaults"
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(DefaultYAML)); err != nil {
		return nil, fmt.Errorf("embedded default.yaml: %w", err) // build-time bug
	}
	if len(bytes.TrimSpace(data)) > 0 {
		var raw any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			return nil, &Error{Source: src, Expected: "valid YAML: " + err.Error()}
		}
		m, ok := raw.(map[string]any)
		if !ok && raw != nil {
			return nil, &Error{Source: src, Key: "(top level)", Expected: "a mapping of keys", Got: describe(raw)}
		}
		if err := checkKeys(src, "", m); err != nil {
			return nil, err
		}
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			return nil, &Error{Source: src, Expected: "valid YAML: " + err.Error()}
		}
	}
	// Viper's AutomaticEnv reads os.Getenv; resolve through environ instead
	// so that Parse is testable and the error can name the variable.
	vars := map[string]string{}
	for _, kv := range environ {
		if name, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(name, "KSMG_") {
			vars[name] = val
		}
	}
	if err := checkVariables(vars); err != nil {
		return nil, err
	}
	env := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	for _, k := range keys {
		if val, ok := env(EnvName(k.path)); ok {
			v.Set(k.path, val)
		}
	}
	c := &Config{Source: source}
	for _, k := range keys {
		s := src
		if _, ok := env(EnvName(k.path)); ok {
			s = "environment " + EnvName(k.path)
		}
		if err := k.set(c, v.Get(k.path)); err != nil {
			var ce *Error
			if errors.As(err, &ce) {
				ce.Source = s
				if ce.Key == "" {
					ce.Key = k.path
				}
				return nil, ce
			}
			return nil, &Error{Source: s, Key: k.path, Expected: err.Error(), Got: describe(v.Get(k.path))}
		}
	}
	if err := c.check(src); err != nil {
		return nil, err
	}
	return c, nil
}

// EnvName is the environment variable overriding a dotted key.
func EnvName(key string) string {
	return "KSMG_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// OtherVariables are the KSMG_ variables of the project's other programs
// (the build and deploy tool, the test suites); the daemon ignores them.
var OtherVariables = []string{
	"KSMG_CACHE", "KSMG_BIN_DIR", "KSMG_IMAGE_DIR", "KSMG_OUT", "KSMG_SPEC", "KSMG_FORMAT",
	"KSMG_VSPHERE_PASSWORD", "KSMG_HYPERV_PASSWORD", "KSMG_SCVMM_PASSWORD",
	"KSMG_JOIN_TOKEN", "KSMG_PACKER", "KSMG_AUDIT_MIRROR",
	"KSMG_SIGN_KEY", "KSMG_SIGN_PASSPHRASE", "KSMG_SIGN_PASSPHRASE_FILE", "KSMG_VERIFY_KEY",
}

// checkVariables refuses a KSMG_ variable that names no key (a typo such as
// KSMG_LIMITS_MAX_RECIPENTS would otherwise be silently ignored), naming
// the closest key's variable.
func checkVariables(vars map[string]string) error {
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if slices.Contains(OtherVariables, n) || strings.HasPrefix(n, "KSMG_TEST_") {
			continue
		}
		best, dist := "", 1<<30
		for _, k := range keys {
			e := EnvName(k.path)
			if e == n {
				best, dist = e, 0
				break
			}
			if d := editDistance(n, e); d < dist {
				best, dist = e, d
			}
		}
		if dist == 0 {
			continue
		}
		want := "a variable that names a configuration key (KSMG_<KEY>, see ksmg-gatewayd --print-default-config)"
		if dist <= 3 {
			want += "; did you mean " + best + "?"
		}
		return &Error{Source: "environment " + n, Key: "(variable name)", Expected: want, Got: "an unknown variable"}
	}
	return nil
}

// editDistance is the Levenshtein distance (for "did you mean").
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Keys lists every configuration key (dotted), for documentation and tests.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.path
	}
	return out
}

// check validates relations between keys.
func (c *Config) check(src string) error {
	seen := map[string]bool{}
	for i, d := range c.ProtectedDomains {
		if seen[d.Name] {
			return &Error{Source: src, Key: fmt.Sprintf("protected_domains[%d].name", i), Expected: "each domain once", Got: strconv.Quote(d.Name) + " again"}
		}
		seen[d.Name] = true
		if d.Route == "" && c.Relay.DefaultRoute == "" {
			return &Error{Source: src, Key: fmt.Sprintf("protected_domains[%d].route", i), Expected: "a host:port route (relay.default_route is empty)", Got: "none for " + strconv.Quote(d.Name)}
		}
	}
	if !c.AllowPublicTrustedNetworks {
		for i, p := range c.TrustedNetworks {
			if !nonPublic(p) {
				return &Error{Source: src, Key: fmt.Sprintf("trusted_networks[%d]", i),
					Expected: "a private, loopback, link-local or documentation network: a trusted network may relay to any domain, so public address space makes an open relay " +
						"(to trust public addresses of your own, set allow_public_trusted_networks: true)",
					Got: strconv.Quote(p.String())}
			}
		}
	}
	if c.Relay.RetryMax < c.Relay.RetryInitial {
		return &Error{Source: src, Key: "relay.retry_max", Expected: "a duration >= relay.retry_initial (" + c.Relay.RetryInitial.String() + ")", Got: strconv.Quote(c.Relay.RetryMax.String())}
	}
	return nil
}

type key struct {
	path string
	set  func(c *Config, v any) error
}

var keys = []key{
	{"hostname", func(c *Config, v any) (err error) { c.Hostname, err = hostname(v); return }},
	{"listen", func(c *Config, v any) (err error) { c.Listen, err = addrList(v, false); return }},
	{"spool_dir", func(c *Config, v any) (err error) { c.SpoolDir, err = absPath(v); return }},
	{"tls.cert_file", func(c *Config, v any) (err error) { c.TLS.CertFile, err = absPath(v); return }},
	{"tls.key_file", func(c *Config, v any) (err error) { c.TLS.KeyFile, err = absPath(v); return }},
	{"tls.generate", func(c *Config, v any) (err error) { c.TLS.Generate, err = boolean(v); return }},
	{"limits.max_message_size", func(c *Config, v any) (err error) { c.Limits.MaxMessageSize, err = size(v); return }},
	{"limits.max_recipients", func(c *Config, v any) (err error) { c.Limits.MaxRecipients, err = positive(v); return }},
	{"limits.max_line_length", func(c *Config, v any) (err error) {
		c.Limits.MaxLineLength, err = positive(v)
		if err == nil && c.Limits.MaxLineLength < 512 {
			err = errors.New("an integer >= 512 (RFC 5321 minimum)")
		}
		return
	}},
	{"limits.idle_timeout", func(c *Config, v any) (err error) { c.Limits.IdleTimeout, err = duration(v); return }},
	{"limits.min_data_rate", func(c *Config, v any) (err error) { c.Limits.MinDataRate, err = size(v); return }},
	{"limits.max_sessions", func(c *Config, v any) (err error) { c.Limits.MaxSessions, err = positive(v); return }},
	{"limits.max_sessions_per_client", func(c *Config, v any) (err error) { c.Limits.MaxSessionsPerClient, err = positive(v); return }},
	{"limits.junk_command_limit", func(c *Config, v any) (err error) { c.Limits.JunkCommands, err = positive(v); return }},
	{"protected_domains", func(c *Config, v any) (err error) { c.ProtectedDomains, err = domains(v); return }},
	{"trusted_networks", func(c *Config, v any) (err error) { c.TrustedNetworks, err = networks(v); return }},
	{"allow_public_trusted_networks", func(c *Config, v any) (err error) { c.AllowPublicTrustedNetworks, err = boolean(v); return }},
	{"lists.allow.senders", func(c *Config, v any) (err error) { c.Lists.Allow.Senders, err = addresses(v); return }},
	{"lists.allow.recipients", func(c *Config, v any) (err error) { c.Lists.Allow.Recipients, err = addresses(v); return }},
	{"lists.allow.networks", func(c *Config, v any) (err error) { c.Lists.Allow.Networks, err = networks(v); return }},
	{"lists.deny.senders", func(c *Config, v any) (err error) { c.Lists.Deny.Senders, err = addresses(v); return }},
	{"lists.deny.recipients", func(c *Config, v any) (err error) { c.Lists.Deny.Recipients, err = addresses(v); return }},
	{"lists.deny.networks", func(c *Config, v any) (err error) { c.Lists.Deny.Networks, err = networks(v); return }},
	{"relay.default_route", func(c *Config, v any) (err error) { c.Relay.DefaultRoute, err = route(v, true); return }},
	{"relay.default_tls", func(c *Config, v any) (err error) { c.Relay.DefaultTLS, err = tlsMode(v); return }},
	{"relay.workers", func(c *Config, v any) (err error) { c.Relay.Workers, err = positive(v); return }},
	{"relay.connect_timeout", func(c *Config, v any) (err error) { c.Relay.ConnectTimeout, err = duration(v); return }},
	{"relay.retry_initial", func(c *Config, v any) (err error) { c.Relay.RetryInitial, err = duration(v); return }},
	{"relay.retry_max", func(c *Config, v any) (err error) { c.Relay.RetryMax, err = duration(v); return }},
	{"relay.max_queue_lifetime", func(c *Config, v any) (err error) { c.Relay.MaxQueueLifetime, err = duration(v); return }},
	{"backup.dir", func(c *Config, v any) (err error) { c.Backup.Dir, err = absPath(v); return }},
	{"backup.max_size", func(c *Config, v any) (err error) { c.Backup.MaxSize, err = size(v); return }},
	{"logging.messages_file", func(c *Config, v any) (err error) { c.Logging.MessagesFile, err = absPath(v); return }},
	{"logging.important_file", func(c *Config, v any) (err error) { c.Logging.ImportantFile, err = absPath(v); return }},
	{"logging.trace_dir", func(c *Config, v any) (err error) { c.Logging.TraceDir, err = absPath(v); return }},
	{"logging.trace", func(c *Config, v any) (err error) { c.Logging.Trace, err = boolean(v); return }},
	{"logging.events_dir", func(c *Config, v any) (err error) { c.Logging.EventsDir, err = absPath(v); return }},
	{"logging.events_retention", func(c *Config, v any) (err error) { c.Logging.EventsRetention, err = duration(v); return }},
	{"logging.events_max_size", func(c *Config, v any) (err error) { c.Logging.EventsMaxSize, err = size(v); return }},
}

// sections are the keys that hold nested keys.
var sections = map[string]bool{"tls": true, "limits": true, "lists": true, "lists.allow": true, "lists.deny": true, "relay": true, "backup": true, "logging": true}

func checkKeys(src, prefix string, m map[string]any) error {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p := strings.ToLower(k)
		if prefix != "" {
			p = prefix + "." + p
		}
		if sections[p] {
			sub, ok := m[k].(map[string]any)
			if !ok {
				if m[k] == nil {
					continue
				}
				return &Error{Source: src, Key: p, Expected: "a mapping of keys", Got: describe(m[k])}
			}
			if err := checkKeys(src, p, sub); err != nil {
				return err
			}
			continue
		}
		known := false
		for _, kk := range keys {
			if kk.path == p {
				known = true
				break
			}
		}
		if !known {
			return &Error{Source: src, Key: p, Expected: "a known key (see default.yaml)", Got: "an unknown key"}
		}
	}
	return nil
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(x)
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	default:
		return strconv.Quote(fmt.Sprint(x))
	}
}

func str(v any, what string) (string, error) {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("%s", what)
}

func hostname(v any) (string, error) {
	s, err := str(v, "a host name (string)")
	if err != nil || s == "" {
		return s, err
	}
	if len(s) > 253 || strings.IndexFunc(s, badAddrRune) >= 0 || strings.Contains(s, "@") {
		return "", errors.New("a host name")
	}
	return s, nil
}

func absPath(v any) (string, error) {
	s, err := str(v, "an absolute path")
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(s, "/") || strings.ContainsRune(s, 0) {
		return "", errors.New("an absolute path")
	}
	return s, nil
}

func boolean(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		if b, err := strconv.ParseBool(strings.TrimSpace(x)); err == nil {
			return b, nil
		}
	}
	return false, errors.New("true or false")
}

func positive(v any) (int, error) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > 1<<31 {
			return 0, errors.New("a positive integer")
		}
		n = int64(x)
	case float64:
		if x != float64(int64(x)) {
			return 0, errors.New("a positive integer")
		}
		n = int64(x)
	case string:
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64); err != nil {
			return 0, errors.New("a positive integer")
		}
	default:
		return 0, errors.New("a positive integer")
	}
	if n <= 0 || n > 1<<31-1 {
		return 0, errors.New("a positive integer")
	}
	return int(n), nil
}

func size(v any) (int64, error) {
	const want = "a positive size (bytes, or a number with a unit: 500MB, 7GB, 1GiB)"
	switch x := v.(type) {
	case string:
		n, err := humanize.ParseBytes(strings.TrimSpace(x))
		if err != nil || n == 0 || n > 1<<62 {
			return 0, errors.New(want)
		}
		return int64(n), nil
	default:
		n, err := positive(v)
		if err != nil {
			return 0, errors.New(want)
		}
		return int64(n), nil
	}
}

func duration(v any) (time.Duration, error) {
	const want = "a positive duration (e.g. 30s, 5m, 72h)"
	s, ok := v.(string)
	if !ok {
		return 0, errors.New(want)
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		return 0, errors.New(want)
	}
	return d, nil
}

func tlsMode(v any) (TLSMode, error) {
	s, _ := v.(string)
	switch m := TLSMode(strings.ToLower(strings.TrimSpace(s))); m {
	case TLSNone, TLSOpportunistic, TLSRequired:
		return m, nil
	}
	return "", errors.New("one of none, opportunistic, required")
}

// list accepts a YAML list, or (from the environment) a comma/space separated
// string or a YAML flow list.
func list(v any) ([]any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []any:
		return x, nil
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out, nil
	case string:
		x = strings.TrimSpace(x)
		if strings.HasPrefix(x, "[") {
			var out []any
			if err := yaml.Unmarshal([]byte(x), &out); err != nil {
				return nil, errors.New("a list")
			}
			return out, nil
		}
		var out []any
		for _, f := range strings.FieldsFunc(x, func(r rune) bool { return r == ',' || r == ' ' }) {
			out = append(out, f)
		}
		return out, nil
	}
	return nil, errors.New("a list")
}

func addrList(v any, _ bool) ([]string, error) {
	items, err := list(v)
	if err != nil {
		return nil, errors.New("a list of listen addresses (host:port)")
	}
	var out []string
	for _, it := range items {
		s, _ := it.(string)
		if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
			return nil, &Error{Expected: "a list of listen addresses (host:port)", Got: describe(it)}
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, errors.New("at least one listen address (host:port)")
	}
	return out, nil
}

func route(v any, emptyOK bool) (string, error) {
	const want = "a host:port route"
	s, err := str(v, want)
	if err != nil {
		return "", err
	}
	if s == "" && emptyOK {
		return "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", errors.New(want)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", errors.New(want)
	}
	return s, nil
}

func networks(v any) ([]netip.Prefix, error) {
	const want = "a list of networks (CIDR like 10.0.0.0/8, or an IP address)"
	items, err := list(v)
	if err != nil {
		return nil, errors.New(want)
	}
	var out []netip.Prefix
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, &Error{Expected: want, Got: describe(it)}
		}
		p, err := parseNetwork(strings.TrimSpace(s))
		if err != nil {
			return nil, &Error{Expected: want, Got: describe(it)}
		}
		out = append(out, p)
	}
	return out, nil
}

// nonPublicNets are the ranges no one on the internet sends from: private
// (RFC 1918, RFC 4193), shared CGNAT (RFC 6598), loopback, link-local and
// documentation (RFC 5737, RFC 3849).
var nonPublicNets = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
		"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "::1/128", "fc00::/7", "fe80::/10", "2001:db8::/32"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// nonPublic reports whether p lies wholly inside one of nonPublicNets.
func nonPublic(p netip.Prefix) bool {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	for _, n := range nonPublicNets {
		if n.Addr().BitLen() == p.Addr().BitLen() && n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func addresses(v any) ([]string, error) {
	const want = "a list of addresses (user@domain, @domain or domain)"
	items, err := list(v)
	if err != nil {
		return nil, errors.New(want)
	}
	var out []string
	for _, it := range items {
		s, ok := it.(string)
		s = strings.ToLower(strings.TrimSpace(s))
		if !ok || s == "" || strings.IndexFunc(s, badAddrRune) >= 0 || strings.Count(s, "@") > 1 || strings.HasSuffix(s, "@") {
			return nil, &Error{Expected: want, Got: describe(it)}
		}
		out = append(out, s)
	}
	return out, nil
}

// badAddrRune: controls, space and characters that would break an SMTP line.
func badAddrRune(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == ',' }

func domainName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return false
	}
	for _, r := range s {
		if !(r == '.' || r == '-' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func domains(v any) ([]Domain, error) {
	const want = "a list of {name: domain, route: host:port, tls: none|opportunistic|required}"
	items, err := list(v)
	if err != nil {
		return nil, errors.New(want)
	}
	var out []Domain
	for i, it := range items {
		at := fmt.Sprintf("protected_domains[%d]", i)
		var d Domain
		switch x := it.(type) {
		case string: // environment shorthand: just the names
			d.Name = strings.ToLower(strings.TrimSpace(x))
		case map[string]any:
			for k, val := range x {
				var err error
				switch strings.ToLower(k) {
				case "name":
					s, _ := val.(string)
					d.Name = strings.ToLower(strings.TrimSpace(s))
				case "route":
					if d.Route, err = route(val, true); err != nil {
						return nil, &Error{Key: at + ".route", Expected: err.Error(), Got: describe(val)}
					}
				case "tls":
					if d.TLS, err = tlsMode(val); err != nil {
						return nil, &Error{Key: at + ".tls", Expected: err.Error(), Got: describe(val)}
					}
				default:
					return nil, &Error{Key: at + "." + k, Expected: "one of name, route, tls", Got: "an unknown key"}
				}
			}
		default:
			return nil, &Error{Key: at, Expected: want, Got: describe(it)}
		}
		if !domainName(d.Name) {
			return nil, &Error{Key: at + ".name", Expected: "a domain name like example.com", Got: strconv.Quote(d.Name)}
		}
		out = append(out, d)
	}
	return out, nil
}
