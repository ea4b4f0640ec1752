package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ksmg-appliance/ksmg/appliance"
)

// The package cache. A cold build runs mmdebstrap once against the mirror
// only to collect the .debs, and turns them into a local apt repository
// (pool/ + dists/<suite>/main/binary-amd64/Packages, indexed by
// dpkg-scanpackages, plus a Release file written here). Every build, cold
// or warm, then bootstraps from that repository: a warm rebuild downloads
// nothing (not even indexes) and installs exactly the cached versions,
// which is what makes two builds byte-identical.

// repoKey identifies the package set: same distribution and packages, same
// repository.
func repoKey(s *appliance.Spec) string {
	h := sha256.New()
	d := s.Distribution
	pk := append([]string(nil), s.Packages...)
	sort.Strings(pk)
	fmt.Fprintf(h, "v1\n%s\n%s\n%s\n%s\n%s\n", d.Suite, d.Mirror, strings.Join(d.Components, ","), d.Variant, strings.Join(pk, ","))
	if len(d.Updates) > 0 {
		// Specs without updates keep their cache key (and cache).
		fmt.Fprintf(h, "updates\n%s\n", d.SourcesList())
	}
	return d.Suite + "-amd64-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// mmdebstrapArgs are the options shared by the fetch and the real bootstrap.
func mmdebstrapArgs(s *appliance.Spec) []string {
	return []string{
		"--mode=root",
		"--variant=" + s.Distribution.Variant,
		"--architectures=amd64",
		"--include=" + strings.Join(s.Packages, ","),
		"--aptopt=Acquire::Languages \"none\"",
		"--aptopt=APT::Install-Recommends \"false\"",
		// Documentation and translations are not needed on an appliance;
		// copyright files stay (licences).
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		// AppArmor 4.1 ships ~95 profiles for programs the appliance does
		// not have (browsers, chat clients, sbuild, lxc...). apparmor.service
		// compiles every one at first boot, before sysinit.target: ~10 s
		// under TCG on first boot's critical path. The policy language
		// (abi, abstractions, tunables, local) and the profile of a
		// program the image runs (unix_chkpwd, PAM's helper) stay;
		// ours come from the hardening.
		"--dpkgopt=path-exclude=/etc/apparmor.d/*",
		"--dpkgopt=path-include=/etc/apparmor.d/abi/*",
		"--dpkgopt=path-include=/etc/apparmor.d/abstractions/*",
		"--dpkgopt=path-include=/etc/apparmor.d/tunables/*",
		"--dpkgopt=path-include=/etc/apparmor.d/local/*",
		"--dpkgopt=path-include=/etc/apparmor.d/unix-chkpwd",
	}
}

// ensureRepo returns the local repository for the spec, fetching the
// packages from the mirror first when the cache does not have them.
// fetched reports whether the mirror was used.
func (b *builder) ensureRepo(ctx context.Context) (repo string, fetched bool, err error) {
	repo = filepath.Join(b.opts.CacheDir, "repo", repoKey(b.spec))
	if _, err := os.Stat(filepath.Join(repo, "dists", b.spec.Distribution.Suite, "Release")); err == nil {
		return repo, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(repo), 0o755); err != nil {
		return "", false, fmt.Errorf("package cache: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(repo), ".fetch-")
	if err != nil {
		return "", false, fmt.Errorf("package cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	pool := filepath.Join(tmp, "pool")
	if err := os.MkdirAll(pool, 0o755); err != nil {
		return "", false, err
	}
	d := b.spec.Distribution
	// Every suite (release, updates, security): apt takes the newest version
	// of each package among them, and the cache keeps exactly those.
	args := append(mmdebstrapArgs(b.spec),
		"--skip=download/empty", "--skip=essential/unlink", "--skip=cleanup/apt/cache",
		"--customize-hook=sync-out /var/cache/apt/archives "+pool,
		d.Suite, "/dev/null")
	for _, src := range d.Sources() {
		args = append(args, fmt.Sprintf("deb %s %s %s", src.URI, src.Suite, strings.Join(d.Components, " ")))
	}
	b.stage("fetch packages", "mirror", d.Mirror)
	if err := b.run(ctx, nil, "mmdebstrap", args...); err != nil {
		return "", false, fmt.Errorf("fetch packages from %s: %w", d.Mirror, err)
	}
	// Only .debs belong in the pool (apt leaves lock and partial/).
	ents, err := os.ReadDir(pool)
	if err != nil {
		return "", false, err
	}
	n := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".deb") {
			if err := os.RemoveAll(filepath.Join(pool, e.Name())); err != nil {
				return "", false, err
			}
			continue
		}
		n++
	}
	if n == 0 {
		return "", false, fmt.Errorf("fetch packages: mmdebstrap left no .deb files")
	}
	if err := writeRepoIndex(ctx, tmp, d.Suite); err != nil {
		return "", false, err
	}
	if _, err := os.Stat(filepath.Join(repo, "dists", d.Suite, "Release")); err == nil {
		return repo, true, nil // a concurrent build filled it first
	}
	_ = os.RemoveAll(repo) // an incomplete earlier attempt has no Release and is replaced
	if err := os.Rename(tmp, repo); err != nil {
		if _, serr := os.Stat(filepath.Join(repo, "dists", d.Suite, "Release")); serr == nil {
			return repo, true, nil
		}
		return "", false, fmt.Errorf("package cache: %w", err)
	}
	b.log.Info("package cache filled", "packages", n, "repo", repo)
	return repo, true, nil
}

// writeRepoIndex writes Packages (dpkg-scanpackages) and a Release file
// whose Suite/Codename let mmdebstrap find the Essential set by suite.
func writeRepoIndex(ctx context.Context, repo, suite string) error {
	cmd := exec.CommandContext(ctx, "dpkg-scanpackages", "--multiversion", "pool", "/dev/null")
	cmd.Dir = repo
	var stderr strings.Builder
	cmd.Stderr = &stderr
	packages, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("dpkg-scanpackages: %w: %s", err, stderr.String())
	}
	rel := filepath.Join("main", "binary-amd64", "Packages")
	dist := filepath.Join(repo, "dists", suite)
	if err := os.MkdirAll(filepath.Join(dist, filepath.Dir(rel)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dist, rel), packages, 0o644); err != nil {
		return err
	}
	sum := sha256.Sum256(packages)
	release := "Origin: ksmg-cache\nLabel: ksmg-cache\nSuite: " + suite + "\nCodename: " + suite +
		"\nArchitectures: amd64\nComponents: main\nDate: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n " +
		hex.EncodeToString(sum[:]) + " " + strconv.Itoa(len(packages)) + " " + rel + "\n"
	return os.WriteFile(filepath.Join(dist, "Release"), []byte(release), 0o644)
}

// bootstrap builds the root file system in dir from the local repository.
func (b *builder) bootstrap(ctx context.Context, repo, dir string) error {
	s := b.spec
	// The driver list and our hook must be in place before the kernel
	// package builds the initramfs; our package ships the same files
	// later, so dpkg owns them.
	var setup strings.Builder
	for _, f := range initramfsFiles(s) {
		fmt.Fprintf(&setup, "mkdir -p \"$1%s\" && printf '%%s' %s > \"$1%s\" && chmod %o \"$1%s\"\n",
			filepath.Dir(f.path), shellQuote(string(f.data)), f.path, f.mode, f.path)
	}
	args := append(mmdebstrapArgs(s),
		"--setup-hook="+setup.String(),
		"--customize-hook="+languageHook(),
		s.Distribution.Suite, dir,
		// copy://: apt copies the .debs into the chroot; no bind mount
		// (file://) that a failed run could leave behind.
		fmt.Sprintf("deb [trusted=yes] copy://%s %s main", repo, s.Distribution.Suite))
	return b.run(ctx, nil, "mmdebstrap", args...)
}
