package pwshtest

import (
	"bytes"
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

// SMBShare is a share of a test smbd (see SMBServer).
type SMBShare struct {
	Host     string // where smbd listens: 127.0.0.1
	Port     int
	Share    string // the share's name: vms
	Dir      string // the share's folder on this machine
	User     string
	Password string
}

// UNC returns \\host\share followed by the backslash-joined elems.
func (s SMBShare) UNC(elems ...string) string {
	return `\\` + strings.Join(append([]string{s.Host, s.Share}, elems...), `\`)
}

// Config returns the pwsh.NewSMB configuration that logs in to the share.
func (s SMBShare) Config() pwsh.SMBConfig {
	return pwsh.SMBConfig{User: s.User, Password: s.Password, Port: s.Port}
}

// SMBServer runs a real smbd (Debian's samba package) for the test on a
// free loopback port with a throw-away configuration, one writable share
// in a temp directory and one user; it is stopped when the test ends.
// smbd switches to the authenticated user's identity, which needs root:
// without root the test is skipped.
func SMBServer(t testing.TB) SMBShare {
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
	dir := filepath.Join(base, "share")
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
	return SMBShare{Host: "127.0.0.1", Port: port, Share: "vms", Dir: dir, User: "root", Password: pw}
}
