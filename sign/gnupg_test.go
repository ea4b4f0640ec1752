package sign

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// GnuPG is the real peer: an admin checks our SHA256SUMS.asc with gpgv,
// and a release key may well have been made with gpg.

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not installed (Debian package gnupg/gpgv, in ci/packages.txt): %v", name, err)
	}
}

// gnupgHome is a private GnuPG home; its agent is stopped at the end.
func gnupgHome(t *testing.T) string {
	t.Helper()
	needTool(t, "gpg")
	home := t.TempDir()
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	return home
}

// gpg runs gpg in home with stdin (the passphrase, when loopback asks).
func gpg(t *testing.T, home, stdin string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func gpgv(keyring, sig, data string) ([]byte, error) {
	return exec.Command("gpgv", "--keyring", keyring, sig, data).CombinedOutput()
}

// TestGpgvVerifiesOurSignature: what ksmg build writes, gpgv accepts; a
// changed SHA256SUMS it rejects.
func TestGpgvVerifiesOurSignature(t *testing.T) {
	t.Parallel()
	needTool(t, "gpgv")
	secret, public := throwawayKey(t, "pw")
	s, err := LoadSigner(secret, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, SumsName)
	sums := FormatSums([]Sum{{Name: "ksmg-0.1.0.raw", SHA256: strings.Repeat("0", 64)}})
	write(t, data, string(sums))
	var sig bytes.Buffer
	if err := s.Sign(&sig, bytes.NewReader(sums)); err != nil {
		t.Fatal(err)
	}
	sigPath := filepath.Join(dir, SignatureName)
	write(t, sigPath, sig.String())
	if out, err := gpgv(public, sigPath, data); err != nil {
		t.Fatalf("gpgv rejects our signature: %v\n%s", err, out)
	} else if !strings.Contains(string(out), s.Fingerprint()[24:]) && !strings.Contains(string(out), s.Fingerprint()) {
		t.Errorf("gpgv output does not name our key %s:\n%s", s.Fingerprint(), out)
	}
	write(t, data, strings.Replace(string(sums), "0000", "0001", 1))
	if out, err := gpgv(public, sigPath, data); err == nil {
		t.Fatalf("gpgv accepts a changed SHA256SUMS:\n%s", out)
	}
}

// TestGnuPGKey: a passphrase-protected key made by gpg signs through
// LoadSigner (gpgv checks it), and gpg's own detached signature verifies
// with our KeyRing.
func TestGnuPGKey(t *testing.T) {
	t.Parallel()
	needTool(t, "gpgv")
	home := gnupgHome(t)
	const pass = "gpg test passphrase"
	loopback := []string{"--pinentry-mode", "loopback", "--passphrase-fd", "0"}
	gpg(t, home, pass, append(loopback, "--quick-gen-key", "ksmg gpg test <gpg@ksmg.invalid>", "ed25519", "sign", "never")...)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.asc")
	if err := os.WriteFile(secret, gpg(t, home, pass, append(loopback, "--armor", "--export-secret-keys")...), 0o600); err != nil {
		t.Fatal(err)
	}
	public := filepath.Join(dir, "public.gpg")
	write(t, public, string(gpg(t, home, "", "--export")))

	if _, err := LoadSigner(secret, []byte("not it")); err == nil {
		t.Fatal("gpg key unlocked with a wrong passphrase")
	}
	s, err := LoadSigner(secret, []byte(pass))
	if err != nil {
		t.Fatalf("LoadSigner on gpg's key: %v", err)
	}
	data := filepath.Join(dir, SumsName)
	write(t, data, strings.Repeat("a", 64)+"  ksmg-0.1.0.ova\n")
	var sig bytes.Buffer
	f, _ := os.Open(data)
	err = s.Sign(&sig, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(dir, "ours.asc")
	write(t, ours, sig.String())
	if out, err := gpgv(public, ours, data); err != nil {
		t.Fatalf("gpgv rejects our signature with gpg's key: %v\n%s", err, out)
	}

	theirs := filepath.Join(dir, "theirs.asc")
	gpg(t, home, pass, append(loopback, "--armor", "--detach-sign", "--output", theirs, data)...)
	keys, err := LoadKeyRing(public)
	if err != nil {
		t.Fatal(err)
	}
	sigFile, _ := os.Open(theirs)
	defer sigFile.Close()
	msg, _ := os.Open(data)
	defer msg.Close()
	fp, err := keys.Check(msg, sigFile)
	if err != nil {
		t.Fatalf("gpg's signature does not verify here: %v", err)
	}
	if fp != s.Fingerprint() {
		t.Errorf("signer %s, want %s", fp, s.Fingerprint())
	}
}
