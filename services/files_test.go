package services

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInstallCoversEmbeddedFiles checks that every shipped file is installed
// once, from a file that exists, to an absolute path, with a sane mode.
func TestInstallCoversEmbeddedFiles(t *testing.T) {
	t.Parallel()
	files := Files()
	seenDst := map[string]bool{}
	installed := map[string]bool{}
	for _, f := range Install {
		data, err := fs.ReadFile(files, f.Src)
		if err != nil {
			t.Errorf("Install %q: %v", f.Src, err)
			continue
		}
		if len(data) == 0 {
			t.Errorf("Install %q: empty file", f.Src)
		}
		if !path.IsAbs(f.Dst) || path.Clean(f.Dst) != f.Dst {
			t.Errorf("Install %q: destination %q is not a clean absolute path", f.Src, f.Dst)
		}
		if seenDst[f.Dst] {
			t.Errorf("Install: %q listed twice", f.Dst)
		}
		seenDst[f.Dst] = true
		installed[f.Src] = true
		if f.Mode&0o022 != 0 {
			t.Errorf("Install %q: mode %v is group/world writable", f.Src, f.Mode)
		}
		if strings.HasPrefix(string(data), "#!") != (f.Mode&0o111 != 0) {
			t.Errorf("Install %q: mode %v, but script-ness is %v", f.Src, f.Mode, strings.HasPrefix(string(data), "#!"))
		}
	}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !installed[p] {
			t.Errorf("files/%s is embedded but not in Install", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range Enable {
		if !seenDst["/usr/lib/systemd/system/"+u] {
			t.Errorf("Enable %q: unit is not installed", u)
		}
	}
}

// TestDefaultConfigIsTheConfigPackages checks that the installed default
// configuration is the one the gateway's config package ships and tests.
func TestDefaultConfigIsTheConfigPackages(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("config/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := fs.ReadFile(Files(), defaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("Files() serves a ksmg-gateway.yaml different from config/default.yaml")
	}
	i := slices.IndexFunc(Install, func(f File) bool { return f.Src == defaultConfig })
	if i < 0 {
		t.Fatal("default configuration not in Install")
	}
	if f := Install[i]; f.Dst != "/etc/opt/kaspersky/ksmg-gateway.yaml" || f.Mode != 0o640 {
		t.Errorf("default configuration installed as %s %v, want /etc/opt/kaspersky/ksmg-gateway.yaml 0640", f.Dst, f.Mode)
	}
}

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, name string) unit {
	t.Helper()
	data, err := fs.ReadFile(Files(), name)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", name, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// TestGatewayUnitContract checks the directives the issue asks for, which
// `systemd-analyze security` does not score.
func TestGatewayUnitContract(t *testing.T) {
	t.Parallel()
	s := parseUnit(t, "ksmg-gatewayd.service")["Service"]
	for _, c := range []struct{ key, want string }{
		{"Type", "notify"},
		{"WatchdogSec", "30s"},
		{"ExecStart", "/usr/sbin/ksmg-gatewayd --config /etc/opt/kaspersky/ksmg-gateway.yaml --temp-dir /tmp/ksmgtmp --temp-dir /tmp/klms_filter"},
		// Deleted log files are put back after every stop (kluser cannot
		// create them in /var/log).
		{"ExecStopPost", "+/usr/bin/systemd-tmpfiles --create /usr/lib/tmpfiles.d/ksmg.conf"},
		{"ExecReload", `/bin/sh -c 'kill -HUP "$MAINPID"'`},
		{"KillSignal", "SIGTERM"},
		{"RestartPreventExitStatus", "2"},
		{"Restart", "on-failure"},
		{"User", "kluser"},
		{"Group", "kluser"},
		{"AmbientCapabilities", "CAP_NET_BIND_SERVICE"},
		{"CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
		{"ProtectSystem", "strict"},
		{"NoNewPrivileges", "yes"},
		{"UMask", "0027"},
	} {
		if got := s[c.key]; len(got) != 1 || got[0] != c.want {
			t.Errorf("[Service] %s = %q, want exactly %q", c.key, got, c.want)
		}
	}
	sock := parseUnit(t, "ksmg-gatewayd.socket")["Socket"]
	if got := sock["ListenStream"]; len(got) != 1 || got[0] != "25" {
		t.Errorf("socket ListenStream = %q, want 25", got)
	}
}

// run runs a command, returning combined output; it fails the test on a
// missing binary, which is an install bug (ci/packages.txt), not a skip.
func run(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not installed (ci/packages.txt): %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
