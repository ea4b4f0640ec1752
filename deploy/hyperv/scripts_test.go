package hyperv

// No Hyper-V host can run here, so the scripts the WinRM driver sends are
// checked against golden files (go test ./deploy/hyperv -run Golden
// -update rewrites them) and the driver runs against a fake host on
// winrmtest (deployer_test.go).

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

var update = flag.Bool("update", false, "rewrite the golden scripts in testdata")

const testID = "5c4d2a1e-0b7f-4e42-9c1d-6a8b3f0e2d71"

func TestScriptsGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl string
		data any
	}{
		{"find.ps1", nameData{"ksmg-1"}},
		{"list.ps1", struct{}{}},
		{"create.ps1", createData{VMSpec{Name: "ksmg-1", Path: `D:\VMs\ksmg`, VHDX: `D:\VMs\ksmg\ksmg-1\ksmg-1.vhdx`, CPUs: 4, MemoryMiB: 8192, Switch: "Mail DMZ's switch", VLAN: 120,
			Notes: Notes(deploy.Record{State: PendingMark, Image: "sha256:ab", Version: "0.1.0", CPUs: 4, MemoryMiB: 8192, DiskGiB: 100, Network: "Mail DMZ's switch:120"})}, 8192 << 20}},
		{"resize.ps1", resizeData{`D:\VMs\ksmg\ksmg-1\ksmg-1.vhdx`, 200 << 30}},
		{"kvp.ps1", kvpData{testID, []string{"ksmg.admin.password", "ksmg.hostname"}}},
		{"start.ps1", idData{testID}},
		{"stop.ps1", stopData{testID, 120}},
		{"ip.ps1", idData{testID}},
		{"guestkvp.ps1", idData{testID}},
		{"unkvp.ps1", kvpData{testID, []string{"ksmg.admin.password", "ksmg.cluster.join_token"}}},
		{"notes.ps1", notesData{testID, Notes(deploy.Record{State: deploy.MarkComplete})}},
		{"rename.ps1", renameData{testID, "ksmg-1.ksmg-old"}},
		{"reconfigure.ps1", reconfigureData{ID: testID, CPUs: 8, MemoryBytes: 16 << 30, DiskBytes: 200 << 30, Switch: "Mail", VLAN: 120}},
		{"remove.ps1", removeData{testID, `D:\VMs\ksmg`, `D:\VMs\ksmg\ksmg-1`}},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			t.Parallel()
			got, err := pwsh.Render(scripts, tc.tmpl, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.tmpl)
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n--- got\n%s\n--- want\n%s", tc.tmpl, golden, got, want)
			}
		})
	}
}
