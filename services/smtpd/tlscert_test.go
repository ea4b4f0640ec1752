package smtpd

import (
	"os"
	"path/filepath"
	"testing"
)

// The generated pair lands complete with its modes and nothing else in the
// directory; a second start loads it instead of making a new one.
func TestLoadOrCreateCert(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tls")
	cf, kf := filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	c1, gen, err := LoadOrCreateCert(cf, kf, "gw.test", true)
	if err != nil || !gen {
		t.Fatalf("first start: generated %v, %v", gen, err)
	}
	for p, mode := range map[string]os.FileMode{cf: 0o640, kf: 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", p, err, st.Mode().Perm(), mode)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("directory holds %d entries, want the two files only", len(ents))
	}
	c2, gen, err := LoadOrCreateCert(cf, kf, "gw.test", true)
	if err != nil || gen || string(c2.Certificate[0]) != string(c1.Certificate[0]) {
		t.Fatalf("second start: generated %v, %v, same certificate %v", gen, err, string(c2.Certificate[0]) == string(c1.Certificate[0]))
	}
	if _, _, err := LoadOrCreateCert(filepath.Join(dir, "x.crt"), filepath.Join(dir, "x.key"), "gw.test", false); err == nil {
		t.Error("missing files with generate=false loaded")
	}
}
