package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"

	"github.com/ksmg-appliance/ksmg/images/sparse"
	"github.com/ksmg-appliance/ksmg/internal/atomicfile"
)

// defaultMemoMinSize: smaller files are hashed every time.
const defaultMemoMinSize = 1 << 30

// hasher hashes outputs. For large (sparse) files the result is memoised in
// cacheDir under the file's sparse fingerprint (see sparseFingerprint), so
// an unchanged 100 GiB disk is not hashed again on every rebuild.
type hasher struct {
	cacheDir string // "" memoises nothing
	memoMin  int64  // files at least this large are memoised
}

// hashFile returns the SHA-256 and size of a file.
func (h hasher) hashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	var memo string
	if h.cacheDir != "" && st.Size() >= h.memoMin {
		if fp, err := sparseFingerprint(ctx, f); err == nil {
			memo = filepath.Join(h.cacheDir, "sha256", fp)
			if sum, err := os.ReadFile(memo); err == nil && len(strings.TrimSpace(string(sum))) == 64 {
				return strings.TrimSpace(string(sum)), st.Size(), nil
			}
		}
	}
	sha := sha256.New()
	n, err := sparse.WriteTo(ctx, sha, f, st.Size())
	if err != nil {
		return "", 0, err
	}
	sum := hex.EncodeToString(sha.Sum(nil))
	if memo != "" {
		if err := os.MkdirAll(filepath.Dir(memo), 0o755); err == nil {
			_ = atomicfile.WriteFile(memo, []byte(sum+"\n"), 0o644) // a cache: best effort
		}
	}
	return sum, n, nil
}
