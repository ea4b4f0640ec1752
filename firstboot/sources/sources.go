// Package sources reads unattended first-boot answers from the hypervisor
// and the guest: VMware's OVF environment, Hyper-V KVP, systemd
// credentials and a seed file on a config drive. Each yields flat
// "ksmg.*" key/values (see answers.Keys); Gather merges them by precedence.
//
// The OVF environment is parsed with encoding/xml and the KVP pool by hand:
// the pool is a flat array of fixed-size records with no library for it
// in Go (the format is defined by the kernel's hv_kvp_daemon).
package sources

import (
	"context"
	"errors"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// Source is one place unattended answers come from.
type Source interface {
	// Name says where the values came from, for messages: a catalog
	// message, told in the reader's language on the console and in
	// English (its String) in logs.
	Name() *i18n.Msg
	// Read returns the source's key/values; ErrAbsent when the source
	// does not exist on this machine (not an error worth reporting).
	Read(ctx context.Context) (map[string]string, error)
}

// Scrubber is a source that can delete secrets after they were used.
type Scrubber interface {
	Scrub(ctx context.Context, keys []string) error
}

// ErrAbsent means the source is not present (no hypervisor tool, no file).
var ErrAbsent = errors.New("source not present")

// Result is the merged view of all sources.
type Result struct {
	Values map[string]string    // key -> value, highest-precedence source wins
	Origin map[string]*i18n.Msg // key -> source name
	Found  []string             // names of sources that were present
	Errors []error              // sources present but unreadable
}

// Gather reads sources in order of precedence (first wins per key). Only
// keys with the ksmg. prefix are kept; a broken source is reported and the
// others still count.
func Gather(ctx context.Context, srcs []Source) Result {
	r := Result{Values: map[string]string{}, Origin: map[string]*i18n.Msg{}}
	for _, s := range srcs {
		kv, err := s.Read(ctx)
		if errors.Is(err, ErrAbsent) {
			continue
		}
		if err != nil {
			// A catalog message, not fmt.Errorf: the console tells it
			// in the chosen language (the parse errors are messages too).
			r.Errors = append(r.Errors, i18n.Errorf("%s: %v", s.Name(), err))
			continue
		}
		r.Found = append(r.Found, s.Name().String())
		for k, v := range kv {
			if !strings.HasPrefix(k, answers.Prefix) {
				continue
			}
			if _, ok := r.Values[k]; ok {
				continue
			}
			r.Values[k] = v
			r.Origin[k] = s.Name()
		}
	}
	return r
}

// ScrubSecrets asks every source that supports it to delete the secret
// keys it held.
func ScrubSecrets(ctx context.Context, srcs []Source, secretKeys []string) error {
	var errs []error
	for _, s := range srcs {
		if sc, ok := s.(Scrubber); ok {
			if err := sc.Scrub(ctx, secretKeys); err != nil {
				errs = append(errs, i18n.Errorf("%s: %v", s.Name(), err))
			}
		}
	}
	return errors.Join(errs...)
}

// SecretKeys lists the secret keys in kv.
func SecretKeys(kv map[string]string) []string {
	var out []string
	for k := range kv {
		if answers.IsSecret(k) {
			out = append(out, k)
		}
	}
	return out
}
