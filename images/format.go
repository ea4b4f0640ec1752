package images

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/ksmg-appliance/ksmg/appliance"
)

// FormatFunc converts the finished raw disk into one output file: it writes
// into out, an empty file the build has staged under a temporary name, and
// neither closes nor renames it (the build publishes all outputs together).
// It must honour ctx.
type FormatFunc func(ctx context.Context, rawPath string, out *os.File, spec *appliance.Spec) error

type format struct {
	name, ext string
	fn        FormatFunc
}

var (
	formatsMu sync.RWMutex
	formats   = map[string]format{}
)

// RegisterFormat makes an output format available to Build under name; the
// output file is <name>-<version>.<ext>. Registering a name twice panics
// (it is a programming error, found at init time).
func RegisterFormat(name, ext string, fn FormatFunc) {
	formatsMu.Lock()
	defer formatsMu.Unlock()
	if _, dup := formats[name]; dup || name == "" || fn == nil {
		panic(fmt.Sprintf("images: RegisterFormat(%q): duplicate, empty or nil", name))
	}
	formats[name] = format{name: name, ext: strings.TrimPrefix(ext, "."), fn: fn}
}

// Formats lists the registered format names.
func Formats() []string {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	names := make([]string, 0, len(formats))
	for n := range formats {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupFormats(names []string) ([]format, error) {
	formatsMu.RLock()
	defer formatsMu.RUnlock()
	var out []format
	seen := map[string]bool{}
	for _, n := range names {
		f, ok := formats[n]
		if !ok {
			known := make([]string, 0, len(formats))
			for k := range formats {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("unknown output format %q (known: %s)", n, strings.Join(known, ", "))
		}
		if !seen[n] {
			out = append(out, f)
			seen[n] = true
		}
	}
	return out, nil
}

// The raw disk is always built; as a format it is the disk itself, copied
// sparsely (the build writes the disk straight into the raw output instead).
func init() {
	RegisterFormat("raw", "raw", func(ctx context.Context, raw string, out *os.File, _ *appliance.Spec) error {
		return copySparse(ctx, raw, out)
	})
}

// copySparse copies src into out keeping holes: all-zero blocks are skipped.
func copySparse(ctx context.Context, src string, out *os.File) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := writeSparseAt(ctx, out, in, 0, st.Size()); err != nil {
		return err
	}
	return out.Truncate(st.Size())
}
