package services

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ksmg-appliance/ksmg/internal/unitcheck"
)

// writeUnits copies the shipped units into a directory, with edit applied.
func writeUnits(t *testing.T, edit func(name, text string) string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range Install {
		if !strings.HasPrefix(f.Dst, "/usr/lib/systemd/system/") {
			continue
		}
		data, err := fs.ReadFile(Files(), f.Src)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if edit != nil {
			text = edit(f.Src, text)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Dst)), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exposure rates a unit file with systemd-analyze security (see unitcheck).
func exposure(t *testing.T, unitFile string, max float64) (float64, error) {
	t.Helper()
	level, out, err := unitcheck.Exposure(unitFile, max)
	if err != nil {
		err = fmt.Errorf("%w\n%s", err, out)
	}
	return level, err
}

// TestUnitsSecurityExposure: both services must score at most 1.5 (maddy's
// unit scores 3.7, Debian's Postfix 9.6).
func TestUnitsSecurityExposure(t *testing.T) {
	t.Parallel()
	dir := writeUnits(t, nil)
	for _, name := range []string{"ksmg-gatewayd.service", "ksmg-logrotate.service"} {
		t.Run(name, func(t *testing.T) {
			level, err := exposure(t, filepath.Join(dir, name), 1.5)
			t.Logf("%s: exposure %.1f", name, level)
			if err != nil || level > 1.5 {
				t.Errorf("exposure %.1f, want <= 1.5: %v", level, err)
			}
		})
	}
}

// TestSecurityThresholdControl proves the check above can fail: the gateway
// unit without its sandbox lines must be rejected at the same threshold.
func TestSecurityThresholdControl(t *testing.T) {
	t.Parallel()
	keep := map[string]bool{"Type": true, "ExecStart": true, "User": true, "Group": true}
	dir := writeUnits(t, func(name, text string) string {
		var b strings.Builder
		for _, line := range strings.Split(text, "\n") {
			k, _, ok := strings.Cut(line, "=")
			if !ok || keep[k] {
				b.WriteString(line + "\n")
			}
		}
		return b.String()
	})
	level, err := exposure(t, filepath.Join(dir, "ksmg-gatewayd.service"), 1.5)
	if err == nil {
		t.Fatalf("unhardened unit passed the threshold with exposure %.1f", level)
	}
	t.Logf("unhardened control: exposure %.1f, rejected", level)
}

// gatewayBinary is the built ksmg-gatewayd: from $KSMG_BIN_DIR (make test),
// else built once for this test binary.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("KSMG_BIN_DIR"); dir != "" {
		bin := filepath.Join(dir, "ksmg-gatewayd")
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("KSMG_BIN_DIR is set but: %v", err)
		}
		return bin
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "ksmg-services-test-")
		if built.err != nil {
			return
		}
		bin := filepath.Join(built.dir, "ksmg-gatewayd")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/ksmg-appliance/ksmg/cmd/ksmg-gatewayd").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("building ksmg-gatewayd: %w\n%s", err, out)
		}
		built.bin = bin
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// TestUnitsVerify runs `systemd-analyze verify` on all shipped units; any
// warning fails. The daemon path is pointed at the real built binary, since
// verify checks that ExecStart= is executable.
func TestUnitsVerify(t *testing.T) {
	t.Parallel()
	bin := gatewayBinary(t)
	dir := writeUnits(t, func(name, text string) string {
		return strings.ReplaceAll(text, "/usr/sbin/ksmg-gatewayd ", bin+" ")
	})
	var units []string
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		units = append(units, filepath.Join(dir, e.Name()))
	}
	out, err := run(t, nil, "systemd-analyze", append([]string{"verify", "--man=no"}, units...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestGatewayWritePathsMatchDefaultConfig: every directory the default
// configuration writes to must be writable under ProtectSystem=strict.
func TestGatewayWritePathsMatchDefaultConfig(t *testing.T) {
	t.Parallel()
	var cfg struct {
		SpoolDir string `yaml:"spool_dir"`
		TLS      struct {
			CertFile string `yaml:"cert_file"`
			KeyFile  string `yaml:"key_file"`
		} `yaml:"tls"`
		Backup struct {
			Dir string `yaml:"dir"`
		} `yaml:"backup"`
		Logging struct {
			MessagesFile  string `yaml:"messages_file"`
			ImportantFile string `yaml:"important_file"`
			TraceDir      string `yaml:"trace_dir"`
			EventsDir     string `yaml:"events_dir"`
		} `yaml:"logging"`
	}
	data, err := fs.ReadFile(Files(), defaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("default configuration: %v", err)
	}
	var rw []string
	for _, v := range parseUnit(t, "ksmg-gatewayd.service")["Service"]["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			rw = append(rw, strings.TrimPrefix(p, "-"))
		}
	}
	for _, p := range []string{
		cfg.SpoolDir, cfg.Backup.Dir, cfg.Logging.EventsDir, cfg.Logging.TraceDir,
		filepath.Dir(cfg.TLS.CertFile), filepath.Dir(cfg.TLS.KeyFile),
		cfg.Logging.MessagesFile, cfg.Logging.ImportantFile,
	} {
		ok := false
		for _, w := range rw {
			if p == w || strings.HasPrefix(p, w+"/") {
				ok = true
			}
		}
		if p == "" || !ok {
			t.Errorf("default configuration writes %q, not under ReadWritePaths %q", p, rw)
		}
	}
}

// TestSysusersTmpfiles applies the shipped sysusers.d and tmpfiles.d files to
// an empty root with the real systemd-sysusers and systemd-tmpfiles.
func TestSysusersTmpfiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, d := range []string{"etc", "usr/lib/sysusers.d", "usr/lib/tmpfiles.d", "etc/opt/kaspersky"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// What Debian's base-passwd provides before any package's sysusers.d.
	mustWrite(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n", 0o644)
	mustWrite(t, filepath.Join(root, "etc/group"), "root:x:0:\n", 0o644)
	mustWrite(t, filepath.Join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", 0o640)
	for _, f := range Install {
		if f.Src == "sysusers.conf" || f.Src == "tmpfiles.conf" {
			data, err := fs.ReadFile(Files(), f.Src)
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(root, f.Dst), string(data), 0o644)
		}
	}
	if out, err := run(t, nil, "systemd-sysusers", "--root="+root); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	pw := readDB(t, filepath.Join(root, "etc/passwd"))["kluser"]
	if pw == nil {
		t.Fatal("systemd-sysusers created no kluser in /etc/passwd")
	}
	uid, _ := strconv.Atoi(pw[2])
	gid, _ := strconv.Atoi(pw[3])
	if uid <= 0 || uid >= 1000 {
		t.Errorf("kluser uid %d, want a system uid (1-999)", uid)
	}
	if pw[5] != "/var/opt/kaspersky" || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("kluser home %q shell %q, want /var/opt/kaspersky /usr/sbin/nologin", pw[5], pw[6])
	}
	gr := readDB(t, filepath.Join(root, "etc/group"))["kluser"]
	if gr == nil || gr[2] != strconv.Itoa(gid) {
		t.Errorf("group kluser %q, want gid %d (kluser's primary group)", gr, gid)
	}
	if sh := readDB(t, filepath.Join(root, "etc/shadow"))["kluser"]; sh == nil || !strings.HasPrefix(sh[1], "!") {
		t.Errorf("kluser shadow entry %q, want a locked password", sh)
	}

	// The config file as the image installs it: kluser-owned (data contract),
	// but with a drifted mode that tmpfiles must put back to 0640. A root-owned
	// file here would be an unsafe path transition that tmpfiles refuses.
	cfg := filepath.Join(root, "etc/opt/kaspersky/ksmg-gateway.yaml")
	mustWrite(t, cfg, "{}\n", 0o644)
	if err := os.Chown(cfg, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Dir(cfg), uid, gid); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, nil, "systemd-tmpfiles", "--root="+root, "--create"); err != nil {
		t.Fatalf("systemd-tmpfiles --create: %v\n%s", err, out)
	}
	for _, c := range []struct {
		path     string
		dir      bool
		mode     fs.FileMode
		uid, gid int
	}{
		{"/var/opt/kaspersky", true, 0o750, uid, gid},
		{"/var/opt/kaspersky/ksmg", true, 0o750, uid, gid},
		{"/var/opt/kaspersky/ksmg/queue", true, 0o750, uid, gid},
		{"/var/opt/kaspersky/ksmg/backup", true, 0o750, uid, gid},
		{"/var/opt/kaspersky/ksmg/events", true, 0o750, uid, gid},
		{"/etc/opt/kaspersky", true, 0o750, uid, gid},
		{"/etc/opt/kaspersky/ksmg", true, 0o750, uid, gid},
		{"/etc/opt/kaspersky/ksmg/tls", true, 0o750, uid, gid},
		{"/etc/opt/kaspersky/ksmg-gateway.yaml", false, 0o640, uid, gid},
		{"/var/log/ksmg-messages", false, 0o640, uid, gid},
		{"/var/log/ksmg-important", false, 0o640, uid, gid},
		{"/var/log/ksmg-traces", true, 0o750, uid, gid},
		{"/var/log/kaspersky", true, 0o750, uid, gid},
		{"/var/log/kaspersky/extra", true, 0o750, uid, gid},
		{"/tmp/ksmgtmp", true, 0o750, uid, gid},
		{"/tmp/klms_filter", true, 0o750, uid, gid},
	} {
		fi, err := os.Lstat(filepath.Join(root, c.path))
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if fi.IsDir() != c.dir || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: %v, want dir=%v mode %v", c.path, fi.Mode(), c.dir, c.mode)
		}
		if u, g := owner(fi); u != c.uid || g != c.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", c.path, u, g, c.uid, c.gid)
		}
	}
}

func mustWrite(t *testing.T, name, text string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

// readDB reads a colon-separated account database (passwd, group, shadow).
func readDB(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	db := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		db[fields[0]] = fields
	}
	return db
}
