package comm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	sdkchroot "github.com/hashicorp/packer-plugin-sdk/chroot"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm/commtest"
)

// confinementCheck is one promise a communicator into a root directory must
// keep. root is the root file system; outside is a host directory that is
// not in it. A check returns nil if the promise held.
type confinementCheck struct {
	name string
	run  func(t *testing.T, c packersdk.Communicator, root, outside string) error
}

// runCmd runs a command line through c and returns its stdout.
func runCmd(t *testing.T, c packersdk.Communicator, line string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := &packersdk.RemoteCmd{Command: line, Stdout: &out, Stderr: &errOut}
	if err := c.Start(context.Background(), cmd); err != nil {
		t.Fatalf("start %q: %v", line, err)
	}
	cmd.Wait()
	return out.String()
}

// hostOnly makes a file that exists on the host only and returns its path.
func hostOnly(t *testing.T, outside, content string) string {
	t.Helper()
	p := filepath.Join(outside, "host-only")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileInfoOf(t *testing.T, mode fs.FileMode) *os.FileInfo {
	t.Helper()
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return &fi
}

var confinementChecks = []confinementCheck{
	{"command substitution expands inside the root, not on the host", func(t *testing.T, c packersdk.Communicator, root, outside string) error {
		secret := hostOnly(t, outside, "host-secret")
		ran := filepath.Join(outside, "ran-on-host")
		out := runCmd(t, c, fmt.Sprintf(`echo "[$(cat %s 2>/dev/null)]"; : $(touch %s)`, quote(secret), quote(ran)))
		if _, err := os.Stat(ran); err == nil {
			return errors.New("the command substitution ran on the host (it created a host file)")
		}
		if strings.Contains(out, "host-secret") {
			return fmt.Errorf("the command read a host file: %q", out)
		}
		if !strings.Contains(out, "[]") {
			return fmt.Errorf("the command did not run inside the root: %q", out)
		}
		return nil
	}},
	{"backticks expand inside the root, not on the host", func(t *testing.T, c packersdk.Communicator, root, outside string) error {
		secret := hostOnly(t, outside, "host-secret")
		ran := filepath.Join(outside, "ran-on-host")
		out := runCmd(t, c, fmt.Sprintf("echo \"[`cat %s 2>/dev/null`]\"; : `touch %s`", quote(secret), quote(ran)))
		if _, err := os.Stat(ran); err == nil {
			return errors.New("the backticks ran on the host (they created a host file)")
		}
		if strings.Contains(out, "host-secret") {
			return fmt.Errorf("the command read a host file: %q", out)
		}
		if !strings.Contains(out, "[]") {
			return fmt.Errorf("the command did not run inside the root: %q", out)
		}
		return nil
	}},
	{"an upload through an absolute symlink stays inside the root", func(t *testing.T, c packersdk.Communicator, root, outside string) error {
		// /escape -> <outside> (absolute): inside the root it means
		// <root><outside>, which exists there too.
		if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
			return err
		}
		err := c.Upload("/escape/uploaded", strings.NewReader("data"), fileInfoOf(t, 0o644))
		if _, serr := os.Stat(filepath.Join(outside, "uploaded")); serr == nil {
			return errors.New("the upload wrote the host directory the symlink names")
		}
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		got, rerr := os.ReadFile(filepath.Join(root, outside, "uploaded"))
		if rerr != nil {
			return fmt.Errorf("the file is not where the root's own view of the path leads: %w", rerr)
		}
		if string(got) != "data" {
			return fmt.Errorf("the root's file has %q, want the upload", got)
		}
		return nil
	}},
	{"an upload directory through an absolute symlink stays inside the root", func(t *testing.T, c packersdk.Communicator, root, outside string) error {
		if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
			return err
		}
		src := filepath.Join(t.TempDir(), "tree")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
			return err
		}
		err := c.UploadDir("/escape", src+"/", nil)
		if _, serr := os.Stat(filepath.Join(outside, "f")); serr == nil {
			return errors.New("the directory upload wrote into the host directory the symlink names")
		}
		if err != nil {
			return fmt.Errorf("upload dir: %w", err)
		}
		if _, err := os.Stat(filepath.Join(root, outside, "f")); err != nil {
			return fmt.Errorf("the file is not inside the root: %w", err)
		}
		return nil
	}},
	{"a download through an absolute symlink reads inside the root", func(t *testing.T, c packersdk.Communicator, root, outside string) error {
		hostOnly(t, outside, "host-secret")
		if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(root, outside), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, outside, "host-only"), []byte("inside"), 0o644); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := c.Download("/escape/host-only", &buf); err != nil {
			return fmt.Errorf("download: %w", err)
		}
		if buf.String() != "inside" {
			return fmt.Errorf("downloaded %q, want the root's file", buf.String())
		}
		return nil
	}},
	{"an upload keeps the mode it is given", func(t *testing.T, c packersdk.Communicator, root, outside string) error {
		if err := c.Upload("/tmp/script.sh", strings.NewReader("#!/bin/sh\n"), fileInfoOf(t, 0o755)); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		st, err := os.Stat(filepath.Join(root, "tmp/script.sh"))
		if err != nil {
			return err
		}
		if st.Mode().Perm() != 0o755 {
			return fmt.Errorf("uploaded file has mode %v, want 0755", st.Mode().Perm())
		}
		return nil
	}},
}

func sdkCommunicator(root string) packersdk.Communicator {
	return &sdkchroot.Communicator{Chroot: root, CmdWrapper: func(s string) (string, error) { return s, nil }}
}

// TestChrootConfinement: our communicator keeps every promise.
func TestChrootConfinement(t *testing.T) {
	t.Parallel()
	for _, c := range confinementChecks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := commtest.MiniRoot(t)
			if err := c.run(t, &Chroot{Root: root}, root, t.TempDir()); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSDKChrootFailsConfinement runs the same checks against the SDK's
// chroot.Communicator: each must fail there, which shows the check can
// tell a confined communicator from one that is not.
func TestSDKChrootFailsConfinement(t *testing.T) {
	t.Parallel()
	for _, c := range confinementChecks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := commtest.MiniRoot(t)
			err := c.run(t, sdkCommunicator(root), root, t.TempDir())
			if err == nil {
				t.Errorf("the SDK's chroot.Communicator passes %q: the check cannot fail", c.name)
			} else {
				t.Logf("SDK communicator: %v", err)
			}
		})
	}
}

// The tests below cover what Packer's stock provisioners do in a Debian
// root.

// TestChrootUploadThroughVarRun: /var/run -> /run leads to <root>/run.
func TestChrootUploadThroughVarRun(t *testing.T) {
	t.Parallel()
	root := commtest.MiniRoot(t)
	c := &Chroot{Root: root}
	var fi os.FileInfo = fileInfo{name: "x", size: 1}
	if err := c.Upload("/var/run/x", strings.NewReader("x"), &fi); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(root, "run/x"))
	if err != nil {
		t.Fatalf("/var/run/x did not land in <root>/run: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the 0600 given", st.Mode().Perm())
	}
}

// TestChrootUploadKeepsOwner: a file owned by a service account keeps its
// owner and mode when an upload without a mode replaces it.
func TestChrootUploadKeepsOwner(t *testing.T) {
	t.Parallel()
	root := commtest.MiniRoot(t)
	c := &Chroot{Root: root}
	owned := filepath.Join(root, "etc/owned.yaml")
	if err := os.WriteFile(owned, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(owned, 950, 950); err != nil {
		t.Fatal(err)
	}
	if err := c.Upload("/etc/owned.yaml", strings.NewReader("new"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(owned)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != 950 || sys.Gid != 950 || st.Mode().Perm() != 0o640 {
		t.Errorf("replaced file: uid %d gid %d mode %v, want 950:950 0640 kept", sys.Uid, sys.Gid, st.Mode().Perm())
	}
	if data, _ := os.ReadFile(owned); string(data) != "new" {
		t.Errorf("content %q", data)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "etc"))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left %s", e.Name())
		}
	}
}

// TestChrootCommand: exit status, stdin, environment, and the root's own
// view of /.
func TestChrootCommand(t *testing.T) {
	t.Parallel()
	root := commtest.MiniRoot(t)
	c := &Chroot{Root: root, Env: []string{"SOURCE_DATE_EPOCH=1735689600"}}
	cmd := &packersdk.RemoteCmd{Command: `read line; echo "$line $SOURCE_DATE_EPOCH"; ls /; exit 3`, Stdin: strings.NewReader("hello\n")}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := c.Start(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	if status := cmd.Wait(); status != 3 {
		t.Errorf("exit status %d, want 3", status)
	}
	if !strings.Contains(out.String(), "hello 1735689600") || strings.Contains(out.String(), "home") {
		t.Errorf("output %q: want stdin and SOURCE_DATE_EPOCH echoed and the root's /, not the host's", out.String())
	}
}

// TestChrootDirRoundTrip: UploadDir and DownloadDir carry a tree with
// modes, a symlink and an excluded file.
func TestChrootDirRoundTrip(t *testing.T) {
	t.Parallel()
	root := commtest.MiniRoot(t)
	c := &Chroot{Root: root}
	src := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "run.sh"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "skip.tmp"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/run.sh", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := c.UploadDir("/opt", src, []string{"*.tmp"}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(root, "opt/tree/sub/run.sh")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("uploaded script: %v %v", st, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "opt/tree/skip.tmp")); err == nil {
		t.Errorf("excluded file uploaded")
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := c.DownloadDir("/opt/tree", back, nil); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(back, "link")); err != nil || l != "sub/run.sh" {
		t.Errorf("downloaded link %q %v", l, err)
	}
	if st, err := os.Stat(filepath.Join(back, "sub")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("downloaded dir: %v %v", st, err)
	}
}
