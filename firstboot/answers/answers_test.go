package answers

import (
	"errors"
	"strings"
	"testing"
)

const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqLbRk2vzRZ9bkfHF6H2mXmbiGsmdNw2WnNo6j3KXm7 admin@example"

func TestStepValidators(t *testing.T) {
	tests := []struct {
		step string
		fn   func(string) error
		in   string
		ok   bool
	}{
		{"language", ValidateLanguage, "cs", true},
		{"language", ValidateLanguage, "de", false},
		{"language", ValidateLanguage, "", false},
		{"password", ValidatePassword, "Correct-Horse-9", true},
		{"password", ValidatePassword, "Sh0rt!", false},
		{"password", ValidatePassword, "alllowercaseletters", false},
		{"password", ValidatePassword, "lowercase and 12345", true},
		{"password", ValidatePassword, "Tab\there-is-1", false},
		{"password", ValidatePassword, strings.Repeat("Aa1!", 65), false},
		{"password hash", ValidatePasswordHash, "$6$saltsalt$abc./DEF", true},
		{"password hash", ValidatePasswordHash, "$y$j9T$abc$def", true},
		{"password hash", ValidatePasswordHash, "$1$md5$weak", false},
		{"password hash", ValidatePasswordHash, "plaintext", false},
		{"hostname", ValidateHostname, "gw1", true},
		{"hostname", ValidateHostname, "gw1.mail.example.com", true},
		{"hostname", ValidateHostname, "GW1", false},
		{"hostname", ValidateHostname, "-gw", false},
		{"hostname", ValidateHostname, "gw_1", false},
		{"hostname", ValidateHostname, "", false},
		{"hostname", ValidateHostname, strings.Repeat("a", 64), false},
		{"hostname", ValidateHostname, "gw..example", false},
		{"mode", ValidateMode, "dhcp", true},
		{"mode", ValidateMode, "static", true},
		{"mode", ValidateMode, "auto", false},
		{"ipv4", ValidatePrefix4, "192.0.2.10/24", true},
		{"ipv4", ValidatePrefix4, "192.0.2.10", false},
		{"ipv4", ValidatePrefix4, "192.0.2.0/24", false},
		{"ipv4", ValidatePrefix4, "192.0.2.255/24", false},
		{"ipv4", ValidatePrefix4, "10.0.0.1/31", true},
		{"ipv4", ValidatePrefix4, "2001:db8::1/64", false},
		{"ipv4", ValidatePrefix4, "0.0.0.0/8", false},
		{"ipv4", ValidatePrefix4, "192.0.2.10/33", false},
		{"ipv6", ValidatePrefix6, "2001:db8::10/64", true},
		{"ipv6", ValidatePrefix6, "192.0.2.10/24", false},
		{"ipv6", ValidatePrefix6, "::1/128", false},
		{"dns", ValidateAddress, "192.0.2.53", true},
		{"dns", ValidateAddress, "2001:db8::53", true},
		{"dns", ValidateAddress, "dns.example", false},
		{"ntp", ValidateServer, "pool.ntp.org", true},
		{"ntp", ValidateServer, "192.0.2.123", true},
		{"ntp", ValidateServer, "bad host", false},
		{"search", ValidateDomain, "example.com", true},
		{"search", ValidateDomain, "exa mple", false},
		{"timezone", ValidateTimezone, "Europe/Prague", true},
		{"timezone", ValidateTimezone, "UTC", true},
		{"timezone", ValidateTimezone, "Mars/Olympus", false},
		{"timezone", ValidateTimezone, "../../etc/passwd", false},
		{"timezone", ValidateTimezone, "Local", false},
		{"role", ValidateRole, "control", true},
		{"role", ValidateRole, "secondary", true},
		{"role", ValidateRole, "primary", false},
		{"control", ValidateControlAddress, "ctl.example.com", true},
		{"control", ValidateControlAddress, "192.0.2.1:8443", true},
		{"control", ValidateControlAddress, "[2001:db8::1]:443", true},
		{"control", ValidateControlAddress, "2001:db8::1", true},
		{"control", ValidateControlAddress, "ctl:0", false},
		{"control", ValidateControlAddress, "ctl:99999", false},
		{"control", ValidateControlAddress, "ctl:x", false},
		{"control", ValidateControlAddress, "", false},
		{"token", ValidateJoinToken, "abcdefghijklmnop0123", true},
		{"token", ValidateJoinToken, "short", false},
		{"token", ValidateJoinToken, "has space in the token value", false},
		{"token", ValidateJoinToken, strings.Repeat("a", 15), false},
		{"token", ValidateJoinToken, strings.Repeat("a", 16), true},
		{"token", ValidateJoinToken, strings.Repeat("A-z.0_~+/=", 51) + "zz", true},
		{"token", ValidateJoinToken, strings.Repeat("a", 513), false},
		{"token", ValidateJoinToken, strings.Repeat("a", 20) + "\n", false},
		{"token", ValidateJoinToken, strings.Repeat("a", 20) + "é", false},
		{"ssh key", ValidateAuthorizedKey, testKey, true},
		{"ssh key", ValidateAuthorizedKey, "ssh-ed25519 notbase64", false},
		{"ssh key", ValidateAuthorizedKey, testKey + "\n" + testKey, false},
		{"ssh key", ValidateAuthorizedKey, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.step+"/"+tc.in, func(t *testing.T) {
			err := tc.fn(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("%s(%q) = %v, want ok=%v", tc.step, tc.in, err, tc.ok)
			}
			if err != nil && err.Error() == "" {
				t.Fatal("empty error message")
			}
		})
	}
}

func TestEULAAndConfirm(t *testing.T) {
	if ValidateEULA(false) == nil || ValidateEULA(true) != nil {
		t.Fatal("EULA must be accepted, and acceptance must pass")
	}
	if ValidateConfirm("a", "b") == nil || ValidateConfirm("a", "a") != nil {
		t.Fatal("confirmation mismatch not detected")
	}
}

func TestGateway(t *testing.T) {
	tests := []struct {
		gw, prefix string
		v4, ok     bool
	}{
		{"192.0.2.1", "192.0.2.10/24", true, true},
		{"198.51.100.1", "192.0.2.10/24", true, false},
		{"192.0.2.10", "192.0.2.10/24", true, false},
		{"fe80::1", "2001:db8::10/64", false, true},
		{"2001:db8::1", "2001:db8::10/64", false, true},
		{"192.0.2.1", "2001:db8::10/64", false, false},
	}
	for _, tc := range tests {
		if err := ValidateGateway(tc.gw, tc.prefix, tc.v4); (err == nil) != tc.ok {
			t.Errorf("ValidateGateway(%q,%q) = %v, want ok=%v", tc.gw, tc.prefix, err, tc.ok)
		}
	}
}

func complete() map[string]string {
	return map[string]string{
		"ksmg.eula.accepted":   "true",
		"ksmg.admin.password":  "Correct-Horse-9",
		"ksmg.hostname":        "gw1.example.com",
		"ksmg.network.mode":    "static",
		"ksmg.network.address": "192.0.2.10/24",
		"ksmg.network.gateway": "192.0.2.1",
		"ksmg.network.dns":     "192.0.2.53, 192.0.2.54",
		"ksmg.timezone":        "Europe/Prague",
		"other.key":            "ignored",
	}
}

func TestFromKeys(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(map[string]string)
		wantValid bool
		badKeys   []string
	}{
		{"complete", func(map[string]string) {}, true, nil},
		{"partial", func(m map[string]string) { delete(m, "ksmg.admin.password") }, false, nil},
		{"eula not accepted", func(m map[string]string) { m["ksmg.eula.accepted"] = "False" }, false, nil},
		{"eula not a bool", func(m map[string]string) { m["ksmg.eula.accepted"] = "sure" }, false, []string{"ksmg.eula.accepted"}},
		{"empty means not given", func(m map[string]string) { m["ksmg.network.search"] = ""; m["ksmg.admin.password_hash"] = " " }, true, nil},
		{"ovf address and prefix", func(m map[string]string) {
			m["ksmg.network.address"] = "192.0.2.10"
			m["ksmg.network.prefix"] = "24"
		}, true, nil},
		{"address without prefix", func(m map[string]string) { m["ksmg.network.address"] = "192.0.2.10" }, false, []string{"ksmg.network.address", "ksmg.network.gateway"}},
		{"bad prefix", func(m map[string]string) { m["ksmg.network.prefix"] = "40" }, true, []string{"ksmg.network.prefix"}},
		{"bad hostname kept out", func(m map[string]string) { m["ksmg.hostname"] = "bad_name" }, false, []string{"ksmg.hostname"}},
		{"weak password", func(m map[string]string) { m["ksmg.admin.password"] = "weak" }, false, []string{"ksmg.admin.password"}},
		{"gateway outside prefix", func(m map[string]string) { m["ksmg.network.gateway"] = "10.9.9.9" }, true, []string{"ksmg.network.gateway"}},
		{"ovf defaults only", func(m map[string]string) {
			clear(m)
			for k, v := range map[string]string{"ksmg.hostname": "ksmg", "ksmg.network.mode": "dhcp", "ksmg.network.prefix": "24",
				"ksmg.network.address": "", "ksmg.admin.password": "", "ksmg.cluster.role": "control", "ksmg.eula.accepted": "False", "ksmg.ksn.consent": "False"} {
				m[k] = v
			}
		}, false, nil},
		{"unknown key", func(m map[string]string) { m["ksmg.hostnme"] = "x" }, true, []string{"ksmg.hostnme"}},
		{"secondary without token", func(m map[string]string) {
			m["ksmg.cluster.role"] = "secondary"
			m["ksmg.cluster.control_address"] = "ctl.example.com"
		}, false, nil},
		{"secondary complete", func(m map[string]string) {
			m["ksmg.cluster.role"] = "secondary"
			m["ksmg.cluster.control_address"] = "ctl.example.com"
			m["ksmg.cluster.join_token"] = "0123456789abcdef0123"
		}, true, nil},
		{"ssh without key", func(m map[string]string) { m["ksmg.ssh.enabled"] = "true" }, false, nil},
		{"ssh with key", func(m map[string]string) {
			m["ksmg.ssh.enabled"] = "yes"
			m["ksmg.ssh.authorized_key"] = testKey
		}, true, nil},
		{"ssh root login with ssh", func(m map[string]string) {
			m["ksmg.ssh.enabled"] = "true"
			m["ksmg.ssh.authorized_key"] = testKey
			m["ksmg.ssh.root_login"] = "true"
		}, true, nil},
		// Root login is a grant on top of SSH, never a way to turn it on.
		{"root login without ssh", func(m map[string]string) { m["ksmg.ssh.root_login"] = "true" }, false, nil},
		{"bad bool", func(m map[string]string) { m["ksmg.ksn.consent"] = "maybe" }, true, []string{"ksmg.ksn.consent"}},
		{"named interface", func(m map[string]string) { m["ksmg.network.interface"] = "ens192" }, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kv := complete()
			tc.edit(kv)
			a, errs := FromKeys(kv, "eth0")
			var got []string
			for _, e := range errs {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %v is not a FieldError", e)
				}
				got = append(got, fe.Key)
				if IsSecret(fe.Key) && strings.Contains(e.Error(), kv[fe.Key]) {
					t.Fatalf("error leaks a secret: %v", e)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.badKeys, ",") {
				t.Fatalf("bad keys = %v, want %v", got, tc.badKeys)
			}
			if err := a.Validate(); (err == nil) != tc.wantValid {
				t.Fatalf("Validate() = %v, want valid=%v", err, tc.wantValid)
			}
			if a.KSN || a.EULAAccepted && strings.HasPrefix(tc.name, "eula") || (a.SSHEnabled && !strings.HasPrefix(tc.name, "ssh")) {
				t.Fatal("KSN and SSH must stay off unless asked")
			}
			if a.SSHRootLogin != strings.Contains(tc.name, "root login") {
				t.Fatal("root login over SSH must stay off unless asked")
			}
		})
	}
}

func TestFromKeysInterface(t *testing.T) {
	kv := complete()
	kv["ksmg.network.interface"] = "ens192"
	a, _ := FromKeys(kv, "eth0")
	if len(a.Interfaces) != 1 || a.Interfaces[0].Name != "ens192" || a.Interfaces[0].Address4 != "192.0.2.10/24" ||
		strings.Join(a.Interfaces[0].DNS, " ") != "192.0.2.53 192.0.2.54" {
		t.Fatalf("interfaces = %+v", a.Interfaces)
	}
}

func TestKeysTable(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys {
		if !strings.HasPrefix(k.Name, Prefix) || seen[k.Name] || k.Help == "" || k.set == nil {
			t.Errorf("bad key entry %+v", k.Name)
		}
		seen[k.Name] = true
	}
	for _, s := range []string{"ksmg.admin.password", "ksmg.admin.password_hash", "ksmg.cluster.join_token"} {
		if !IsSecret(s) {
			t.Errorf("%s must be secret", s)
		}
	}
	if IsSecret("ksmg.hostname") {
		t.Error("hostname is not a secret")
	}
}

func TestUnattendedExample(t *testing.T) {
	kv1, pw1, err := Unattended("gw1")
	if err != nil {
		t.Fatal(err)
	}
	_, pw2, _ := Unattended("gw1")
	if pw1 == pw2 || kv1["ksmg.admin.password"] != pw1 {
		t.Fatal("passwords must be fresh per call")
	}
	a, errs := FromKeys(kv1, "ens3")
	if len(errs) > 0 || a.Validate() != nil || a.KSN || a.SSHEnabled {
		t.Fatalf("example not complete or not private by default: %v %v", errs, a.Validate())
	}
	if _, _, err := Unattended("Bad_Name"); err == nil {
		t.Fatal("bad host name accepted")
	}
}
