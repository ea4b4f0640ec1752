// Package pwshtest is a fake Windows host for tests of code that runs
// PowerShell over WinRM. No Windows host (and no PowerShell) can run in this
// project's test environment, so the host is github.com/dylanmei/winrmtest,
// a WS-Man server that speaks the protocol, with a thin HTTP front that adds
// what winrmtest lacks: the response Action headers that
// masterzen/winrm (since 2024) requires for shell and command creation, it
// serialises a command with its output so a
// command's text reaches the right handler, and it returns the handler's
// stderr (winrmtest always sends an empty stderr stream).
//
// The host understands exactly the command lines pwsh.NewWinRM sends:
// a powershell.exe -EncodedCommand, chunks appended to a file in %TEMP%,
// the bootstrap that runs such a file, and deleting it. Everything else
// gets cmd.exe's exit 9009. It also takes what the runner sends on each
// command's standard input (WS-Man Send, which winrmtest does not know) and
// answers a command only once its input ended, as a real shell would read
// it. Each script is unwrapped to the text the caller passed to Run and
// handed to the test's handler with its decoded input; the test asserts on
// the scripts and inputs the host saw, in order.
package pwshtest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dylanmei/winrmtest"

	"github.com/ksmg-appliance/ksmg/deploy/pwsh"
)

// Reply is what the fake host answers to one script.
type Reply struct {
	Stdout   string
	Stderr   string
	ExitCode int
}

// Handler answers a script; it is called with the script as the caller
// wrote it (before wrapping and encoding).
type Handler func(script string) Reply

// InputHandler answers a script and the input it got on standard input.
type InputHandler func(script string, in pwsh.Input) Reply

// Host is a fake WinRM host.
type Host struct {
	Config pwsh.WinRMConfig // how to reach it with pwsh.NewWinRM
	// Hook, if set before use, sees every command line before the host
	// answers it (e.g. to cancel a context in the middle of an upload).
	Hook func(cmd string)

	remote  *winrmtest.Remote
	front   *httptest.Server
	handler InputHandler

	pair sync.Mutex // held from a command's Command request to its output

	mu       sync.Mutex
	current  string        // command text between Command and Receive
	stdin    string        // what the current command got on standard input
	inputEnd chan struct{} // closed when the current command's input ended
	stderr   string        // handler's stderr for the Receive being answered
	files    map[string]string
	scripts  []string
	inputs   []pwsh.Input
	commands []string
}

var (
	upload    = regexp.MustCompile(`^>>"%TEMP%\\([A-Za-z0-9.-]+)" echo ([A-Za-z0-9+/=]+)$`)
	remove    = regexp.MustCompile(`^del /f /q "%TEMP%\\([A-Za-z0-9.-]+)"$`)
	bootstrap = regexp.MustCompile(`Join-Path \$env:TEMP '([A-Za-z0-9.-]+)'`)
	psPrefix  = "powershell.exe -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
)

var (
	sendStream = regexp.MustCompile(`<(?:\w+:)?Stream\b([^>]*)>([^<]*)</`)
	endAttr    = regexp.MustCompile(`\bEnd="true"`)
)

// NewHost starts a fake host that answers scripts with h.
func NewHost(h Handler) *Host {
	return NewHostInput(func(script string, _ pwsh.Input) Reply { return h(script) })
}

// NewHostInput starts a fake host that answers scripts and their input
// with h.
func NewHostInput(h InputHandler) *Host {
	fh := &Host{remote: winrmtest.NewRemote(), handler: h, files: map[string]string{}}
	fh.remote.CommandFunc(func(cmd string) bool {
		fh.mu.Lock()
		fh.current = cmd
		fh.mu.Unlock()
		return true
	}, func(stdout, _ io.Writer) int {
		fh.mu.Lock()
		cmd := fh.current
		fh.mu.Unlock()
		r := fh.answer(cmd)
		fh.mu.Lock()
		fh.stderr = r.Stderr
		fh.mu.Unlock()
		_, _ = io.WriteString(stdout, r.Stdout)
		return r.ExitCode
	})
	backend := fmt.Sprintf("http://%s:%d/wsman", fh.remote.Host, fh.remote.Port)
	fh.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		command := bytes.Contains(body, []byte("/windows/shell/Command</"))
		receive := bytes.Contains(body, []byte("/windows/shell/Receive</"))
		if bytes.Contains(body, []byte("/windows/shell/Send</")) {
			fh.send(w, body)
			return
		}
		if command {
			fh.pair.Lock()
			fh.mu.Lock()
			fh.stdin, fh.inputEnd = "", make(chan struct{})
			fh.mu.Unlock()
		}
		if receive {
			// A shell answers once the command read its input.
			fh.mu.Lock()
			end := fh.inputEnd
			ps := strings.HasPrefix(fh.current, psPrefix)
			fh.mu.Unlock()
			if end != nil && ps {
				select {
				case <-end:
				case <-time.After(10 * time.Second):
				}
			}
		}
		resp, err := http.Post(backend, req.Header.Get("Content-Type"), bytes.NewReader(body))
		if err != nil {
			if command {
				fh.pair.Unlock()
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case bytes.Contains(body, []byte("/transfer/Create</")):
			out = addAction(out, "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse")
		case command:
			out = addAction(out, "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse")
		}
		if receive {
			fh.mu.Lock()
			stderr := fh.stderr
			fh.stderr = ""
			fh.mu.Unlock()
			out = injectStderr(out, stderr)
			fh.pair.Unlock()
		} else if command && resp.StatusCode != http.StatusOK {
			fh.pair.Unlock()
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(out)
	}))
	host, port := splitHostPort(fh.front.URL)
	fh.Config = pwsh.WinRMConfig{Host: host, Port: port, User: "test", Password: "test", AllowUnencrypted: true}
	return fh
}

// send takes a command's standard input (WS-Man Send).
func (fh *Host) send(w http.ResponseWriter, body []byte) {
	fh.mu.Lock()
	for _, m := range sendStream.FindAllSubmatch(body, -1) {
		if !bytes.Contains(m[1], []byte(`Name="stdin"`)) {
			continue
		}
		if b, err := base64.StdEncoding.DecodeString(string(m[2])); err == nil {
			fh.stdin += string(b)
		}
		if endAttr.Match(m[1]) && fh.inputEnd != nil {
			select {
			case <-fh.inputEnd:
			default:
				close(fh.inputEnd)
			}
		}
	}
	fh.mu.Unlock()
	w.Header().Set("Content-Type", "application/soap+xml")
	_, _ = w.Write([]byte(`<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell">` +
		`<env:Header><a:Action>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse</a:Action></env:Header><env:Body><rsp:SendResponse/></env:Body></env:Envelope>`))
}

// addAction gives a winrmtest response the WS-Addressing Action header a
// real WinRM service sends.
func addAction(resp []byte, action string) []byte {
	i := bytes.IndexByte(bytes.TrimSpace(resp), '>')
	if i < 0 {
		return resp
	}
	resp = bytes.TrimSpace(resp)
	hdr := `<env:Header><a:Action xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">` + action + `</a:Action></env:Header>`
	return append(append(append([]byte{}, resp[:i+1]...), hdr...), resp[i+1:]...)
}

var stderrEnd = regexp.MustCompile(`<rsp:Stream Name="stderr" CommandId="([^"]*)" End="true"></rsp:Stream>`)

func injectStderr(resp []byte, stderr string) []byte {
	if stderr == "" {
		return resp
	}
	enc := base64.StdEncoding.EncodeToString([]byte(stderr))
	return stderrEnd.ReplaceAll(resp, []byte(`<rsp:Stream Name="stderr" CommandId="$1">`+enc+`</rsp:Stream>$0`))
}

func splitHostPort(u string) (string, int) {
	var host string
	var port int
	hp := strings.TrimPrefix(u, "http://")
	i := strings.LastIndexByte(hp, ':')
	host = hp[:i]
	port, _ = strconv.Atoi(hp[i+1:]) // httptest's URL: always a port
	return host, port
}

// answer plays cmd.exe and powershell.exe for one command line.
func (fh *Host) answer(cmd string) Reply {
	fh.mu.Lock()
	fh.commands = append(fh.commands, cmd)
	fh.mu.Unlock()
	if fh.Hook != nil {
		fh.Hook(cmd)
	}
	if m := upload.FindStringSubmatch(cmd); m != nil {
		fh.mu.Lock()
		fh.files[m[1]] += m[2] + "\r\n" // echo ends the line
		fh.mu.Unlock()
		return Reply{}
	}
	if m := remove.FindStringSubmatch(cmd); m != nil {
		fh.mu.Lock()
		delete(fh.files, m[1])
		fh.mu.Unlock()
		return Reply{}
	}
	enc, ok := strings.CutPrefix(cmd, psPrefix)
	if !ok {
		return Reply{Stderr: fmt.Sprintf("'%s' is not recognized as an internal or external command", strings.Fields(cmd + " x")[0]), ExitCode: 9009}
	}
	text, err := pwsh.DecodeCommand(enc)
	if err != nil {
		return Reply{Stderr: "powershell.exe: bad -EncodedCommand", ExitCode: 1}
	}
	text, ok = strings.CutPrefix(text, ReadInput)
	if !ok {
		return Reply{Stderr: "fake host: the command does not read its input first", ExitCode: 1}
	}
	fh.mu.Lock()
	stdin := fh.stdin
	fh.mu.Unlock()
	in, err := pwsh.DecodeInput(stdin)
	if err != nil {
		return Reply{Stderr: "fake host: " + err.Error(), ExitCode: 1}
	}
	if m := bootstrap.FindStringSubmatch(text); m != nil {
		fh.mu.Lock()
		data, ok := fh.files[m[1]]
		delete(fh.files, m[1]) // the bootstrap's finally
		fh.mu.Unlock()
		if !ok {
			return Reply{Stderr: "Could not find file " + m[1], ExitCode: 1}
		}
		raw, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(data, "\r\n", ""))
		if err != nil {
			return Reply{Stderr: "FromBase64String: " + err.Error(), ExitCode: 1}
		}
		text = string(raw)
	}
	script, ok := unwrap(text)
	if !ok {
		return Reply{Stderr: "fake host: script is not wrapped by pwsh.Wrap", ExitCode: 1}
	}
	fh.mu.Lock()
	fh.scripts = append(fh.scripts, script)
	fh.inputs = append(fh.inputs, in)
	fh.mu.Unlock()
	return fh.handler(script, in)
}

// ReadInput is the line every command pwsh.NewWinRM runs starts with: it
// takes standard input (what pwsh.EncodeInput made of Run's input).
const ReadInput = "$KsmgStdin = @($input) -join ''\n"

func unwrap(text string) (string, bool) {
	pre, post, _ := strings.Cut(pwsh.Wrap("\x00"), "\x00")
	s, ok := strings.CutPrefix(text, pre)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(s, post)
}

// Inputs returns the inputs of the scripts the host ran, in the order of
// Scripts.
func (fh *Host) Inputs() []pwsh.Input {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return append([]pwsh.Input(nil), fh.inputs...)
}

// Scripts returns the scripts the host ran, in order.
func (fh *Host) Scripts() []string {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return append([]string(nil), fh.scripts...)
}

// Commands returns every command line the host received, in order.
func (fh *Host) Commands() []string {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	return append([]string(nil), fh.commands...)
}

// TempFiles returns the names of the files left in the fake %TEMP%.
func (fh *Host) TempFiles() []string {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	var names []string
	for n := range fh.files {
		names = append(names, n)
	}
	return names
}

// Close stops the host.
func (fh *Host) Close() {
	fh.front.Close()
	fh.remote.Close()
}
