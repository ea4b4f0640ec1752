package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/sign"
	"github.com/ksmg-appliance/ksmg/sign/signtest"
)

// signedOut writes a small signed output directory, as ksmg build
// --sign-key leaves it.
func signedOut(t *testing.T, secret string) string {
	t.Helper()
	dir := t.TempDir()
	var sums []sign.Sum
	for name, data := range map[string]string{"ksmg-0.1.0.ova": "an ova", "ksmg-0.1.0.vhdx": "a vhdx", "ksmg-0.1.0.spdx.json": "{}"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		h, err := sign.FileSHA256(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sign.Sum{Name: name, SHA256: h})
	}
	s, err := sign.LoadSigner(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sign.WriteSums(dir, sums, s); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestInspectVerify: a signed output directory verifies; a tampered
// artifact, another key, a missing key each exit 2 and say what is wrong.
// Not parallel: it clears $KSMG_VERIFY_KEY.
func TestInspectVerify(t *testing.T) {
	t.Setenv("KSMG_VERIFY_KEY", "")
	secret, public := signtest.Key(t, "")
	_, other := signtest.Key(t, "")
	dir := signedOut(t, secret)
	out, err := runCommand(t, newInspectCmd(newApp()), "--verify", "--key", public, dir)
	if err != nil {
		t.Fatalf("good directory: %v\n%s", err, out)
	}
	for _, want := range []string{"signed by ", "OK  ", "ksmg-0.1.0.ova", "ksmg-0.1.0.spdx.json"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The SHA256SUMS path works as well as its directory.
	if out, err := runCommand(t, newInspectCmd(newApp()), "--verify", "--key", public, filepath.Join(dir, sign.SumsName)); err != nil {
		t.Fatalf("SHA256SUMS path: %v\n%s", err, out)
	}

	tampered := signedOut(t, secret)
	if err := os.WriteFile(filepath.Join(tampered, "ksmg-0.1.0.vhdx"), []byte("a changed vhdx"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"tampered artifact", []string{"--verify", "--key", public, tampered}, "ksmg-0.1.0.vhdx: SHA-256 is"},
		{"another key", []string{"--verify", "--key", other, dir}, "SHA256SUMS: signature does not verify"},
		{"no key", []string{"--verify", dir}, "--verify needs the release public key"},
		{"not a key", []string{"--verify", "--key", filepath.Join(dir, "ksmg-0.1.0.ova"), dir}, "verification key"},
		{"a file, not the directory", []string{"--verify", "--key", public, filepath.Join(dir, "ksmg-0.1.0.ova")}, "give the output directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCommand(t, newInspectCmd(newApp()), tc.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitDamaged || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (%s), want exit 2 with %q", err, out, tc.want)
			}
		})
	}
}
