package config

import (
	"errors"
	"testing"
)

// FuzzParse: any file content either loads or yields a *Error naming the
// source; it never panics.
func FuzzParse(f *testing.F) {
	f.Add(string(DefaultYAML))
	f.Add("limits: {max_recipients: abc}")
	f.Add("protected_domains: [{name: a.com, route: 'h:25', tls: required}]")
	f.Add("lists: {allow: {networks: ['::1']}}")
	f.Add("backup: {max_size: 1GiB}\nrelay: {retry_max: 1s}")
	f.Fuzz(func(t *testing.T, data string) {
		c, err := Parse("/f.yaml", []byte(data), noEnv)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || ce.Source == "" {
				t.Fatalf("error without source: %v", err)
			}
			return
		}
		if c.Limits.MaxRecipients <= 0 || c.Limits.MaxMessageSize <= 0 || c.Relay.Workers <= 0 {
			t.Fatalf("accepted non-positive limits: %+v", c.Limits)
		}
	})
}
