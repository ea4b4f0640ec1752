//go:build unix

package gatewayd_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/ksmg-appliance/ksmg/internal/testsync"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// daemonBin is $KSMG_BIN_DIR/ksmg-gatewayd, or the daemon built once for
// this test binary.
func daemonBin(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("KSMG_BIN_DIR"); d != "" {
		p := filepath.Join(d, "ksmg-gatewayd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ksmg-gatewayd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ksmg-gatewayd")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/ksmg-appliance/ksmg/cmd/ksmg-gatewayd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// gw is one daemon setup: a directory tree standing in for the appliance's
// /etc, /var/opt and /var/log, a config file and the running process.
type gw struct {
	t      *testing.T
	dir    string
	cfg    string
	port   int
	cmd    *exec.Cmd
	stderr *testsync.Buffer // the daemon's stderr, written by exec's copier
	notify *net.UnixConn
	exited chan error
	prefix []string // e.g. systemd-socket-activate and its options
	env    []string // extra environment
	extra  string   // the YAML after the defaults, for a rewrite on a new port
}

// newGW writes a config: extra is YAML appended after the test defaults.
func newGW(t *testing.T, extra string) *gw {
	t.Helper()
	dir := t.TempDir()
	g := &gw{t: t, dir: dir, port: freePort(t)}
	g.cfg = filepath.Join(dir, "etc", "ksmg-gateway.yaml")
	g.writeConfig(extra)
	return g
}

func (g *gw) baseConfig() string {
	d := g.dir
	return fmt.Sprintf(`hostname: gw.test
listen: ["127.0.0.1:%d"]
spool_dir: %s/queue
tls: {cert_file: %s/tls/gw.crt, key_file: %s/tls/gw.key, generate: true}
backup: {dir: %s/backup, max_size: 10MB}
logging:
  messages_file: %s/log/ksmg-messages
  important_file: %s/log/ksmg-important
  trace_dir: %s/log/kaspersky
  events_dir: %s/events
`, g.port, d, d, d, d, d, d, d, d)
}

func (g *gw) writeConfig(extra string) {
	g.t.Helper()
	g.extra = extra
	if err := os.MkdirAll(filepath.Dir(g.cfg), 0o750); err != nil {
		g.t.Fatal(err)
	}
	if err := os.WriteFile(g.cfg, []byte(g.baseConfig()+extra), 0o640); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gw) addr() string { return fmt.Sprintf("127.0.0.1:%d", g.port) }

// start runs the daemon and waits for READY=1 on a NOTIFY_SOCKET, as
// systemd would. freePort closes its socket before the daemon binds, and go
// test runs other packages meanwhile, so another process may take the port
// in between (or while a restarted daemon was down): a daemon that exits with
// "address already in use" is started again on a fresh port, which g.addr()
// then names.
func (g *gw) start() {
	g.t.Helper()
	for attempt := 1; ; attempt++ {
		g.launch()
		if g.waitNotify("READY=1", 30*time.Second) {
			return
		}
		if attempt < 5 && g.exitedWith("address already in use") {
			g.t.Logf("port %d was taken before the daemon bound it; trying another", g.port)
			g.notify.Close()
			g.port = freePort(g.t)
			g.writeConfig(g.extra)
			continue
		}
		g.t.Fatalf("no READY=1 from the daemon; stderr:\n%s", g.stderrText())
	}
}

// exitedWith reports whether the daemon has exited and its stderr holds s.
func (g *gw) exitedWith(s string) bool {
	select {
	case err := <-g.exited:
		g.exited <- err
		return strings.Contains(g.stderrText(), s)
	default:
		return false
	}
}

// launch starts the daemon without waiting for READY=1.
func (g *gw) launch() {
	g.t.Helper()
	sock := filepath.Join(g.dir, fmt.Sprintf("notify-%d.sock", time.Now().UnixNano()))
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		g.t.Fatal(err)
	}
	g.notify = nc
	g.stderr = &testsync.Buffer{}
	args := append(append([]string(nil), g.prefix...), daemonBin(g.t), "--config", g.cfg)
	g.cmd = exec.Command(args[0], args[1:]...)
	g.cmd.Env = append(append(os.Environ(), "NOTIFY_SOCKET="+sock), g.env...)
	g.cmd.Stderr = g.stderr
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.exited = make(chan error, 1)
	cmd := g.cmd
	go func() { g.exited <- cmd.Wait() }()
	g.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // it may have exited meanwhile
			_ = g.exitStatus()     // killed: the exit status says so
		}
	})
}

func (g *gw) waitNotify(want string, d time.Duration) bool {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := g.notify.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			g.t.Fatal(err)
		}
		n, err := g.notify.Read(buf)
		if err == nil && strings.Contains(string(buf[:n]), want) {
			return true
		}
		select {
		case err := <-g.exited:
			g.exited <- err
			return false
		default:
		}
	}
	return false
}

func (g *gw) signal(s syscall.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(s); err != nil {
		g.t.Fatal(err)
	}
}

// kill is a crash: SIGKILL, no cleanup.
func (g *gw) kill() {
	_ = g.cmd.Process.Kill() // it may have exited meanwhile
	_ = g.exitStatus()       // killed: the exit status says so
	g.notify.Close()
}

// exitStatus waits for the daemon to exit.
func (g *gw) exitStatus() error { return <-g.exited }

// shutdown stops the daemon and fails the test unless it exits cleanly.
func (g *gw) shutdown() {
	g.t.Helper()
	if err := g.stop(); err != nil {
		g.t.Errorf("daemon exit after SIGTERM: %v\n%s", err, g.stderrText())
	}
}

// stop is SIGTERM; it returns the exit error.
func (g *gw) stop() error {
	g.signal(syscall.SIGTERM)
	select {
	case err := <-g.exited:
		g.notify.Close()
		return err
	case <-time.After(40 * time.Second):
		g.t.Fatalf("daemon did not stop within 40s after SIGTERM; stderr:\n%s", g.stderrText())
		return nil
	}
}

func (g *gw) stderrText() string { return g.stderr.String() }

func (g *gw) read(rel string) string {
	b, _ := os.ReadFile(filepath.Join(g.dir, rel))
	return string(b)
}

// events parses the message-processing lines of ksmg-messages.
func (g *gw) events() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(g.read("log/ksmg-messages")))
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func (g *gw) countEvents(action string) int {
	n := 0
	for _, e := range g.events() {
		if e["action"] == action {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sink is a go-smtp server standing for the internal mail server; it
// records every message and can refuse recipients permanently.
type sink struct {
	mu     sync.Mutex
	msgs   []sunk
	refuse map[string]bool
	srv    *smtp.Server
	addr   string
	tls    *tls.Config // offered with STARTTLS when set before start
}

type sunk struct {
	From string
	To   []string
	Data []byte
	TLS  bool // received over STARTTLS
}

func newSink(t *testing.T, addr string) *sink {
	t.Helper()
	s := &sink{refuse: map[string]bool{}}
	s.start(t, addr)
	return s
}

func (s *sink) start(t *testing.T, addr string) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may still be in TIME_WAIT use after stop
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s, c: c}, nil }))
	srv.TLSConfig = s.tls
	srv.Domain = "sink.test"
	srv.ErrorLog = nopLogger{}
	s.srv = srv
	go func() { _ = srv.Serve(l) }() // ends with Close at cleanup
	t.Cleanup(func() { srv.Close() })
}

func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type sinkSession struct {
	c    *smtp.Conn
	s    *sink
	from string
	to   []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	refuse := ss.s.refuse[to]
	ss.s.mu.Unlock()
	if refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	_, isTLS := ss.c.TLSConnectionState()
	ss.s.msgs = append(ss.s.msgs, sunk{ss.from, ss.to, b, isTLS})
	ss.s.mu.Unlock()
	return nil
}

// messageID extracts the Message-ID header value.
func messageID(data []byte) string {
	for _, line := range strings.Split(string(data), "\r\n") {
		if line == "" {
			break
		}
		if strings.HasPrefix(strings.ToLower(line), "message-id:") {
			return strings.TrimSpace(line[len("message-id:"):])
		}
	}
	return ""
}
