//go:build linux

package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/units"
	"github.com/ksmg-appliance/ksmg/images/boottest"
	"github.com/ksmg-appliance/ksmg/images/sbom"
	"github.com/ksmg-appliance/ksmg/images/sparse"
	"github.com/ksmg-appliance/ksmg/provisioner/harden"
	"github.com/ksmg-appliance/ksmg/sign"
	"github.com/ksmg-appliance/ksmg/sign/signtest"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
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
	return testBuildWith(t, out, nil)
}

func testBuildWith(t *testing.T, out string, signer *sign.Signer) *Result {
	t.Helper()
	spec, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), Options{
		Spec: spec, OutDir: out, BinDir: testBinDir(t), CacheDir: cacheDir(t),
		Formats: []string{"raw"}, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Signer: signer,
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
	serialPath := filepath.Join(t.TempDir(), "serial.log")
	if p := os.Getenv("KSMG_TEST_SERIAL"); p != "" {
		serialPath = p
	}
	serial, err := os.Create(serialPath)
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
	maps.Copy(creds, boottest.Probe("boot-coldplug", coldplugProbe(), 2*time.Minute))
	maps.Copy(creds, boottest.Probe("boot-modules", earlyModulesProbe, 2*time.Minute))
	res, err := boottest.Run(context.Background(), boottest.Options{Disk: raw, Format: "raw", Credentials: creds, Serial: serial, Timeout: 15 * time.Minute})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	log, err := os.ReadFile(serial.Name())
	if err != nil {
		t.Fatal(err)
	}
	checkRuntime(t, string(log), false)
	checkColdplugGuest(t, string(log))
	checkEarlyModulesGuest(t, string(log))
	checkFirstBootOnTTY1Only(t, string(log))
	checkRootChecked(t, string(log))
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
	// First boot applied the answers (its failure would not stop the
	// gateway, which is only ordered after it).
	if got := res.Status["hostname"]; got != "ksmg-boot" {
		t.Errorf("guest host name %q, want ksmg-boot (from the answers)", got)
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

// TestBootBadVarRestarts: a /var that e2fsck cannot repair unattended
// (two files claiming the same blocks, the file system marked as not
// cleanly unmounted) stops the boot in the initramfs, which checks /var
// (initramfs-fsck-var). It says why and restarts 10 s later (panic= on the
// command line); it must not open its shell, a root shell on the console
// that asks for no password.
func TestBootBadVarRestarts(t *testing.T) {
	raw := testImage(t)
	spec, _ := appliance.Load("")
	bad := filepath.Join(t.TempDir(), "bad-var.raw")
	if out, err := exec.Command("cp", "--sparse=always", raw, bad).CombinedOutput(); err != nil {
		t.Fatalf("copy the disk: %v\n%s", err, out)
	}
	off, _ := partOffset(t, spec, appliance.PartVar)
	fsys := fmt.Sprintf("%s?offset=%d", bad, off)
	debugfs := func(req string) string {
		out, err := exec.Command("debugfs", "-w", "-R", req, fsys).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
		return string(out)
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, bytes.Repeat([]byte("ksmg"), 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	debugfs("write " + data + " ksmg-test-a")
	debugfs("write " + data + " ksmg-test-b")
	m := regexp.MustCompile(`\(0(?:-\d+)?\):(\d+)`).FindStringSubmatch(debugfs("stat ksmg-test-a"))
	if m == nil {
		t.Fatal("debugfs: no extent for ksmg-test-a")
	}
	// i_block[5] holds the first extent's physical start (low 32 bits).
	debugfs("sif ksmg-test-b block[5] " + m[1])
	debugfs("ssv state 0")

	var serial bytes.Buffer
	// -no-reboot: QEMU exits when the guest restarts.
	_, err := boottest.Run(context.Background(), boottest.Options{Disk: bad, Format: "raw", NoSMTP: true, Serial: &serial, Timeout: 5 * time.Minute, ExtraArgs: []string{"-no-reboot"}})
	log := serial.String()
	if err == nil {
		t.Fatalf("the appliance started with a /var that needs a manual check; console:\n%s", log)
	}
	if p := os.Getenv("KSMG_TEST_SERIAL"); p != "" {
		_ = os.WriteFile(p, serial.Bytes(), 0o644)
	}
	for _, want := range []string{"UNEXPECTED INCONSISTENCY", "The /var filesystem on ", "requires a manual fsck", "Rebooting automatically due to panic= boot argument"} {
		if !strings.Contains(log, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, shell := range []string{"(initramfs)", "BusyBox", "Dropping to a shell"} {
		if strings.Contains(log, shell) {
			t.Errorf("console shows %q: the initramfs opened its shell", shell)
		}
	}
	if t.Failed() {
		t.Logf("boot: %v", err)
	}
}

// TestReproducible compares two builds from the same spec, package cache
// and SOURCE_DATE_EPOCH: the image `make images` built (KSMG_IMAGE_DIR)
// and one fresh build, or two fresh builds without it. (The Packer plugin's
// test builds a third from the same inputs through `packer build`.)
//
//nolint:gocyclo // a linear comparison of every artifact of two builds (raw, OVA, VHDX, SBOM, sums, signature)
func TestReproducible(t *testing.T) {
	spec, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	rawName, bomName := spec.ImageBase()+".raw", sbom.FileName(spec.ImageBase())
	secret, public := signtest.Key(t, "test passphrase")
	signer, err := sign.LoadSigner(secret, []byte("test passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sign.LoadKeyRing(public)
	if err != nil {
		t.Fatal(err)
	}
	type build struct{ disk, bom string }
	var builds []build
	if d := os.Getenv("KSMG_IMAGE_DIR"); d != "" {
		list, err := os.ReadFile(filepath.Join(d, sign.SumsName))
		if err != nil {
			t.Fatal(err)
		}
		sums, err := sign.ParseSums(list)
		if err != nil {
			t.Fatal(err)
		}
		var b build
		for _, s := range sums {
			switch s.Name {
			case rawName:
				b.disk = s.SHA256
			case bomName:
				b.bom = s.SHA256
			}
		}
		if b.disk == "" || b.bom == "" {
			t.Fatalf("%s/%s lacks %s or %s:\n%s", d, sign.SumsName, rawName, bomName, list)
		}
		builds = append(builds, b)
	}
	for signed := true; len(builds) < 2; signed = false {
		dir := t.TempDir()
		start := time.Now()
		// The first fresh build is signed: the real path of --sign-key.
		var s *sign.Signer
		if signed {
			s = signer
		}
		res := testBuildWith(t, dir, s)
		t.Logf("build %d (signed %v): %s", len(builds)+1, signed, time.Since(start).Round(time.Second))
		var b build
		for _, o := range res.Outputs {
			switch o.Format {
			case "raw":
				b.disk = o.SHA256
			case "sbom":
				b.bom = o.SHA256
			}
		}
		if b.disk == "" || b.bom == "" {
			t.Fatalf("outputs %+v: want the raw disk and the SBOM", res.Outputs)
		}
		if signed {
			// Signature and SHA256SUMS verify, and SHA256SUMS is what the
			// files are (the disk hashed whole, not from the build's memo).
			rep, err := sign.VerifyDir(context.Background(), dir, keys)
			if err != nil || rep.Signer != signer.Fingerprint() || len(rep.Verified) != 2 {
				t.Fatalf("signed build does not verify: %+v %v", rep, err)
			}
		} else {
			if res.Signature != "" {
				t.Errorf("unsigned build reports a signature %s", res.Signature)
			}
			if _, err := os.Stat(filepath.Join(dir, sign.SignatureName)); !os.IsNotExist(err) {
				t.Errorf("unsigned build left %s: %v", sign.SignatureName, err)
			}
			if got := fileSHA256(t, filepath.Join(dir, rawName)); got != b.disk {
				t.Fatalf("SHA256SUMS says %s, file is %s", b.disk, got)
			}
		}
		line, err := os.ReadFile(res.SHA256SUM)
		if err != nil || !strings.Contains(string(line), b.disk+"  "+rawName) {
			t.Fatalf("SHA256SUMS: %q %v", line, err)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("build left %s in the output directory", e.Name())
			}
		}
		builds = append(builds, b)
	}
	if builds[0].disk != builds[1].disk {
		t.Fatalf("two builds differ: %s vs %s", builds[0].disk, builds[1].disk)
	}
	if builds[0].bom != builds[1].bom {
		t.Fatalf("two builds' SBOMs differ: %s vs %s", builds[0].bom, builds[1].bom)
	}
}

// TestImageSBOM reads the image's SBOM with the SPDX library and holds it
// against the disk: every package the image's dpkg database lists as
// installed, with its version, and nothing else; the kernel and our
// package among them; our programs with their modules.
func TestImageSBOM(t *testing.T) {
	raw := testImage(t)
	spec, _ := appliance.Load("")
	dir := filepath.Dir(raw)
	data, err := os.ReadFile(filepath.Join(dir, sbom.FileName(spec.ImageBase())))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := spdxjson.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the SPDX library cannot read the SBOM: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatal(err)
	}
	if sums, err := os.ReadFile(filepath.Join(dir, sign.SumsName)); err != nil || !strings.Contains(string(sums), "  "+sbom.FileName(spec.ImageBase())+"\n") {
		t.Errorf("SHA256SUMS does not cover the SBOM: %q %v", sums, err)
	}
	inSBOM := map[string]string{}
	for _, p := range doc.Packages {
		inSBOM[p.PackageName] = p.PackageVersion
	}
	// The dpkg database is on the /var partition: read it with debugfs.
	varImg := partImage(t, raw, spec, appliance.PartVar)
	out, err := exec.Command("debugfs", "-R", "cat /lib/dpkg/status", varImg).Output()
	if err != nil {
		t.Fatal(err)
	}
	debs, err := sbom.ReadDpkgStatus(bytes.NewReader(out))
	if err != nil || len(debs) < 100 {
		t.Fatalf("image's dpkg status: %d packages, %v", len(debs), err)
	}
	kernel := false
	for _, d := range debs {
		if v, ok := inSBOM[d.Name]; !ok || v != d.Version {
			t.Errorf("%s %s installed, SBOM says %q", d.Name, d.Version, v)
		}
		kernel = kernel || strings.HasPrefix(d.Name, "linux-image-") && strings.HasSuffix(d.Name, "-cloud-amd64")
	}
	if !kernel {
		t.Error("no cloud kernel package in the image")
	}
	for _, want := range []string{"ksmg-appliance", "ksmg-gatewayd", "ksmg-firstboot", "stdlib", "github.com/emersion/go-smtp", "linux-image-cloud-amd64"} {
		if _, ok := inSBOM[want]; !ok {
			t.Errorf("SBOM lacks %s", want)
		}
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
	if n, err := sparse.WriteTo(context.Background(), h, f, st.Size()); err != nil || n != st.Size() {
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
	part := func(typ string) string { return partImage(t, raw, spec, typ) }
	root := part(appliance.PartRoot)
	debugfs := func(img, req string) string {
		out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", req, err, out)
		}
		return string(out)
	}
	if got := debugfs(root, "stat /etc/machine-id"); !regexp.MustCompile(`Project: +\d+ +Size: 0\n`).MatchString(got) {
		t.Errorf("/etc/machine-id is not empty (each VM makes its own, and no boot is a preset-all first boot):\n%s", got)
	}
	// console-setup's cache must be newer than its configuration, or the
	// first boot rebuilds it (TestClampTimesKeepsCachesNewer).
	mtime := func(p string) string {
		m := regexp.MustCompile(`(?m)^ *mtime: (0x[0-9a-f]+)`).FindStringSubmatch(debugfs(root, "stat "+p))
		if m == nil {
			t.Fatalf("debugfs stat %s: no mtime", p)
		}
		return m[1]
	}
	if c, k := mtime("/etc/console-setup/cached_setup_terminal.sh"), mtime("/etc/default/keyboard"); c <= k {
		t.Errorf("console-setup's cache (mtime %s) is not newer than /etc/default/keyboard (%s)", c, k)
	}
	kver := regexp.MustCompile(`initrd\.img-(\S+)`).FindStringSubmatch(debugfs(root, "ls /boot"))
	if kver == nil {
		t.Fatal("no initramfs in /boot")
	}
	initrd := filepath.Join(t.TempDir(), "initrd.img")
	debugfs(root, "dump /boot/initrd.img-"+kver[1]+" "+initrd)
	img, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	checkInitramfs(t, spec, img)
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
	// The administrator's sudoers drop-in, as reviewed: root's, 0440
	// (sudo ignores a drop-in others can write), byte for byte.
	if st := debugfs(root, "stat "+units.SudoersPath); !strings.Contains(st, "Mode:  0440") || !strings.Contains(st, "User:     0") {
		t.Errorf("%s: %s", units.SudoersPath, st)
	}
	want, _ := fs.ReadFile(units.Files(), "ksmg-admin.sudoers")
	if got := debugfs(root, "cat "+units.SudoersPath); !strings.Contains(got, string(want)) {
		t.Errorf("%s in the image differs from firstboot/units:\n%s", units.SudoersPath, got)
	}
	if st := debugfs(root, "stat /usr/bin/sudo"); !strings.Contains(st, "Mode:  04755") {
		t.Errorf("sudo is not installed setuid root: %s", st)
	}
	checkColdplug(t, func(req string) string { return debugfs(root, req) })
	checkUnitsWithoutBPFLSM(t, func(req string) string { return debugfs(root, req) })
	checkDevTmpfiles(t, func(req string) string { return debugfs(root, req) })
	checkUnitOrderings(t, func(req string) string { return debugfs(root, req) })
}

// checkUnitOrderings: the image's overrides are Debian's units as
// installed, with the ordering unitOrderings changes.
func checkUnitOrderings(t *testing.T, debugfs func(req string) string) {
	t.Helper()
	for _, u := range unitOrderings {
		// debugfs's output starts with its version line.
		_, debian, _ := strings.Cut(debugfs("cat "+u.debianPath()), "\n")
		_, override, _ := strings.Cut(debugfs("cat "+u.overridePath()), "\n")
		if want, err := u.override(debian); err != nil || override != string(want) {
			t.Errorf("%s in the image:\n%s\nwant (%v):\n%s", u.overridePath(), override, err, want)
		}
	}
	// Enablement links follow the override, or Debian 13's systemctl
	// refuses to enable the unit again (re-provisioning).
	_, links := dumped(t, debugfs, "/etc/systemd/system")
	found := 0
	for l, target := range links {
		for _, u := range unitOrderings {
			if path.Base(target) != u.Unit {
				continue
			}
			found++
			if target != u.overridePath() {
				t.Errorf("%s -> %s: want the override, %s", l, target, u.overridePath())
			}
		}
	}
	if found == 0 {
		t.Error("no enablement link of an overridden unit read from /etc/systemd/system")
	}
}

// checkColdplug holds udev's trimmed coldplug to the image: the drop-in
// replaces Debian's command as shipped (a changed command in a new systemd
// package fails here), and no udev rule of the image acts on what it
// leaves out.
func checkColdplug(t *testing.T, debugfs func(req string) string) {
	t.Helper()
	unit := debugfs("cat /usr/lib/systemd/system/systemd-udev-trigger.service")
	if !strings.Contains(unit, "\nExecStart=-"+udevTriggerCommand+"\n") {
		t.Errorf("systemd-udev-trigger.service's command is no longer %q (udevTriggerCommand):\n%s", udevTriggerCommand, unit)
	}
	// debugfs's output starts with its version line.
	if got := debugfs("cat /usr/lib/systemd/system/systemd-udev-trigger.service.d/ksmg-coldplug.conf"); !strings.HasSuffix(got, "\n"+string(udevColdplugDropIn())) {
		t.Errorf("coldplug drop-in in the image:\n%s\nwant:\n%s", got, udevColdplugDropIn())
	}
	rules := map[string]string{}
	for _, d := range []string{"/usr/lib/udev/rules.d", "/etc/udev/rules.d"} {
		for p, b := range dumpedFiles(t, debugfs, d) {
			if strings.HasSuffix(p, ".rules") && !strings.Contains(strings.TrimPrefix(p, d+"/"), "/") {
				rules[p] = b
			}
		}
	}
	if len(rules) < 20 {
		t.Fatalf("only %d udev rules files read from the image", len(rules))
	}
	for _, c := range coldplugConflicts(rules) {
		t.Errorf("a udev rule acts on what the coldplug leaves out (images/payload.go, coldplugSkip): %s", c)
	}
}

// checkUnitsWithoutBPFLSM: no unit of the image asks for
// RestrictFileSystems=, which needs the BPF LSM; the kernel command line
// leaves it out (lsm=, provisioner/harden/files/default-grub), and systemd
// would run such a unit without the restriction, logging a warning.
func checkUnitsWithoutBPFLSM(t *testing.T, debugfs func(req string) string) {
	t.Helper()
	units := dumpedDirs(t, debugfs, "unit files", 100, "/usr/lib/systemd/system", "/etc/systemd/system")
	for _, u := range unitsWith(units, "RestrictFileSystems") {
		t.Errorf("%s asks for RestrictFileSystems=, which needs the BPF LSM the kernel command line leaves out (lsm=)", u)
	}
}

// checkDevTmpfiles: the image masks the two units that apply the tmpfiles
// lines for /dev (appliance.yaml), so every such line of the image must be
// one that only adjusts a node that exists (z, Z): none may create one.
func checkDevTmpfiles(t *testing.T, debugfs func(req string) string) {
	t.Helper()
	conf := dumpedDirs(t, debugfs, "tmpfiles.d files", 10, "/usr/lib/tmpfiles.d", "/etc/tmpfiles.d")
	for _, l := range devTmpfilesCreating(conf) {
		t.Errorf("%s: a tmpfiles line for /dev that creates or changes more than a node's owner and mode; systemd-tmpfiles-setup-dev is masked", l)
	}
}

// devTmpfilesCreating returns the tmpfiles.d lines ("file: line", sorted)
// for a path in /dev whose type is not z or Z.
func devTmpfilesCreating(conf map[string]string) []string {
	var found []string
	for p, b := range conf {
		if !strings.HasSuffix(p, ".conf") {
			continue
		}
		for _, line := range strings.Split(b, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") || f[1] != "/dev" && !strings.HasPrefix(f[1], "/dev/") {
				continue
			}
			// The type's first letter; modifiers (!, -, =, ~, ^, +) follow it.
			if typ := f[0][:1]; typ != "z" && typ != "Z" {
				found = append(found, p+": "+strings.TrimSpace(line))
			}
		}
	}
	slices.Sort(found)
	return found
}

// unitsWith returns the paths of the unit files that set directive, sorted.
func unitsWith(units map[string]string, directive string) []string {
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(directive) + `\s*=`)
	var found []string
	for p, b := range units {
		if re.MatchString(b) {
			found = append(found, p)
		}
	}
	slices.Sort(found)
	return found
}

// dumpedDirs is dumpedFiles of each of dirs, in one map; fewer than atLeast
// files (what they are) means the image was not read as it should be.
func dumpedDirs(t *testing.T, debugfs func(req string) string, what string, atLeast int, dirs ...string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, d := range dirs {
		maps.Copy(files, dumpedFiles(t, debugfs, d))
	}
	if len(files) < atLeast {
		t.Fatalf("only %d %s read from the image", len(files), what)
	}
	return files
}

// dumpedFiles reads the regular files under dir of an image's file system
// (debugfs's rdump), keyed by their path in the image.
func dumpedFiles(t *testing.T, debugfs func(req string) string, dir string) map[string]string {
	t.Helper()
	files, _ := dumped(t, debugfs, dir)
	return files
}

// dumped reads the tree under dir of an image's file system (debugfs's
// rdump): the regular files' contents and the symlinks' targets, keyed by
// their path in the image.
func dumped(t *testing.T, debugfs func(req string) string, dir string) (files, links map[string]string) {
	t.Helper()
	tmp := t.TempDir()
	debugfs("rdump " + dir + " " + tmp)
	top := filepath.Join(tmp, filepath.Base(dir))
	files, links = map[string]string{}, map[string]string{}
	err := filepath.WalkDir(top, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		key := dir + strings.TrimPrefix(p, top)
		switch {
		case e.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			links[key] = l
			return err
		case e.Type().IsRegular():
			b, err := os.ReadFile(p)
			files[key] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, links
}

// partImage copies the partition of type typ out of the raw disk into a
// file of its own (debugfs and mtools read images, not offsets).
func partImage(t *testing.T, raw string, spec *appliance.Spec, typ string) string {
	t.Helper()
	off, p := partOffset(t, spec, typ)
	img := filepath.Join(t.TempDir(), p.Name+".img")
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
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, int64(p.Size))); err != nil {
		t.Fatal(err)
	}
	return img
}

// partOffset returns where the partition of type typ starts in the raw
// disk (the first at 1 MiB, the others packed behind it), and the partition.
func partOffset(t *testing.T, spec *appliance.Spec, typ string) (int64, appliance.Partition) {
	t.Helper()
	var off int64 = 1 << 20
	for _, p := range spec.Disk.Partitions {
		if p.Type == typ {
			return off, p
		}
		off += int64(p.Size)
	}
	t.Fatalf("no %s partition", typ)
	return 0, appliance.Partition{}
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
// address and host name and enable SSH with a given key, granting root
// login too; the time zone and NTP server come from a config drive (an
// ISO 9660 image labelled CIDATA on the VM's CD-ROM drive, as a NoCloud seed
// is attached on VMware and Hyper-V), which first boot has systemd mount
// for it. No wizard may show, the gateway must answer
// on the new address, no secret may reach the console, and, logged in over
// SSH: every answer is in effect, the administrator has exactly the
// product's commands through sudo (with the password first boot hashed),
// and the first-boot and console units are sandboxed as shipped.
func TestBootUnattendedStatic(t *testing.T) {
	raw := testImage(t)
	const addr = "10.0.2.50" // QEMU user network: 10.0.2.0/24, gateway .2, DNS .3
	creds, password, err := answers.Unattended("gw-static.example.test")
	if err != nil {
		t.Fatal(err)
	}
	key, pub := sshKeyPair(t)
	for k, v := range map[string]string{
		"ksmg.network.mode":       "static",
		"ksmg.network.address":    addr + "/24",
		"ksmg.network.gateway":    "10.0.2.2",
		"ksmg.network.dns":        "10.0.2.3",
		"ksmg.ssh.enabled":        "true",
		"ksmg.ssh.authorized_key": pub,
		"ksmg.ssh.root_login":     "true",
	} {
		creds[k] = v
	}
	delete(creds, "ksmg.timezone")
	seed := seedDrive(t, "CIDATA", "ksmg:\n  timezone: Europe/Prague\n  network:\n    ntp: [10.0.2.2]\n")
	maps.Copy(creds, boottest.Probe("boot-hardening", harden.RuntimeProbe, 10*time.Minute))
	var serial strings.Builder
	var guest guestReport
	res, err := boottest.Run(context.Background(), boottest.Options{
		Disk: raw, Format: "raw", Credentials: creds, Serial: &serial,
		GuestAddr: addr, SSH: true, Timeout: 15 * time.Minute,
		ExtraArgs: []string{"-drive", "if=none,id=seed,format=raw,readonly=on,file=" + seed, "-device", "ide-cd,drive=seed,bus=ide.1"},
		SSHKey:    key, Guest: func(ctx context.Context, g *boottest.Guest) error {
			return guest.collect(ctx, t, g, password)
		},
	})
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	checkRuntime(t, serial.String(), true)
	t.Logf("status: %s", res.StatusLine)
	t.Logf("SMTP banner on %s: %q; SSH banner: %q; power-on to SMTP banner: %s", addr, res.Banner, res.SSHBanner, res.ToBanner.Round(100*time.Millisecond))
	t.Logf("in the guest:\n%s", guest.log.String())
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
	if strings.Contains(console, password) || strings.Contains(guest.journal, password) {
		t.Errorf("the admin password appeared on the serial console or in the journal")
	}
	guest.check(t)
}

// guestReport is what TestBootUnattendedStatic saw logged in.
type guestReport struct {
	log     strings.Builder
	out     map[string]boottest.CommandResult
	journal string
	hostKey string
}

// collect runs the checks' commands in the guest: as admin (sudo with
// the password, which PAM checks against the yescrypt hash first boot
// wrote) and as root (the granted root login).
func (r *guestReport) collect(ctx context.Context, t *testing.T, g *boottest.Guest, password string) error {
	r.out = map[string]boottest.CommandResult{}
	run := func(name, user, cmd, stdin string) error {
		res, err := g.Run(ctx, user, cmd, stdin)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.out[name] = res
		fmt.Fprintf(&r.log, "$ %s  (as %s, exit %d)\n%s%s", cmd, map[bool]string{true: "admin", false: user}[user == ""], res.ExitStatus, res.Stdout, res.Stderr)
		return nil
	}
	pw := password + "\n"
	for _, c := range []struct{ name, user, cmd, stdin string }{
		{"analyze", "", "systemd-analyze time; systemd-analyze critical-chain ksmg-gatewayd.service var.mount; systemd-analyze blame --no-pager | head -n 25", ""},
		{"security", "", "systemd-analyze security --no-pager ksmg-firstboot@ttyS0.service ksmg-console-status.service", ""},
		// /var grows to the disk after the gateway is up, not on the way
		// to it (images/files/growfs-after-gateway.conf). Asked before the
		// commands below restart the gateway.
		{"growfs-order", "root", "systemctl show -P ActiveEnterTimestampMonotonic ksmg-gatewayd.service; systemctl show -P InactiveExitTimestampMonotonic systemd-growfs@var.service", ""},
		{"boot-weights", "root", bootWeightsCommand(), ""},
		{"firewall-modules", "root", firewallModulesCommand(t), ""},
		{"sudo-list", "", "sudo -S -k -l", pw},
		{"sudo-logs", "", "sudo -S -k journalctl --no-pager -u 'ksmg-*'", pw},
		{"sudo-restart", "", "sudo -S -k systemctl restart ksmg-gatewayd.service && systemctl is-active ksmg-gatewayd.service", pw},
		{"sudo-other", "", "sudo -S -k id -u", pw},
		{"sudo-badpw", "", "sudo -S -k systemctl restart ksmg-gatewayd.service", "not-the-password\n"},
		{"sudo-extra-arg", "", "sudo -S -k journalctl --no-pager -u 'ksmg-*' --file=/etc/shadow", pw},
		{"root", "root", "id -u; cut -d: -f1-2 /etc/shadow | grep '^admin:' | cut -c1-10; cat /etc/timezone; readlink /etc/localtime; cat /etc/systemd/timesyncd.conf.d/ksmg.conf; " +
			"ip -4 -o addr show scope global; cat /etc/opt/kaspersky/ksmg-node.yaml; ls /etc/ssh/; sshd -T -C user=root,host=x,addr=10.0.2.2 | grep -E '^(permitrootlogin|passwordauthentication|allowusers) '", ""},
		// The AppArmor policy compiled at build time was the one loaded:
		// the running kernel's cache directory is the shipped one, which
		// nothing wrote to since (its time is still the image's).
		{"apparmor-cache", "root", `d=$(apparmor_parser --print-cache-dir); echo "dirs=$(ls /var/cache/apparmor | wc -l) $d"; ls -A "$d"; ` +
			`echo "cache=$(stat -c %Y "$d") profile=$(stat -c %Y /etc/apparmor.d/usr.sbin.ksmg-gatewayd)"`, ""},
		{"journal", "root", "journalctl --no-pager -b -o cat _SYSTEMD_UNIT=ksmg-firstboot@ttyS0.service _SYSTEMD_UNIT=ksmg-firstboot@tty1.service", ""},
		// The daily integrity check, run now in its sandbox: the database
		// made in the build tree must hold for the disk after first boot.
		{"integrity", "root", "systemctl start ksmg-integrity.service; systemctl show -p Result -p ExecMainStatus ksmg-integrity.service; " +
			"journalctl --no-pager -b -o cat -u ksmg-integrity.service | grep -v '^ ' | head -n 60; systemctl is-enabled ksmg-integrity.timer; " +
			"systemctl is-active acct.service; test -s /var/log/account/pacct && echo pacct=written", ""},
		// First boot starts beside auditd (not after it): the kernel holds
		// its records until auditd reads them, so its changes to the
		// identity files are in the audit log all the same.
		{"audit-firstboot", "root", `grep 'key="identity"' /var/log/audit/audit.log | grep -c 'exe="/usr/sbin/ksmg-firstboot"'`, ""},
		// Day two: an admin deleted the gateway's logs (in /var/log, where
		// kluser cannot create files). A restart puts them back; so does
		// the unit's Restart= after a start that failed on them.
		{"logs-deleted", "root", "rm /var/log/ksmg-messages /var/log/ksmg-important; systemctl restart ksmg-gatewayd.service; systemctl is-active ksmg-gatewayd.service; " +
			"stat -c '%n %a %U' /var/log/ksmg-messages /var/log/ksmg-important; systemctl stop ksmg-gatewayd.service; rm /var/log/ksmg-messages; " +
			"systemctl start ksmg-gatewayd.service || echo start=failed; sleep 8; systemctl is-active ksmg-gatewayd.service; stat -c '%n %a %U' /var/log/ksmg-messages", ""},
	} {
		if err := run(c.name, c.user, c.cmd, c.stdin); err != nil {
			return err
		}
	}
	r.journal = r.out["journal"].Stdout
	r.hostKey = g.HostKey()
	return nil
}

// checkGrowfsOrder reads the gateway's active time and systemd-growfs@var's
// start (monotonic µs, one per line): /var must grow after the gateway is up.
func checkGrowfsOrder(t *testing.T, out string) {
	t.Helper()
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Errorf("growfs order: want two monotonic times, got %q", out)
		return
	}
	gw, err1 := strconv.ParseInt(f[0], 10, 64)
	gr, err2 := strconv.ParseInt(f[1], 10, 64)
	switch {
	case err1 != nil || gw == 0:
		t.Errorf("gateway's active time %q: %v", f[0], err1)
	case err2 != nil || gr == 0 || gr < gw:
		t.Errorf("systemd-growfs@var started at %s µs, the gateway was active at %d µs: want the resize after the gateway (%v)", f[1], gw, err2)
	}
}

// bootWeights are the startup CPU weights our drop-ins give (payload.go),
// read from the drop-ins themselves.
func bootWeights() map[string]string {
	weight := func(dropIn string) string {
		m := regexp.MustCompile(`(?m)^StartupCPUWeight=(\d+)$`).FindSubmatch(embedded(dropIn))
		if m == nil {
			panic("no StartupCPUWeight= in " + dropIn)
		}
		return string(m[1])
	}
	w := map[string]string{}
	for _, u := range foregroundAtBoot {
		w[u] = weight("boot-foreground.conf")
	}
	for _, u := range foregroundMountsAtBoot {
		w[u] = weight("boot-foreground-mount.conf")
	}
	for _, u := range backgroundAtBoot {
		w[u] = weight("boot-background.conf")
	}
	return w
}

// bootWeightsCommand prints "unit weight" for every unit bootWeights names.
func bootWeightsCommand() string {
	units := slices.Sorted(maps.Keys(bootWeights()))
	return `for u in ` + strings.Join(units, " ") + `; do echo "$u $(systemctl show -P StartupCPUWeight "$u")"; done`
}

// checkBootWeights checks that each drop-in took effect in the guest: for
// a misnamed unit or drop-in systemd reports no error, only the default.
func checkBootWeights(t *testing.T, out string) {
	t.Helper()
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if u, w, ok := strings.Cut(l, " "); ok {
			got[u] = w
		}
	}
	for u, want := range bootWeights() {
		if got[u] != want {
			t.Errorf("%s: StartupCPUWeight %q, want %s (drop-in not in effect)", u, got[u], want)
		}
	}
}

// firewallModules are the modules nftables.service's ExecStartPre loads
// (provisioner/harden's units/nftables-modules.conf).
func firewallModules(t *testing.T) []string {
	t.Helper()
	conf, err := fs.ReadFile(harden.Files(), "units/nftables-modules.conf")
	if err != nil {
		t.Fatal(err)
	}
	_, args, ok := strings.Cut(string(conf), "ExecStartPre=/usr/sbin/modprobe -a ")
	if !ok {
		t.Fatalf("units/nftables-modules.conf has no modprobe -a line:\n%s", conf)
	}
	mods, _, _ := strings.Cut(args, "\n")
	return strings.Fields(mods)
}

// firewallModulesCommand asks whether systemd-modules-load ran (it should
// not: modules-load.d is empty, and systemd-sysctl and sysinit.target would
// wait for it), whether the firewall is up, and which of its modules are
// loaded.
func firewallModulesCommand(t *testing.T) string {
	return "systemctl show -P ConditionResult systemd-modules-load.service; systemctl is-active nftables.service; " +
		"for m in " + strings.Join(firewallModules(t), " ") + "; do test -d /sys/module/$m && echo loaded=$m; done"
}

func checkFirewallModules(t *testing.T, out string) {
	t.Helper()
	want := "no\nactive\n"
	for _, m := range firewallModules(t) {
		want += "loaded=" + m + "\n"
	}
	if out != want {
		t.Errorf("firewall modules: got\n%s\nwant (systemd-modules-load skipped, nftables active, its modules loaded)\n%s", out, want)
	}
}

func (r *guestReport) check(t *testing.T) {
	t.Helper()
	out := func(name string) string { return r.out[name].Stdout + r.out[name].Stderr }
	// Every answer is in effect.
	root := out("root")
	for _, want := range []string{"0\nadmin:$y$", "Europe/Prague\n", "/usr/share/zoneinfo/Europe/Prague\n", "NTP=10.0.2.2\n",
		"inet 10.0.2.50/24", "role: control\n", "accepted: true\n", "ksn:\n    enabled: false\n",
		"ssh_host_ed25519_key\n", "permitrootlogin without-password\n", "passwordauthentication no\n"} {
		if !strings.Contains(root, want) {
			t.Errorf("as root: output lacks %q", want)
		}
	}
	if strings.Contains(root, "ssh_host_rsa_key") {
		t.Error("an RSA host key was made; first boot makes one Ed25519 key")
	}
	checkGrowfsOrder(t, out("growfs-order"))
	checkBootWeights(t, out("boot-weights"))
	checkFirewallModules(t, out("firewall-modules"))
	aa := out("apparmor-cache")
	if m := regexp.MustCompile(`cache=(\d+) profile=(\d+)`).FindStringSubmatch(aa); m == nil || m[1] != m[2] ||
		!strings.Contains(aa, "usr.sbin.ksmg-gatewayd\n") || !strings.HasPrefix(aa, "dirs=1 ") {
		t.Errorf("apparmor.service did not load the policy compiled into the image (kernel features changed? refresh %s from the guest's %s/<hash>/.features):\n%s",
			harden.AppArmorKernelFeatures, harden.AppArmorCache, aa)
	}
	// The first-boot unit ran sandboxed and took its time where we said.
	for _, want := range []string{"first-boot phase done", "admin password hashed", "phase\":\"activate"} {
		if !strings.Contains(r.journal, want) {
			t.Errorf("first-boot journal lacks %q", want)
		}
	}
	// systemd-analyze security, online, in the guest (systemd 257).
	levels := regexp.MustCompile(`Overall exposure level for (\S+): (\d+\.\d)`).FindAllStringSubmatch(out("security"), -1)
	if len(levels) != 2 {
		t.Errorf("systemd-analyze security in the guest:\n%s", out("security"))
	}
	for _, m := range levels {
		if lvl, _ := strconv.ParseFloat(m[2], 64); lvl > 2.1 {
			t.Errorf("%s: exposure %s in the guest, want <= 2.1 (first boot; see its unit)", m[1], m[2])
		}
	}
	// sudo: exactly the product's commands, with the password, logged.
	list := out("sudo-list")
	for _, want := range []string{"/usr/sbin/ksmg-firstboot --reconfigure", "/usr/bin/systemctl restart ksmg-gatewayd.service", "/usr/bin/journalctl --no-pager -u ksmg-\\*"} {
		if !strings.Contains(list, want) {
			t.Errorf("sudo -l lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "(ALL) ALL") || strings.Contains(list, "NOPASSWD") {
		t.Errorf("sudo -l grants more:\n%s", list)
	}
	if r.out["sudo-restart"].ExitStatus != 0 || !strings.Contains(out("sudo-restart"), "active") {
		t.Errorf("admin could not restart the gateway through sudo: %s", out("sudo-restart"))
	}
	if r.out["sudo-logs"].ExitStatus != 0 || !strings.Contains(out("sudo-logs"), "first-boot") {
		t.Errorf("admin could not read the ksmg journal through sudo: %.500s", out("sudo-logs"))
	}
	for _, name := range []string{"sudo-other", "sudo-badpw", "sudo-extra-arg"} {
		if r.out[name].ExitStatus == 0 {
			t.Errorf("%s: sudo allowed it: %s", name, out(name))
		}
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(r.out["audit-firstboot"].Stdout)); n == 0 {
		t.Errorf("the audit log has no record of first boot changing the identity files: %s", out("audit-firstboot"))
	}
	// The start after the deletion fails (kluser cannot create the file);
	// the stop that follows puts it back and Restart= starts the gateway.
	if got, want := r.out["logs-deleted"].Stdout, "active\n/var/log/ksmg-messages 640 kluser\n/var/log/ksmg-important 640 kluser\n"+
		"start=failed\nactive\n/var/log/ksmg-messages 640 kluser\n"; got != want {
		t.Errorf("deleted gateway logs were not put back (by a restart; after a failed start by Restart=):\ngot  %q\nwant %q\n%s", got, want, out("logs-deleted"))
	}
	// AIDE found nothing changed but first boot's own files (its config
	// excludes them), and process accounting writes.
	integ := out("integrity")
	for _, want := range []string{"Result=success\n", "ExecMainStatus=0\n", "enabled\nactive\n", "pacct=written"} {
		if !strings.Contains(integ, want) {
			t.Errorf("integrity check and accounting: output lacks %q:\n%s", want, integ)
		}
	}
	if r.hostKey == "" || !strings.HasPrefix(r.hostKey, "ssh-ed25519 SHA256:") {
		t.Errorf("host key %q", r.hostKey)
	}
}

// seedDrive writes an ISO 9660 image (Rock Ridge, Joliet) labelled label
// with the seed file on it, as a cloud-init NoCloud seed is made (xorriso's
// mkisofs mode), for the VM's CD-ROM drive.
func seedDrive(t *testing.T, label, seed string) string {
	t.Helper()
	dir := t.TempDir()
	img, src := filepath.Join(dir, "seed.iso"), filepath.Join(dir, "seed")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "ksmg-seed.yaml"), []byte(seed), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r", "-o", img, src).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	return img
}

// sizeQuery is what systemd writes to a unit's terminal to learn its size
// (cursor far to the bottom right, then a cursor position report).
const sizeQuery = "\x1b[32766;32766H\x1b[6n"

// checkFirstBootOnTTY1Only: an unattended first boot runs in the VM
// console's instance alone; the serial console's starts only when setup
// needs a person (firstboot/units). Nor is the serial console asked for its
// size before setup is done: systemd asks a unit's terminal before each
// command and waits 333 ms for an answer, which a serial port nobody
// listens on never gives. The serial getty still asks, after first boot.
func checkFirstBootOnTTY1Only(t *testing.T, serial string) {
	t.Helper()
	done := regexp.MustCompile(`Finished .*ksmg first-boot setup on tty1`).FindStringIndex(serial)
	if done == nil {
		t.Errorf("no systemd status line \"Finished ... ksmg first-boot setup on tty1\" on the serial console")
		return
	}
	if strings.Contains(serial, "first-boot setup on ttyS0") {
		t.Errorf("the serial console's first-boot instance ran in an unattended boot")
	}
	if n := strings.Count(serial[:done[0]], sizeQuery); n != 0 {
		t.Errorf("the serial console was asked for its size %d times before first boot finished, want none", n)
	}
}

// checkRootChecked: the initramfs checked the root file system before it
// mounted it writable (systemd does not check a / that is already
// writable, so this is the only check / gets), then /var, which systemd
// does not check again (pass number 0 in the image's fstab).
func checkRootChecked(t *testing.T, serial string) {
	t.Helper()
	if strings.Contains(serial, "fsck not present") || strings.Contains(serial, "skipping root file system") {
		t.Error("the initramfs skipped the root file system's check (\"fsck not present\")")
	}
	// The "Begin:" line, fsck's command line, then e2fsck's verdict.
	for _, fs := range []string{"root", "/var"} {
		if !regexp.MustCompile(`Will now check ` + regexp.QuoteMeta(fs) + ` file system.*\n(?:.*\n)?\S+: clean, \d+/\d+ files`).MatchString(serial) {
			t.Errorf("no check of the %s file system by the initramfs in the serial log (\"Will now check %[1]s file system\" and e2fsck's \"clean\" line)", fs)
		}
	}
	if strings.Contains(serial, "so it is not checked here") {
		t.Error("the initramfs did not check /var (its ksmg-fsck-var script gave up)")
	}
	if strings.Contains(serial, "systemd-fsck@") {
		t.Error("systemd checked a file system the initramfs had checked (systemd-fsck@ in the serial log)")
	}
}

// checkRuntime holds the serial log's harden.RuntimeProbe values to
// harden.CheckRuntime (a failed or restarting unit among them).
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

// sshKeyPair makes a throw-away key pair with the real ssh-keygen and
// returns the private key's path and the public key line.
func sshKeyPair(t *testing.T) (string, string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ksmg-boot-test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(pub))
}

// checkInitramfs: the initramfs holds the spec's modules and drivers and
// what they depend on, not MODULES=most's 260 (TestImageContents), and no
// copy of udev's hardware database.
func checkInitramfs(t *testing.T, spec *appliance.Spec, img []byte) {
	t.Helper()
	// initramfs-tools writes the (already xz-compressed) modules as a
	// first, uncompressed cpio archive, then the rest gzip-compressed.
	first, rest, err := cpioNames(img)
	if err != nil {
		t.Fatalf("initramfs: %v", err)
	}
	mods := map[string]bool{}
	for _, n := range first {
		if name, _, ko := strings.Cut(path.Base(n), ".ko"); ko {
			mods[strings.ReplaceAll(name, "-", "_")] = true
		}
	}
	for _, m := range append(append([]string(nil), spec.InitramfsModules...), spec.InitramfsDrivers...) {
		if !mods[strings.ReplaceAll(m, "-", "_")] {
			t.Errorf("initramfs lacks module %s (of the spec)", m)
		}
	}
	if len(mods) > 30 {
		t.Errorf("initramfs holds %d modules, want the spec's and their dependencies only (MODULES=list)", len(mods))
	}
	zr, err := gzip.NewReader(bytes.NewReader(bytes.TrimLeft(rest, "\x00")))
	if err != nil {
		t.Fatalf("initramfs main archive (gzip expected): %v", err)
	}
	unpacked, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("initramfs main archive: %v", err)
	}
	var names []string
	var udevScript, bottomOrder, startModules string
	_, err = cpioWalk(unpacked, func(name string, data []byte) {
		names = append(names, name)
		switch name {
		case "scripts/init-top/udev":
			udevScript = string(data)
		case "scripts/local-bottom/ORDER":
			bottomOrder = string(data)
		case "conf/modules":
			startModules = string(data)
		}
	})
	if err != nil {
		t.Fatalf("initramfs main archive: %v", err)
	}
	// The initramfs's udev replays only what the initramfs needs
	// (images/payload.go, initramfsTriggerHookScript).
	if !strings.Contains(udevScript, "\n"+initramfsDevicesTrigger+" "+initramfsTriggerArgs()+"\n") || strings.Contains(udevScript, initramfsSubsystemsTrigger) {
		t.Errorf("initramfs's scripts/init-top/udev does not trigger devices with %q only:\n%s", initramfsTriggerArgs(), udevScript)
	}
	// initramfs_modules are loaded at the initramfs's start (conf/modules),
	// so that PID 1 finds them loaded (checkEarlyModulesGuest).
	for _, m := range spec.InitramfsModules {
		if !slices.Contains(strings.Fields(startModules), m) {
			t.Errorf("initramfs's conf/modules does not load %s at its start:\n%s", m, startModules)
		}
	}
	// /var is checked by the initramfs too, once / is mounted.
	if script := strings.TrimPrefix(initramfsFsckVar, "/usr/share/initramfs-tools/"); !strings.Contains(bottomOrder, "/"+script+" ") {
		t.Errorf("initramfs's scripts/local-bottom/ORDER does not run %s:\n%s", script, bottomOrder)
	}
	var conf bool
	// fsck and e2fsck: the initramfs checks / before mounting it writable.
	fsck := map[string]bool{"fsck": false, "fsck.ext4": false}
	// A CD's label (a config drive) needs cdrom_id and its rules.
	cdrom := map[string]bool{"usr/lib/udev/cdrom_id": false, "usr/lib/udev/rules.d/60-cdrom_id.rules": false}
	for _, n := range names {
		switch n {
		case "usr/lib/udev/hwdb.bin":
			t.Error("initramfs holds udev's hardware database")
		case "conf/conf.d/ksmg-modules":
			conf = true
		}
		if _, ok := cdrom[n]; ok {
			cdrom[n] = true
		}
		if _, ok := fsck[path.Base(n)]; ok && strings.Contains(n, "sbin/") {
			fsck[path.Base(n)] = true
		}
	}
	for n, ok := range fsck {
		if !ok {
			t.Errorf("initramfs lacks %s: it cannot check the root file system", n)
		}
	}
	if !conf {
		t.Error("initramfs lacks conf/conf.d/ksmg-modules (MODULES=list, RESUME=none)")
	}
	for n, ok := range cdrom {
		if !ok {
			t.Errorf("initramfs lacks %s", n)
		}
	}
	t.Logf("initramfs: %d bytes, %d modules, %d files in the main archive", len(img), len(mods), len(names))
}

// cpioNames lists one "newc" cpio archive at the start of b and returns
// what follows it (initramfs-tools concatenates archives).
func cpioNames(b []byte) (names []string, rest []byte, err error) {
	rest, err = cpioWalk(b, func(name string, _ []byte) { names = append(names, name) })
	return names, rest, err
}

// cpioWalk calls fn with each file's name and contents of one "newc" cpio
// archive at the start of b and returns what follows the archive.
func cpioWalk(b []byte, fn func(name string, data []byte)) (rest []byte, err error) {
	off := 0
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			return nil, fmt.Errorf("no cpio header at offset %d", off)
		}
		hex := func(i int) int {
			v, _ := strconv.ParseUint(string(b[off+i:off+i+8]), 16, 32)
			return int(v)
		}
		size, nameSize := hex(54), hex(94)
		if off+110+nameSize > len(b) {
			return nil, fmt.Errorf("cpio name past the end at offset %d", off)
		}
		name := string(b[off+110 : off+110+nameSize-1])
		off = (off + 110 + nameSize + 3) &^ 3
		if off+size > len(b) {
			return nil, fmt.Errorf("cpio file %s past the end", name)
		}
		data := b[off : off+size]
		off = (off + size + 3) &^ 3
		if name == "TRAILER!!!" {
			return b[min(off, len(b)):], nil
		}
		fn(name, data)
	}
}

// coldplugProbe is a probe script (boottest.Probe) that checks in the
// booted guest what coldplugSkip says of the kinds of object it leaves
// out with "no module alias": none has a module alias or a device node,
// else udev's MODALIAS and device-name rules would have acted on it. It
// also reports the DMI device's properties: the vendor of 60-dmi-id.rules
// kept, the memory inventory of 70-memory.rules gone
// (udevMemoryRulesOverride).
func coldplugProbe() string {
	var names []string
	for _, s := range coldplugSkippedDevices() {
		if s.covered != nil { // rules act on them (tty, vc, vtconsole)
			continue
		}
		names = append(names, s.name)
	}
	return `n=0; bad=""
for s in ` + strings.Join(names, " ") + `; do
  for d in /sys/class/$s/* /sys/bus/$s/devices/*; do
    [ -f "$d/uevent" ] || continue
    n=$((n+1))
    if grep -qE '^(MODALIAS|DEVNAME)=' "$d/uevent"; then bad="$bad $s:${d##*/}"; fi
  done
done
echo "coldplug_skipped_objects=$n"
echo "coldplug_skipped_with_alias_or_node=${bad:- none}"
echo "dmi_vendor=$(udevadm info -q property -p /sys/class/dmi/id | sed -n 's/^ID_VENDOR=//p')"
echo "dmi_memory_properties=$(udevadm info -q property -p /sys/class/dmi/id | grep -c '^MEMORY_')"
echo "udev_before=[$(systemctl show -p Before --value systemd-udevd.service systemd-udev-trigger.service | grep . | tr ' \n' ',,')]"
echo "udev_fragments=$(systemctl show -p FragmentPath --value systemd-udevd.service udev.service systemd-udev-trigger.service | grep . | tr '\n' ',')"
# The coldplug is off the gateway's way (unitOrderings): wait for it here.
while [ "$(systemctl show -p ActiveState --value systemd-udev-trigger.service)" = activating ]; do sleep 1; done
udevadm settle --timeout=120
echo "coldplug_result=$(systemctl show -p ActiveState --value systemd-udev-trigger.service)/$(systemctl show -p Result --value systemd-udev-trigger.service)"
echo "ttyS0_tags=$(udevadm info -q property -p /sys/class/tty/ttyS0 | sed -n 's/^CURRENT_TAGS=//p')"
echo "ttyS0_device=$(systemctl is-active dev-ttyS0.device)"
`
}

// checkColdplugGuest reads coldplugProbe's lines from a serial log.
func checkColdplugGuest(t *testing.T, serial string) {
	t.Helper()
	v := boottest.ProbeValues(serial)
	if n, err := strconv.Atoi(v["coldplug_skipped_objects"]); err != nil || n == 0 {
		t.Errorf("coldplug probe: coldplug_skipped_objects=%q, want a number > 0 (the probe looked at nothing)", v["coldplug_skipped_objects"])
	}
	if got := strings.TrimSpace(v["coldplug_skipped_with_alias_or_node"]); got != "none" {
		t.Errorf("objects of subsystems the coldplug leaves out (coldplugSkip) have a module alias or device node: %s", got)
	}
	if v["dmi_vendor"] == "" {
		t.Errorf("DMI device without ID_VENDOR: 60-dmi-id.rules did not run on it")
	}
	if got := v["dmi_memory_properties"]; got != "0" {
		t.Errorf("DMI device has %s MEMORY_* properties: 70-memory.rules still runs (udevMemoryRulesOverride)", got)
	}
	// udevd and the coldplug run beside sysinit.target, not before it
	// (unitOrderings), from the overrides, and the coldplug still did its
	// work: the serial console, which only it replays, has its systemd tag
	// and device unit.
	if got := v["udev_before"]; !strings.HasPrefix(got, "[") || strings.Contains(got, "sysinit.target") {
		t.Errorf("udevd and the coldplug are ordered before %q: want them off sysinit.target's way", got)
	}
	if got, want := v["udev_fragments"], "/etc/systemd/system/systemd-udevd.service,/etc/systemd/system/systemd-udevd.service,/etc/systemd/system/systemd-udev-trigger.service,"; got != want {
		t.Errorf("udev's units are loaded from %q, want %q", got, want)
	}
	if got := v["coldplug_result"]; got != "active/success" {
		t.Errorf("systemd-udev-trigger.service: %q, want active/success", got)
	}
	if got := v["ttyS0_tags"]; !strings.Contains(got, ":systemd:") || v["ttyS0_device"] != "active" {
		t.Errorf("ttyS0: tags %q, device unit %q; want the systemd tag and an active unit (the coldplug replays it)", got, v["ttyS0_device"])
	}
}

// earlyModulesProbe is a probe script (boottest.Probe) that reports the
// loaded modules, newest first (the kernel's order in /proc/modules), and
// whether PID 1 logged inserting autofs4 itself.
const earlyModulesProbe = `echo "modules_newest_first=$(cut -d' ' -f1 /proc/modules | tr '\n' ',')"
echo "autofs4_loaded_by_pid1=$(journalctl -b -k -q -o cat --no-pager | grep -c "Inserted module 'autofs4'")"
`

// checkEarlyModulesGuest reads earlyModulesProbe's lines from a serial log.
// At its start systemd loads autofs4 on every machine and qemu_fw_cfg under
// QEMU, and the kernel loads efivarfs when systemd mounts the EFI variables;
// whichever of them came first from the root file system held PID 1 for
// about 1 s under TCG. The initramfs loads autofs4 and efivarfs after udev
// has settled (appliance.yaml, initramfs_modules; checkInitramfs wants them
// in its conf/modules), and udev loads qemu_fw_cfg there for QEMU's firmware
// configuration device (initramfs_drivers). So qemu_fw_cfg is older than
// autofs4; had PID 1 loaded it (systemd logs that at debug level only), it
// would be newer. PID 1 logs loading autofs4 itself. efivarfs's loader
// cannot be told from the guest (it is next to autofs4 either way): it is
// wanted loaded here, and in conf/modules by checkInitramfs.
func checkEarlyModulesGuest(t *testing.T, serial string) {
	t.Helper()
	v := boottest.ProbeValues(serial)
	mods := strings.Split(strings.TrimSuffix(v["modules_newest_first"], ","), ",")
	autofs, fwcfg := slices.Index(mods, "autofs4"), slices.Index(mods, "qemu_fw_cfg")
	switch {
	case autofs < 0 || fwcfg < 0 || !slices.Contains(mods, "efivarfs"):
		t.Errorf("modules %q: want autofs4, efivarfs and qemu_fw_cfg loaded", v["modules_newest_first"])
	case fwcfg < autofs:
		t.Errorf("qemu_fw_cfg was loaded after autofs4 (modules, newest first: %q): PID 1 loaded it, not the initramfs's udev", v["modules_newest_first"])
	}
	if v["autofs4_loaded_by_pid1"] != "0" {
		t.Errorf("autofs4 loaded by PID 1 %q times; want 0 (the initramfs loads it)", v["autofs4_loaded_by_pid1"])
	}
}

func TestDevTmpfilesCreating(t *testing.T) {
	t.Parallel()
	conf := map[string]string{
		"/usr/lib/tmpfiles.d/static-nodes-permissions.conf": "# comment /dev/x\nz /dev/snd/seq      0660 - audio -\nZ! /dev/vfio 0666 - - -\n",
		"/usr/lib/tmpfiles.d/debian.conf":                   "L /run/shm     -    -    -    -   /dev/shm\n",
		"/etc/tmpfiles.d/a.conf":                            "c! /dev/fuse 0666 - - - 10:229\n",
		"/etc/tmpfiles.d/b.conf":                            "d /dev/net 0755\nL+ /dev 0 - - - /x\n",
		"/etc/tmpfiles.d/README":                            "d /dev/ignored\n",
	}
	got := devTmpfilesCreating(conf)
	want := []string{"/etc/tmpfiles.d/a.conf: c! /dev/fuse 0666 - - - 10:229", "/etc/tmpfiles.d/b.conf: L+ /dev 0 - - - /x", "/etc/tmpfiles.d/b.conf: d /dev/net 0755"}
	if !slices.Equal(got, want) {
		t.Errorf("devTmpfilesCreating = %q, want %q", got, want)
	}
}

func TestUnitsWith(t *testing.T) {
	t.Parallel()
	units := map[string]string{
		"/usr/lib/systemd/system/a.service":                "[Service]\nRestrictFileSystems=ext4\n",
		"/etc/systemd/system/b.service.d/x.conf":           "[Service]\n  RestrictFileSystems = ~tmpfs\n",
		"/usr/lib/systemd/system/c.service":                "[Service]\n# RestrictFileSystems=ext4\nProtectSystem=strict\n",
		"/usr/lib/systemd/system/d.service":                "[Service]\nExecStart=/bin/echo RestrictFileSystems=ext4\n",
		"/usr/lib/systemd/system/systemd-journald.service": "[Service]\nIPAddressDeny=any\n",
	}
	got := unitsWith(units, "RestrictFileSystems")
	want := []string{"/etc/systemd/system/b.service.d/x.conf", "/usr/lib/systemd/system/a.service"}
	if !slices.Equal(got, want) {
		t.Errorf("unitsWith = %q, want %q", got, want)
	}
}
