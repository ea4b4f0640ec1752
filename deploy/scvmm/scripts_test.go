package scvmm

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden scripts in testdata")

// goldenCases render every script; variants cover the branches of the
// templates. Values with quotes show the quoting.
var goldenCases = []struct {
	file string
	step string
	v    vars
}{
	{"plan", stepPlan, vars{Name: "ksmg-1"}},
	{"list", stepList, vars{}},
	{"remove", stepRemove, vars{VMID: "3f2b8e4c-0000-4000-8000-000000000001"}},
	{"stop", stepStop, vars{VMID: "3f2b8e4c-0000-4000-8000-000000000001"}},
	{"stop-force", stepStop, vars{VMID: "3f2b8e4c-0000-4000-8000-000000000001", Force: true, JobID: "9d1c7a52-0000-4000-8000-000000000002"}},
	{"rename", stepRename, vars{VMID: "3f2b8e4c-0000-4000-8000-000000000001", NewName: "ksmg-1.ksmg-old"}},
	{"job", stepJob, vars{JobID: "9d1c7a52-0000-4000-8000-000000000002"}},
	{"disk", stepDisk, vars{SharePath: testShare + `\ksmg-0123456789ab.vhdx`}},
	{"refresh", stepRefresh, vars{SharePath: testShare + `\ksmg-0123456789ab.vhdx`}},
	{"refresh-server", stepRefresh, vars{SharePath: testShare + `\ksmg-0123456789ab.vhdx`, LibraryServer: "lib.example.com"}},
	{"template", stepTemplate, vars{Template: "ksmg-0123456789ab", Profile: "ksmg-0123456789ab-hw", DiskID: "disk-1", CPUs: 2, MemoryMiB: 4096, SecureBootTemplate: SecureBootTemplate}},
	{"template-os", stepTemplate, vars{Template: "ksmg-0123456789ab", Profile: "ksmg-0123456789ab-hw", DiskID: "disk-1", CPUs: 2, MemoryMiB: 4096, SecureBootTemplate: SecureBootTemplate, OperatingSystem: "Debian GNU/Linux 12 (64 bit)"}},
	{"create-hostgroup", stepCreate, vars{Name: "ksmg-1", TemplateID: "tmpl-1", CPUs: 4, MemoryMiB: 8192, DiskGB: 40, HostGroup: `All Hosts\Prague`, Description: "ksmg.deploy=pending ksmg.deploy.cpus=4"}},
	{"create-hostgroup-path", stepCreate, vars{Name: "ksmg-1", TemplateID: "tmpl-1", DiskGB: 8, HostGroup: "Prague", Path: `D:\VMs`, Description: "ksmg.deploy=pending"}},
	{"create-cloud", stepCreate, vars{Name: "ksmg-1", TemplateID: "tmpl-1", CPUs: 4, DiskGB: 8, Cloud: "Mail 'DMZ' cloud", Description: "ksmg.deploy=pending"}},
	{"configure", stepConfigure, vars{Name: "ksmg-1", VMID: "vm-1", Network: "Mail DMZ", VLAN: 120, DiskGB: 40}},
	{"configure-untagged", stepConfigure, vars{Name: "ksmg-1", VMID: "vm-1", Network: "Mail DMZ"}},
	{"configure-subnet-cpus", stepConfigure, vars{Name: "ksmg-1", VMID: "vm-1", Network: "Mail DMZ", VMSubnet: "DMZ Prague", CPUs: 8, MemoryMiB: 16384}},
	{"kvp", stepKVP, vars{VMID: "vm-1", HostUser: `EXAMPLE\hvadmin`, Keys: []string{"ksmg.admin.password", "ksmg.eula.accepted", "ksmg.hostname"}}},
	{"unkvp", stepKVPRemove, vars{VMID: "vm-1", HostUser: `EXAMPLE\hvadmin`, Keys: []string{
		"ksmg.admin.password", "ksmg.cluster.join_token",
	}}},
	{"firstboot", stepFirstboot, vars{VMID: "vm-1", HostUser: `EXAMPLE\hvadmin`}},
	{"start", stepStart, vars{VMID: "vm-1"}},
	{"ip", stepIP, vars{VMID: "vm-1"}},
	{"mark", stepMark, vars{VMID: "vm-1", Description: "ksmg.deploy=complete"}},
}

func TestGoldenScripts(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, tc := range goldenCases {
		t.Run(tc.file, func(t *testing.T) {
			seen[tc.step] = true
			tc.v.VMMServer = "localhost"
			got, err := render(tc.step, tc.v)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file+".ps1")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the rendered script (go test -update rewrites it):\n%s", path, got)
			}
			if !strings.HasPrefix(got, "# ksmg-scvmm step="+tc.step+"\n") {
				t.Errorf("script does not start with its step marker")
			}
		})
	}
	for _, tmpl := range scripts.Templates() {
		step, ok := strings.CutSuffix(tmpl.Name(), ".ps1.tmpl")
		if ok && step != "head" && !seen[step] {
			t.Errorf("script %s has no golden case", step)
		}
	}
}

// TestValuesStayQuoted renders every script with a hostile value in every
// string field: it must only appear inside a single-quoted literal, with
// its quote doubled, never as code.
func TestValuesStayQuoted(t *testing.T) {
	t.Parallel()
	const evil = "x'; Remove-Item C:\\ -Recurse; '$(whoami)`"
	const quotedEvil = "'x''; Remove-Item C:\\ -Recurse; ''$(whoami)`'"
	var v vars
	rv := reflect.ValueOf(&v).Elem()
	for i := range rv.NumField() {
		if rv.Field(i).Kind() == reflect.String {
			rv.Field(i).SetString(evil)
		}
	}
	v.Keys = []string{evil}
	for _, tc := range goldenCases {
		got, err := render(tc.step, v)
		if err != nil {
			t.Fatal(err)
		}
		rest := strings.ReplaceAll(got, quotedEvil, "")
		if strings.Contains(rest, "Remove-Item C:") || strings.Contains(rest, "whoami") {
			t.Errorf("%s: a value escaped its quotes:\n%s", tc.file, got)
		}
	}
}
