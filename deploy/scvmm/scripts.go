package scvmm

import (
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

//go:embed scripts/*.ps1.tmpl
var scriptFS embed.FS

var scripts = template.Must(template.New("scvmm").Funcs(pwsh.Funcs).ParseFS(scriptFS, "scripts/*.ps1.tmpl"))

// Steps are the scripts, by the name of their template (without
// .ps1.tmpl); each starts with "# ksmg-scvmm step=<step>".
const (
	stepPlan      = "plan"
	stepRemove    = "remove"
	stepJob       = "job"
	stepDisk      = "disk"
	stepRefresh   = "refresh"
	stepTemplate  = "template"
	stepCreate    = "create"
	stepConfigure = "configure"
	stepKVP       = "kvp"
	stepKVPRemove = "unkvp"
	stepFirstboot = "firstboot"
	stepStart     = "start"
	stepIP        = "ip"
	stepMark      = "mark"
	stepStop      = "stop"
	stepRename    = "rename"
	stepList      = "list"
)

// vars are the values a script may use; every string enters the script
// through q (pwsh.Quote), numbers as they are. Secrets are no vars: they
// go on the script's standard input (pwsh.Input).
type vars struct {
	Step, VMMServer string
	Name, VMID      string // the node's VM
	JobID           string
	SharePath       string // UNC path of the VHDX in the library
	LibraryServer   string
	DiskID          string // SCVMM ID of the library VHDX
	Template        string // template and hardware profile names
	Profile         string
	TemplateID      string
	CPUs, MemoryMiB int
	DiskGB          int
	// SecureBootTemplate and OperatingSystem configure the template.
	SecureBootTemplate, OperatingSystem string
	Description                         string
	HostGroup, Cloud, Path              string
	Network, VMSubnet                   string
	VLAN                                int
	HostUser                            string
	Keys                                []string // KVP items to set (values on standard input) or remove
	NewName                             string   // rename
	Force                               bool     // stop: turn off rather than shut down
}

// render returns the script of step with v.
func render(step string, v vars) (string, error) {
	v.Step = step
	return pwsh.Render(scripts, step+".ps1.tmpl", v)
}

// result is what every script prints as its last line: one JSON object;
// error and kind when the script failed on purpose.
type result struct {
	Error string `json:"error"`
	Kind  string `json:"kind"` // "config": a retry cannot help
}

// lastJSON returns the last line of stdout that is a JSON object: the
// script's result. Anything a cmdlet printed before it is ignored.
func lastJSON(stdout string) (string, bool) {
	lines := strings.Split(strings.ReplaceAll(stdout, "\r\n", "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "{") && json.Valid([]byte(l)) {
			return l, true
		}
	}
	return "", false
}

// strs decodes a JSON string or list of strings: ConvertTo-Json in
// Windows PowerShell writes a one-element array as the element itself in
// some pipelines.
type strs []string

func (s *strs) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if one == "" {
			*s = nil
		} else {
			*s = strs{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("expected a string or a list of strings, got %s", b)
	}
	*s = many
	return nil
}
