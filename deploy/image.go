package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
)

// Digests computes the "sha256:<hex>" digest of image files once per file
// version (path, size, modification time): a fleet deploys one image many
// times, and a plan compares it with every VM's record. The zero value is
// ready; each Deployer keeps its own.
type Digests struct {
	mu sync.Mutex
	m  map[digestKey]*digestEntry
}

type digestKey struct {
	path        string
	size, mtime int64
}

type digestEntry struct {
	mu     sync.Mutex
	digest string
}

// Digest returns the digest of the image at p.
func (d *Digests) Digest(ctx context.Context, p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	key := digestKey{abs, st.Size(), st.ModTime().UnixNano()}
	d.mu.Lock()
	if d.m == nil {
		d.m = map[digestKey]*digestEntry{}
	}
	e := d.m[key]
	if e == nil {
		e = &digestEntry{}
		d.m[key] = e
	}
	d.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.digest != "" {
		return e.digest, nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hash image %s: %w", p, err)
	}
	e.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return e.digest, nil
}

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

var versionRE = regexp.MustCompile(`-(\d+\.\d+[0-9A-Za-z.+~-]*)\.(?:ova|vhdx)$`)

// VersionFromName is the version in an image's file name as the build
// writes it (<name>-<version>.ova or .vhdx), "" when there is none.
func VersionFromName(p string) string {
	if m := versionRE.FindStringSubmatch(filepath.Base(p)); m != nil {
		return m[1]
	}
	return ""
}

// TempName is the name a replacement VM is deployed under until it is
// swapped in; AsideName the name the old VM gets meanwhile.
func TempName(name string) string  { return name + ".ksmg-new" }
func AsideName(name string) string { return name + ".ksmg-old" }
