package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ksmg-appliance/ksmg/vhdx"
)

// runCommand runs a fresh command (flags do not leak between runs) and
// returns what it printed.
func runCommand(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// withoutFlag returns args (flag, value pairs) without the pairs of flag.
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] != flag {
			out = append(out, args[i], args[i+1])
		}
	}
	return out
}

// testVHDX writes a small valid VHDX (16 MiB virtual).
func testVHDX(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	if err := os.WriteFile(raw, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 16<<20); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "ksmg.vhdx")
	if err := vhdx.Write(context.Background(), raw, img, vhdx.Options{Identity: "cmd-test"}); err != nil {
		t.Fatal(err)
	}
	return img
}
