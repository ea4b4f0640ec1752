// Package tui is the console wizard of the first boot. Every string it
// shows comes from the message catalogs of firstboot/i18n, in the language
// chosen on the first screen (or given unattended as ksmg.language).
//
// Each step is a list of fields (field.go). In full-screen mode (the VM
// console) they become huh groups of one huh.Form, driven by a small
// bubbletea model (host) that rebuilds the form in the new language once
// the language step is left: enter = next, shift+tab = back, inline
// errors. In accessible mode (serial and dumb terminals) the same fields
// are asked as numbered line prompts (accessible.go), written here rather
// than with huh's accessible mode because huh's prompts are fixed English
// text and cannot be transliterated for a terminal without UTF-8.
package tui

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"

	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// ErrAborted is returned when the admin quits the wizard (ctrl+c).
var ErrAborted = errors.New("setup aborted at the console")

// Options configure a wizard run.
type Options struct {
	Interfaces []string        // NICs offered for configuration, in order
	Accessible bool            // line prompts instead of the full-screen form
	ASCII      bool            // accessible mode on a terminal without UTF-8: transliterate
	Notices    []error         // shown on the first screen (rejected unattended answers), localized there
	Ctx        context.Context // cancels the wizard; default Background
	In         io.Reader       // default os.Stdin
	Out        io.Writer       // default os.Stdout
}

// nic holds one interface's form values.
type nic struct {
	Name                                      string
	Mode, Addr4, Gw4, Addr6, Gw6, DNS, Search string
}

// model holds every form value; fields point into it. Fields are
// exported only so that huh's change detection (hashstructure skips
// unexported fields) sees them and refreshes the review screen.
type model struct {
	Language, Password, Confirm, Hostname    string
	NTP, Timezone, Role, Control, Token, Key string
	EULA, KSN, SSH, Root, Apply              bool
	Nics                                     []*nic
	keepHash, accessible                     bool
}

func fromAnswers(a answers.Answers, ifnames []string) *model {
	m := &model{
		Language: a.Language, Password: a.AdminPassword, Confirm: a.AdminPassword,
		Hostname: a.Hostname, NTP: strings.Join(a.NTP, ", "), Timezone: a.Timezone,
		Role: a.Role, Control: a.ControlAddress, Token: a.JoinToken, Key: a.SSHAuthorizedKey,
		EULA: a.EULAAccepted, KSN: a.KSN, SSH: a.SSHEnabled, Root: a.SSHRootLogin,
	}
	if !i18n.Supported(m.Language) {
		m.Language = i18n.English
	}
	names := append([]string(nil), ifnames...)
	for _, ifc := range a.Interfaces {
		if !contains(names, ifc.Name) {
			names = append(names, ifc.Name)
		}
	}
	for _, n := range names {
		x := &nic{Name: n, Mode: answers.ModeDHCP}
		for _, ifc := range a.Interfaces {
			if ifc.Name == n {
				x.Mode, x.Addr4, x.Gw4, x.Addr6, x.Gw6 = ifc.Mode, ifc.Address4, ifc.Gateway4, ifc.Address6, ifc.Gateway6
				x.DNS, x.Search = strings.Join(ifc.DNS, ", "), ifc.SearchDomain
			}
		}
		if x.Mode == "" {
			x.Mode = answers.ModeDHCP
		}
		m.Nics = append(m.Nics, x)
	}
	return m
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (m *model) answers(hash string) answers.Answers {
	a := answers.Answers{
		Language: m.Language, EULAAccepted: m.EULA, KSN: m.KSN,
		AdminPassword: m.Password, AdminPasswordHash: hash,
		Hostname: strings.TrimSpace(m.Hostname), NTP: answers.SplitList(m.NTP),
		Timezone: strings.TrimSpace(m.Timezone), Role: m.Role, SSHEnabled: m.SSH,
	}
	if a.AdminPassword != "" {
		a.AdminPasswordHash = "" // a password typed at the console wins
	}
	if m.Role == answers.RoleSecondary {
		a.ControlAddress, a.JoinToken = strings.TrimSpace(m.Control), strings.TrimSpace(m.Token)
	}
	if m.SSH {
		a.SSHAuthorizedKey, a.SSHRootLogin = strings.TrimSpace(m.Key), m.Root
	}
	for _, n := range m.Nics {
		// DNS and search domain also complement DHCP (unattended answers
		// may give them); addresses only count when static.
		ifc := answers.Interface{Name: n.Name, Mode: n.Mode, DNS: answers.SplitList(n.DNS), SearchDomain: strings.TrimSpace(n.Search)}
		if n.Mode == answers.ModeStatic {
			ifc.Address4, ifc.Gateway4 = strings.TrimSpace(n.Addr4), strings.TrimSpace(n.Gw4)
			ifc.Address6, ifc.Gateway6 = strings.TrimSpace(n.Addr6), strings.TrimSpace(n.Gw6)
		}
		a.Interfaces = append(a.Interfaces, ifc)
	}
	return a
}

// printer is the wizard's current language.
func (m *model) printer() *message.Printer { return i18n.Printer(m.Language) }

// Run shows the wizard prefilled with a and returns the confirmed answers.
// A password hash given by an unattended source is kept when the admin
// leaves the password empty; it is never shown.
func Run(o Options, a answers.Answers) (answers.Answers, error) {
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	m := fromAnswers(a, o.Interfaces)
	keepHash := a.AdminPasswordHash != "" && a.AdminPassword == ""
	m.keepHash, m.accessible = keepHash, o.Accessible
	var prompt *prompter
	if o.Accessible {
		prompt = newPrompter(o)
	} else {
		useRenderer(o.Out) // once: "Go back" reopens the form, not the terminal
	}
	for {
		m.Apply = false
		var err error
		if o.Accessible {
			err = m.runAccessible(o, prompt)
		} else {
			err = m.runForm(o)
		}
		if err != nil {
			return answers.Answers{}, err
		}
		if !m.Apply {
			continue // "Go back": the wizard reopens with everything kept
		}
		hash := ""
		if keepHash && m.Password == "" {
			hash = a.AdminPasswordHash
		}
		res := m.answers(hash)
		if err := res.Validate(); err != nil {
			// Cannot normally happen (every field validated), but never
			// return answers that would fail to apply.
			o.Notices = []error{err}
			continue
		}
		return res, nil
	}
}

// summary is the review screen; secrets are shown only as "set".
func (m *model) summary(p *message.Printer) string {
	var b strings.Builder
	onOff := func(v bool) string {
		if v {
			return p.Sprintf("on")
		}
		return p.Sprintf("off")
	}
	yesNo := func(v bool) string {
		if v {
			return p.Sprintf("yes")
		}
		return p.Sprintf("no")
	}
	language, eula, ksn := i18n.Name(m.Language), yesNo(m.EULA), onOff(m.KSN)
	b.WriteString(p.Sprintf("Language: %s · EULA accepted: %s · KSN: %s", language, eula, ksn) + "\n")
	pw := p.Sprintf("NOT SET")
	switch {
	case m.Password != "":
		pw = p.Sprintf("set")
	case m.keepHash:
		pw = p.Sprintf("kept")
	}
	host := dash(m.Hostname)
	b.WriteString(p.Sprintf("Host name: %s · admin password: %s", host, pw) + "\n")
	for _, n := range m.Nics {
		if n.Mode == answers.ModeDHCP {
			line := p.Sprintf("%s: DHCP", n.Name)
			if strings.TrimSpace(n.DNS+n.Search) != "" {
				dns, search := dash(n.DNS), dash(n.Search)
				line += ", " + p.Sprintf("DNS %s  search %s", dns, search)
			}
			b.WriteString(line + "\n")
			continue
		}
		addr4, gw4, addr6, gw6 := dash(n.Addr4), dash(n.Gw4), dash(n.Addr6), dash(n.Gw6)
		b.WriteString(p.Sprintf("%s: %s gw %s  %s gw %s", n.Name, addr4, gw4, addr6, gw6) + "\n")
		dns, search := dash(n.DNS), dash(n.Search)
		b.WriteString("   " + p.Sprintf("DNS %s  search %s", dns, search) + "\n")
	}
	ntp := dash(m.NTP)
	b.WriteString(p.Sprintf("NTP: %s · time zone: %s", ntp, m.Timezone) + "\n")
	if m.Role == answers.RoleSecondary {
		b.WriteString(p.Sprintf("Role: Secondary node of %s (token set) · KSN follows the Control node", m.Control) + "\n")
	} else {
		b.WriteString(p.Sprintf("Role: Control node") + "\n")
	}
	if m.SSH {
		keyType := "-"
		if k := strings.Fields(m.Key); len(k) > 0 {
			keyType = k[0]
		}
		if m.Root {
			b.WriteString(p.Sprintf("SSH: on, key %s, root login allowed", keyType) + "\n")
		} else {
			b.WriteString(p.Sprintf("SSH: on, key %s", keyType) + "\n")
		}
	} else {
		b.WriteString(p.Sprintf("SSH: off") + "\n")
	}
	return b.String()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// localized wraps a validator so that its error is shown in p's language.
func localized(p *message.Printer, v func(string) error) func(string) error {
	if v == nil {
		return nil
	}
	return func(s string) error {
		if err := v(s); err != nil {
			return errors.New(i18n.Error(p, err))
		}
		return nil
	}
}

// welcome is the first screen's text, with the rejected unattended
// answers (if any) told in the current language.
func welcome(p *message.Printer, notices []error) string {
	s := p.Sprintf("Welcome. This wizard sets up the mail gateway appliance.") + "\n" +
		p.Sprintf("enter: next   shift+tab: back   ctrl+c: quit")
	if len(notices) > 0 {
		count := len(notices)
		s += "\n\n" + p.Sprintf("%d unattended answers were rejected; correct them in the steps below:", count)
		for _, n := range notices {
			s += "\n- " + strings.ReplaceAll(i18n.Error(p, n), "\n", "\n- ")
		}
	}
	return s
}
