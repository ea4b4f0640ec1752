//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/images/boottest"
)

// These tests drive the real Packer v1.9.5 (the last MPL release; built
// from module source by ci/packer.sh, path in $KSMG_PACKER) with the plugin
// built here, each in its own HOME, PACKER_CONFIG_DIR, PACKER_PLUGIN_PATH
// and TMPDIR, with checkpoint calls off. The image tests compare with what
// `make images` built ($KSMG_IMAGE_DIR) and use its binaries
// ($KSMG_BIN_DIR).

var (
	pluginOnce sync.Once
	pluginBin  string
	pluginErr  error
	// The real cache, read before a test moves HOME.
	realCache = func() string {
		if d := os.Getenv("KSMG_CACHE"); d != "" {
			return d
		}
		home, _ := os.UserHomeDir()
		return filepath.Join(home, ".cache", "ksmg")
	}()
)

// pluginBinary builds packer-plugin-ksmg once per test binary.
func pluginBinary(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ksmg-plugin-")
		if err != nil {
			pluginErr = err
			return
		}
		pluginBin = filepath.Join(dir, "packer-plugin-ksmg")
		cmd := exec.Command("go", "build", "-trimpath", "-o", pluginBin, "./cmd/packer-plugin-ksmg")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			pluginErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return pluginBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginBin != "" {
		os.RemoveAll(filepath.Dir(pluginBin))
	}
	os.Exit(code)
}

// packerRun is one isolated Packer installation with our plugin.
type packerRun struct {
	t   *testing.T
	bin string
	env []string
	dir string
}

func newPacker(t *testing.T) *packerRun {
	t.Helper()
	bin := os.Getenv("KSMG_PACKER")
	if bin == "" {
		t.Skip("KSMG_PACKER not set: no Packer binary (make test builds Packer v1.9.5 with ci/packer.sh and sets it)")
	}
	dir := t.TempDir()
	p := &packerRun{t: t, bin: bin, dir: dir}
	for _, d := range []string{"home", "config", "plugins", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Packer 1.9.5 loads packer-plugin-* from PACKER_PLUGIN_PATH (README:
	// Packer plugin, for 1.10+ `packer plugins install --path`).
	data, err := os.ReadFile(pluginBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins", "packer-plugin-ksmg"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	p.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"PACKER_CONFIG_DIR=" + filepath.Join(dir, "config"),
		"PACKER_PLUGIN_PATH=" + filepath.Join(dir, "plugins"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"CHECKPOINT_DISABLE=1",
		"PACKER_NO_COLOR=1",
		"PACKER_LOG=1",
		"PACKER_LOG_PATH=" + filepath.Join(dir, "packer.log"),
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		p.env = append(p.env, "SOURCE_DATE_EPOCH="+v) // as `make images` had it
	}
	return p
}

// run runs packer in the repository root and returns its output; on
// failure the test fails with the output and the log's tail.
func (p *packerRun) run(ctx context.Context, args ...string) string {
	p.t.Helper()
	out, err := p.try(ctx, args...)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "packer.log"))
		if len(log) > 6000 {
			log = log[len(log)-6000:]
		}
		p.t.Fatalf("packer %s: %v\n%s\n--- packer.log (tail) ---\n%s", strings.Join(args, " "), err, out, log)
	}
	return out
}

func (p *packerRun) try(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Dir = repoRoot
	cmd.Env = p.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func imageDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("KSMG_IMAGE_DIR")
	if d == "" {
		t.Skip("KSMG_IMAGE_DIR not set: no image from `make images` to compare with (make test sets it)")
	}
	return d
}

func binDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("KSMG_BIN_DIR")
	if d == "" {
		t.Skip("KSMG_BIN_DIR not set: no ksmg binaries (make test sets it)")
	}
	return d
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (the image build: mmdebstrap, chroot): make test runs as root")
	}
}

// readSums parses a SHA256SUMS file into name -> sum, keeping the order.
func readSums(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		sums[name] = sum
		order = append(order, name)
	}
	return sums, order
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func inspect(t *testing.T, file string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir(t), "ksmg"), "inspect", file).CombinedOutput()
	if err != nil {
		t.Errorf("ksmg inspect %s: %v\n%s", file, err, out)
	}
}

// TestPluginDescribe: `describe` lists the components with the project's
// version, and packer-sdc plugin-check accepts the binary.
func TestPluginDescribe(t *testing.T) {
	t.Parallel()
	bin := pluginBinary(t)
	out, err := exec.Command(bin, "describe").Output()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Version        string   `json:"version"`
		SDKVersion     string   `json:"sdk_version"`
		Builders       []string `json:"builders"`
		Provisioners   []string `json:"provisioners"`
		PostProcessors []string `json:"post_processors"`
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	got := fmt.Sprintf("%s %s %v %v %v", d.Version, d.SDKVersion, d.Builders, d.Provisioners, d.PostProcessors)
	if want := ksmg.Version() + " 0.6.10 [rootfs] [appliance harden] [ova vhdx]"; got != want {
		t.Errorf("describe: %s, want %s", got, want)
	}
	sdc := exec.Command("go", "tool", "-n", "packer-sdc")
	sdc.Dir = repoRoot
	path, err := sdc.Output()
	if err != nil {
		t.Fatalf("go tool -n packer-sdc: %v", err)
	}
	// plugin-check wants the bare binary name, run from its directory.
	check := exec.Command(strings.TrimSpace(string(path)), "plugin-check", filepath.Base(bin))
	check.Dir = filepath.Dir(bin)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("packer-sdc plugin-check: %v\n%s", err, out)
	}
}

// TestPackerValidate: every template validates and is formatted; a bad
// setting fails validation with the field named.
func TestPackerValidate(t *testing.T) {
	t.Parallel()
	p := newPacker(t)
	bin := t.TempDir()
	for _, n := range []string{"ksmg-gatewayd", "ksmg-firstboot"} {
		if err := os.WriteFile(filepath.Join(bin, n), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	ctx := context.Background()
	p.run(ctx, "fmt", "-check", "-recursive", "images")
	for _, tc := range []struct{ template, vars string }{
		{"images/ksmg.pkr.hcl", "bin_dir=" + bin},
		{"images/examples/provisioners.pkr.hcl", "bin_dir=" + bin},
		{"images/examples/artifice.pkr.hcl", ""},
		{"images/examples/ssh.pkr.hcl", "host=127.0.0.1,private_key_file=" + key + ",bin_dir=" + bin},
		{"images/examples/qemu.pkr.hcl", "iso_checksum=none,private_key_file=" + key + ",bin_dir=" + bin},
	} {
		args := []string{"validate"}
		for _, v := range strings.Split(tc.vars, ",") {
			if v != "" {
				args = append(args, "-var", v)
			}
		}
		p.run(ctx, append(args, tc.template)...)
	}
	out, err := p.try(ctx, "validate", "-var", "bin_dir=/nonexistent", "-var", "spec=/nonexistent/spec.yaml", "images/ksmg.pkr.hcl")
	if err == nil {
		t.Fatalf("validate accepted bad settings:\n%s", out)
	}
	for _, want := range []string{`bin_dir: "/nonexistent": want a directory with ksmg-gatewayd`, `spec: "/nonexistent/spec.yaml"`} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
}

// TestPackerBuildMatchesKsmgBuild: `packer build images/ksmg.pkr.hcl`
// gives the raw disk, OVA, VHDX and SHA256SUMS of `ksmg build` (make
// images) byte for byte, and ksmg inspect accepts the OVA and VHDX.
func TestPackerBuildMatchesKsmgBuild(t *testing.T) {
	t.Parallel()
	needRoot(t)
	want := imageDir(t)
	bins := binDir(t)
	p := newPacker(t)
	out := filepath.Join(p.dir, "out")
	start := time.Now()
	log := p.run(context.Background(), "build", "-var", "bin_dir="+bins, "-var", "cache_dir="+realCache, "-var", "output_directory="+out, "images/ksmg.pkr.hcl")
	t.Logf("packer build images/ksmg.pkr.hcl: %s", time.Since(start).Round(time.Second))
	for _, w := range []string{"stage packages", "stage rootfs", "stage payload", "stage scrub", "Stages:", "publish", "ksmg-ova:", "ksmg-vhdx:"} {
		if !strings.Contains(log, w) {
			t.Errorf("build output lacks %q", w)
		}
	}
	got, gotOrder := readSums(t, filepath.Join(out, "SHA256SUMS"))
	exp, expOrder := readSums(t, filepath.Join(want, "SHA256SUMS"))
	if strings.Join(gotOrder, " ") != strings.Join(expOrder, " ") {
		t.Errorf("SHA256SUMS lists %v, ksmg build's %v", gotOrder, expOrder)
	}
	for _, name := range expOrder {
		if got[name] != exp[name] {
			t.Errorf("%s: packer build %s, ksmg build %s", name, got[name], exp[name])
		}
		if strings.HasSuffix(name, ".raw") {
			continue // 100 GiB sparse: its line was computed from the file at publish
		}
		if sum := fileSHA256(t, filepath.Join(out, name)); sum != exp[name] {
			t.Errorf("%s hashes to %s, SHA256SUMS of ksmg build says %s", name, sum, exp[name])
		}
		if strings.HasSuffix(name, ".ova") || strings.HasSuffix(name, ".vhdx") {
			inspect(t, filepath.Join(out, name)) // the SBOM is checked by its hash above
		}
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("build left %s", e.Name())
		}
	}
}

// rootFS reads a file of the root partition of a raw disk with debugfs (no
// mount): the partition's offset from sgdisk.
func rootFS(t *testing.T, raw, request string) string {
	t.Helper()
	info, err := exec.Command("sgdisk", "-i", "2", raw).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2 %s: %v\n%s", raw, err, info)
	}
	m := regexp.MustCompile(`First sector: (\d+)`).FindSubmatch(info)
	if m == nil || !bytes.Contains(info, []byte("Linux x86-64 root")) {
		t.Fatalf("partition 2 of %s is not the root:\n%s", raw, info)
	}
	first, _ := strconv.ParseInt(string(m[1]), 10, 64)
	out, err := exec.Command("debugfs", "-R", request, fmt.Sprintf("%s?offset=%d", raw, first*512)).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", request, err, out)
	}
	return string(out)
}

// TestPackerStockProvisioners: Packer's own shell and file provisioners run
// inside the root file system; what they wrote is on the built disk.
func TestPackerStockProvisioners(t *testing.T) {
	t.Parallel()
	needRoot(t)
	bins := binDir(t)
	p := newPacker(t)
	out := filepath.Join(p.dir, "out")
	start := time.Now()
	p.run(context.Background(), "build", "-var", "bin_dir="+bins, "-var", "cache_dir="+realCache, "-var", "output_directory="+out, "images/examples/provisioners.pkr.hcl")
	t.Logf("packer build images/examples/provisioners.pkr.hcl: %s", time.Since(start).Round(time.Second))
	raw := filepath.Join(out, "ksmg-0.1.0.raw")
	motd, err := os.ReadFile(filepath.Join(repoRoot, "images/examples/files/motd"))
	if err != nil {
		t.Fatal(err)
	}
	if got := rootFS(t, raw, "cat /etc/motd"); !strings.Contains(got, string(motd)) {
		t.Errorf("/etc/motd on the disk: %q, want the file provisioner's %q", got, motd)
	}
	if st := rootFS(t, raw, "stat /etc/motd"); !strings.Contains(st, "Mode:  0644") || !strings.Contains(st, "User:     0") {
		t.Errorf("/etc/motd: want 0644 root:\n%s", st)
	}
	// The shell provisioner saw the appliance's Debian 13, not the host.
	if got := rootFS(t, raw, "cat /etc/ksmg-packer-debian-version"); !regexp.MustCompile(`(?m)^13\.`).MatchString(got) {
		t.Errorf("/etc/ksmg-packer-debian-version: %q, want the image's 13.x", got)
	}
	if got := rootFS(t, raw, "cat /etc/opt/site/stamp"); !strings.Contains(got, "built 2025-01-01") && os.Getenv("SOURCE_DATE_EPOCH") == "" {
		t.Errorf("/etc/opt/site/stamp: %q, want the build's SOURCE_DATE_EPOCH date", got)
	}
	if st := rootFS(t, raw, "stat /etc/opt/site"); !strings.Contains(st, "Mode:  0750") {
		t.Errorf("/etc/opt/site:\n%s", st)
	}
	// Packer's script was cleaned up and /tmp scrubbed.
	if ls := rootFS(t, raw, "ls /tmp"); strings.Contains(ls, "script_") || strings.Contains(ls, "ksmg-provision") {
		t.Errorf("/tmp on the disk: %s", ls)
	}
}

// TestPackerPostProcessorsOverPrebuiltDisk: ksmg-ova and ksmg-vhdx behind
// the null builder and artifice, over the raw disk `make images` built,
// write the OVA and VHDX `ksmg build` wrote.
func TestPackerPostProcessorsOverPrebuiltDisk(t *testing.T) {
	t.Parallel()
	want := imageDir(t)
	binDir(t)
	p := newPacker(t)
	exp, _ := readSums(t, filepath.Join(want, "SHA256SUMS"))
	var raw string
	for name := range exp {
		if strings.HasSuffix(name, ".raw") {
			raw = filepath.Join(want, name)
		}
	}
	if raw == "" {
		t.Fatalf("no raw disk in %s/SHA256SUMS", want)
	}
	out := filepath.Join(p.dir, "dist")
	p.run(context.Background(), "build", "-var", "disk="+raw, "-var", "output_directory="+out, "images/examples/artifice.pkr.hcl")
	got, order := readSums(t, filepath.Join(out, "SHA256SUMS"))
	if len(order) != 2 {
		t.Errorf("SHA256SUMS lists %v, want the OVA and the VHDX", order)
	}
	for _, name := range order {
		if got[name] != exp[name] || fileSHA256(t, filepath.Join(out, name)) != exp[name] {
			t.Errorf("%s: %s, ksmg build's is %s", name, got[name], exp[name])
		}
		inspect(t, filepath.Join(out, name))
	}
	if _, err := os.Stat(raw); err != nil {
		t.Errorf("the input disk is gone: %v", err)
	}
}

// TestPackerApplianceOverSSH: ksmg-appliance through Packer's null builder
// and SSH communicator, on the appliance image booted in QEMU with SSH
// enabled by first-boot credentials. The image's sshd lets only the
// administrator in, who cannot become root; the test VM also gets systemd's
// tmpfiles.extra credential (the hypervisor owner's power, this boot only)
// that lets root in with the same key. The provisioner installs a spec of
// a newer version with one more data directory; the machine then has both.
func TestPackerApplianceOverSSH(t *testing.T) {
	dir := imageDir(t)
	bins := binDir(t)
	p := newPacker(t)
	raw := filepath.Join(dir, "ksmg-"+ksmg.Version()+".raw")
	if _, err := os.Stat(raw); err != nil {
		t.Skipf("no raw disk in %s: %v", dir, err)
	}
	key := filepath.Join(p.dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ksmg-packer-test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	creds, _, err := answers.Unattended("ksmg-packer")
	if err != nil {
		t.Fatal(err)
	}
	creds["ksmg.ssh.enabled"] = "true"
	creds["ksmg.ssh.authorized_key"] = strings.TrimSpace(string(pub))
	// sshd takes the first value of each keyword: this file sorts before
	// the wizard's ksmg.conf.
	creds["tmpfiles.extra"] = `f+ /etc/ssh/sshd_config.d/00-packer-test.conf 0644 root root - PermitRootLogin prohibit-password\nAllowUsers admin root` + "\n"

	// The spec the provisioner installs: the image's, one version later,
	// with one more directory.
	specData, err := os.ReadFile(filepath.Join(repoRoot, "appliance/appliance.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	specData = bytes.Replace(specData, []byte("version: "+ksmg.Version()), []byte("version: 9.9.9"), 1)
	specData = bytes.Replace(specData, []byte("\nservices:\n"), []byte("  - {path: /var/opt/kaspersky/ksmg/packer-ssh, owner: kluser, group: kluser, mode: \"0750\"}\n\nservices:\n"), 1)
	spec := filepath.Join(p.dir, "spec.yaml")
	if err := os.WriteFile(spec, specData, 0o644); err != nil {
		t.Fatal(err)
	}

	// An appliance an older build made: its networkd links point at
	// Debian's unit through /lib, as Debian's postinst left them, while the
	// image now overrides the unit in /etc. Debian 13's systemctl refused
	// to enable it then (images/payload.go, relink).
	const networkd = "/etc/systemd/system/dbus-org.freedesktop.network1.service /etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
	var guest *boottest.Guest
	run := func(ctx context.Context, cmd string) (string, error) {
		r, err := guest.Run(ctx, "", cmd, "")
		if err == nil && r.ExitStatus != 0 {
			err = fmt.Errorf("%s: exit %d: %s", cmd, r.ExitStatus, r.Stderr)
		}
		return r.Stdout, err
	}
	var log string
	res, err := boottest.Run(context.Background(), boottest.Options{
		Disk: raw, Format: "raw", Credentials: creds, SSH: true, Timeout: 15 * time.Minute,
		SSHKey: key, SSHUser: "root",
		Guest: func(ctx context.Context, g *boottest.Guest) error {
			guest = g
			_, err := run(ctx, "for l in "+networkd+"; do ln -sfn /lib/systemd/system/systemd-networkd.service $l; done")
			return err
		},
		Hold: func(ctx context.Context, res boottest.Result) error {
			start := time.Now()
			out, err := p.try(ctx, "build",
				"-var", "host=127.0.0.1", "-var", "port="+strconv.Itoa(res.SSHPort),
				"-var", "private_key_file="+key, "-var", "bin_dir="+bins, "-var", "spec="+spec,
				"images/examples/ssh.pkr.hcl")
			log = out
			t.Logf("packer build over SSH: %s", time.Since(start).Round(time.Second))
			if err != nil {
				plog, _ := os.ReadFile(filepath.Join(p.dir, "packer.log"))
				if len(plog) > 6000 {
					plog = plog[len(plog)-6000:]
				}
				return fmt.Errorf("packer build: %w\n%s\n--- packer.log (tail) ---\n%s", err, out, plog)
			}
			links, err := run(ctx, "readlink "+networkd+" && systemctl is-enabled systemd-networkd.service")
			if err != nil {
				return fmt.Errorf("networkd after provisioning: %w", err)
			}
			if want := strings.Repeat("/etc/systemd/system/systemd-networkd.service\n", 2) + "enabled\n"; links != want {
				return fmt.Errorf("networkd after provisioning: %q, want %q", links, want)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	t.Logf("status: %s", res.StatusLine)
	for _, want := range []string{
		"ksmg-appliance: install ksmg-appliance (",
		"ksmg-appliance: check account ids (",
		"ksmg-appliance: units (",
		"installed ksmg-appliance 9.9.9",
		"directory /var/opt/kaspersky/ksmg kluser:kluser 750",
		"directory /var/opt/kaspersky/ksmg/packer-ssh kluser:kluser 750",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("packer output lacks %q:\n%s", want, log)
		}
	}
}
