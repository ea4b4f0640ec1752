package sign

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/sign/signtest"
)

func throwawayKey(t *testing.T, passphrase string) (secret, public string) {
	return signtest.Key(t, passphrase)
}

func TestLoadSigner(t *testing.T) {
	t.Parallel()
	secret, public := throwawayKey(t, "correct horse battery")
	if _, err := LoadSigner(secret, nil); !errors.Is(err, ErrPassphraseNeeded) {
		t.Errorf("no passphrase: %v, want ErrPassphraseNeeded", err)
	}
	if _, err := LoadSigner(secret, []byte("wrong")); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("wrong passphrase: %v", err)
	}
	s, err := LoadSigner(secret, []byte("correct horse battery"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Fingerprint()) != 40 {
		t.Errorf("fingerprint %q", s.Fingerprint())
	}
	if _, err := LoadSigner(public, nil); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Errorf("public key as signing key: %v", err)
	}
	if err := os.Chmod(secret, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(secret, []byte("correct horse battery")); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(junk, nil); err == nil || !strings.Contains(err.Error(), junk) {
		t.Errorf("junk key: %v", err)
	}
}

func TestReadPassphrase(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(f, []byte("from file\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PassphraseEnv, "from env")
	if p, err := ReadPassphrase(f); err != nil || string(p) != "from file" {
		t.Errorf("file: %q %v", p, err)
	}
	if p, err := ReadPassphrase(""); err != nil || string(p) != "from env" {
		t.Errorf("env: %q %v", p, err)
	}
	t.Setenv(PassphraseEnv, "")
	if p, err := ReadPassphrase(""); err != nil || p != nil {
		t.Errorf("none: %q %v", p, err)
	}
	if _, err := ReadPassphrase(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing passphrase file accepted")
	}
}

// artifacts writes a small output directory: a sparse "disk", an "ova",
// an SBOM; SHA256SUMS over them and its signature by secret.
func artifacts(t *testing.T, secret, passphrase string) string {
	t.Helper()
	dir := t.TempDir()
	disk, err := os.Create(filepath.Join(dir, "ksmg-0.1.0.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 30 << 20, 64<<20 - 4} {
		if _, err := disk.WriteAt([]byte("ksmg"), off); err != nil {
			t.Fatal(err)
		}
	}
	disk.Close()
	for name, data := range map[string]string{"ksmg-0.1.0.ova": "an ova", "ksmg-0.1.0.spdx.json": `{"spdxVersion":"SPDX-2.3"}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var sums []Sum
	for _, n := range []string{"ksmg-0.1.0.raw", "ksmg-0.1.0.ova", "ksmg-0.1.0.spdx.json"} {
		h, err := FileSHA256(context.Background(), filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, Sum{Name: n, SHA256: h})
	}
	var s *Signer
	if secret != "" {
		var err error
		if s, err = LoadSigner(secret, []byte(passphrase)); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteSums(dir, sums, s); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestVerifyDir: a signed directory verifies; every kind of tampering
// fails and names the file.
func TestVerifyDir(t *testing.T) {
	t.Parallel()
	secret, public := throwawayKey(t, "pw")
	_, otherPublic := throwawayKey(t, "")
	keys, err := LoadKeyRing(public)
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadKeyRing(otherPublic)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	dir := artifacts(t, secret, "pw")
	rep, err := VerifyDir(ctx, dir, keys)
	if err != nil {
		t.Fatalf("untouched directory: %v", err)
	}
	if len(rep.Verified) != 3 || len(rep.Signer) != 40 || len(rep.Unlisted) != 0 {
		t.Errorf("report %+v", rep)
	}
	// coreutils' sha256sum agrees with what we listed.
	cmd := exec.Command("sha256sum", "--check", "--strict", SumsName)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name     string
		tamper   func(dir string)
		keys     *KeyRing
		artifact string
		problem  string
	}{
		{"byte flipped in the sparse disk", func(d string) { flip(t, filepath.Join(d, "ksmg-0.1.0.raw"), 30<<20) }, keys, "ksmg-0.1.0.raw", "changed after signing"},
		{"data written into a hole", func(d string) { writeAt(t, filepath.Join(d, "ksmg-0.1.0.raw"), 50<<20, "x") }, keys, "ksmg-0.1.0.raw", "changed after signing"},
		{"ova replaced", func(d string) { write(t, filepath.Join(d, "ksmg-0.1.0.ova"), "another ova") }, keys, "ksmg-0.1.0.ova", "changed after signing"},
		{"sbom removed", func(d string) { os.Remove(filepath.Join(d, "ksmg-0.1.0.spdx.json")) }, keys, "ksmg-0.1.0.spdx.json", "missing"},
		{"sums edited to match a new ova", func(d string) {
			write(t, filepath.Join(d, "ksmg-0.1.0.ova"), "evil")
			h, _ := FileSHA256(ctx, filepath.Join(d, "ksmg-0.1.0.ova"))
			sums, _ := os.ReadFile(filepath.Join(d, SumsName))
			lines := strings.Split(string(sums), "\n")
			for i, l := range lines {
				if strings.HasSuffix(l, "ksmg-0.1.0.ova") {
					lines[i] = h + "  ksmg-0.1.0.ova"
				}
			}
			write(t, filepath.Join(d, SumsName), strings.Join(lines, "\n"))
		}, keys, SumsName, "signature does not verify"},
		{"signature removed", func(d string) { os.Remove(filepath.Join(d, SignatureName)) }, keys, SignatureName, "missing"},
		{"signature garbled", func(d string) {
			write(t, filepath.Join(d, SignatureName), "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n")
		}, keys, SumsName, "signature does not verify"},
		{"another key", func(string) {}, other, SumsName, "signature does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := artifacts(t, secret, "pw")
			tc.tamper(dir)
			_, err := VerifyDir(ctx, dir, tc.keys)
			var ae *ArtifactError
			if !errors.As(err, &ae) {
				t.Fatalf("got %v, want an ArtifactError", err)
			}
			if ae.Artifact != tc.artifact || !strings.Contains(ae.Problem, tc.problem) {
				t.Errorf("got %q, want %s: ...%s...", err, tc.artifact, tc.problem)
			}
		})
	}

	// Two bad artifacts: both are named.
	dir = artifacts(t, secret, "pw")
	write(t, filepath.Join(dir, "ksmg-0.1.0.ova"), "x")
	flip(t, filepath.Join(dir, "ksmg-0.1.0.spdx.json"), 3)
	write(t, filepath.Join(dir, "notes.txt"), "unlisted")
	_, err = VerifyDir(ctx, dir, keys)
	if err == nil || !strings.Contains(err.Error(), "ksmg-0.1.0.ova:") || !strings.Contains(err.Error(), "ksmg-0.1.0.spdx.json:") {
		t.Errorf("two tampered artifacts: %v", err)
	}
}

func TestUnlisted(t *testing.T) {
	t.Parallel()
	secret, public := throwawayKey(t, "")
	keys, err := LoadKeyRing(public)
	if err != nil {
		t.Fatal(err)
	}
	dir := artifacts(t, secret, "")
	write(t, filepath.Join(dir, "ksmg-0.1.0.vhdx"), "added later")
	rep, err := VerifyDir(context.Background(), dir, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unlisted) != 1 || rep.Unlisted[0] != "ksmg-0.1.0.vhdx" {
		t.Errorf("unlisted: %v", rep.Unlisted)
	}
}

func TestParseSums(t *testing.T) {
	t.Parallel()
	h := strings.Repeat("ab", 32)
	good, err := ParseSums([]byte(h + "  a.raw\n" + strings.ToUpper(h) + " *b.ova\n\n"))
	if err != nil || len(good) != 2 || good[1].Name != "b.ova" || good[1].SHA256 != h {
		t.Fatalf("good: %+v %v", good, err)
	}
	for _, bad := range []string{
		"",
		h[:63] + "  a\n",
		strings.Repeat("zz", 32) + "  a\n",
		h + " a\n",
		h + "  ../etc/passwd\n",
		h + "  sub/a\n",
		h + "  ..\n",
		h + "  a\n" + h + "  a\n",
	} {
		if _, err := ParseSums([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, p string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

func flip(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestWriteSumsUnsigned: an unsigned build removes the signature an
// earlier signed build left, which would otherwise stand next to checksums
// it never signed.
func TestWriteSumsUnsigned(t *testing.T) {
	t.Parallel()
	secret, _ := throwawayKey(t, "")
	dir := artifacts(t, secret, "")
	if _, err := os.Stat(filepath.Join(dir, SignatureName)); err != nil {
		t.Fatal(err)
	}
	if err := WriteSums(dir, []Sum{{Name: "ksmg-0.1.0.ova", SHA256: strings.Repeat("0", 64)}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SignatureName)); !os.IsNotExist(err) {
		t.Errorf("stale signature kept: %v", err)
	}
}
