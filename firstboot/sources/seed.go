package sources

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// SeedFileName is the file looked for on a config drive.
const SeedFileName = "ksmg-seed.yaml"

// SeedLabels are the filesystem labels of a config drive, in order.
var SeedLabels = []string{"KSMG-SEED", "CIDATA", "cidata"}

// ParseSeed reads a seed YAML document. Keys may be flat
// ("ksmg.hostname: gw1") or nested ("ksmg: {hostname: gw1}"); lists
// become comma-separated values.
func ParseSeed(doc []byte) (map[string]string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, i18n.Errorf("seed file is not valid YAML: %v", err)
	}
	out := map[string]string{}
	if root.Kind == 0 { // empty document
		return out, nil
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, i18n.Errorf("seed file: top level must be a mapping of ksmg.* keys")
	}
	if err := flatten("", root.Content[0], out); err != nil {
		return nil, err
	}
	return out, nil
}

func flatten(prefix string, n *yaml.Node, out map[string]string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return i18n.Errorf("seed file line %d: keys must be plain strings", k.Line)
		}
		key := k.Value
		if prefix != "" {
			key = prefix + "." + key
		}
		switch v.Kind {
		case yaml.MappingNode:
			if err := flatten(key, v, out); err != nil {
				return err
			}
		case yaml.SequenceNode:
			var items []string
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return i18n.Errorf("seed file line %d: %s: list items must be plain values", it.Line, key)
				}
				items = append(items, it.Value)
			}
			if err := put(out, key, strings.Join(items, ","), v.Line); err != nil {
				return err
			}
		case yaml.ScalarNode:
			if err := put(out, key, v.Value, v.Line); err != nil {
				return err
			}
		default:
			return i18n.Errorf("seed file line %d: %s: unsupported value (aliases are not allowed)", v.Line, key)
		}
	}
	return nil
}

func put(out map[string]string, key, val string, line int) error {
	if _, dup := out[key]; dup {
		return i18n.Errorf("seed file line %d: %s given twice", line, key)
	}
	out[key] = val
	return nil
}

// Seed reads a seed file at a known path (tests, or a drive mounted by
// the caller).
type Seed struct {
	Path string
}

// Name implements Source.
func (s Seed) Name() *i18n.Msg { return i18n.Errorf("seed file %s", s.Path) }

// Read implements Source.
func (s Seed) Read(ctx context.Context) (map[string]string, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrAbsent
	}
	if err != nil {
		return nil, fmt.Errorf("read seed file: %w", err)
	}
	return ParseSeed(b) // the source's name has the path
}

// FormatSeed renders key/values as a flat seed file (sorted), used for
// tests and to document the format.
func FormatSeed(kv map[string]string) []byte {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + ": " + strconv.Quote(kv[k]) + "\n")
	}
	return []byte(b.String())
}
