package appliance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultSpec(t *testing.T) {
	s, err := Load("")
	if err != nil {
		t.Fatalf("embedded default spec: %v", err)
	}
	// The product's VM (data contract / issue): 4 vCPU, 8 GB, >= 100 GB thin.
	if s.Hardware.CPUs != 4 || s.Hardware.MemoryMiB != 8192 {
		t.Errorf("hardware = %+v, want 4 vCPU and 8192 MiB", s.Hardware)
	}
	if s.Disk.Size < 100<<30 {
		t.Errorf("disk.size = %s, want at least 100GiB", s.Disk.Size)
	}
	if s.Distribution.Suite != "trixie" {
		t.Errorf("suite = %q", s.Distribution.Suite)
	}
	for _, d := range s.Directories {
		if d.Owner != "kluser" || d.Mode != 0o750 {
			t.Errorf("directory %s: %s %04o, data contract says kluser 0750", d.Path, d.Owner, uint32(d.Mode))
		}
	}
	if s.Source != DefaultName || s.ImageBase() != "ksmg-"+s.Version {
		t.Errorf("Source %q ImageBase %q", s.Source, s.ImageBase())
	}
	// The file in the repository is the embedded one.
	onDisk, err := os.ReadFile("appliance.yaml")
	if err != nil || string(onDisk) != string(DefaultYAML()) {
		t.Errorf("appliance.yaml differs from the embedded default (err %v)", err)
	}
	if !strings.Contains(EULA(), "placeholder") {
		t.Errorf("EULA text not embedded")
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"100GiB", 100 << 30, true},
		{"64MiB", 64 << 20, true},
		{"4096", 4096, true},
		{"1 TiB", 1 << 40, true},
		{"100GB", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"99999999999TiB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestInvalidSpecs changes the default spec one line at a time and checks
// the error names the file, the key and what was expected.
func TestInvalidSpecs(t *testing.T) {
	base := string(DefaultYAML())
	for _, tc := range []struct {
		name, old, new string
		want           []string // all must appear in the error
	}{
		{"unknown top-level key", "name: ksmg", "name: ksmg\ncolour: blue", []string{"colour"}},
		{"unknown nested key", "  cpus: 4", "  cpus: 4\n  gpus: 1", []string{"hardware", "gpus"}},
		{"unknown key in list item", "{name: esp, type: esp, size: 64MiB}", "{name: esp, type: esp, size: 64MiB, sise: 1}", []string{"partitions[0]", "sise"}},
		{"cpus not a number", "  cpus: 4", "  cpus: four", []string{"cpus", "int"}},
		{"cpus quoted", "  cpus: 4", "  cpus: \"4\"", []string{"cpus"}},
		{"cpus zero", "  cpus: 4", "  cpus: 0", []string{"hardware.cpus", "1..128"}},
		{"bad size unit", "  size: 100GiB", "  size: 100GB", []string{"disk.size", "KiB, MiB, GiB or TiB"}},
		{"mode unquoted", `{path: /var/log/kaspersky, owner: kluser, group: kluser, mode: "0750"}`, `{path: /var/log/kaspersky, owner: kluser, group: kluser, mode: 750}`, []string{"mode", "quoted octal"}},
		{"mode not octal", `mode: "0750"}`, `mode: "0790"}`, []string{"mode", "octal"}},
		{"unknown owner", "{path: /etc/opt/kaspersky, owner: kluser", "{path: /etc/opt/kaspersky, owner: nobody1", []string{"directories[0].owner", "nobody1"}},
		{"relative directory", "{path: /etc/opt/kaspersky,", "{path: etc/opt,", []string{"directories[0].path", "absolute"}},
		{"suite", "suite: trixie", "suite: bookworm", []string{"distribution.suite", "trixie"}},
		{"mirror", "mirror: http://deb.debian.org/debian", "mirror: deb.debian.org", []string{"distribution.mirror", "URL"}},
		{"unknown update suite", "updates: [trixie-updates, trixie-security]", "updates: [trixie-updates, trixie-backports]", []string{"distribution.updates[1]", "trixie-security"}},
		{"update twice", "updates: [trixie-updates, trixie-security]", "updates: [trixie-updates, trixie-updates]", []string{"distribution.updates[1]", "twice"}},
		{"security mirror", "security_mirror: http://deb.debian.org/debian-security", "security_mirror: security.debian.org", []string{"distribution.security_mirror", "URL"}},
		{"security mirror unused", "updates: [trixie-updates, trixie-security]", "updates: [trixie-updates]", []string{"distribution.security_mirror", "not in distribution.updates"}},
		{"package name", "  - less", "  - Less!", []string{"packages[", "Debian package name"}},
		{"duplicate package", "  - less", "  - less\n  - less", []string{"listed twice"}},
		{"unit name", "    - ksmg-console-status.service", "    - ksmg console", []string{"services.enable", "unit"}},
		{"two roots", "{name: var, type: var,", "{name: var, type: root,", []string{"exactly one partition of type var"}},
		{"grow not last", "{name: root, type: root, size: 2GiB, mount: /}", "{name: root, type: root, size: 2GiB, mount: /, grow: true}", []string{"partitions[1].grow"}},
		{"partitions too big", "size: 2GiB", "size: 200GiB", []string{"more than disk.size"}},
		{"wrong mount", "mount: /var, grow", "mount: /srv, grow", []string{"partitions[2].mount", "/var"}},
		{"uid out of range", "uid: 950", "uid: 1000", []string{"accounts[0].uid", "100 and 999"}},
		{"no formats", "formats: [raw, ova, vhdx]", "formats: []", []string{"formats", "at least"}},
		{"firmware", "firmware: efi", "firmware: bios", []string{"hardware.firmware"}},
		{"yaml syntax", "formats: [raw, ova, vhdx]", "formats: [raw, ova", []string{"not valid YAML"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(base, tc.old) {
				t.Fatalf("test bug: %q not in default spec", tc.old)
			}
			file := filepath.Join(t.TempDir(), "spec.yaml")
			if err := os.WriteFile(file, []byte(strings.Replace(base, tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(file)
			if err == nil {
				t.Fatalf("Load accepted the spec")
			}
			msg := err.Error()
			for _, w := range append([]string{file}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestSources(t *testing.T) {
	t.Parallel()
	spec, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	want := "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie-updates main\n" +
		"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security trixie-security main\n"
	if got := spec.Distribution.SourcesList(); got != want {
		t.Errorf("sources.list:\n%s\nwant:\n%s", got, want)
	}
}
