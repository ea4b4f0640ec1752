//go:build linux

package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/images/boottest"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
)

// The image tests need root (mmdebstrap --mode=root) and the network or a
// filled package cache; they are what `make test` runs after `make images`.

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// TestMain removes the binaries and the image the tests built for
// themselves (a 100 GiB sparse file each).
func TestMain(m *testing.M) {
	code := m.Run()
	if imgDir != "" {
		os.RemoveAll(imgDir)
	}
	if binDir != "" && binErr == nil {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testBinDir is $KSMG_BIN_DIR or the payload binaries built into a temp dir.
func testBinDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KSMG_BIN_DIR"); d != "" {
		return d
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "ksmg-test-bin-")
		if binErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		// Every binary the payload ships (see binaries in payload.go).
		args := []string{"build", "-trimpath", "-o", binDir + "/"}
		for _, b := range binaries {
			args = append(args, "./cmd/"+b.name)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = filepath.Join(filepath.Dir(file), "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = err
			binDir = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build payload binaries: %v\n%s", binErr, binDir)
	}
	return binDir
}

func cacheDir(t *testing.T) string {
	if d := os.Getenv("KSMG_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(home, ".cache", "ksmg")
}

func testBuild(t *testing.T, out string) *Result {
	t.Helper()
	spec, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), Options{
		Spec: spec, OutDir: out, BinDir: testBinDir(t), CacheDir: cacheDir(t),
		Formats: []string{"raw"}, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return res
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// imageDir is $KSMG_IMAGE_DIR (built by `make images`) or a fresh build.
var (
	imgOnce sync.Once
	imgDir  string
)

func testImage(t *testing.T) string {
	t.Helper()
	spec, _ := appliance.Load("")
	if d := os.Getenv("KSMG_IMAGE_DIR"); d != "" {
		return filepath.Join(d, spec.ImageBase()+".raw")
	}
	imgOnce.Do(func() {
		d, err := os.MkdirTemp("", "ksmg-test-image-")
		if err != nil {
			t.Fatal(err)
		}
		testBuild(t, d)
		imgDir = d
	})
	if imgDir == "" {
		t.Fatal("image build failed in an earlier test")
	}
	return filepath.Join(imgDir, spec.ImageBase()+".raw")
}

// TestBootSecureBootSMTP boots the raw disk under OVMF with Secure Boot on
// and VMware's pvscsi/vmxnet3 devices, and checks what the appliance
// promises on first power-on.
func TestBootSecureBootSMTP(t *testing.T) {
	raw := testImage(t)
	spec, _ := appliance.Load("")
	serial, err := os.Create(filepath.Join(t.TempDir(), "serial.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer serial.Close()
	// Complete unattended answers (DHCP, SSH off), as a fleet deploy passes
	// them: without them the first-boot wizard waits on the consoles.
	creds, _, err := answers.Unattended("ksmg-boot")
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(creds, boottest.Probe("boot-hardening", harden.RuntimeProbe, 10*time.Minute))
	res, err := boottest.Run(context.Background(), boottest.Options{Disk: raw, Format: "raw", Credentials: creds, Serial: serial, Timeout: 15 * time.Minute})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	checkHardening(t, serial.Name(), false)
	t.Logf("status: %s", res.StatusLine)
	t.Logf("banner: %q", res.Banner)
	t.Logf("power-on to console status: %s; power-on to SMTP banner: %s", res.ToStatus.Round(100*time.Millisecond), res.ToBanner.Round(100*time.Millisecond))
	if !res.SecureBoot {
		t.Errorf("kernel did not report \"secureboot: Secure boot enabled\"")
	}
	if res.Status["secureboot"] != "1" {
		t.Errorf("guest's SecureBoot variable: %q, want 1", res.Status["secureboot"])
	}
	if res.State() != "running" || res.Status["failed"] != "none" {
		t.Errorf("systemd state %q, failed units %q; want running, none", res.State(), res.Status["failed"])
	}
	if res.Status["gateway"] != "active" {
		t.Errorf("ksmg-gatewayd.service is %q, want active", res.Status["gateway"])
	}
	// SSH stays off until the first-boot wizard turns it on.
	if res.Status["ssh"] != "inactive" {
		t.Errorf("ssh.service is %q, want inactive", res.Status["ssh"])
	}
	// The VMware drivers from the initramfs bound QEMU's pvscsi and vmxnet3.
	for _, want := range []string{"vmw_pvscsi", "vmxnet3"} {
		if !slices.Contains(res.Drivers(), want) {
			t.Errorf("driver %s not loaded in the guest (drivers=%v)", want, res.Drivers())
		}
	}
	if !strings.HasPrefix(res.Banner, "220 ") {
		t.Errorf("SMTP banner %q, want 220", res.Banner)
	}
	disk, err1 := res.Int("disk_bytes")
	varPart, err2 := res.Int("var_part_bytes")
	varFS, err3 := res.Int("var_fs_bytes")
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatalf("status line: %v %v %v", err1, err2, err3)
	}
	if disk != int64(spec.Disk.Size) {
		t.Errorf("disk is %d bytes, spec says %d", disk, spec.Disk.Size)
	}
	// /var is the last partition: it should now reach the end of the disk
	// (less the other partitions, alignment and the backup GPT).
	var others int64
	for _, p := range spec.Disk.Partitions {
		if p.Type != appliance.PartVar {
			others += int64(p.Size)
		}
	}
	if min := disk - others - 4<<20; varPart < min {
		t.Errorf("/var partition is %d bytes, want >= %d (grown to the disk)", varPart, min)
	}
	if varFS < varPart*9/10 {
		t.Errorf("/var file system is %d bytes on a %d-byte partition: not grown", varFS, varPart)
	}
}

// TestReproducible compares two builds from the same spec, package cache
// and SOURCE_DATE_EPOCH: the image `make images` built (KSMG_IMAGE_DIR)
// and one fresh build, or two fresh builds without it. (The Packer plugin's
// test builds a third from the same inputs through `packer build`.)
func TestReproducible(t *testing.T) {
	var sums []string
	if d := os.Getenv("KSMG_IMAGE_DIR"); d != "" {
		spec, err := appliance.Load("")
		if err != nil {
			t.Fatal(err)
		}
		list, err := os.ReadFile(filepath.Join(d, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(list), "\n") {
			if sum, name, ok := strings.Cut(line, "  "); ok && name == spec.ImageBase()+".raw" {
				sums = append(sums, sum)
			}
		}
		if len(sums) != 1 {
			t.Fatalf("%s/SHA256SUMS has no line for %s.raw:\n%s", d, spec.ImageBase(), list)
		}
	}
	for len(sums) < 2 {
		dir := t.TempDir()
		start := time.Now()
		res := testBuild(t, dir)
		t.Logf("build %d: %s", len(sums)+1, time.Since(start).Round(time.Second))
		sum := res.Outputs[0].SHA256
		// SHA256SUMS is what was written.
		if got := fileSHA256(t, res.Outputs[0].Path); got != sum {
			t.Fatalf("SHA256SUMS says %s, file is %s", sum, got)
		}
		line, err := os.ReadFile(res.SHA256SUM)
		if err != nil || !strings.Contains(string(line), sum+"  "+filepath.Base(res.Outputs[0].Path)) {
			t.Fatalf("SHA256SUMS: %q %v", line, err)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("build left %s in the output directory", e.Name())
			}
		}
		sums = append(sums, sum)
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: %s vs %s", sums[0], sums[1])
	}
}

// fileSHA256 hashes the whole file without the build's memo (holes are fed
// as zeros rather than read, which is what makes it affordable on 100 GiB).
func fileSHA256(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if n, err := hashSparse(context.Background(), h, f, st.Size()); err != nil || n != st.Size() {
		t.Fatalf("hash %s: %d bytes, %v", path, n, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestImageContents reads the shipped disk's file systems with debugfs (no
// mount) and checks the security promises: no credentials, first-boot
// machine id, SSH off, our package known to dpkg, GRUB config on the ESP.
func TestImageContents(t *testing.T) {
	raw := testImage(t)
	spec, _ := appliance.Load("")
	dir := t.TempDir()
	part := func(typ string) string {
		var off int64 = 1 << 20
		for _, p := range spec.Disk.Partitions {
			if p.Type == typ {
				img := filepath.Join(dir, p.Name+".img")
				src, err := os.Open(raw)
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				dst, err := os.Create(img)
				if err != nil {
					t.Fatal(err)
				}
				defer dst.Close()
				if err := dst.Truncate(int64(p.Size)); err != nil {
					t.Fatal(err)
				}
				sec := io.NewSectionReader(src, off, int64(p.Size))
				if _, err := io.Copy(dst, sec); err != nil {
					t.Fatal(err)
				}
				return img
			}
			off += int64(p.Size)
		}
		t.Fatalf("no %s partition", typ)
		return ""
	}
	root := part(appliance.PartRoot)
	debugfs := func(img, req string) string {
		out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
		return string(out)
	}
	if got := debugfs(root, "cat /etc/machine-id"); !strings.Contains(got, "uninitialized") {
		t.Errorf("/etc/machine-id: %q, want uninitialized", got)
	}
	for _, line := range strings.Split(debugfs(root, "cat /etc/shadow"), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && !strings.HasPrefix(f[1], "*") && !strings.HasPrefix(f[1], "!") {
			t.Errorf("/etc/shadow: %s has a password", f[0])
		}
	}
	// Data contract: configuration under /etc/opt/kaspersky belongs to kluser.
	kl, _ := spec.Account("kluser")
	if st := debugfs(root, "stat /etc/opt/kaspersky/ksmg-gateway.yaml"); !strings.Contains(st, fmt.Sprintf("User: %5d", kl.UID)) || !strings.Contains(st, "Mode:  0640") {
		t.Errorf("gateway configuration: %s", st)
	}
	if ls := debugfs(root, "ls /etc/ssh"); strings.Contains(ls, "ssh_host_") {
		t.Errorf("SSH host keys shipped: %s", ls)
	}
	if ls := debugfs(root, "ls /etc/systemd/system/multi-user.target.wants"); strings.Contains(ls, "ssh.service") || !strings.Contains(ls, "ksmg-gatewayd.service") {
		t.Errorf("multi-user.target.wants: %s", ls)
	}
	if st := debugfs(root, "cat /var/lib/dpkg/status"); !strings.Contains(st, "Package: ksmg-appliance") {
		// /var is its own partition: dpkg's database lives there.
		v := part(appliance.PartVar)
		if st := debugfs(v, "cat /lib/dpkg/status"); !strings.Contains(st, "Package: ksmg-appliance\nStatus: install ok installed") {
			t.Errorf("dpkg does not list ksmg-appliance as installed")
		}
		if l := debugfs(v, "cat /lib/dpkg/info/ksmg-appliance.list"); !strings.Contains(l, "/usr/sbin/ksmg-gatewayd") {
			t.Errorf("dpkg file list lacks the gateway: %s", l)
		}
		kluser, _ := spec.Account("kluser")
		if st := debugfs(v, "stat /opt/kaspersky"); !strings.Contains(st, "Mode:  0750") || !strings.Contains(st, fmt.Sprintf("User: %5d", kluser.UID)) {
			t.Errorf("/var/opt/kaspersky: %s", st)
		}
	}
	esp := part(appliance.PartESP)
	out, err := exec.Command("mdir", "-i", esp, "-b", "-/", "::/EFI").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	for _, want := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/grubx64.efi", "::/EFI/debian/grub.cfg"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ESP lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(strings.ToLower(string(out)), "fbx64") {
		t.Errorf("ESP ships the fallback loader:\n%s", out)
	}
}

// TestInterruptedBuild cancels a build in the middle: nothing may appear at
// a final path and no work directory may stay behind.
func TestInterruptedBuild(t *testing.T) {
	spec, _ := appliance.Load("")
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Build(ctx, Options{
		Spec: spec, OutDir: out, BinDir: testBinDir(t), CacheDir: cacheDir(t), Formats: []string{"raw"},
		Progress: func(p Progress) {
			if p.Stage == "filesystem root" {
				cancel()
			}
		},
	})
	if err == nil {
		t.Fatal("cancelled build succeeded")
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		t.Errorf("interrupted build left %s", e.Name())
	}
}

// TestBootUnattendedStatic is the fleet path of first boot (issue: first-boot
// wizard): answers come as SMBIOS systemd credentials and set a static
// address and host name and enable SSH with a given key. No wizard may show,
// the gateway must answer on the new address, and no secret may reach the
// console.
func TestBootUnattendedStatic(t *testing.T) {
	raw := testImage(t)
	const addr = "10.0.2.50" // QEMU user network: 10.0.2.0/24, gateway .2, DNS .3
	creds, password, err := answers.Unattended("gw-static.example.test")
	if err != nil {
		t.Fatal(err)
	}
	pub := sshPublicKey(t)
	for k, v := range map[string]string{
		"ksmg.network.mode":       "static",
		"ksmg.network.address":    addr + "/24",
		"ksmg.network.gateway":    "10.0.2.2",
		"ksmg.network.dns":        "10.0.2.3",
		"ksmg.ssh.enabled":        "true",
		"ksmg.ssh.authorized_key": pub,
	} {
		creds[k] = v
	}
	maps.Copy(creds, boottest.Probe("boot-hardening", harden.RuntimeProbe, 10*time.Minute))
	var serial strings.Builder
	res, err := boottest.Run(context.Background(), boottest.Options{
		Disk: raw, Format: "raw", Credentials: creds, Serial: &serial,
		GuestAddr: addr, SSH: true, Timeout: 15 * time.Minute,
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	checkRuntime(t, serial.String(), true)
	t.Logf("status: %s", res.StatusLine)
	t.Logf("SMTP banner on %s: %q; SSH banner: %q; power-on to SMTP banner: %s", addr, res.Banner, res.SSHBanner, res.ToBanner.Round(100*time.Millisecond))
	if res.State() != "running" || res.Status["failed"] != "none" {
		t.Errorf("systemd state %q, failed units %q; want running, none", res.State(), res.Status["failed"])
	}
	if got := res.Status["hostname"]; got != "gw-static" && got != "gw-static.example.test" {
		t.Errorf("guest host name %q, want gw-static", got)
	}
	// The forward points at the static address only: a banner proves the
	// gateway listens there.
	if !strings.HasPrefix(res.Banner, "220 ") {
		t.Errorf("SMTP banner %q on %s, want 220", res.Banner, addr)
	}
	if res.Status["ssh"] != "active" || !strings.HasPrefix(res.SSHBanner, "SSH-2.0-") {
		t.Errorf("ssh.service %q, SSH banner %q; want active and SSH-2.0-", res.Status["ssh"], res.SSHBanner)
	}
	console := serial.String()
	for _, prompt := range []string{"ksmg appliance setup", "Do you accept the license agreement?", "Administrator password"} {
		if strings.Contains(console, prompt) {
			t.Errorf("the wizard showed on the console (%q) although the answers were complete", prompt)
		}
	}
	if strings.Contains(console, password) {
		t.Errorf("the admin password appeared on the serial console")
	}
}

// checkHardening holds the serial log's harden.RuntimeProbe values to
// harden.CheckRuntime (a failed or restarting unit among them).
func checkHardening(t *testing.T, serialPath string, ssh bool) {
	t.Helper()
	b, err := os.ReadFile(serialPath)
	if err != nil {
		t.Fatal(err)
	}
	checkRuntime(t, string(b), ssh)
}

func checkRuntime(t *testing.T, serial string, ssh bool) {
	t.Helper()
	v := boottest.ProbeValues(serial)
	if len(v) == 0 {
		t.Errorf("the hardening probe printed nothing on the console")
		return
	}
	notes, err := harden.CheckRuntime(v, ssh)
	for _, n := range notes {
		t.Log(n)
	}
	if err != nil {
		t.Errorf("running appliance: %v", err)
	}
}

// sshPublicKey makes a throw-away key pair with the real ssh-keygen.
func sshPublicKey(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ksmg-boot-test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(pub))
}
