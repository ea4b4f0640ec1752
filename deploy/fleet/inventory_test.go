package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testToken = "join-token-0123456789abcdef"

// writeInventory writes body as fleet.yaml next to a disk image and
// returns its path.
func writeInventory(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.img"), []byte("not really a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const validInventory = `targets:
  site-a:
    kind: fake
    instance: a
    image: disk.img
cluster:
  join_token: {env: FLEET_TEST_TOKEN}
nodes:
  - name: ctl
    target: site-a
    role: control
    addresses:
      ipv4: 192.0.2.10/24
      gateway: 192.0.2.1
  - name: sec-1
    target: site-a
    role: secondary
`

var errMarker = regexp.MustCompile(`#\s*ERR:\s*(.+)$`)

// TestInventoryErrors: every bad inventory is refused with all its problems
// at once, each at the line the "# ERR: reason" comment marks.
func TestInventoryErrors(t *testing.T) {
	t.Setenv("FLEET_TEST_TOKEN", testToken)
	t.Setenv("FLEET_TEST_PW", "Correct-horse-9")
	t.Setenv("FLEET_TEST_WEAK", "abc")
	cases := []struct{ name, yaml string }{
		{"unknown top-level key", "imagez: {}  # ERR: unknown key \"imagez\"\n" + validInventory},
		{"yaml syntax", "targets:\n  a: b\n c: d\n# ERR@2: did not find expected key\n"},
		{"not a mapping", "- a  # ERR: expected a mapping with images\n"},
		{"unknown node key", strings.Replace(validInventory, "  - name: sec-1\n", "  - name: sec-1\n    hostnme: x  # ERR: nodes[1] (sec-1): unknown key \"hostnme\"\n", 1)},
		{"type error", strings.Replace(validInventory, "  - name: sec-1\n", "  - name: sec-1\n    cpus: many  # ERR: nodes[1] (sec-1).cpus: cannot unmarshal !!str `many` into int\n", 1)},
		{"unknown defaults key", "defaults:\n  colour: red  # ERR: defaults: unknown key \"colour\"\n" + validInventory},
		{"weak admin password, said once", strings.Replace(validInventory, "cluster:\n", "cluster:\n  admin_password: {env: FLEET_TEST_WEAK}  # ERR: cluster.admin_password: ksmg.admin.password: password is too short: it has 3 characters, the minimum is 12\n", 1)},
		{"unknown target", strings.Replace(validInventory, "    target: site-a\n    role: secondary", "    target: nowhere  # ERR: target \"nowhere\" is not defined under targets (defined: site-a)\n    role: secondary", 1)},
		{"unknown kind", strings.Replace(validInventory, "kind: fake", "kind: xen  # ERR: kind \"xen\" is not a known driver", 1)},
		{"missing kind", strings.Replace(validInventory, "    kind: fake\n    instance: a\n", "    instance: a\n", 1) + "# ERR@2: kind is required\n"},
		{"missing image", "images:\n  ova: missing.ova  # ERR: images.ova: no such file or directory\n" + validInventory},
		{"missing target image", strings.Replace(validInventory, "image: disk.img", "image: gone.img  # ERR: image", 1)},
		{"two controls", strings.Replace(validInventory, "role: secondary", "role: control", 1) + "# ERR@15: a second control node (the first is at line 9)\n"},
		{"no control", strings.Replace(validInventory, "role: control", "role: secondary", 1) + "# ERR@9: exactly one node must have role control (none has)\n"},
		{"bad role", strings.Replace(validInventory, "role: secondary", "role: worker  # ERR: role \"worker\": expected control or secondary", 1)},
		{"duplicate name", strings.Replace(validInventory, "name: sec-1", "name: ctl  # ERR: VM name \"ctl\" is used twice on target site-a (also at line 9)", 1) + "# ERR@15: hostname \"ctl\" is used twice\n"},
		{"bad name", strings.Replace(validInventory, "name: sec-1", "name: sec/1  # ERR: must not contain /", 1)},
		{"name a replace of another node uses", strings.Replace(validInventory, "name: sec-1", "name: ctl.ksmg-new  # ERR: ends in .ksmg-new", 1)},
		{"name a replace uses for the old VM", strings.Replace(validInventory, "name: sec-1", "name: ctl.ksmg-old  # ERR: ends in .ksmg-old", 1)},
		{"network address", strings.Replace(validInventory, "192.0.2.10/24", "192.0.2.0/24  # ERR: nodes[0] (ctl): ksmg.network.address: \"192.0.2.0/24\" is the network or broadcast address", 1)},
		{"address without prefix", strings.Replace(validInventory, "192.0.2.10/24", "192.0.2.10  # ERR: ksmg.network.address: needs a prefix length", 1)},
		{"gateway outside prefix", strings.Replace(validInventory, "gateway: 192.0.2.1", "gateway: 198.51.100.1  # ERR: ksmg.network.gateway: gateway \"198.51.100.1\" is not inside 192.0.2.0/24", 1)},
		{"static without address", strings.Replace(validInventory, "      ipv4: 192.0.2.10/24\n", "", 1) + "# ERR@13: a static node needs ipv4 and/or ipv6\n# ERR@13: addresses.gateway needs addresses.ipv4\n"},
		{"bad addresses", strings.Replace(validInventory, "    addresses:\n      ipv4: 192.0.2.10/24\n      gateway: 192.0.2.1\n", "    addresses: static  # ERR: addresses: expected dhcp or a mapping\n", 1)},
		{"unknown addresses key", strings.Replace(validInventory, "gateway: 192.0.2.1", "gateway: 192.0.2.1\n      netmask: 24  # ERR: unknown key \"netmask\" (expected one of: dns, gateway, ipv4, ipv6, ipv6_gateway, search)", 1)},
		{"duplicate address", validInventory + "    addresses: {ipv4: 192.0.2.10/24}  # ERR: address 192.0.2.10 is used twice (also at line 13)\n"},
		{"bad hostname", strings.Replace(validInventory, "role: secondary", "role: secondary\n    hostname: Bad_Host  # ERR: ksmg.hostname: host name label \"bad_host\"", 1)},
		{"inline secret", strings.Replace(validInventory, "join_token: {env: FLEET_TEST_TOKEN}", "join_token: s3cr3t-value-0123456789  # ERR: cluster.join_token: inline secrets are not allowed; give {env: NAME} or {file: PATH}", 1)},
		{"unset env", strings.Replace(validInventory, "{env: FLEET_TEST_TOKEN}", "{env: FLEET_TEST_UNSET}  # ERR: environment variable FLEET_TEST_UNSET is not set", 1)},
		{"bad secret ref", strings.Replace(validInventory, "{env: FLEET_TEST_TOKEN}", "{vault: x}  # ERR: \"vault\": expected {env: NAME} or {file: PATH}", 1)},
		{"no join token", strings.Replace(validInventory, "  join_token: {env: FLEET_TEST_TOKEN}\n", "  control_address: ctl.example.com\n", 1) + "# ERR@7: cluster.join_token: required when there are secondary nodes\n"},
		{"bad join token", strings.Replace(validInventory, "FLEET_TEST_TOKEN}", "FLEET_TEST_PW}  # ERR: cluster.join_token: ksmg.cluster.join_token: join token must be 16-512 characters", 1)},
		{"secret in properties", strings.Replace(validInventory, "role: secondary", "role: secondary\n    properties:\n      ksmg.admin.password: hunter2-Hunter2  # ERR: inline secrets are not allowed; give cluster.admin_password as {env: NAME}", 1)},
		{"fleet key in properties", strings.Replace(validInventory, "role: secondary", "role: secondary\n    properties:\n      ksmg.cluster.role: control  # ERR: key \"ksmg.cluster.role\": set it through the node's role", 1)},
		{"non-ksmg property", strings.Replace(validInventory, "role: secondary", "role: secondary\n    properties:\n      guestinfo.x: y  # ERR: key \"guestinfo.x\": first-boot keys start with \"ksmg.\"", 1)},
		{"unknown property", strings.Replace(validInventory, "role: secondary", "role: secondary\n    properties:\n      ksmg.colour: blue  # ERR: ksmg.colour: unknown key", 1)},
		{"bad default once", "defaults:\n  properties:\n    ksmg.timezone: Mars/Olympus  # ERR: defaults.properties: ksmg.timezone: time zone \"Mars/Olympus\" is not in the tz database\n" + validInventory},
		{"bad defaults", "defaults:\n  vlan: 5000  # ERR: defaults.vlan: 5000 is not 0 (untagged) to 4094\n  wait_ip: soon  # ERR: defaults.wait_ip: \"soon\" is not a duration\n" + validInventory},
		{"bad probe", strings.Replace(validInventory, "cluster:\n", "cluster:\n  control_probe: {port: 70000}  # ERR: control_probe.port: 70000 is not 1-65535\n", 1)},
		{"bad control address", strings.Replace(validInventory, "cluster:\n", "cluster:\n  control_address: \"ctl:0\"  # ERR: cluster.control_address: control node \"ctl:0\" has a port outside 1-65535\n", 1)},
		// kind vsphere is registered by vsphere_test.go's import of the driver
		{"undeclared OVA property", strings.Replace("defaults:\n  properties:\n    ksmg.network.interface: ens192  # ERR: defaults.properties: ksmg.network.interface is not a property of the OVA, so target site-a (vsphere) cannot pass it\n"+
			validInventory, "kind: fake", "kind: vsphere", 1)},
		{"several at once", strings.NewReplacer(
			"name: sec-1", "name: sec-1\n    cpu: 2  # ERR: unknown key \"cpu\"",
			"role: secondary", "role: boss  # ERR: role \"boss\"",
			"192.0.2.10/24", "300.0.2.10/24  # ERR: ksmg.network.address",
		).Replace(validInventory)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeInventory(t, tc.yaml)
			want := markers(t, tc.yaml)
			inv, err := Load(p)
			var ie *InventoryError
			if !errors.As(err, &ie) {
				t.Fatalf("Load = %v, %v; want an InventoryError", inv, err)
			}
			got := map[string]bool{}
			for _, e := range ie.Errs {
				got[e.Error()] = false
			}
			for _, w := range want {
				prefix := fmt.Sprintf("%s:%d: ", p, w.line)
				found := false
				for g := range got {
					if strings.HasPrefix(g, prefix) && strings.Contains(g, w.reason) {
						got[g], found = true, true
					}
				}
				if !found {
					t.Errorf("missing error %s...%s\ngot:\n%v", prefix, w.reason, ie)
				}
			}
			for g, matched := range got {
				if !matched {
					t.Errorf("unexpected error: %s", g)
				}
			}
			for _, secret := range []string{testToken, "s3cr3t-value", "Correct-horse-9", "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error message shows a secret value: %v", err)
				}
			}
		})
	}
}

type marker struct {
	line   int
	reason string
}

// markers reads "# ERR: reason" (this line) and "# ERR@N: reason" (line N).
func markers(t *testing.T, body string) []marker {
	var ms []marker
	at := regexp.MustCompile(`^# ERR@(\d+):\s*(.+)$`)
	for i, l := range strings.Split(body, "\n") {
		if m := at.FindStringSubmatch(l); m != nil {
			n, err := strconv.Atoi(m[1])
			if err != nil {
				t.Fatal(err)
			}
			ms = append(ms, marker{n, strings.TrimSpace(m[2])})
		} else if m := errMarker.FindStringSubmatch(l); m != nil {
			ms = append(ms, marker{i + 1, strings.TrimSpace(m[1])})
		}
	}
	if len(ms) == 0 {
		t.Fatal("test case has no # ERR marker")
	}
	return ms
}

// TestDriverSettings: a target's driver settings are checked by the
// driver's strict decode when the fleet opens its targets, with file:line.
func TestDriverSettings(t *testing.T) {
	t.Setenv("FLEET_TEST_TOKEN", testToken)
	newFake(t, "a")
	inst := fmt.Sprintf("instance: %q", instance(t, "a"))
	body := strings.Replace(validInventory, "instance: a", inst+"\n    colour: red\n    delay: 1x", 1)
	p := writeInventory(t, body)
	inv, err := Load(p)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	_, err = Open(context.Background(), inv, nil)
	var ie *InventoryError
	if !errors.As(err, &ie) {
		t.Fatalf("Open = %v, want an InventoryError", err)
	}
	want := []string{
		p + ":5: targets.site-a: unknown key \"colour\" (expected one of: delay, instance)",
		p + ":2: targets.site-a: delay: time: unknown unit",
	}
	if len(ie.Errs) != 1 {
		t.Errorf("got %d errors, want 1 (a decode error stops the driver): %v", len(ie.Errs), ie)
	}
	if !strings.HasPrefix(ie.Errs[0].Error(), want[0]) {
		t.Errorf("got %q, want %q", ie.Errs[0], want[0])
	}

	// a setting only the driver can judge: reported at the target's line
	body = strings.Replace(validInventory, "instance: a", inst+"\n    delay: 1x", 1)
	inv, err = Load(writeInventory(t, body))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), inv, nil)
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), ":2: targets.site-a: delay: time: unknown unit") {
		t.Errorf("Open = %v, want the driver's permanent error at line 2", err)
	}
}

// TestSecretFile: {file: PATH} is read relative to the inventory, must be
// private, and its value lands in the nodes' properties.
func TestSecretFile(t *testing.T) {
	body := strings.Replace(validInventory, "{env: FLEET_TEST_TOKEN}", "{file: token}", 1)
	p := writeInventory(t, body)
	tok := filepath.Join(filepath.Dir(p), "token")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p+":7: cluster.join_token: secret file "+tok+" is readable by others (mode 0644); chmod 600 it") {
		t.Fatalf("Load with a 0644 secret file = %v", err)
	}
	if err := os.Chmod(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := inv.Nodes[1].Properties["ksmg.cluster.join_token"]; got != testToken {
		t.Errorf("secondary's join token %q, want the file's content without newline", got)
	}
	if _, ok := inv.Nodes[0].Properties["ksmg.cluster.join_token"]; ok {
		t.Error("the control node got a join token")
	}
}

// TestLoadValid: what a valid inventory turns into.
func TestLoadValid(t *testing.T) {
	t.Setenv("FLEET_TEST_TOKEN", testToken)
	t.Setenv("FLEET_TEST_HASH", "$6$salt$abcdefghijklmnopqrstuv")
	body := "defaults:\n  cpus: 4\n  memory: 4096\n  wait_ip: 0s\n  properties:\n    ksmg.eula.accepted: \"true\"\n    ksmg.timezone: Europe/Prague\n" +
		strings.Replace(validInventory, "cluster:\n", "cluster:\n  admin_password_hash: {env: FLEET_TEST_HASH}\n", 1) +
		"    cpus: 2\n    hostname: sec-1.example.com\n"
	inv, err := Load(writeInventory(t, body))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Nodes) != 2 || inv.Control != 0 || inv.ControlAddress != "192.0.2.10" {
		t.Fatalf("nodes %d, control %d, control address %q", len(inv.Nodes), inv.Control, inv.ControlAddress)
	}
	ctl, sec := inv.Nodes[0], inv.Nodes[1]
	if ctl.CPUs != 4 || sec.CPUs != 2 || sec.MemoryMiB != 4096 || sec.WaitIP != 0 || !sec.PowerOn {
		t.Errorf("sizes: control %+v secondary %+v", ctl.Node, sec.Node)
	}
	if filepath.Base(sec.Image) != "disk.img" || !filepath.IsAbs(sec.Image) && !strings.Contains(sec.Image, string(filepath.Separator)) {
		t.Errorf("image %q, want disk.img next to the inventory", sec.Image)
	}
	want := map[string]string{
		"ksmg.eula.accepted": "true", "ksmg.timezone": "Europe/Prague", "ksmg.hostname": "sec-1.example.com",
		"ksmg.cluster.role": "secondary", "ksmg.cluster.control_address": "192.0.2.10",
		"ksmg.cluster.join_token": testToken, "ksmg.network.mode": "dhcp",
		"ksmg.admin.password_hash": "$6$salt$abcdefghijklmnopqrstuv",
	}
	if fmt.Sprint(sec.Properties) != fmt.Sprint(want) {
		t.Errorf("secondary properties\n got %v\nwant %v", sec.Properties, want)
	}
	if ctl.Properties["ksmg.network.address"] != "192.0.2.10" || ctl.Properties["ksmg.network.prefix"] != "24" || ctl.Properties["ksmg.network.gateway"] != "192.0.2.1" ||
		ctl.Properties["ksmg.network.mode"] != "static" || ctl.Properties["ksmg.hostname"] != "ctl" {
		t.Errorf("control properties %v", ctl.Properties)
	}
}

// TestExampleInventory: the documented example is valid.
func TestExampleInventory(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("example/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The example's images and secrets, as a build and an admin would
	// provide them; the vsphere kind is registered by vsphere_test.go.
	body := strings.ReplaceAll(string(data), "../../../out/", "")
	for _, f := range []string{"ksmg-0.1.0.ova", "ksmg-0.1.0.vhdx"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "admin.password"), []byte("Example-Passw0rd!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KSMG_JOIN_TOKEN", testToken)
	p := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(p)
	if err != nil {
		t.Fatalf("example inventory: %v", err)
	}
	if len(inv.Nodes) != 3 || inv.Nodes[inv.Control].Name != "ksmg-control" || inv.ControlAddress != "ksmg-control.example.com" || inv.Probe.Port != 25 {
		t.Errorf("example: %d nodes, control %q, address %q, probe %+v", len(inv.Nodes), inv.Nodes[inv.Control].Name, inv.ControlAddress, inv.Probe)
	}

	// The targets' own files (esx-brno's password_file) are taken from
	// the inventory's directory too, not from where ksmg runs: opening
	// gets as far as reaching the (unreachable) hosts.
	if err := os.WriteFile(filepath.Join(dir, "secrets", "esx-brno.password"), []byte("esx-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KSMG_VSPHERE_PASSWORD", "vc-pass")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := Open(ctx, inv, nil)
	if err != nil {
		t.Fatalf("open the example's targets: %v", err)
	}
	f.Close()
}

// TestEmptyInventory: an empty file says so, not EOF.
func TestEmptyInventory(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"", "\n# just a comment\n"} {
		_, err := Parse("fleet.yaml", []byte(body))
		if err == nil || !strings.Contains(err.Error(), "fleet.yaml: the file is empty") || strings.Contains(err.Error(), "EOF") {
			t.Errorf("%q: %v", body, err)
		}
	}
}
