package tui

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// The terminal walk itself is tested in cmd/ksmg-firstboot under tmux;
// this checks the mapping between answers and form values.
func TestModelRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a    answers.Answers
	}{
		{"static secondary with ssh", answers.Answers{
			Language: "cs", EULAAccepted: true, AdminPassword: "Correct-Horse-9", Hostname: "gw1",
			Interfaces: []answers.Interface{{Name: "eth0", Mode: "static", Address4: "192.0.2.10/24", Gateway4: "192.0.2.1",
				DNS: []string{"192.0.2.53", "192.0.2.54"}, SearchDomain: "example.com"}},
			NTP: []string{"a.example", "b.example"}, Timezone: "Europe/Prague", Role: "secondary",
			ControlAddress: "ctl.example.com", JoinToken: "0123456789abcdef0123", SSHEnabled: true,
			SSHAuthorizedKey: "ssh-ed25519 AAAA x"}},
		{"dhcp control", answers.Answers{
			Language: "en", EULAAccepted: true, AdminPassword: "Correct-Horse-9", Hostname: "gw2",
			Interfaces: []answers.Interface{{Name: "eth0", Mode: "dhcp"}}, Timezone: "UTC", Role: "control", KSN: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := fromAnswers(tc.a, []string{"eth0"})
			if got := m.answers(""); !reflect.DeepEqual(got, tc.a) {
				t.Fatalf("round trip:\n%+v\nwant\n%+v", got, tc.a)
			}
			sum := m.summary(i18n.Printer(tc.a.Language))
			if strings.Contains(sum, "Correct-Horse-9") || strings.Contains(sum, "0123456789abcdef0123") {
				t.Fatalf("summary shows a secret:\n%s", sum)
			}
		})
	}
}

func TestModelAddsDetectedInterfaces(t *testing.T) {
	t.Parallel()
	a := answers.Defaults()
	a.Interfaces = []answers.Interface{{Name: "eth1", Mode: "static", Address4: "192.0.2.10/24"}}
	m := fromAnswers(a, []string{"eth0"})
	got := m.answers("")
	if len(got.Interfaces) != 2 || got.Interfaces[0].Name != "eth0" || got.Interfaces[0].Mode != "dhcp" || got.Interfaces[1].Address4 != "192.0.2.10/24" {
		t.Fatalf("interfaces %+v", got.Interfaces)
	}
}

func TestHashKeptWhenPasswordEmpty(t *testing.T) {
	t.Parallel()
	a := answers.Defaults()
	m := fromAnswers(a, []string{"eth0"})
	if got := m.answers("$6$x$y"); got.AdminPasswordHash != "$6$x$y" {
		t.Fatal("hash not kept with an empty password")
	}
	m.Password = "Correct-Horse-9"
	if got := m.answers("$6$x$y"); got.AdminPasswordHash != "" || got.AdminPassword != "Correct-Horse-9" {
		t.Fatal("a typed password must replace the hash")
	}
}
