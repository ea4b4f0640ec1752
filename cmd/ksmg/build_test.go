package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/sign/signtest"
)

// TestBuildRejectsBadInput: a bad spec or an unknown format is a clear
// error with exit status 2, before anything is built.
func TestBuildRejectsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(bad, []byte("name: ksmg\nvesion: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	key, _ := signtest.Key(t, "the passphrase")
	wrong := filepath.Join(dir, "wrong-pass")
	if err := os.WriteFile(wrong, []byte("not the passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"build", "--spec", bad, "--out", out}, []string{bad, "vesion"}},
		{[]string{"build", "--spec=", "--format", "raw,qcow9", "--out", out}, []string{`"qcow9"`, "unknown format", "raw"}},
		// The signing key is unlocked before anything is built.
		{[]string{"build", "--spec=", "--out", out, "--sign-key", filepath.Join(dir, "missing.asc")}, []string{"--sign-key", "missing.asc"}},
		{[]string{"build", "--spec=", "--out", out, "--sign-key", key, "--sign-passphrase-file", wrong}, []string{key, "wrong passphrase"}},
		{[]string{"build", "--spec=", "--out", out, "--sign-passphrase-file", wrong}, []string{"without --sign-key"}},
	} {
		root := newRootCmd(newApp())
		root.SetArgs(tc.args)
		err := root.ExecuteContext(context.Background())
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%v: err = %v, want exit status 2", tc.args, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not mention %q", tc.args, err, w)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: output directory created for a rejected build", tc.args)
		}
	}
}
