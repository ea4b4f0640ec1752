// Package pwsh runs PowerShell on Windows hosts for the Hyper-V and SCVMM
// drivers: a Runner interface (WinRM from any OS, via
// github.com/masterzen/winrm), script rendering from text/template with
// PowerShell-safe quoting, and an SMB copier (github.com/hirochachacha/go-smb2)
// that puts disks on host and library shares.
//
// Scripts are rendered from templates in the driver packages and checked
// against golden files there; values only ever enter a script through Quote,
// so a VM name cannot break out of its string literal. Secrets never enter
// a script at all: PowerShell's script-block logging (event 4104) records
// script text, and a command line is visible to every process on the host.
// They travel in the Input of Run, on the remote shell's standard input,
// and a script reads them from $KsmgInput.
package pwsh

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"
)

// Output is what a script printed and its exit status.
type Output struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Runner runs one PowerShell script on a host. Implementations are safe for
// concurrent use.
type Runner interface {
	// Run runs script; input (secrets, or values too long or too
	// sensitive for the script text) reaches it on standard input and is
	// $KsmgInput there, a hashtable of strings. nil sends none.
	Run(ctx context.Context, script string, input Input) (Output, error)
}

// Input is what a script gets on standard input: names to strings.
type Input map[string]string

// EncodeInput is input as it travels on standard input: base64 of its
// JSON (ASCII, so no console code page can change a byte), one line.
func EncodeInput(in Input) (string, error) {
	if in == nil {
		in = Input{}
	}
	b, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("encode script input: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b) + "\r\n", nil
}

// DecodeInput is the inverse of EncodeInput; tests' fake hosts use it.
func DecodeInput(s string) (Input, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("script input: %w", err)
	}
	var in Input
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("script input: %w", err)
	}
	return in, nil
}

// ScriptError is a script that ran and failed: the host's own words.
type ScriptError struct {
	Step     string // what the script was for, e.g. "create VM ksmg-1"
	ExitCode int
	Stderr   string
}

func (e *ScriptError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = "no error output"
	}
	return fmt.Sprintf("%s: PowerShell exited %d: %s", e.Step, e.ExitCode, msg)
}

// Quote returns s as a single-quoted PowerShell string literal. Inside
// single quotes PowerShell expands nothing; the quote characters themselves
// (ASCII and the typographic ones PowerShell also accepts) are doubled.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'', '\u2018', '\u2019', '\u201a', '\u201b':
			b.WriteRune(r)
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
	return b.String()
}

// Funcs are the template functions every script template may use:
// q quotes a string, qs quotes each element of a list into @(...).
var Funcs = template.FuncMap{
	"q": Quote,
	"qs": func(ss []string) string {
		qs := make([]string, len(ss))
		for i, s := range ss {
			qs[i] = Quote(s)
		}
		return "@(" + strings.Join(qs, ", ") + ")"
	},
}

// Render executes the named template of t with data.
func Render(t *template.Template, name string, data any) (string, error) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		return "", fmt.Errorf("render %s: %w", name, err)
	}
	return buf.String(), nil
}

// Copier puts a local file on a Windows share. remote is a UNC path such as
// \\hv1.example.com\VMs$\ksmg-1\ksmg.vhdx; the copy lands under a temporary
// name and is renamed when complete, so a half-copied disk never sits at the
// final path. progress, if not nil, is called with bytes copied so far.
type Copier interface {
	Copy(ctx context.Context, local, remote string, progress func(done, total int64)) error
}

// WinRMConfig is how to reach a host's WinRM listener. The password comes
// from the environment or a file, never from the command line.
type WinRMConfig struct {
	Host     string // DNS name or address
	Port     int    // 0: 5986 with HTTPS, 5985 without
	HTTPS    bool
	Insecure bool   // skip TLS verification (lab hosts with self-signed certificates)
	CACert   []byte // PEM bundle to verify the listener's certificate
	User     string // DOMAIN\user or user@domain
	Password string
	NTLM     bool // NTLM authentication (and message encryption over HTTP) instead of Basic
	// AllowUnencrypted permits Basic authentication over plain HTTP, which
	// sends the password in clear: test servers and isolated labs only.
	AllowUnencrypted bool
}

// SMBConfig is how to reach the SMB shares of a host or an SCVMM library
// server; credentials as for WinRM.
type SMBConfig struct {
	User     string
	Password string
	Domain   string
	Port     int // 0: 445
}
