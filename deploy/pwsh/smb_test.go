package pwsh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
)

func TestParseUNC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want pwsh.UNC
		err  string
	}{
		{`\\hv1.example.com\VMs$\ksmg-1\ksmg-1.vhdx`, pwsh.UNC{"hv1.example.com", "VMs$", `ksmg-1\ksmg-1.vhdx`}, ""},
		{`//hv1/VMs/disk.vhdx`, pwsh.UNC{"hv1", "VMs", `disk.vhdx`}, ""},
		{`\\hv1\VMs`, pwsh.UNC{}, `want \\server\share\path`},
		{`\\hv1\VMs\`, pwsh.UNC{}, `bad element ""`},
		{`\\hv1\VMs\..\x`, pwsh.UNC{}, `bad element ".."`},
		{`\\hv1\VMs\a\\b`, pwsh.UNC{}, `bad element ""`},
		{`\\hv1\VMs\C:x`, pwsh.UNC{}, `bad element`},
		{`D:\VMs\x.vhdx`, pwsh.UNC{}, `must start with`},
		{`\\\VMs\x`, pwsh.UNC{}, `want \\server\share\path`},
	}
	for _, tc := range tests {
		got, err := pwsh.ParseUNC(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseUNC(%q) = %+v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseUNC(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// samba starts a real smbd (pwshtest.SMBServer) and returns the share's
// directory and the copier's configuration.
func samba(t *testing.T) (dir string, cfg pwsh.SMBConfig) {
	t.Helper()
	s := pwshtest.SMBServer(t)
	return s.Dir, s.Config()
}

func TestSMBCopy(t *testing.T) {
	t.Parallel()
	dir, cfg := samba(t)
	c, err := pwsh.NewSMB(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "disk.vhdx")
	data := bytes.Repeat([]byte("ksmg disk block\n"), 300000) // ~4.8 MB: several writes
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var last, calls int64
	progress := func(done, total int64) {
		if total != int64(len(data)) || done < last {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last, calls = done, calls+1
	}
	remote := `\\127.0.0.1\vms\node-1\node-1.vhdx`
	if err := c.Copy(context.Background(), src, remote, progress); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "node-1", "node-1.vhdx"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied file differs (%d of %d bytes): %v", len(got), len(data), err)
	}
	if last != int64(len(data)) || calls < 2 {
		t.Errorf("progress ended at %d after %d calls, want %d", last, calls, len(data))
	}

	// A second copy replaces the file (a re-run after a changed image).
	data2 := []byte("smaller image")
	if err := os.WriteFile(src, data2, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Copy(context.Background(), src, remote, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "node-1", "node-1.vhdx")); !bytes.Equal(got, data2) {
		t.Fatalf("second copy: got %q", got)
	}
	assertOnly(t, filepath.Join(dir, "node-1"), "node-1.vhdx")
}

// TestSMBCancel cancels in the middle of a copy: the error says so, and
// neither the final name nor the temporary file is left on the share.
func TestSMBCancel(t *testing.T) {
	t.Parallel()
	dir, cfg := samba(t)
	c, err := pwsh.NewSMB(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "disk.vhdx")
	if err := os.WriteFile(src, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = c.Copy(ctx, src, `\\127.0.0.1\vms\n2\n2.vhdx`, func(done, total int64) {
		if done > 2<<20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy after cancel: %v, want context.Canceled", err)
	}
	assertOnly(t, filepath.Join(dir, "n2"))
}

func TestSMBBadLogin(t *testing.T) {
	t.Parallel()
	_, cfg := samba(t)
	cfg.Password = "wrong"
	c, err := pwsh.NewSMB(cfg)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "d")
	if err := os.WriteFile(src, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = c.Copy(context.Background(), src, `\\127.0.0.1\vms\x\d`, nil)
	if err == nil || !strings.Contains(err.Error(), "log in as root") {
		t.Fatalf("Copy with a wrong password: %v", err)
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}
