package comm

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/ksmg-appliance/ksmg/provisioner"

	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm/commtest"
)

// tree lists everything under dir that is not one of the copied tools:
// type, mode, owner, content or link target.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, skip := range []string{"usr", "lib", "lib64", "proc", "bin"} {
			if rel == skip {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d", rel, st.Mode(), sys.Uid, sys.Gid)
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case st.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			line += " " + string(data)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// TestTargetMatchesDirTarget runs the same provisioning steps through
// DirTarget (what `ksmg build` uses) and through Target over our Chroot
// communicator (what the Packer provisioners use): the trees must match.
func TestTargetMatchesDirTarget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	steps := []provisioner.Step{
		provisioner.MakeDirs([]provisioner.Dir{
			{Path: "/etc/opt/kaspersky", Owner: "kluser", Group: "kluser", Mode: 0o750, Recursive: true},
			{Path: "/var/opt/kaspersky/ksmg", Owner: "kluser", Group: "kluser", Mode: 0o750},
			{Path: "/srv/shared", Owner: "root", Group: "kluser", Mode: fs.ModeSetgid | 0o770},
		}),
		provisioner.WriteFiles([]provisioner.PackageFile{
			{Dst: "/etc/hostname", Data: []byte("ksmg\n"), Mode: 0o644},
			{Dst: "/etc/opt/kaspersky/it's $(weird) `name`.yaml", Data: []byte("a: '1'\n"), Mode: 0o640},
			{Dst: "/usr/local/sbin/tool", Data: []byte("#!/bin/sh\n"), Mode: 0o755},
		}),
		{Name: "owned file", Do: func(ctx context.Context, t provisioner.Target) error {
			return t.WriteFile(ctx, "/etc/opt/kaspersky/ksmg-gateway.yaml", []byte("x: 1\n"), 0o640, "kluser", "kluser")
		}},
		{Name: "links", Do: func(ctx context.Context, t provisioner.Target) error {
			if err := t.Symlink(ctx, "/dev/null", "/etc/systemd/system/systemd-firstboot.service"); err != nil {
				return err
			}
			return t.Symlink(ctx, "../run/x", "/etc/systemd/system/systemd-firstboot.service")
		}},
		provisioner.CheckAccounts([]provisioner.Account{{Name: "kluser", UID: 950}}),
	}
	a, b := commtest.MiniRoot(t), commtest.MiniRoot(t)
	if err := provisioner.Apply(ctx, &provisioner.DirTarget{Root: a}, slog.New(slog.DiscardHandler), steps...); err != nil {
		t.Fatalf("DirTarget: %v", err)
	}
	ct := &Target{Comm: &Chroot{Root: b}}
	if err := provisioner.Apply(ctx, ct, slog.New(slog.DiscardHandler), steps...); err != nil {
		t.Fatalf("Target over Chroot: %v", err)
	}
	if err := ct.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// DirTarget writes through the host; Target stages in /tmp, which it
	// must leave as it found it.
	ta, tb := tree(t, a), tree(t, b)
	if len(ta) < 15 {
		t.Fatalf("tree lists only %d entries: %v", len(ta), ta)
	}
	if strings.Join(ta, "\n") != strings.Join(tb, "\n") {
		t.Errorf("trees differ\nDirTarget:\n%s\n\nTarget over Chroot:\n%s", strings.Join(ta, "\n"), strings.Join(tb, "\n"))
	}

	// A failing step reports the command's output and leaves no temporary file.
	err := ct.WriteFile(ctx, "/etc/x", []byte("x"), 0o644, "nobody7", "")
	if err == nil || !strings.Contains(err.Error(), "nobody7") {
		t.Errorf("unknown owner: err = %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(b, "etc")); len(ents) > 0 {
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("left %s", e.Name())
			}
		}
	}
	if _, err := ct.Run(ctx, "getent", "passwd", "nobody7"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("failing command: err = %v, want its exit status", err)
	}
	if err := provisioner.CheckAccounts([]provisioner.Account{{Name: "kluser", UID: 951}}).Do(ctx, ct); err == nil || !strings.Contains(err.Error(), `uid "950", spec says 951`) {
		t.Errorf("wrong uid: err = %v", err)
	}
}

// TestTargetQuoting: arguments reach the program as they are, whatever
// the shell would make of them.
func TestTargetQuoting(t *testing.T) {
	t.Parallel()
	root := commtest.MiniRoot(t)
	ct := &Target{Comm: &Chroot{Root: root}}
	for _, arg := range []string{"plain", "two words", "it's", `$(touch /tmp/pwned)`, "`touch /tmp/pwned`", `a"b\c`, "*", "", "line\nbreak", "-n"} {
		out, err := ct.Run(context.Background(), "printf", "[%s]", arg)
		if err != nil {
			t.Fatalf("%q: %v", arg, err)
		}
		if string(out) != "["+arg+"]" {
			t.Errorf("argument %q arrived as %q", arg, out)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "tmp/pwned")); err == nil {
		t.Errorf("an argument was run as a command")
	}
}
