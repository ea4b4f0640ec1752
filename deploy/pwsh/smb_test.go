package pwsh_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

func TestParseUNC(t *testing.T) {
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

// samba runs a real smbd (Debian's samba package) on a free loopback port
// with a throw-away configuration, a share in a temp directory and one
// user; it returns the share's directory and the copier's configuration.
// smbd switches to the authenticated user's identity, which needs root.
func samba(t *testing.T) (dir string, cfg pwsh.SMBConfig) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("smbd must run as root to switch to the authenticated user; run the tests as root (CI does)")
	}
	smbd, err := exec.LookPath("smbd")
	if err != nil {
		smbd = "/usr/sbin/smbd"
	}
	if _, err := os.Stat(smbd); err != nil {
		t.Fatalf("smbd not installed (ci/packages.txt lists samba): %v", err)
	}
	base := t.TempDir()
	dir = filepath.Join(base, "share")
	for _, d := range []string{"share", "priv", "state", "lock", "cache", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(base, "smb.conf")
	b := func(s string) string { return filepath.Join(base, s) }
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`[global]
  smb ports = %d
  bind interfaces only = yes
  interfaces = 127.0.0.1
  private dir = %s
  state directory = %s
  lock directory = %s
  cache directory = %s
  pid directory = %s
  ncalrpc dir = %s
  log file = %s
  passdb backend = tdbsam:%s
  server role = standalone server
  server min protocol = SMB2_10
  disable spoolss = yes
  load printers = no
  printing = bsd
  printcap name = /dev/null
[vms]
  path = %s
  read only = no
`, port, b("priv"), b("state"), b("lock"), b("cache"), b("run"), b("run/ncalrpc"), b("log/smbd.log"), b("priv/passdb.tdb"), dir)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "Test-Only-Pw1"
	add := exec.Command("smbpasswd", "-c", conf, "-s", "-a", "root")
	add.Stdin = strings.NewReader(pw + "\n" + pw + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("smbpasswd: %v\n%s", err, out)
	}
	cmd := exec.Command(smbd, "-F", "--no-process-group", "-s", conf, "--debug-stdout", "-d", "1")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("smbd log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smbd did not listen on %d: %v\n%s", port, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return dir, pwsh.SMBConfig{User: "root", Password: pw, Port: port}
}

func TestSMBCopy(t *testing.T) {
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
