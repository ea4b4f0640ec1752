package pwsh_test

// No Windows host can run here: these tests run the WinRM runner against
// pwshtest, a fake host on github.com/dylanmei/winrmtest, which checks the
// command lines the runner sends and plays cmd.exe and powershell.exe for
// them.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
	"github.com/ksmg-appliance/ksmg/deploy/pwsh/pwshtest"
)

func TestWinRMRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		reply  pwshtest.Reply
		want   pwsh.Output
	}{
		{"stdout", "Get-VM -Name 'a'", pwshtest.Reply{Stdout: "vm-1\r\n"}, pwsh.Output{Stdout: "vm-1\r\n"}},
		{"exit code and stderr", "exit 3", pwshtest.Reply{Stderr: "boom", ExitCode: 3}, pwsh.Output{Stderr: "boom", ExitCode: 3}},
		{"quotes and unicode", "Write-Output 'it''s “Žluťoučký” $x `n'", pwshtest.Reply{Stdout: "ok"}, pwsh.Output{Stdout: "ok"}},
		{"CLIXML stderr", "Write-Error x", pwshtest.Reply{
			Stderr:   "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\"><S S=\"Error\">VM &apos;a&apos; not found_x000D__x000A_</S><S S=\"Error\">at line 1_x000D__x000A_</S></Objs>",
			ExitCode: 1,
		}, pwsh.Output{Stderr: "VM 'a' not found\r\nat line 1", ExitCode: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := pwshtest.NewHost(func(string) pwshtest.Reply { return tc.reply })
			defer h.Close()
			r, err := pwsh.NewWinRM(h.Config)
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.Run(context.Background(), tc.script, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out != tc.want {
				t.Errorf("Run = %+v, want %+v", out, tc.want)
			}
			if got := h.Scripts(); len(got) != 1 || got[0] != tc.script {
				t.Errorf("host ran %q, want [%q]", got, tc.script)
			}
			if n := len(h.Commands()); n != 1 {
				t.Errorf("a short script took %d commands, want 1", n)
			}
		})
	}
}

// longScript is a script far beyond the command-line limit with a secret
// in it, as a deploy script with first-boot answers is.
func longScript() string {
	var b strings.Builder
	b.WriteString("$secret = 'S3cr3t-P@ss'\n")
	for i := range 800 {
		fmt.Fprintf(&b, "Write-Output 'line %04d of a long script'\n", i)
	}
	return b.String()
}

func TestWinRMLongScript(t *testing.T) {
	t.Parallel()
	script := longScript()
	h := pwshtest.NewHost(func(s string) pwshtest.Reply { return pwshtest.Reply{Stdout: fmt.Sprint(len(s))} })
	defer h.Close()
	r, err := pwsh.NewWinRM(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.Run(context.Background(), script, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Stdout != fmt.Sprint(len(script)) || out.ExitCode != 0 {
		t.Errorf("Run = %+v", out)
	}
	if got := h.Scripts(); len(got) != 1 || got[0] != script {
		t.Fatalf("host did not run the script as written (%d scripts)", len(got))
	}
	cmds := h.Commands()
	if len(cmds) < 3 {
		t.Errorf("%d-byte script sent in %d commands; want chunks and a bootstrap", len(script), len(cmds))
	}
	for i, c := range cmds {
		if len(c) > pwsh.CommandLineMax {
			t.Errorf("command %d is %d characters, over cmd.exe's %d", i, len(c), pwsh.CommandLineMax)
		}
		if strings.Contains(c, "S3cr3t") {
			t.Errorf("command %d carries the secret in clear", i)
		}
	}
	if left := h.TempFiles(); len(left) != 0 {
		t.Errorf("script file left in %%TEMP%%: %v", left)
	}
}

// TestWinRMCancelUpload cancels in the middle of a chunked upload: Run
// reports the cancellation, the script never runs and the partial file
// (it may hold secrets) is deleted.
func TestWinRMCancelUpload(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := pwshtest.NewHost(func(string) pwshtest.Reply { return pwshtest.Reply{} })
	defer h.Close()
	uploads := 0
	h.Hook = func(cmd string) {
		if strings.HasPrefix(cmd, ">>") {
			if uploads++; uploads == 2 {
				cancel()
			}
		}
	}
	r, err := pwsh.NewWinRM(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(ctx, longScript(), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v, want context.Canceled", err)
	}
	if len(h.Scripts()) != 0 {
		t.Error("the script ran after cancellation")
	}
	if left := h.TempFiles(); len(left) != 0 {
		t.Errorf("partial script left in %%TEMP%%: %v", left)
	}
	cmds := h.Commands()
	if last := cmds[len(cmds)-1]; !strings.HasPrefix(last, "del /f /q ") {
		t.Errorf("last command %.40q, want the temp file deleted", last)
	}
}

// TestWinRMConcurrent runs scripts from several goroutines on one runner:
// each gets its own output.
func TestWinRMConcurrent(t *testing.T) {
	t.Parallel()
	h := pwshtest.NewHost(func(s string) pwshtest.Reply { return pwshtest.Reply{Stdout: "echo:" + s} })
	defer h.Close()
	r, err := pwsh.NewWinRM(h.Config)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := fmt.Sprintf("Get-VM -Name 'n%d'", i)
			out, err := r.Run(context.Background(), s, nil)
			if err != nil || out.Stdout != "echo:"+s {
				t.Errorf("run %d: %+v, %v", i, out, err)
			}
		})
	}
	wg.Wait()
}

func TestWinRMTransportError(t *testing.T) {
	t.Parallel()
	h := pwshtest.NewHost(func(string) pwshtest.Reply { return pwshtest.Reply{} })
	cfg := h.Config
	h.Close()
	r, err := pwsh.NewWinRM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Run(context.Background(), "Get-VM", nil)
	if err == nil || !strings.Contains(err.Error(), "winrm "+cfg.Host) {
		t.Fatalf("Run against a closed host: %v, want an error naming the host", err)
	}
}

func TestNewWinRMConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  pwsh.WinRMConfig
		want string // error substring; "" is valid
	}{
		{"no host", pwsh.WinRMConfig{User: "u"}, "host must not be empty"},
		{"no user", pwsh.WinRMConfig{Host: "h", HTTPS: true}, "user must not be empty"},
		{"basic over http", pwsh.WinRMConfig{Host: "h", User: "u"}, "in clear"},
		{"ca without https", pwsh.WinRMConfig{Host: "h", User: "u", NTLM: true, CACert: []byte("x")}, "needs HTTPS"},
		{"bad ca", pwsh.WinRMConfig{Host: "h", User: "u", HTTPS: true, CACert: []byte("not pem")}, "certificates"},
		{"https basic", pwsh.WinRMConfig{Host: "h", User: "u", HTTPS: true}, ""},
		{"ntlm over http", pwsh.WinRMConfig{Host: "h", User: `D\u`, NTLM: true}, ""},
		{"ntlm over https", pwsh.WinRMConfig{Host: "h", User: "u@d", NTLM: true, HTTPS: true, Insecure: true}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := pwsh.NewWinRM(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("NewWinRM: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("NewWinRM: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

var uploadLine = regexp.MustCompile(`^>>"%TEMP%\\ksmg-[0-9a-f]{32}\.b64" echo [A-Za-z0-9+/=]+$`)

// TestCommandsBoundary checks scripts around the single-command limit.
func TestCommandsBoundary(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1000, 2800, 2900, 3100, 5000, 100000} {
		script := strings.Repeat("x", n)
		cmds, tmp, err := pwsh.Commands(script)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range cmds {
			if len(c) > pwsh.CommandLineMax {
				t.Errorf("%d: command %d is %d characters", n, i, len(c))
			}
			if i < len(cmds)-1 && !uploadLine.MatchString(c) {
				t.Errorf("%d: upload command %d malformed: %.60q", n, i, c)
			}
		}
		if (len(cmds) == 1) != (tmp == "") {
			t.Errorf("%d: %d commands with temp file %q", n, len(cmds), tmp)
		}
		enc := strings.Fields(cmds[len(cmds)-1])
		if _, err := pwsh.DecodeCommand(enc[len(enc)-1]); err != nil {
			t.Errorf("%d: last command is not an encoded PowerShell command", n)
		}
	}
}

// TestWinRMInput: the input reaches the script on standard input, whole
// (UTF-8, quotes, newlines), for a short script and a chunked one alike,
// and never appears in a command line or the script text.
func TestWinRMInput(t *testing.T) {
	t.Parallel()
	secret := "Žluť-'In@put\"\n$(x)`"
	for _, script := range []string{"Write-Output $KsmgInput['pw'].Length", longScript()} {
		var got pwsh.Input
		h := pwshtest.NewHostInput(func(s string, in pwsh.Input) pwshtest.Reply {
			got = in
			return pwshtest.Reply{Stdout: "ok"}
		})
		r, err := pwsh.NewWinRM(h.Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Run(context.Background(), script, pwsh.Input{"pw": secret, "host": "hv1"}); err != nil {
			t.Fatal(err)
		}
		if got["pw"] != secret || got["host"] != "hv1" {
			t.Errorf("input %q, want the secret and hv1", got)
		}
		enc, _ := pwsh.EncodeInput(pwsh.Input{"pw": secret})
		for i, c := range h.Commands() {
			text := c
			if e, ok := strings.CutPrefix(c, "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "); ok {
				text, _ = pwsh.DecodeCommand(e)
			}
			if strings.Contains(text, "In@put") || strings.Contains(c, strings.TrimSpace(enc)) {
				t.Errorf("command %d carries the input", i)
			}
		}
		for _, s := range h.Scripts() {
			if strings.Contains(s, "In@put") {
				t.Error("the script text carries the input")
			}
		}
		h.Close()
	}
}
