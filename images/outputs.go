package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
	"github.com/ksmg-appliance/ksmg/sign"
)

// SumsFile is the checksum list written next to the outputs, in the format
// of sha256sum(1), sorted by name (package sign writes and reads it).
const SumsFile = sign.SumsName

// Outputs stages output files in one directory and switches them into place
// together. It is the one layer that owns temp-and-rename for the build's
// outputs (and the Packer post-processors'): each file is written under a
// temporary name (".tmp-<name>", which a later build removes if this one is
// interrupted), and Publish hashes them, renames them all and writes
// SHA256SUMS last (its signature just before), whose directory sync makes
// every rename durable. The format writers only write into the file they
// are given.
type Outputs struct {
	dir   string
	opts  OutputOptions
	hash  hasher
	files []*stagedOutput
}

// OutputOptions change how Outputs publishes.
type OutputOptions struct {
	// CacheDir, if set, memoises the SHA-256 of large sparse files (see
	// hasher) under CacheDir/sha256.
	CacheDir string
	// MergeSums keeps the lines of an existing SHA256SUMS for other files
	// that still exist (a post-processor adding its output next to a
	// builder's); otherwise SHA256SUMS lists exactly these outputs.
	MergeSums bool
	// Signer, if set, signs SHA256SUMS (SHA256SUMS.asc); without one a
	// signature left next to it is removed, as it no longer matches.
	Signer *sign.Signer
}

type stagedOutput struct {
	format, name string
	f            *atomicfile.File
}

// NewOutputs stages outputs in dir, which must exist.
func NewOutputs(dir string, opts OutputOptions) *Outputs {
	return &Outputs{dir: dir, opts: opts, hash: hasher{cacheDir: opts.CacheDir, memoMin: defaultMemoMinSize}}
}

// Create starts the output file name (a base name in the directory) of the
// given format. The returned file is empty; write it, never close or rename
// it: Publish and Cleanup do.
func (o *Outputs) Create(format, name string) (*os.File, error) {
	if name != filepath.Base(name) || name == SumsFile || name == sign.SignatureName || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("output name %q: want a plain file name other than %s and %s", name, SumsFile, sign.SignatureName)
	}
	for _, s := range o.files {
		if s.name == name {
			return nil, fmt.Errorf("output %s staged twice", name)
		}
	}
	tmp := ".tmp-" + name
	_ = os.Remove(filepath.Join(o.dir, tmp)) // the leftover of an interrupted run
	f, err := atomicfile.Create(filepath.Join(o.dir, name), 0o644, atomicfile.TempName(tmp), atomicfile.NoDirSync())
	if err != nil {
		return nil, err
	}
	o.files = append(o.files, &stagedOutput{format: format, name: name, f: f})
	return f.File, nil
}

// TempPath is where the staged output name is being written, for readers
// (a later format reads the staged raw disk).
func (o *Outputs) TempPath(name string) string {
	for _, s := range o.files {
		if s.name == name {
			return filepath.Join(o.dir, s.f.TempPath())
		}
	}
	return ""
}

// Publish hashes every staged output, renames them all into place and then
// writes SHA256SUMS (signed with OutputOptions.Signer). On an error before the renames nothing appears under a
// final name; Cleanup removes the staged files.
func (o *Outputs) Publish(ctx context.Context) ([]Output, string, error) {
	outs := make([]Output, len(o.files))
	sums := make([]sign.Sum, 0, len(o.files))
	for i, s := range o.files {
		sum, size, err := o.hash.hashFile(ctx, filepath.Join(o.dir, s.f.TempPath()))
		if err != nil {
			return nil, "", fmt.Errorf("checksum %s: %w", filepath.Join(o.dir, s.name), err)
		}
		outs[i] = Output{Format: s.format, Path: filepath.Join(o.dir, s.name), Size: size, SHA256: sum}
		sums = append(sums, sign.Sum{Name: s.name, SHA256: sum})
	}
	sumsPath := filepath.Join(o.dir, SumsFile)
	if o.opts.MergeSums {
		var err error
		if sums, err = mergeSums(sumsPath, sums); err != nil {
			return nil, "", err
		}
	}
	// All outputs are complete: switch them into place, SHA256SUMS last.
	for _, s := range o.files {
		if err := s.f.Commit(); err != nil {
			return nil, "", err
		}
	}
	// Its directory sync makes every rename above durable too.
	if err := sign.WriteSums(o.dir, sums, o.opts.Signer); err != nil {
		return nil, "", err
	}
	o.files = nil
	return outs, sumsPath, nil
}

// Cleanup removes what was staged and not published.
func (o *Outputs) Cleanup() {
	for _, s := range o.files {
		s.f.Cleanup()
	}
	o.files = nil
}

// mergeSums returns the lines of an existing SHA256SUMS, each file in ours
// replacing its old line; lines of files that no longer exist are dropped.
func mergeSums(path string, ours []sign.Sum) ([]sign.Sum, error) {
	old, err := readSums(path)
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, l := range ours {
		mine[l.Name] = true
	}
	var out []sign.Sum
	for _, l := range old {
		if mine[l.Name] {
			continue
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), l.Name)); err != nil {
			continue
		}
		out = append(out, l)
	}
	return append(out, ours...), nil
}

// readSums parses a SHA256SUMS file; a missing file is empty.
func readSums(path string) ([]sign.Sum, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sums, err := sign.ParseSums(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sums, nil
}

// DropSum removes name's line from dir's SHA256SUMS after its file was
// deleted (and the signature, which no longer matches); a list left empty
// is removed.
func DropSum(dir, name string) error {
	path := filepath.Join(dir, SumsFile)
	old, err := readSums(path)
	if err != nil || old == nil {
		return err
	}
	var keep []sign.Sum
	for _, l := range old {
		if l.Name != name {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		if err := os.Remove(filepath.Join(dir, sign.SignatureName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return os.Remove(path)
	}
	return sign.WriteSums(dir, keep, nil)
}

// RemoveOutput deletes a published output and its SHA256SUMS line (an
// artifact Packer destroys).
func RemoveOutput(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return DropSum(filepath.Dir(path), filepath.Base(path))
}
