package boottest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Guest is a running guest a test logs in to over SSH (the forwarded
// guest port 22), as a person would: with the private key whose public
// half first boot installed. x/crypto/ssh is the client; the guest's
// sshd is the real peer.
type Guest struct {
	port    int
	user    string
	signer  ssh.Signer
	hostKey ssh.PublicKey // the key the guest presented, pinned after the first login
}

// CommandResult is one command run in the guest.
type CommandResult struct {
	Stdout, Stderr string
	ExitStatus     int // -1 when the command did not exit normally
}

// HostKey is the guest's SSH host key as "TYPE SHA256:..." (ssh-keygen -l
// style), once a command ran.
func (g *Guest) HostKey() string {
	if g.hostKey == nil {
		return ""
	}
	return g.hostKey.Type() + " " + ssh.FingerprintSHA256(g.hostKey)
}

// Run runs cmd in the guest as user (Options.SSHUser unless user is
// given) with stdin, and returns its output and exit status. A non-zero
// exit is not an error; failing to log in or to run is.
func (g *Guest) Run(ctx context.Context, user, cmd, stdin string) (CommandResult, error) {
	res := CommandResult{ExitStatus: -1}
	if user == "" {
		user = g.user
	}
	cfg := &ssh.ClientConfig{
		User:    user,
		Auth:    []ssh.AuthMethod{ssh.PublicKeys(g.signer)},
		Timeout: 30 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if g.hostKey == nil {
				g.hostKey = key // the first login pins the key of this boot
				return nil
			}
			if !bytes.Equal(g.hostKey.Marshal(), key.Marshal()) {
				return errors.New("the guest's SSH host key changed between logins")
			}
			return nil
		},
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port))
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return res, fmt.Errorf("ssh %s@guest: %w", user, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return res, fmt.Errorf("ssh %s@guest: %w", user, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return res, fmt.Errorf("ssh %s@guest: session: %w", user, err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &stdout, &stderr, strings.NewReader(stdin)
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		client.Close()
		return res, fmt.Errorf("ssh %s@guest %q: %w", user, cmd, ctx.Err())
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	var ee *ssh.ExitError
	switch {
	case err == nil:
		res.ExitStatus = 0
	case errors.As(err, &ee):
		res.ExitStatus = ee.ExitStatus()
	default:
		return res, fmt.Errorf("ssh %s@guest %q: %w", user, cmd, err)
	}
	return res, nil
}

func newGuest(opts Options, port int) (*Guest, error) {
	pem, err := os.ReadFile(opts.SSHKey)
	if err != nil {
		return nil, fmt.Errorf("boottest: SSH key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("boottest: SSH key %s: %w", opts.SSHKey, err)
	}
	user := opts.SSHUser
	if user == "" {
		user = "admin"
	}
	return &Guest{port: port, user: user, signer: signer}, nil
}
