package sign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ksmg-appliance/ksmg/images/sparse"
)

// ArtifactError is a verification finding about one file: the signature,
// SHA256SUMS or an artifact that is missing or does not match.
type ArtifactError struct {
	Artifact string // file name in the directory
	Problem  string
}

func (e *ArtifactError) Error() string { return e.Artifact + ": " + e.Problem }

// Report is what a successful verification checked.
type Report struct {
	Dir      string   `json:"dir"`
	Signer   string   `json:"signer"`   // fingerprint of the key that signed SHA256SUMS
	Verified []Sum    `json:"verified"` // every artifact, hashed and matching
	Unlisted []string `json:"unlisted,omitempty"`
}

// VerifyDir checks dir's SHA256SUMS.asc against the key ring, then hashes
// every file SHA256SUMS lists. Every finding is an *ArtifactError (joined
// when there are several: all artifacts are checked, not only up to the
// first bad one); other errors are I/O or cancellation. Files in dir that
// SHA256SUMS does not list are reported in Report.Unlisted, not failed.
func VerifyDir(ctx context.Context, dir string, keys *KeyRing) (*Report, error) {
	sumsData, err := os.ReadFile(filepath.Join(dir, SumsName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &ArtifactError{SumsName, "missing"}
	}
	if err != nil {
		return nil, err
	}
	sig, err := os.Open(filepath.Join(dir, SignatureName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &ArtifactError{SignatureName, "missing: the build was not signed (ksmg build --sign-key)"}
	}
	if err != nil {
		return nil, err
	}
	defer sig.Close()
	signer, err := keys.Check(strings.NewReader(string(sumsData)), sig)
	if err != nil {
		return nil, &ArtifactError{SumsName, "signature does not verify with the given key: " + err.Error()}
	}
	sums, err := ParseSums(sumsData)
	if err != nil {
		return nil, &ArtifactError{SumsName, err.Error()}
	}
	rep := &Report{Dir: dir, Signer: signer}
	var findings []error
	listed := map[string]bool{SumsName: true, SignatureName: true}
	for _, s := range sums {
		listed[s.Name] = true
		got, err := FileSHA256(ctx, filepath.Join(dir, s.Name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			findings = append(findings, &ArtifactError{s.Name, "listed in SHA256SUMS but missing"})
		case err != nil:
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("hash %s: %w", s.Name, err)
		case got != s.SHA256:
			findings = append(findings, &ArtifactError{s.Name, fmt.Sprintf("SHA-256 is %s, SHA256SUMS says %s: the file was changed after signing", got, s.SHA256)})
		default:
			rep.Verified = append(rep.Verified, s)
		}
	}
	if len(findings) > 0 {
		return nil, errors.Join(findings...)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if !listed[e.Name()] && e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			rep.Unlisted = append(rep.Unlisted, e.Name())
		}
	}
	sort.Strings(rep.Unlisted)
	return rep, nil
}

// FileSHA256 hashes a whole file; holes of a sparse file are not read.
func FileSHA256(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := sparse.WriteTo(ctx, h, f, st.Size()); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
