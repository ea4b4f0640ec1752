package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
)

// SumsFile is the checksum list written next to the outputs, in the format
// of sha256sum(1).
const SumsFile = "SHA256SUMS"

// Outputs stages output files in one directory and switches them into place
// together. It is the one layer that owns temp-and-rename for the build's
// outputs (and the Packer post-processors'): each file is written under a
// temporary name (".tmp-<name>", which a later build removes if this one is
// interrupted), and Publish hashes them, renames them all and writes
// SHA256SUMS last, whose directory sync makes every rename durable. The
// format writers only write into the file they are given.
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
	if name != filepath.Base(name) || name == SumsFile || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("output name %q: want a plain file name other than %s", name, SumsFile)
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
// writes SHA256SUMS. On an error before the renames nothing appears under a
// final name; Cleanup removes the staged files.
func (o *Outputs) Publish(ctx context.Context) ([]Output, string, error) {
	outs := make([]Output, len(o.files))
	sums := make([][2]string, 0, len(o.files))
	for i, s := range o.files {
		sum, size, err := o.hash.hashFile(ctx, filepath.Join(o.dir, s.f.TempPath()))
		if err != nil {
			return nil, "", fmt.Errorf("checksum %s: %w", filepath.Join(o.dir, s.name), err)
		}
		outs[i] = Output{Format: s.format, Path: filepath.Join(o.dir, s.name), Size: size, SHA256: sum}
		sums = append(sums, [2]string{sum, s.name})
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
	var text strings.Builder
	for _, l := range sums {
		fmt.Fprintf(&text, "%s  %s\n", l[0], l[1])
	}
	// Its directory sync makes every rename above durable too.
	if err := atomicfile.WriteFile(sumsPath, []byte(text.String()), 0o644); err != nil {
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
// replacing its old line in place and new ones appended; lines of files
// that no longer exist are dropped.
func mergeSums(path string, ours [][2]string) ([][2]string, error) {
	old, err := readSums(path)
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	var out [][2]string
	for _, l := range old {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), l[1])); err != nil {
			continue
		}
		idx[l[1]] = len(out)
		out = append(out, l)
	}
	for _, l := range ours {
		if i, ok := idx[l[1]]; ok {
			out[i] = l
			continue
		}
		idx[l[1]] = len(out)
		out = append(out, l)
	}
	return out, nil
}

// readSums parses a SHA256SUMS file ("<64 hex>  <name>" lines); a missing
// file is empty.
func readSums(path string) ([][2]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][2]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if _, herr := hex.DecodeString(sum); !ok || herr != nil || len(sum) != 2*sha256.Size || name == "" {
			return nil, fmt.Errorf("%s:%d: want \"<sha256 hex>  <file name>\", got %q", path, n, sc.Text())
		}
		out = append(out, [2]string{sum, name})
	}
	return out, sc.Err()
}

// DropSum removes name's line from dir's SHA256SUMS after its file was
// deleted; a list left empty is removed.
func DropSum(dir, name string) error {
	path := filepath.Join(dir, SumsFile)
	old, err := readSums(path)
	if err != nil || old == nil {
		return err
	}
	var text strings.Builder
	for _, l := range old {
		if l[1] != name {
			fmt.Fprintf(&text, "%s  %s\n", l[0], l[1])
		}
	}
	if text.Len() == 0 {
		return os.Remove(path)
	}
	return atomicfile.WriteFile(path, []byte(text.String()), 0o644)
}

// RemoveOutput deletes a published output and its SHA256SUMS line (an
// artifact Packer destroys).
func RemoveOutput(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return DropSum(filepath.Dir(path), filepath.Base(path))
}
