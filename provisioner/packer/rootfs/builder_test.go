//go:build linux

package rootfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/comm/commtest"
)

// binDir makes a directory with stand-ins for the payload binaries
// (Prepare only checks that they are there and executable).
func binDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrepareRejects(t *testing.T) {
	t.Parallel()
	good := binDir(t, images.PayloadBinaries()...)
	partial := binDir(t, "ksmg-gatewayd")
	aFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]interface{}
		want []string // every one must be in the error
	}{
		{"no bin_dir", map[string]interface{}{}, []string{"bin_dir: required", "ksmg-gatewayd", "make build"}},
		{"bin_dir lacks a binary", map[string]interface{}{"bin_dir": partial}, []string{"bin_dir:", partial, "ksmg-firstboot"}},
		{"spec missing", map[string]interface{}{"bin_dir": good, "spec": "/nonexistent/appliance.yaml"}, []string{`spec: "/nonexistent/appliance.yaml"`, "appliance spec"}},
		{"negative source date", map[string]interface{}{"bin_dir": good, "source_date_epoch": -5}, []string{"source_date_epoch:", "-5", "positive"}},
		{"output_directory is a file", map[string]interface{}{"bin_dir": good, "output_directory": aFile}, []string{"output_directory:", aFile, "want a directory"}},
		{"cache_dir is a file", map[string]interface{}{"bin_dir": good, "cache_dir": aFile}, []string{"cache_dir:", "want a directory"}},
		{"unknown key", map[string]interface{}{"bin_dir": good, "fromats": "ova"}, []string{"fromats"}},
		{"all at once", map[string]interface{}{"spec": "/nonexistent.yaml", "source_date_epoch": -1}, []string{"spec:", "bin_dir:", "source_date_epoch:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := new(Builder).Prepare(tc.cfg)
			if err == nil {
				t.Fatal("Prepare accepted the configuration")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	var b Builder
	if _, _, err := b.Prepare(map[string]interface{}{"bin_dir": good, "packer_build_name": "appliance"}); err != nil {
		t.Fatalf("good configuration: %v", err)
	}
	if b.config.OutputDirectory != "output-appliance" || b.config.CacheDir == "" || b.sde != images.DefaultSourceDateEpoch && os.Getenv("SOURCE_DATE_EPOCH") == "" {
		t.Errorf("defaults: output %q cache %q sde %d", b.config.OutputDirectory, b.config.CacheDir, b.sde)
	}
}

// TestRunProvisionHook runs the builder with a stand-in for the image
// pipeline that makes a small root file system, calls the provision hook
// where the real pipeline does (after payload, before scrub) and writes the
// root's files into the "disk". The hook is Packer's: it gets our chroot
// communicator and runs a provisioner's command in the root.
func TestRunProvisionHook(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot): make test runs as root")
	}
	var b Builder
	out := t.TempDir()
	if _, _, err := b.Prepare(map[string]interface{}{"bin_dir": binDir(t, images.PayloadBinaries()...), "output_directory": out, "source_date_epoch": 1700000000}); err != nil {
		t.Fatal(err)
	}
	var stagesSeen []string
	b.build = func(ctx context.Context, opts images.Options) (*images.Result, error) {
		root := commtest.MiniRoot(t)
		for _, s := range []string{"packages", "rootfs", "payload"} {
			stagesSeen = append(stagesSeen, s)
			opts.Progress(images.Progress{Stage: s, Elapsed: time.Second})
		}
		if opts.Formats[0] != "raw" || len(opts.Formats) != 1 || opts.SourceDateEpoch != 1700000000 || opts.OutDir != out {
			return nil, errors.New("the builder asked for the wrong build")
		}
		if err := opts.Provision(ctx, images.RootFS{Dir: root, Env: []string{"SOURCE_DATE_EPOCH=1700000000"}}); err != nil {
			return nil, err
		}
		disk, err := os.ReadFile(filepath.Join(root, "etc/from-provisioner"))
		if err != nil {
			return nil, err
		}
		raw := filepath.Join(opts.OutDir, "ksmg-0.1.0.raw")
		if err := os.WriteFile(raw, disk, 0o644); err != nil {
			return nil, err
		}
		return &images.Result{
			Outputs:   []images.Output{{Format: "raw", Path: raw, SHA256: "abc", Size: int64(len(disk))}},
			SHA256SUM: filepath.Join(opts.OutDir, "SHA256SUMS"),
			Elapsed:   3 * time.Second,
			Stages:    []images.StageTime{{Stage: "packages", Elapsed: time.Second}, {Stage: "provision", Elapsed: 2 * time.Second}},
		}, nil
	}
	hook := &packersdk.MockHook{}
	hook.RunFunc = func(ctx context.Context) error {
		// What Packer's shell provisioner does: a command line through
		// the communicator, run in the root with the build's environment.
		var stderr bytes.Buffer
		cmd := &packersdk.RemoteCmd{Command: `echo "provisioned at $SOURCE_DATE_EPOCH" > /etc/from-provisioner`, Stderr: &stderr}
		if err := hook.RunComm.Start(ctx, cmd); err != nil {
			return err
		}
		if st := cmd.Wait(); st != 0 {
			return errors.New("provisioner command failed: " + stderr.String())
		}
		return nil
	}
	ui := &packersdk.MockUi{}
	art, err := b.Run(context.Background(), ui, hook)
	if err != nil {
		t.Fatal(err)
	}
	if !hook.RunCalled || hook.RunName != packersdk.HookProvision {
		t.Errorf("hook called %v with %q, want %q", hook.RunCalled, hook.RunName, packersdk.HookProvision)
	}
	if got, _ := os.ReadFile(art.Files()[0]); string(got) != "provisioned at 1700000000\n" {
		t.Errorf("disk content %q: the provisioner's file did not reach the disk", got)
	}
	if art.BuilderId() != BuilderID || art.Id() != "abc" || len(art.Files()) != 1 {
		t.Errorf("artifact %s %s %v", art.BuilderId(), art.Id(), art.Files())
	}
	if spec, ok := art.State(StateSpec).(string); !ok || spec != "" {
		t.Errorf("State(%s) = %v, want \"\" (the embedded spec)", StateSpec, art.State(StateSpec))
	}
	said := ui.SayMessages
	var text strings.Builder
	for _, m := range said {
		text.WriteString(m.Message + "\n")
	}
	for _, want := range []string{"stage packages", "stage payload", "Stages:", "provision", "total", "3.0s"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("UI output lacks %q:\n%s", want, text.String())
		}
	}

	// A failing provisioner fails the build.
	hook.RunFunc = func(context.Context) error { return errors.New("shell provisioner: exit status 1") }
	if _, err := b.Run(context.Background(), ui, hook); err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("failing provisioner: err = %v", err)
	}
}
