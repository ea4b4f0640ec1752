package vsphere

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/vmware/govmomi/vim25/soap"

	"github.com/ksmg-appliance/ksmg/deploy"
)

// TestConfig: validation messages name the key, and the credentials come
// from the places govc users expect, never from a password in a
// configured URL.
func TestConfig(t *testing.T) {
	t.Parallel()
	pwFile := t.TempDir() + "/pw"
	if err := writeFile(pwFile, "from-file\n"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		env     map[string]string
		user    string
		pw      string
		wantErr string
	}{
		{"password env default", Config{URL: "vc.example.com", Username: "admin"},
			map[string]string{DefaultPasswordEnv: "p1", "GOVC_PASSWORD": "p2"}, "admin", "p1", ""},
		{"govc variables", Config{},
			map[string]string{"GOVC_URL": "https://vc.example.com/sdk", "GOVC_USERNAME": "gu", "GOVC_PASSWORD": "p2"}, "gu", "p2", ""},
		{"govc url with credentials", Config{},
			map[string]string{"GOVC_URL": "https://uu:pp@vc.example.com/sdk"}, "uu", "pp", ""},
		{"named env", Config{URL: "vc", Username: "a", PasswordEnv: "MY_PW"}, map[string]string{"MY_PW": "p3"}, "a", "p3", ""},
		{"file", Config{URL: "vc", Username: "a", PasswordFile: pwFile}, map[string]string{DefaultPasswordEnv: "p1"}, "a", "from-file", ""},
		{"named env empty", Config{URL: "vc", Username: "a", PasswordEnv: "MY_PW"}, nil, "", "", "password_env: variable MY_PW is empty"},
		{"no password", Config{URL: "vc", Username: "a"}, nil, "", "", "password: set KSMG_VSPHERE_PASSWORD"},
		{"no user", Config{URL: "vc"}, map[string]string{DefaultPasswordEnv: "p"}, "", "", "username: must be set"},
		{"no url", Config{}, nil, "", "", "url: must be set"},
		{"password in url", Config{URL: "https://a:secret@vc/sdk"}, nil, "", "", "url: must not carry a password"},
		{"http", Config{URL: "http://vc/sdk"}, nil, "", "", "only https is allowed"},
		{"provisioning", Config{URL: "vc", DiskProvisioning: "flat"}, nil, "", "", `disk_provisioning "flat"`},
		{"insecure and thumbprint", Config{URL: "vc", Insecure: true, Thumbprint: "AA"}, nil, "", "", "insecure and thumbprint"},
		{"env and file", Config{URL: "vc", PasswordEnv: "X", PasswordFile: "y"}, nil, "", "", "password_env and password_file"},
		{"empty network map", Config{URL: "vc", NetworkMap: map[string]string{"VM Network": ""}}, nil, "", "", "network_map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			getenv := func(k string) string { return tc.env[k] }
			cfg := tc.cfg
			cfg.applyEnv(getenv)
			err := cfg.Validate()
			if err == nil {
				u, _ := soap.ParseURL(cfg.URL)
				var ui interface {
					Username() string
					Password() (string, bool)
				}
				ui, err = cfg.credentials(u, getenv)
				if err == nil {
					pw, _ := ui.Password()
					if ui.Username() != tc.user || pw != tc.pw {
						t.Errorf("credentials %s/%s, want %s/%s", ui.Username(), pw, tc.user, tc.pw)
					}
				}
			}
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

// TestScrub: secret property values never reach an error message, and the
// error keeps its identity (permanent stays permanent).
func TestScrub(t *testing.T) {
	t.Parallel()
	props := map[string]string{"ksmg.admin.password": "Hunter2-Hunter2", "ksmg.hostname": "mx1"}
	err := scrub(deploy.Permanent(errors.New(`property ksmg.admin.password="Hunter2-Hunter2" on mx1 rejected`)), props)
	if strings.Contains(err.Error(), "Hunter2") || !strings.Contains(err.Error(), "<secret>") || !strings.Contains(err.Error(), "mx1") {
		t.Errorf("scrubbed: %v", err)
	}
	if !deploy.IsPermanent(err) {
		t.Error("scrubbing lost the permanent mark")
	}
	plain := errors.New("nothing secret")
	if scrub(plain, props) != plain { //nolint:errorlint // identity: the same error value, not rewrapped
		t.Error("an error without secrets was rewrapped")
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
