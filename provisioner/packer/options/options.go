// Package options checks the settings the Packer components share (the
// appliance spec, the binaries, the source date) and words their errors
// the same way: the HCL field, what was found, what was expected.
package options

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
)

// Spec loads the appliance spec named by the field "spec"; "" is the
// embedded default spec `ksmg build` uses.
func Spec(path string) (*appliance.Spec, error) {
	s, err := appliance.Load(path)
	if err != nil {
		if path == "" {
			return nil, fmt.Errorf("spec: the embedded default spec: %w", err)
		}
		return nil, fmt.Errorf("spec: %q: want a readable appliance spec (YAML, see appliance/appliance.yaml): %w", path, err)
	}
	return s, nil
}

// BinDir checks the field "bin_dir": a directory holding every binary the
// payload ships.
func BinDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("bin_dir: required: the directory with %s (`make build` puts them in bin/)", images.PayloadBinaries())
	}
	for _, name := range images.PayloadBinaries() {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("bin_dir: %q: want a directory with %s: %w", dir, name, err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("bin_dir: %q: %s is not an executable file", dir, name)
		}
	}
	return nil
}

// SourceDateEpoch checks the field "source_date_epoch" (0: the
// environment's SOURCE_DATE_EPOCH or the build default).
func SourceDateEpoch(v int64) (int64, error) {
	sde, err := images.ResolveSourceDateEpoch(v)
	if err != nil {
		return 0, fmt.Errorf("source_date_epoch: %w", err)
	}
	return sde, nil
}
