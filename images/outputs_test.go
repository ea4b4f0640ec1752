package images

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/sign"
	"github.com/ksmg-appliance/ksmg/sign/signtest"
)

// TestOutputsPublish: outputs appear under their names only on Publish,
// all at once, with SHA256SUMS (sorted by name); merged lists keep other
// files' lines; a signature is written with a signer and removed by any
// later unsigned change of the list.
//
//nolint:gocyclo // a linear list of checks on one published directory
func TestOutputsPublish(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" // sha256("a")
	secret, public := signtest.Key(t, "")
	signer, err := sign.LoadSigner(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sign.LoadKeyRing(public)
	if err != nil {
		t.Fatal(err)
	}
	var signWith *sign.Signer
	write := func(merge bool, names ...string) []Output {
		t.Helper()
		o := NewOutputs(dir, OutputOptions{MergeSums: merge, Signer: signWith})
		defer o.Cleanup()
		for _, n := range names {
			_, existed := os.Stat(filepath.Join(dir, n))
			f, err := o.Create("x", n)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("a"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil && existed != nil {
				t.Fatalf("%s visible before Publish", n)
			}
		}
		outs, _, err := o.Publish(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return outs
	}
	sums := func() string {
		data, _ := os.ReadFile(filepath.Join(dir, SumsFile))
		return string(data)
	}
	outs := write(false, "one.raw", "two.ova")
	if len(outs) != 2 || outs[1].SHA256 != a || outs[1].Size != 1 || outs[1].Path != filepath.Join(dir, "two.ova") {
		t.Fatalf("outputs %+v", outs)
	}
	if got := sums(); got != a+"  one.raw\n"+a+"  two.ova\n" {
		t.Fatalf("SHA256SUMS %q", got)
	}
	signed := func() bool {
		t.Helper()
		rep, err := sign.VerifyDir(context.Background(), dir, keys)
		if err == nil && rep.Signer != signer.Fingerprint() {
			t.Fatalf("signed by %s", rep.Signer)
		}
		_, statErr := os.Stat(filepath.Join(dir, sign.SignatureName))
		if err != nil && statErr == nil {
			t.Fatalf("a signature that does not verify stays: %v", err)
		}
		return err == nil
	}
	signWith = signer
	write(true, "three.vhdx")
	if got := sums(); got != a+"  one.raw\n"+a+"  three.vhdx\n"+a+"  two.ova\n" {
		t.Fatalf("merged SHA256SUMS %q", got)
	}
	if !signed() {
		t.Fatal("signed publish: no valid signature")
	}
	signWith = nil
	if err := os.Remove(filepath.Join(dir, "one.raw")); err != nil {
		t.Fatal(err)
	}
	write(true, "two.ova")
	if got := sums(); got != a+"  three.vhdx\n"+a+"  two.ova\n" {
		t.Fatalf("SHA256SUMS after one.raw went: %q", got)
	}
	if signed() {
		t.Fatal("an unsigned merge kept the signature")
	}
	signWith = signer
	write(true, "two.ova")
	signWith = nil
	if err := DropSum(dir, "two.ova"); err != nil {
		t.Fatal(err)
	}
	if got := sums(); got != a+"  three.vhdx\n" {
		t.Fatalf("after DropSum: %q", got)
	}
	if signed() {
		t.Fatal("DropSum kept the signature")
	}
	write(false, "four.raw")
	if got := sums(); got != a+"  four.raw\n" {
		t.Fatalf("unmerged SHA256SUMS %q", got)
	}

	// A malformed list is an error naming the file and line, not replaced.
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(a+"  four.raw\nnot a sum\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := NewOutputs(dir, OutputOptions{MergeSums: true})
	defer o.Cleanup()
	if _, err := o.Create("x", "five.raw"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Publish(context.Background()); err == nil || !strings.Contains(err.Error(), SumsFile+" line 2") {
		t.Errorf("malformed SHA256SUMS: err = %v", err)
	}
	o.Cleanup()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || e.Name() == "five.raw" {
			t.Errorf("left %s", e.Name())
		}
	}
	for _, bad := range []string{"SHA256SUMS", "SHA256SUMS.asc", "../x", ".hidden", "a/b"} {
		if _, err := o.Create("x", bad); err == nil {
			t.Errorf("Create(%q) accepted", bad)
		}
	}
}
