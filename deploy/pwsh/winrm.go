package pwsh

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"

	"github.com/masterzen/winrm"
)

// CommandLineMax is the longest command line cmd.exe, which runs WinRM
// commands, accepts.
const CommandLineMax = 8191

// chunkSize is how many base64 characters one upload command carries; the
// rest of the command line is the redirection to the temporary file.
const chunkSize = 8000

// psExe starts Windows PowerShell the way every script runs: no profile
// (a profile could print or fail), no prompts.
const psExe = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "

// NewWinRM returns a Runner that runs scripts on cfg.Host over WinRM with
// github.com/masterzen/winrm.
//
// Input goes on the command's standard input, which is then closed, and
// the script finds it in $KsmgInput. A script runs in Windows PowerShell
// with $ErrorActionPreference = 'Stop';
// an error it does not catch is written to stderr as text and exits 1. A
// script short enough goes in one -EncodedCommand; a longer one (the
// command line is limited to 8191 characters) is uploaded in base64 chunks
// to a temporary file in the user's %TEMP%, which the bootstrap command
// reads, deletes and runs. Script text may hold secrets and is never logged.
//
// Cancelling ctx terminates the running command on the host; a request
// already in flight still waits up to its response timeout, since the
// library's requests take no context.
func NewWinRM(cfg WinRMConfig) (Runner, error) {
	if cfg.Host == "" {
		return nil, errors.New("winrm: host must not be empty")
	}
	if cfg.User == "" {
		return nil, fmt.Errorf("winrm %s: user must not be empty", cfg.Host)
	}
	if !cfg.HTTPS && !cfg.NTLM && !cfg.AllowUnencrypted {
		return nil, fmt.Errorf("winrm %s: Basic authentication over plain HTTP sends the password in clear; use HTTPS or NTLM", cfg.Host)
	}
	if len(cfg.CACert) > 0 && !cfg.HTTPS {
		return nil, fmt.Errorf("winrm %s: a CA certificate needs HTTPS", cfg.Host)
	}
	port := cfg.Port
	if port == 0 {
		port = 5985
		if cfg.HTTPS {
			port = 5986
		}
	}
	var ca []byte
	if len(cfg.CACert) > 0 {
		ca = cfg.CACert
	}
	// The response-header timeout must outlast the WS-Man operation
	// timeout (PT60S), or every long-running Receive would fail.
	ep := winrm.NewEndpoint(cfg.Host, port, cfg.HTTPS, cfg.Insecure, ca, nil, nil, 90*time.Second)
	params := *winrm.DefaultParameters
	switch {
	case cfg.NTLM && cfg.HTTPS:
		params.TransportDecorator = func() winrm.Transporter { return &winrm.ClientNTLM{} }
	case cfg.NTLM:
		// Over HTTP, NTLM also seals every message (WinRM's default
		// AllowUnencrypted=false requires it).
		params.TransportDecorator = func() winrm.Transporter {
			enc, err := winrm.NewEncryption("ntlm")
			if err != nil {
				panic(err) // "ntlm" is a constant the library supports
			}
			return enc
		}
	}
	r := &winrmRunner{host: cfg.Host, ep: ep, params: &params, user: cfg.User, password: cfg.Password}
	// Build one client now so bad TLS material fails here, not at the
	// first script.
	if _, err := r.client(); err != nil {
		return nil, err
	}
	return r, nil
}

type winrmRunner struct {
	host           string
	ep             *winrm.Endpoint
	params         *winrm.Parameters
	user, password string
}

// client makes a client per run: the library's NTLM encryption keeps
// per-request state in its transport and is not safe for concurrent use.
func (r *winrmRunner) client() (*winrm.Client, error) {
	c, err := winrm.NewClientWithParameters(r.ep, r.user, r.password, r.params)
	if err != nil {
		return nil, fmt.Errorf("winrm %s: %w", r.host, err)
	}
	return c, nil
}

// Run implements Runner.
func (r *winrmRunner) Run(ctx context.Context, script string, input Input) (Output, error) {
	if err := ctx.Err(); err != nil {
		return Output{}, err
	}
	c, err := r.client()
	if err != nil {
		return Output{}, err
	}
	shell, err := c.CreateShell()
	if err != nil {
		return Output{}, fmt.Errorf("winrm %s: open shell: %w", r.host, err)
	}
	defer shell.Close()

	cmds, tmp, err := Commands(script)
	if err != nil {
		return Output{}, err
	}
	stdin, err := EncodeInput(input)
	if err != nil {
		return Output{}, err
	}
	for i, cmd := range cmds {
		var out Output
		err := ctx.Err()
		last := i == len(cmds)-1
		if err == nil {
			in := ""
			if last {
				in = stdin
			}
			out, err = execute(ctx, shell, cmd, in)
		}
		if err == nil && !last && out.ExitCode != 0 {
			err = fmt.Errorf("upload script chunk %d/%d: exit %d: %s", i+1, len(cmds)-1, out.ExitCode, strings.TrimSpace(out.Stderr))
		}
		if err != nil {
			if tmp != "" {
				// The uploaded script may hold secrets: remove it even
				// though ctx may be done.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				_, _ = execute(cctx, shell, `del /f /q "%TEMP%\`+tmp+`"`, "")
				cancel()
			}
			if ctx.Err() != nil {
				return out, fmt.Errorf("winrm %s: %w", r.host, ctx.Err())
			}
			return out, fmt.Errorf("winrm %s: %w", r.host, err)
		}
		if last {
			out.Stderr = DecodeCLIXML(out.Stderr)
			return out, nil
		}
	}
	panic("unreachable")
}

// execute runs one command in shell and collects its output; a
// powershell.exe command gets stdin on its standard input, which is then
// closed (so it never waits for more). cmd.exe commands get none: they may
// have ended before input could arrive.
func execute(ctx context.Context, shell *winrm.Shell, command, stdin string) (Output, error) {
	powershell := strings.HasPrefix(command, psExe)
	cmd, err := shell.ExecuteWithContext(ctx, command)
	if err != nil {
		return Output{ExitCode: -1}, fmt.Errorf("execute: %w", err)
	}
	if powershell {
		// (winrm's WriteClose never sends the end of input: Write, then
		// Close.)
		err := error(nil)
		if stdin != "" {
			_, err = cmd.Stdin.Write([]byte(stdin))
		}
		if err == nil {
			err = cmd.Stdin.Close()
		}
		if err != nil {
			_ = cmd.Close()
			return Output{ExitCode: -1}, fmt.Errorf("execute: send input: %w", err)
		}
	}
	var stdout, stderr bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _, _ = io.Copy(&stdout, cmd.Stdout) }()
	go func() { defer wg.Done(); _, _ = io.Copy(&stderr, cmd.Stderr) }()
	cmd.Wait()
	wg.Wait()
	out := Output{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: cmd.ExitCode()}
	if err := cmd.Error(); err != nil {
		out.ExitCode = -1
		return out, err
	}
	_ = cmd.Close()
	return out, nil
}

// readInput is the first line of what runs on the host: it takes standard
// input (EncodeInput) before anything else can, at the top level where
// $input is the process's standard input (as Ansible's WinRM bootstrap
// does).
const readInput = "$KsmgStdin = @($input) -join ''\n"

// Wrap is what actually runs on the host for script: the input decoded
// into $KsmgInput, and script's uncaught errors as plain text on stderr
// with exit 1 (otherwise powershell.exe under WinRM serialises them as
// CLIXML and may still exit 0).
func Wrap(script string) string {
	return "$ProgressPreference = 'SilentlyContinue'\n" +
		"$ErrorActionPreference = 'Stop'\n" +
		"try {\n" +
		"$KsmgInput = @{}\n" +
		"if ($KsmgStdin) { ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($KsmgStdin)) | ConvertFrom-Json).PSObject.Properties | ForEach-Object { $KsmgInput[$_.Name] = [string]$_.Value } }\n" +
		script + "\n} catch {\n" +
		"  [Console]::Error.WriteLine(($_ | Out-String).Trim())\n" +
		"  exit 1\n}\n"
}

// EncodeCommand is PowerShell's -EncodedCommand form of script: base64 of
// its UTF-16LE text.
func EncodeCommand(script string) string {
	u := utf16.Encode([]rune(script))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i] = byte(c)
		b[2*i+1] = byte(c >> 8)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// DecodeCommand is the inverse of EncodeCommand.
func DecodeCommand(enc string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(b)%2 != 0 {
		return "", fmt.Errorf("not an encoded command")
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
	}
	return string(utf16.Decode(u)), nil
}

// Commands returns the cmd.exe command lines that run script: a single
// powershell.exe -EncodedCommand when it fits, otherwise upload commands
// (">>"%TEMP%\tmp" echo <base64>") and the bootstrap last; tmp is the
// temporary file's name then, "" otherwise. Exported for the tests of the
// drivers, which decode what their fake hosts receive.
func Commands(script string) (cmds []string, tmp string, err error) {
	wrapped := Wrap(script)
	if direct := psExe + EncodeCommand(readInput+wrapped); len(direct) <= CommandLineMax {
		return []string{direct}, "", nil
	}
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, "", fmt.Errorf("temporary script name: %w", err)
	}
	tmp = "ksmg-" + hex.EncodeToString(rnd[:]) + ".b64"
	payload := base64.StdEncoding.EncodeToString([]byte(wrapped))
	for len(payload) > 0 {
		n := min(chunkSize, len(payload))
		// Redirection first: a chunk ending in 1 or 2 before ">>" would
		// redirect a handle instead.
		cmds = append(cmds, `>>"%TEMP%\`+tmp+`" echo `+payload[:n])
		payload = payload[n:]
	}
	boot := readInput + "$ProgressPreference = 'SilentlyContinue'\n" +
		"$f = Join-Path $env:TEMP " + Quote(tmp) + "\n" +
		"try { $s = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([IO.File]::ReadAllText($f))) }\n" +
		"finally { Remove-Item -LiteralPath $f -Force -ErrorAction SilentlyContinue }\n" +
		"& ([scriptblock]::Create($s))\n"
	cmds = append(cmds, psExe+EncodeCommand(boot))
	return cmds, tmp, nil
}

var (
	clixmlString = regexp.MustCompile(`(?s)<S S="Error">(.*?)</S>`)
	clixmlEscape = regexp.MustCompile(`_x([0-9A-Fa-f]{4})_`)
)

// DecodeCLIXML turns the CLIXML that powershell.exe writes to a redirected
// stderr ("#< CLIXML" and <S S="Error"> elements) back into text; other
// input is returned as it is.
func DecodeCLIXML(s string) string {
	body, ok := strings.CutPrefix(strings.TrimLeft(s, "\r\n "), "#< CLIXML")
	if !ok {
		return s
	}
	var b strings.Builder
	for _, m := range clixmlString.FindAllStringSubmatch(body, -1) {
		t := html.UnescapeString(m[1])
		t = clixmlEscape.ReplaceAllStringFunc(t, func(e string) string {
			v, _ := strconv.ParseUint(e[2:6], 16, 16)
			return string(rune(v))
		})
		b.WriteString(t)
	}
	return strings.TrimRight(b.String(), "\r\n")
}
