package provisioner

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// PackageFile is one file of a Debian package.
type PackageFile struct {
	Dst  string // absolute path in the image
	Data []byte
	Mode fs.FileMode
}

// Package describes the Debian package that carries our files into the
// image, so dpkg knows every file we ship.
type Package struct {
	Name        string
	Version     string
	Maintainer  string
	Description string
	Depends     []string
	Files       []PackageFile
	// MTime is every file's and the archive's time (SOURCE_DATE_EPOCH), which
	// makes the package reproducible.
	MTime time.Time
}

// BuildDeb builds the package with nfpm. stage is a scratch directory for
// the file contents (nfpm reads sources from disk).
func BuildDeb(p Package, stage string) ([]byte, error) {
	if p.MTime.IsZero() {
		return nil, fmt.Errorf("deb %s: MTime (SOURCE_DATE_EPOCH) not set", p.Name)
	}
	files := append([]PackageFile(nil), p.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Dst < files[j].Dst })
	var contents []*filesContent
	seen := map[string]bool{}
	for i, f := range files {
		if !path.IsAbs(f.Dst) || path.Clean(f.Dst) != f.Dst {
			return nil, fmt.Errorf("deb %s: file destination %q is not a clean absolute path", p.Name, f.Dst)
		}
		if seen[f.Dst] {
			return nil, fmt.Errorf("deb %s: two files for %s", p.Name, f.Dst)
		}
		seen[f.Dst] = true
		src := filepath.Join(stage, fmt.Sprintf("%04d", i))
		if err := os.WriteFile(src, f.Data, 0o600); err != nil {
			return nil, fmt.Errorf("deb %s: stage %s: %w", p.Name, f.Dst, err)
		}
		contents = append(contents, &filesContent{Source: src, Destination: f.Dst, Mode: f.Mode, Size: int64(len(f.Data))})
	}
	info := &nfpm.Info{
		Name:          p.Name,
		Arch:          "amd64",
		Platform:      "linux",
		Version:       p.Version,
		VersionSchema: "none",
		Maintainer:    p.Maintainer,
		Description:   p.Description,
		Section:       "admin",
		Priority:      "optional",
		MTime:         p.MTime.UTC(),
		Overridables:  nfpm.Overridables{Depends: p.Depends},
	}
	for _, c := range contents {
		info.Contents = append(info.Contents, c.nfpm(info.MTime))
	}
	info = nfpm.WithDefaults(info)
	var buf bytes.Buffer
	if err := deb.Default.Package(info, &buf); err != nil {
		return nil, fmt.Errorf("deb %s: %w", p.Name, err)
	}
	return buf.Bytes(), nil
}

type filesContent struct {
	Source, Destination string
	Mode                fs.FileMode
	Size                int64
}

func (c *filesContent) nfpm(mtime time.Time) *files.Content {
	return &files.Content{
		Source:      c.Source,
		Destination: c.Destination,
		Type:        files.TypeFile,
		FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: c.Mode, MTime: mtime, Size: c.Size},
	}
}
