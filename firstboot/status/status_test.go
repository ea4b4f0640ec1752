package status

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
	"github.com/ksmg-appliance/ksmg/images/boottest"
)

var facts = Facts{
	State: "degraded", Failed: []string{"a.service", "b.service"}, SecureBoot: true,
	VarFSBytes: 100 << 30, VarPartBytes: 101 << 30, DiskBytes: 107374182400,
	Drivers: []string{"vmw_pvscsi", "vmxnet3"}, SSH: "inactive", Gateway: "active",
	Hostname: "gw1.example.com", Version: "0.1.0",
}

// TestLineIsTheBootTestsProtocol: the machine line parses with the boot
// tests' parser into the same values, whatever the system language.
func TestLineIsTheBootTestsProtocol(t *testing.T) {
	t.Parallel()
	m, ok := boottest.ParseStatus("[   12.3] " + facts.Line())
	if !ok {
		t.Fatalf("not a status line: %q", facts.Line())
	}
	want := map[string]string{"state": "degraded", "failed": "a.service,b.service", "secureboot": "1", "var_fs_bytes": "107374182400",
		"var_part_bytes": "108447924224", "disk_bytes": "107374182400", "drivers": "vmw_pvscsi,vmxnet3", "ssh": "inactive",
		"gateway": "active", "hostname": "gw1.example.com", "version": "0.1.0"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s=%q, want %q", k, m[k], v)
		}
	}
	if got := (Facts{}).Line(); got != "KSMG-STATUS state=unknown failed=none secureboot=0 var_fs_bytes=0 var_part_bytes=0 disk_bytes=0 drivers=none ssh=unknown gateway=unknown hostname=unknown version=unknown" {
		t.Errorf("empty facts: %q", got)
	}
}

func TestHumanLine(t *testing.T) {
	t.Parallel()
	for lang, want := range map[string]string{
		i18n.English: "ksmg 0.1.0 on gw1.example.com; system: degraded; 2 failed units: a.service, b.service; Secure Boot on; mail gateway: active; SSH: inactive; /var: 100.0 GiB",
		i18n.Czech:   "ksmg 0.1.0 na gw1.example.com; systém: běží s chybami; 2 selhané jednotky: a.service, b.service; Secure Boot zapnut; poštovní brána: aktivní; SSH: neaktivní; /var: 100,0 GiB",
		i18n.Russian: "ksmg 0.1.0 на gw1.example.com; система: работает с ошибками; 2 сбойных юнита: a.service, b.service; Secure Boot включен; почтовый шлюз: работает; SSH: остановлен; /var: 100,0 ГиБ",
	} {
		if got := facts.Human(i18n.Printer(lang)); got != want {
			t.Errorf("%s:\n got %q\nwant %q", lang, got, want)
		}
	}
	one := facts
	one.Failed = []string{"a.service"}
	if got := one.Human(i18n.Printer(i18n.Russian)); !strings.Contains(got, "1 сбойный юнит: a.service") {
		t.Errorf("Russian singular: %q", got)
	}
}

func TestLanguage(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/default"), 0o755); err != nil {
		t.Fatal(err)
	}
	for content, want := range map[string]string{
		string(i18n.LocaleFile(i18n.Russian)): i18n.Russian,
		"LANG=\"cs_CZ.UTF-8\"\n":              i18n.Czech,
		"LANG=C.UTF-8\n":                      i18n.English,
	} {
		if err := os.WriteFile(filepath.Join(root, "etc/default/locale"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := Language(root); got != want {
			t.Errorf("%q: %s, want %s", content, got, want)
		}
	}
}
