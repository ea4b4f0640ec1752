package services

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSocketActivation hands ksmg-gatewayd a listening socket the way
// ksmg-gatewayd.socket does (systemd's own systemd-socket-activate, with the
// unit's FileDescriptorName=), and checks that the daemon serves mail on it
// and does not also listen on `listen:` from its configuration.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	sock := parseUnit(t, "ksmg-gatewayd.socket")["Socket"]
	if len(sock["FileDescriptorName"]) != 1 {
		t.Fatalf("ksmg-gatewayd.socket: FileDescriptorName = %q, want one name", sock["FileDescriptorName"])
	}
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatalf("systemd-socket-activate (package systemd) not installed: %v", err)
	}
	bin := gatewayBinary(t)
	root := t.TempDir()
	// The configured address is held by the test, so nothing else can take
	// it: a daemon that listened there as well as on the passed socket would
	// fail to bind and exit, and the mail below would not flow.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := fmt.Sprintf(`hostname: activation.test
listen: [%q]
spool_dir: %[2]s/queue
tls: {cert_file: %[2]s/tls/gw.crt, key_file: %[2]s/tls/gw.key, generate: true}
trusted_networks: ["127.0.0.0/8"]
relay: {default_route: "127.0.0.1:%d", default_tls: none}
backup: {dir: %[2]s/backup}
logging:
  messages_file: %[2]s/ksmg-messages
  important_file: %[2]s/ksmg-important
  trace_dir: %[2]s/trace
  events_dir: %[2]s/events
`, held.Addr().String(), root, freePort(t))
	cfgFile := filepath.Join(root, "gateway.yaml")
	mustWrite(t, cfgFile, cfg, 0o640)

	// systemd-socket-activate execs the daemon in its own place on the first
	// connection, so the process to stop is this one, and its stderr goes on
	// with the daemon's.
	d, port := startListening(t, "Listening on", func(port int) []string {
		return []string{"systemd-socket-activate",
			"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--fdname=" + sock["FileDescriptorName"][0],
			bin, "--config", cfgFile}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	send(t, addr, "activated@socket.test") // this connection starts the daemon
	waitContains(t, filepath.Join(root, "ksmg-messages"), "activated@socket.test")
	if !d.waitStderr("using sockets passed by systemd", 10*time.Second) {
		t.Errorf("the daemon did not say it serves the passed socket")
	}
	select {
	case <-d.done:
		t.Errorf("the daemon exited; with a passed socket it must not bind %s from its configuration", held.Addr())
	default:
	}
}
