package comm

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// rpcLikeComm delivers a command's stdout and stderr the way Packer's RPC
// communicator does: one goroutine per stream, io.Copy into the writers,
// the exit status after both. Here stderr's copy is already waiting when
// stdout's data arrives and ends after it, the order that made a shared
// bytes.Buffer lose stdout. (The real RPC path runs in the plugin's SSH
// test against the image in QEMU.)
type rpcLikeComm struct{ stdout string }

type gatedReader struct{ gate chan struct{} }

func (g gatedReader) Read([]byte) (int, error) {
	<-g.gate
	return 0, io.EOF
}

func (c rpcLikeComm) Start(_ context.Context, cmd *packersdk.RemoteCmd) error {
	gate := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(cmd.Stderr, gatedReader{gate}); done <- struct{}{} }()
	go func() {
		_, _ = io.Copy(cmd.Stdout, strings.NewReader(c.stdout))
		close(gate)
		done <- struct{}{}
	}()
	go func() { <-done; <-done; cmd.SetExited(0) }()
	return nil
}
func (rpcLikeComm) Upload(string, io.Reader, *os.FileInfo) error { return nil }
func (rpcLikeComm) UploadDir(string, string, []string) error     { return nil }
func (rpcLikeComm) Download(string, io.Writer) error             { return nil }
func (rpcLikeComm) DownloadDir(string, string, []string) error   { return nil }

func TestTargetRunKeepsOutputOfConcurrentStreams(t *testing.T) {
	t.Parallel()
	for i := 0; i < 20; i++ {
		out, err := (&Target{Comm: rpcLikeComm{stdout: "/tmp/ksmg-provision.abc\n"}}).Run(context.Background(), "mktemp", "-d")
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != "/tmp/ksmg-provision.abc\n" {
			t.Fatalf("run %d: output %q, want the command's stdout", i, out)
		}
	}
}

// TestTargetCommands pins the command lines Target sends (sudo wraps the
// whole line in one sh -c; every word is quoted).
func TestTargetCommands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"systemctl", "enable", "--", "ksmg-gatewayd.service"}, "systemctl enable -- ksmg-gatewayd.service"},
		{[]string{"printf", "%s", "it's $(x)"}, `printf %s 'it'\''s $(x)'`},
		{[]string{"echo", ""}, "echo ''"},
	} {
		if got := command(tc.argv...); got != tc.want {
			t.Errorf("command(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
	rec := &recordingComm{}
	tg := &Target{Comm: rec, Sudo: true}
	if _, err := tg.Run(context.Background(), "dpkg", "--install", "/var/cache/x y.deb"); err != nil {
		t.Fatal(err)
	}
	if want := `sudo -n -- sh -c 'dpkg --install '\''/var/cache/x y.deb'\'''`; rec.lines[0] != want {
		t.Errorf("sudo line %s, want %s", rec.lines[0], want)
	}
}

type recordingComm struct {
	rpcLikeComm
	lines []string
}

func (r *recordingComm) Start(_ context.Context, cmd *packersdk.RemoteCmd) error {
	r.lines = append(r.lines, cmd.Command)
	cmd.SetExited(0)
	return nil
}
