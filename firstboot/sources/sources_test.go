package sources

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

func TestParseOVFEnv(t *testing.T) {
	doc, err := os.ReadFile("testdata/ovf-env.xml")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := ParseOVFEnv(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ksmg.eula.accepted":   "true",
		"ksmg.hostname":        "gw1.example.com",
		"ksmg.network.mode":    "static",
		"ksmg.network.address": "192.0.2.10/24",
		"ksmg.network.gateway": "192.0.2.1",
		"ksmg.network.dns":     "192.0.2.53,192.0.2.54",
		"ksmg.admin.password":  "S3cret & <strong>",
		"vami.other":           "x",
	}
	if !reflect.DeepEqual(kv, want) {
		t.Fatalf("got %v\nwant %v", kv, want)
	}
}

func TestParseOVFEnvErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"not xml", "hello", "not well-formed"},
		{"truncated", `<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"><PropertySection>`, "not well-formed"},
		{"wrong root", `<Envelope/>`, "root element"},
		{"wrong ns", `<Environment xmlns="urn:x"/>`, "root element"},
		{"no key", `<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"><PropertySection><Property oe:value="v"/></PropertySection></Environment>`, "Property[1] has no oe:key"},
		{"duplicate", `<Environment xmlns:oe="http://schemas.dmtf.org/ovf/environment/1" xmlns="http://schemas.dmtf.org/ovf/environment/1"><PropertySection><Property oe:key="a" oe:value="1"/><Property oe:key="a" oe:value="2"/></PropertySection></Environment>`, "appears twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOVFEnv([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	kv, err := ParseOVFEnv([]byte(`<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"/>`))
	if err != nil || len(kv) != 0 {
		t.Fatalf("empty environment: %v %v", kv, err)
	}
}

// TestOVFEnvTool runs the real exec path against a stand-in for
// vmware-rpctool: the VMware backdoor cannot run outside a VMware guest, so
// this shell script is the one mock, printing what ESXi would answer.
func TestOVFEnvTool(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "vmware-rpctool")
	script := "#!/bin/sh\n[ \"$1\" = 'info-get guestinfo.ovfEnv' ] || { echo bad args >&2; exit 2; }\ncat " + mustAbs(t, "testdata/ovf-env.xml") + "\n"
	if err := os.WriteFile(tool, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	vmware := vendorFile(t, dir, "vmware", "VMware, Inc.\n")
	kv, err := OVFEnv{Tool: tool, Vendor: vmware}.Read(context.Background())
	if err != nil || kv["ksmg.hostname"] != "gw1.example.com" {
		t.Fatalf("kv=%v err=%v", kv, err)
	}
	// Not run on another maker's machine (Hyper-V says Microsoft).
	if kv, err := (OVFEnv{Tool: tool, Vendor: vendorFile(t, dir, "hyperv", "Microsoft Corporation\n")}).Read(context.Background()); !errors.Is(err, ErrAbsent) || kv != nil {
		t.Fatalf("Hyper-V: kv=%v err=%v, want ErrAbsent", kv, err)
	}
	none := filepath.Join(dir, "none")
	if err := os.WriteFile(none, []byte("#!/bin/sh\necho 'No value found' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := (OVFEnv{Tool: none, Vendor: vmware}).Read(context.Background()); !errors.Is(err, ErrAbsent) {
		t.Fatalf("no value: err = %v, want ErrAbsent", err)
	}
	if _, err := (OVFEnv{Tool: filepath.Join(dir, "missing"), Vendor: vmware}).Read(context.Background()); !errors.Is(err, ErrAbsent) {
		t.Fatalf("missing tool: err = %v, want ErrAbsent", err)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestKVPPool(t *testing.T) {
	recs := []KVPRecord{{"ksmg.hostname", "gw1"}, {"ksmg.admin.password", "Correct-Horse-9"}, {"other", strings.Repeat("v", KVPValueSize-1)}}
	data, err := EncodeKVPPool(recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 3*KVPRecordSize || data[KVPRecordSize+KVPKeySize-1] != 0 {
		t.Fatalf("bad layout: %d bytes", len(data))
	}
	back, err := ParseKVPPool(data)
	if err != nil || !reflect.DeepEqual(back, recs) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []struct {
		name string
		data []byte
	}{
		{"short", data[:KVPRecordSize-1]},
		{"long", append(append([]byte{}, data...), 0)},
	} {
		if _, err := ParseKVPPool(bad.data); err == nil || !strings.Contains(err.Error(), "whole number") {
			t.Errorf("%s: err = %v", bad.name, err)
		}
	}
	for _, r := range []KVPRecord{{"", "v"}, {strings.Repeat("k", KVPKeySize), "v"}, {"k", strings.Repeat("v", KVPValueSize)}, {"k\x00", "v"}} {
		if _, err := EncodeKVPPool([]KVPRecord{r}); err == nil {
			t.Errorf("EncodeKVPPool accepted %q", r.Key)
		}
	}
}

func TestKVPReadScrub(t *testing.T) {
	pool := filepath.Join(t.TempDir(), ".kvp_pool_0")
	data, _ := EncodeKVPPool([]KVPRecord{{"ksmg.hostname", "gw1"}, {"ksmg.admin.password", "Correct-Horse-9"}, {"ksmg.cluster.join_token", "0123456789abcdef0"}, {"HostName", "hv01"}})
	if err := os.WriteFile(pool, data, 0o644); err != nil {
		t.Fatal(err)
	}
	src := KVP{Path: pool}
	kv, err := src.Read(context.Background())
	if err != nil || kv["ksmg.admin.password"] != "Correct-Horse-9" || kv["HostName"] != "hv01" {
		t.Fatalf("read: %v %v", kv, err)
	}
	if err := ScrubSecrets(context.Background(), []Source{src}, SecretKeys(kv)); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(pool)
	if bytes.Contains(after, []byte("Correct-Horse-9")) || bytes.Contains(after, []byte("0123456789abcdef0")) {
		t.Fatal("secret still in the pool")
	}
	recs, err := ParseKVPPool(after)
	if err != nil || !reflect.DeepEqual(recs, []KVPRecord{{"ksmg.hostname", "gw1"}, {"HostName", "hv01"}}) {
		t.Fatalf("after scrub: %v %v", recs, err)
	}
	if st, _ := os.Stat(pool); st.Mode().Perm() != 0o644 {
		t.Fatalf("mode changed to %v", st.Mode())
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(pool), ".*tmp*")); len(m) != 0 {
		t.Fatalf("temp files left: %v", m)
	}
	if _, err := (KVP{Path: pool + ".missing"}).Read(context.Background()); !errors.Is(err, ErrAbsent) {
		t.Fatalf("missing pool: %v", err)
	}
	if err := os.WriteFile(pool, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Gather names the source (and with it the file) once.
	if r := Gather(context.Background(), []Source{src}); len(r.Errors) != 1 || strings.Count(r.Errors[0].Error(), pool) != 1 {
		t.Fatalf("corrupt pool error must name the file once: %v", r.Errors)
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ksmg.hostname"), []byte("gw1\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ksmg.admin.password"), []byte("pw with trailing space \n"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unrelated"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	kv, err := Credentials{Dir: dir}.Read(context.Background())
	want := map[string]string{"ksmg.hostname": "gw1", "ksmg.admin.password": "pw with trailing space "}
	if err != nil || !reflect.DeepEqual(kv, want) {
		t.Fatalf("got %v %v", kv, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := (Credentials{}).Read(context.Background()); !errors.Is(err, ErrAbsent) {
		t.Fatalf("no dir: %v", err)
	}
}

func TestParseSeed(t *testing.T) {
	tests := []struct {
		name, doc string
		want      map[string]string
		err       string
	}{
		{"flat", "ksmg.hostname: gw1\nksmg.network.ntp: [a.example, b.example]\n", map[string]string{"ksmg.hostname": "gw1", "ksmg.network.ntp": "a.example,b.example"}, ""},
		{"nested", "ksmg:\n  hostname: gw1\n  network:\n    mode: dhcp\n  ssh:\n    enabled: false\n", map[string]string{"ksmg.hostname": "gw1", "ksmg.network.mode": "dhcp", "ksmg.ssh.enabled": "false"}, ""},
		{"empty", "", map[string]string{}, ""},
		{"list top", "- a\n- b\n", nil, "top level must be a mapping"},
		{"bad yaml", "ksmg: [\n", nil, "not valid YAML"},
		{"dup", "ksmg.hostname: a\nksmg:\n  hostname: b\n", nil, "line 3: ksmg.hostname given twice"},
		{"nested list", "ksmg.ntp: [[a]]\n", nil, "list items must be plain values"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv, err := ParseSeed([]byte(tc.doc))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(kv, tc.want) {
				t.Fatalf("got %v %v, want %v", kv, err, tc.want)
			}
		})
	}
}

type fixed struct {
	name string
	kv   map[string]string
	err  error
}

func (f fixed) Name() *i18n.Msg                                 { return i18n.Errorf("%s", f.name) }
func (f fixed) Read(context.Context) (map[string]string, error) { return f.kv, f.err }

func TestGatherPrecedence(t *testing.T) {
	r := Gather(context.Background(), []Source{
		fixed{name: "ovf", kv: map[string]string{"ksmg.hostname": "from-ovf", "vami.x": "y"}},
		fixed{name: "kvp", err: ErrAbsent},
		fixed{name: "creds", err: errors.New("permission denied")},
		fixed{name: "seed", kv: map[string]string{"ksmg.hostname": "from-seed", "ksmg.timezone": "UTC"}},
	})
	if r.Values["ksmg.hostname"] != "from-ovf" || r.Values["ksmg.timezone"] != "UTC" || len(r.Values) != 2 {
		t.Fatalf("values %v", r.Values)
	}
	if r.Origin["ksmg.timezone"].String() != "seed" || !reflect.DeepEqual(r.Found, []string{"ovf", "seed"}) {
		t.Fatalf("origin %v found %v", r.Origin, r.Found)
	}
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Error(), "creds: permission denied") {
		t.Fatalf("errors %v", r.Errors)
	}
}

// TestSeedDrive mounts a real filesystem labelled KSMG-SEED the way the
// appliance finds a config drive. Config drives are usually FAT or ISO 9660,
// but this host's kernel has neither module, so the drive is ext4 (built
// with mke2fs -d); mount(8) detects the type the same way for all three.
func TestSeedDrive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a config drive needs root")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "seed.img")
	content := filepath.Join(dir, "content")
	if err := os.Mkdir(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(content, SeedFileName), []byte("ksmg:\n  hostname: gw-seed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"truncate", "-s", "4M", img},
		{"mkfs.ext4", "-q", "-L", "KSMG-SEED", "-d", content, img},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	byLabel := filepath.Join(dir, "by-label")
	if err := os.Mkdir(byLabel, 0o755); err != nil {
		t.Fatal(err)
	}
	// mount(8) sets up a loop device for an image file, as udev's
	// by-label link would point at the block device on the appliance.
	if err := os.Symlink(img, filepath.Join(byLabel, "KSMG-SEED")); err != nil {
		t.Fatal(err)
	}
	kv, err := SeedDrive{ByLabel: byLabel}.Read(context.Background())
	if err != nil || kv["ksmg.hostname"] != "gw-seed" {
		t.Fatalf("kv=%v err=%v", kv, err)
	}
	if _, err := (SeedDrive{ByLabel: filepath.Join(dir, "none"), UdevData: t.TempDir()}).Read(context.Background()); !errors.Is(err, ErrAbsent) {
		t.Fatalf("no drive: %v", err)
	}
}

func TestKVPSetDone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pool := filepath.Join(dir, ".kvp_pool_1")
	k := KVP{Path: pool}
	// No pool yet (hv_kvp_daemon not started): created.
	if err := k.Set(ctx, DoneKey, "pending"); err != nil {
		t.Fatal(err)
	}
	// Another item of the guest stays; our key is replaced, not doubled.
	data, _ := os.ReadFile(pool)
	recs, _ := ParseKVPPool(data)
	other, _ := EncodeKVPPool(append(recs, KVPRecord{"Other", "x"}))
	if err := os.WriteFile(pool, other, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pool, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(ctx, DoneKey, DoneValue); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(pool)
	recs, err := ParseKVPPool(data)
	if err != nil || !reflect.DeepEqual(recs, []KVPRecord{{"Other", "x"}, {DoneKey, DoneValue}}) {
		t.Fatalf("pool after Set: %v %v", recs, err)
	}
	if st, _ := os.Stat(pool); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode changed to %v", st.Mode())
	}
	// Not a Hyper-V guest: no directory, nothing created.
	if err := (KVP{Path: filepath.Join(dir, "nohyperv", ".kvp_pool_1")}).Set(ctx, DoneKey, DoneValue); !errors.Is(err, ErrAbsent) {
		t.Fatalf("Set without the pool directory: %v", err)
	}
}

// TestErrorsLocalize: a source's parse errors are catalog messages, told
// in the reader's language (with the plural form a number of bytes
// takes), and English as errors (logs).
func TestErrorsLocalize(t *testing.T) {
	t.Parallel()
	_, dup := ParseSeed([]byte("ksmg.hostname: a\nksmg:\n  hostname: b\n"))
	for _, tc := range []struct {
		err        error
		lang, want string
	}{
		{dup, i18n.English, "seed file line 3: ksmg.hostname given twice"},
		{dup, i18n.Russian, "файл seed, строка 3: ksmg.hostname указан дважды"},
		{kvpError(t, 1), i18n.Czech, "fond KVP má 1 bajt, což není celý počet záznamů po 2\u00a0560 bajtech"},
		{kvpError(t, 3), i18n.Czech, "fond KVP má 3 bajty, což není celý počet záznamů po 2\u00a0560 bajtech"},
		{kvpError(t, 5), i18n.Czech, "fond KVP má 5 bajtů, což není celý počet záznamů po 2\u00a0560 bajtech"},
		{kvpError(t, 21), i18n.Russian, "пул KVP занимает 21 байт — не целое число записей по 2\u00a0560 байт"},
		{kvpError(t, 22), i18n.Russian, "пул KVP занимает 22 байта — не целое число записей по 2\u00a0560 байт"},
		{kvpError(t, 1), i18n.English, "KVP pool is 1 byte, not a whole number of 2,560-byte records"},
	} {
		if got := i18n.Error(i18n.Printer(tc.lang), tc.err); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.lang, got, tc.want)
		}
	}
	if !strings.Contains(dup.Error(), "given twice") {
		t.Errorf("English error: %v", dup)
	}
}

func kvpError(t *testing.T, n int) error {
	t.Helper()
	_, err := ParseKVPPool(make([]byte, n))
	if err == nil {
		t.Fatalf("a %d-byte pool parsed", n)
	}
	return err
}

// TestUdevDeviceByLabel: without /dev/disk (the first-boot unit's private
// /dev) the drive is found in udev's database, named as the kernel names
// it (the host's first block device stands in, read from the real sysfs).
func TestUdevDeviceByLabel(t *testing.T) {
	devs, err := filepath.Glob("/sys/dev/block/*")
	if err != nil || len(devs) == 0 {
		t.Skip("no block devices in this host's sysfs")
	}
	sort.Strings(devs)
	uevent, err := os.ReadFile(filepath.Join(devs[0], "uevent"))
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, l := range strings.Split(string(uevent), "\n") {
		if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
			name = v
		}
	}
	udev := t.TempDir()
	if err := os.WriteFile(filepath.Join(udev, "b"+filepath.Base(devs[0])), []byte("S:disk/by-label/CIDATA\nE:ID_FS_TYPE=vfat\nE:ID_FS_LABEL=CIDATA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(udev, "b999:999"), []byte("E:ID_FS_LABEL=KSMG-SEED\n"), 0o644); err != nil { // no such device
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(udev, "n2"), []byte("E:ID_FS_LABEL=CIDATA\n"), 0o644); err != nil { // a NIC, not a block device
		t.Fatal(err)
	}
	if got, err := udevDeviceByLabel(udev, SeedLabels); got != "/dev/"+name || err != nil {
		t.Errorf("got %q, %v, want /dev/%s", got, err, name)
	}
	if got, err := udevDeviceByLabel(udev, []string{"OTHER"}); got != "" || err != nil {
		t.Errorf("unknown label found: %q, %v", got, err)
	}
	if got, err := udevDeviceByLabel(filepath.Join(udev, "none"), SeedLabels); got != "" || err != nil {
		t.Errorf("no udev database: %q, %v; want absent", got, err)
	}
	// A database it may not read is an error, not an absent drive.
	if os.Geteuid() != 0 {
		if err := os.Chmod(udev, 0); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.Chmod(udev, 0o755) }()
		if got, err := udevDeviceByLabel(udev, SeedLabels); err == nil {
			t.Errorf("unreadable udev database: %q, no error", got)
		}
	} else {
		if err := os.WriteFile(filepath.Join(udev, "b1:1"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(udev, "b1:2"), 0o755); err != nil { // reading it fails: EISDIR
			t.Fatal(err)
		}
		if got, err := udevDeviceByLabel(udev, SeedLabels); err == nil || !strings.Contains(err.Error(), "udev database") {
			t.Errorf("unreadable udev record: %q, %v; want an error", got, err)
		}
	}
}
