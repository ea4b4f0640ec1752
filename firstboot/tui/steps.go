package tui

import (
	"errors"
	"strings"

	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// kind is what a field asks for.
type kind int

const (
	note    kind = iota // text only
	choice              // one of options
	input               // a line of text
	secret              // a line of text that is not echoed
	confirm             // yes or no
)

type option struct{ label, value string }

// field is one question of a step, independent of how it is shown.
type field struct {
	kind        kind
	title, desc string
	review      bool   // the review note: its text follows the model (full-screen)
	next        string // a note on its own screen: the label of its button
	placeholder string
	options     []option
	str         *string
	b           *bool
	yes, no     string
	validate    func(string) error // input, secret, choice
	validateB   func(bool) error   // confirm
}

// step is one screen: its fields in the given language, when it is
// skipped, and the check of the whole step (accessible mode re-asks a
// step that fails it; full-screen mode validates field by field).
type step struct {
	fields func(p *message.Printer) []field
	hidden func() bool
	check  func() error
}

func optional(v func(string) error) func(string) error {
	return func(s string) error {
		if strings.TrimSpace(s) == "" {
			return nil
		}
		return v(strings.TrimSpace(s))
	}
}

func list(v func(string) error) func(string) error {
	return func(s string) error { return answers.ValidateList(answers.SplitList(s), v) }
}

func never() bool { return false }

func (m *model) steps(o Options) []step {
	var s []step
	s = append(s, step{fields: func(p *message.Printer) []field {
		var opts []option
		for _, l := range i18n.Languages {
			opts = append(opts, option{i18n.Name(l), l})
		}
		return []field{
			{kind: note, title: p.Sprintf("ksmg appliance setup"), desc: welcome(p, o.Notices)},
			{kind: choice, title: p.Sprintf("Language"), options: opts, str: &m.Language, validate: answers.ValidateLanguage},
		}
	}, hidden: never, check: func() error { return answers.ValidateLanguage(m.Language) }})

	// The summary has a screen of its own: with the question below it, the
	// Czech and Russian texts would not fit 24 lines and scroll their
	// heading away.
	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{{kind: note, title: p.Sprintf("License agreement"), desc: p.Sprintf(EULASummary), next: p.Sprintf("Next")}}
	}, hidden: never, check: func() error { return nil }})
	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{
			{kind: confirm, title: p.Sprintf("Do you accept the license agreement?"), desc: p.Sprintf("Full text: %s (also in the web interface).", EULAPath),
				yes: p.Sprintf("I accept"), no: p.Sprintf("I do not accept"), b: &m.EULA, validateB: answers.ValidateEULA},
		}
	}, hidden: never, check: func() error { return answers.ValidateEULA(m.EULA) }})

	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{
			{kind: note, title: p.Sprintf("Data provision and KSN"), desc: p.Sprintf(KSNSummary)},
			{kind: confirm, title: p.Sprintf("Participate in Kaspersky Security Network?"), yes: p.Sprintf("Join KSN"), no: p.Sprintf("Do not join"), b: &m.KSN},
		}
	}, hidden: never, check: func() error { return nil }})

	// With a hash from an unattended source (or the current one on
	// --reconfigure), an empty password keeps it.
	pwRule := answers.ValidatePassword
	if m.keepHash {
		pwRule = optional(answers.ValidatePassword)
	}
	s = append(s, step{fields: func(p *message.Printer) []field {
		desc := p.Sprintf("Account %q. At least %d characters mixing three of: lower case, upper case, digits, other.", "admin", answers.MinPasswordLen)
		if m.keepHash {
			desc += " " + p.Sprintf("Leave empty to keep the current one.")
		}
		return []field{
			{kind: secret, title: p.Sprintf("Administrator password"), desc: desc, str: &m.Password, validate: pwRule},
			{kind: secret, title: p.Sprintf("Confirm password"), str: &m.Confirm, validate: func(c string) error { return answers.ValidateConfirm(m.Password, c) }},
		}
	}, hidden: never, check: func() error {
		if err := pwRule(m.Password); err != nil {
			return err
		}
		return answers.ValidateConfirm(m.Password, m.Confirm)
	}})

	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{{kind: input, title: p.Sprintf("Host name"), desc: p.Sprintf("Fully qualified name, e.g. gw1.example.com"),
			str: &m.Hostname, validate: answers.ValidateHostname}}
	}, hidden: never, check: func() error { return answers.ValidateHostname(m.Hostname) }})

	for _, n := range m.Nics {
		s = append(s, step{fields: func(p *message.Printer) []field {
			return []field{{kind: choice, title: p.Sprintf("Network: interface %s", n.Name), options: []option{
				{p.Sprintf("DHCP (automatic)"), answers.ModeDHCP}, {p.Sprintf("Static IPv4/IPv6"), answers.ModeStatic},
			}, str: &n.Mode, validate: answers.ValidateMode}}
		}, hidden: never, check: func() error { return answers.ValidateMode(n.Mode) }})
		s = append(s, step{fields: func(p *message.Printer) []field {
			return []field{
				{kind: input, title: p.Sprintf("%s: IPv4 address/prefix", n.Name), placeholder: p.Sprintf("192.0.2.10/24 (empty: none)"), str: &n.Addr4, validate: optional(answers.ValidatePrefix4)},
				{kind: input, title: p.Sprintf("%s: IPv4 gateway", n.Name), placeholder: p.Sprintf("192.0.2.1 (optional)"), str: &n.Gw4,
					validate: optional(func(g string) error { return answers.ValidateGateway(g, n.Addr4, true) })},
				{kind: input, title: p.Sprintf("%s: IPv6 address/prefix", n.Name), placeholder: p.Sprintf("2001:db8::10/64 (empty: none)"), str: &n.Addr6,
					validate: func(v string) error {
						if strings.TrimSpace(v) == "" && strings.TrimSpace(n.Addr4) == "" {
							return i18n.Errorf("a static interface needs an IPv4 or IPv6 address")
						}
						return optional(answers.ValidatePrefix6)(v)
					}},
				{kind: input, title: p.Sprintf("%s: IPv6 gateway", n.Name), placeholder: p.Sprintf("optional"), str: &n.Gw6,
					validate: optional(func(g string) error { return answers.ValidateGateway(g, n.Addr6, false) })},
				{kind: input, title: p.Sprintf("%s: DNS servers", n.Name), placeholder: p.Sprintf("comma separated"), str: &n.DNS, validate: list(answers.ValidateAddress)},
				{kind: input, title: p.Sprintf("%s: search domain", n.Name), placeholder: p.Sprintf("optional"), str: &n.Search, validate: optional(answers.ValidateDomain)},
			}
		}, hidden: func() bool { return n.Mode != answers.ModeStatic }, check: func() error {
			return errors.Join(answers.ValidateInterface(m.answers("").Interfaces[indexOf(m.Nics, n)])...)
		}})
	}

	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{
			{kind: input, title: p.Sprintf("NTP servers"), desc: p.Sprintf("Comma separated; empty uses the system defaults."), str: &m.NTP, validate: list(answers.ValidateServer)},
			{kind: input, title: p.Sprintf("Time zone"), desc: p.Sprintf("IANA name, e.g. Europe/Prague or UTC"), str: &m.Timezone, validate: answers.ValidateTimezone},
		}
	}, hidden: never, check: func() error {
		return errors.Join(answers.ValidateList(answers.SplitList(m.NTP), answers.ValidateServer), answers.ValidateTimezone(m.Timezone))
	}})

	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{{kind: choice, title: p.Sprintf("Node role"), options: []option{
			{p.Sprintf("Control node"), answers.RoleControl}, {p.Sprintf("Secondary node (joins a Control node)"), answers.RoleSecondary},
		}, str: &m.Role, validate: answers.ValidateRole}}
	}, hidden: never, check: func() error { return answers.ValidateRole(m.Role) }})
	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{
			{kind: input, title: p.Sprintf("Control node address"), placeholder: p.Sprintf("host[:port]"), str: &m.Control, validate: answers.ValidateControlAddress},
			{kind: secret, title: p.Sprintf("Join token"), desc: p.Sprintf("Shown on the Control node when you add a node."), str: &m.Token, validate: answers.ValidateJoinToken},
		}
	}, hidden: func() bool { return m.Role != answers.RoleSecondary }, check: func() error {
		return errors.Join(answers.ValidateControlAddress(m.Control), answers.ValidateJoinToken(m.Token))
	}})

	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{{kind: confirm, title: p.Sprintf("Enable SSH access for the administrator?"), desc: p.Sprintf("Off by default. Key-based login only."),
			yes: p.Sprintf("Enable"), no: p.Sprintf("Keep off"), b: &m.SSH}}
	}, hidden: never, check: func() error { return nil }})
	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{
			{kind: input, title: p.Sprintf("Authorized public key"), placeholder: p.Sprintf("ssh-ed25519 AAAA... comment"),
				str: &m.Key, validate: answers.ValidateAuthorizedKey},
			{kind: confirm, title: p.Sprintf("Allow this key to log in as root too?"),
				desc: p.Sprintf("Off by default. The administrator otherwise uses sudo for the product's commands."),
				yes:  p.Sprintf("Allow"), no: p.Sprintf("No"), b: &m.Root},
		}
	}, hidden: func() bool { return !m.SSH }, check: func() error { return answers.ValidateAuthorizedKey(m.Key) }})

	s = append(s, step{fields: func(p *message.Printer) []field {
		return []field{
			{kind: note, title: p.Sprintf("Review"), review: true},
			{kind: confirm, title: p.Sprintf("Apply these settings?"), yes: p.Sprintf("Apply"), no: p.Sprintf("Go back"), b: &m.Apply},
		}
	}, hidden: never, check: func() error { return nil }})
	return s
}

func indexOf(ns []*nic, n *nic) int {
	for i, x := range ns {
		if x == n {
			return i
		}
	}
	return 0
}
