package disk

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/ksmg-appliance/ksmg/appliance"
	"github.com/ksmg-appliance/ksmg/images"
	"github.com/ksmg-appliance/ksmg/ova"
	"github.com/ksmg-appliance/ksmg/provisioner/packer/rootfs"
	"github.com/ksmg-appliance/ksmg/vhdx"
)

// smallDisk writes a sparse 64 MiB raw disk with a GPT signature and some
// data, the shape of the appliance disk without its size.
func smallDisk(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off, data := range map[int64]string{510: "\x55\xaa", 512: "EFI PART", 1 << 20: "esp", 40 << 20: strings.Repeat("root", 4096)} {
		if _, err := f.WriteAt([]byte(data), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	return p
}

func configured(t *testing.T, f Format, cfg map[string]interface{}) *PostProcessor {
	t.Helper()
	p := New(f)
	if err := p.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	return p
}

// direct is what `ksmg build` writes for the same raw disk and spec: the
// format function into a file staged and published by images.Outputs.
func direct(t *testing.T, f Format, raw string) []byte {
	t.Helper()
	spec, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	outs := images.NewOutputs(dir, images.OutputOptions{})
	defer outs.Cleanup()
	out, err := outs.Create(f.Name, "x."+f.Ext)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Write(context.Background(), raw, out, spec); err != nil {
		t.Fatal(err)
	}
	res, _, err := outs.Publish(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(res[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestPostProcessRaw(t *testing.T) {
	t.Parallel()
	for _, f := range []Format{OVA, VHDX} {
		t.Run(f.Name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			raw := smallDisk(t, dir)
			// A builder's SHA256SUMS line for its disk stays; a stale line
			// for a file that is gone does not.
			old := "0000000000000000000000000000000000000000000000000000000000000001  disk.raw\n" +
				"0000000000000000000000000000000000000000000000000000000000000002  gone.iso\n"
			if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
			notes := filepath.Join(dir, "notes.txt")
			if err := os.WriteFile(notes, []byte("not a disk"), 0o644); err != nil {
				t.Fatal(err)
			}
			in := &packersdk.MockArtifact{BuilderIdValue: "packer.post-processor.artifice", FilesValue: []string{notes, raw}}
			ui := &packersdk.MockUi{}
			art, keep, force, err := configured(t, f, map[string]interface{}{}).PostProcess(context.Background(), ui, in)
			if err != nil {
				t.Fatal(err)
			}
			if !keep || force {
				t.Errorf("keep %v force %v: the input disk should be kept unless the template says otherwise", keep, force)
			}
			want := filepath.Join(dir, "ksmg-0.1.0."+f.Ext)
			if art.BuilderId() != "ksmg-appliance."+f.Name || len(art.Files()) != 1 || art.Files()[0] != want {
				t.Fatalf("artifact %s %v, want %s", art.BuilderId(), art.Files(), want)
			}
			got, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, direct(t, f, raw)) {
				t.Errorf("%s differs from what ksmg build writes for the same disk", want)
			}
			switch f.Name {
			case "ova":
				if _, err := ova.Inspect(context.Background(), want); err != nil {
					t.Errorf("ova.Inspect: %v", err)
				}
			case "vhdx":
				if _, err := vhdx.Inspect(want); err != nil {
					t.Errorf("vhdx.Inspect: %v", err)
				}
			}
			sums, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
			wantSums := "0000000000000000000000000000000000000000000000000000000000000001  disk.raw\n" + art.Id() + "  ksmg-0.1.0." + f.Ext + "\n"
			if string(sums) != wantSums {
				t.Errorf("SHA256SUMS:\n%s\nwant:\n%s", sums, wantSums)
			}
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("left %s", e.Name())
				}
			}
			// Destroy takes the file and its line.
			if err := art.Destroy(); err != nil {
				t.Fatal(err)
			}
			sums, _ = os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
			if _, err := os.Stat(want); err == nil || strings.Contains(string(sums), "ksmg-0.1.0."+f.Ext) {
				t.Errorf("after Destroy: file still there or listed:\n%s", sums)
			}
		})
	}
}

// TestPostProcessConverts: a qcow2 or VMDK disk from another builder is
// converted with qemu-img, and the result is the same as from the raw disk.
func TestPostProcessConverts(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img not installed (ci/packages.txt: qemu-utils): %v", err)
	}
	src := t.TempDir()
	raw := smallDisk(t, src)
	want := direct(t, OVA, raw)
	for _, format := range []string{"qcow2", "vmdk"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			in := filepath.Join(dir, "packer-qemu."+format)
			if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", format, raw, in).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img: %v\n%s", err, out)
			}
			out := t.TempDir()
			art, _, _, err := configured(t, OVA, map[string]interface{}{"output_directory": out}).PostProcess(context.Background(), &packersdk.MockUi{},
				&packersdk.MockArtifact{BuilderIdValue: "transcend.qemu", FilesValue: []string{in}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(art.Files()[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the OVA from the %s disk differs from the one from the raw disk", format)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("the input directory changed: %v", ents)
			}
		})
	}
}

func TestPostProcessRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := smallDisk(t, t.TempDir()), smallDisk(t, t.TempDir())
	iso := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(iso, []byte("CD001 not a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  []string
	}{
		{"no disk", []string{iso, filepath.Join(dir, "missing.raw")}, []string{`builder "vendor.builder"`, "no disk image", iso, "missing.raw", "qcow2"}},
		{"two disks", []string{a, b}, []string{`builder "vendor.builder"`, "2 disk images", a, b, "exactly one"}},
		{"nothing", []string{}, []string{`builder "vendor.builder"`, "no disk image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, _, err := configured(t, VHDX, map[string]interface{}{"output_directory": t.TempDir()}).PostProcess(context.Background(), &packersdk.MockUi{},
				&packersdk.MockArtifact{BuilderIdValue: "vendor.builder", FilesValue: tc.files})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestPostProcessSpecFromBuilder: after ksmg-rootfs, the spec the disk was
// built from names the output unless the template sets one.
func TestPostProcessSpecFromBuilder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	raw := smallDisk(t, dir)
	data, err := os.ReadFile("../../../appliance/appliance.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "custom.yaml")
	if err := os.WriteFile(spec, bytes.Replace(data, []byte("version: 0.1.0"), []byte("version: 7.7.7"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	in := &packersdk.MockArtifact{BuilderIdValue: rootfs.BuilderID, FilesValue: []string{raw}, StateValues: map[string]interface{}{rootfs.StateSpec: spec}}
	art, _, _, err := configured(t, VHDX, map[string]interface{}{}).PostProcess(context.Background(), &packersdk.MockUi{}, in)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(art.Files()[0]) != "ksmg-7.7.7.vhdx" {
		t.Errorf("output %s, want the builder's spec version 7.7.7", art.Files()[0])
	}
}

func TestConfigureRejects(t *testing.T) {
	t.Parallel()
	aFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]interface{}
		want []string
	}{
		{"spec missing", map[string]interface{}{"spec": "/nonexistent.yaml"}, []string{`spec: "/nonexistent.yaml"`}},
		{"output_directory is a file", map[string]interface{}{"output_directory": aFile}, []string{"output_directory:", aFile, "want a directory"}},
		{"unknown key", map[string]interface{}{"compression": 9}, []string{"compression"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := New(OVA).Configure(tc.cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
