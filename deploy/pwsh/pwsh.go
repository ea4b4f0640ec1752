// Package pwsh runs PowerShell on Windows hosts for the Hyper-V and SCVMM
// drivers: a Runner interface (WinRM from any OS, via
// github.com/masterzen/winrm), script rendering from text/template with
// PowerShell-safe quoting, and an SMB copier (github.com/hirochachacha/go-smb2)
// that puts disks on host and library shares.
//
// Scripts are rendered from templates in the driver packages and checked
// against golden files there; values only ever enter a script through Quote,
// so a VM name or password cannot break out of its string literal.
package pwsh

import (
	"bytes"
	"context"
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
	Run(ctx context.Context, script string) (Output, error)
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
