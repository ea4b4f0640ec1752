// Package tui is the console wizard of the first boot, built with huh
// forms on bubbletea. Each step is a huh.Group; in the full-screen mode
// they form one huh.Form (enter = next, shift+tab = back, inline errors),
// in accessible mode (serial and dumb terminals) they are asked one by one
// as plain line prompts and each step is re-asked until it validates.
package tui

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/huh"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
)

//go:embed texts/eula.txt
var eulaText string

//go:embed texts/ksn.txt
var ksnText string

// ErrAborted is returned when the admin quits the wizard (ctrl+c).
var ErrAborted = errors.New("setup aborted at the console")

// Options configure a wizard run.
type Options struct {
	Interfaces []string        // NICs offered for configuration, in order
	Accessible bool            // line prompts instead of the full-screen form
	Notices    []string        // shown on the first screen (invalid unattended answers)
	Ctx        context.Context // cancels the full-screen form; default Background
	In         io.Reader       // default os.Stdin
	Out        io.Writer       // default os.Stdout
}

// nic holds one interface's form values.
type nic struct {
	Name                                      string
	Mode, Addr4, Gw4, Addr6, Gw6, DNS, Search string
}

// model holds every form value; huh fields point into it. Fields are
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

// step is one screen: its group, when it is skipped, and the check that
// accessible mode re-runs (full-screen mode validates field by field).
type step struct {
	group  func() *huh.Group
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

func (m *model) steps(o Options, keepHash bool) []step {
	never := func() bool { return false }
	var s []step
	welcome := "Welcome. This wizard sets up the mail gateway appliance.\nenter: next   shift+tab: back   ctrl+c: quit"
	if len(o.Notices) > 0 {
		welcome += "\n\nUnattended answers that were rejected (fix them below):\n- " + strings.Join(o.Notices, "\n- ")
	}
	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(
			huh.NewNote().Title("ksmg appliance setup").Description(welcome),
			huh.NewSelect[string]().Title("Language").Options(
				huh.NewOption("English", "en"), huh.NewOption("Čeština", "cs"), huh.NewOption("Русский", "ru"),
			).Value(&m.Language).Validate(answers.ValidateLanguage),
		)
	}, hidden: never, check: func() error { return answers.ValidateLanguage(m.Language) }})

	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(
			huh.NewNote().Title("License agreement").Description(eulaText),
			huh.NewConfirm().Title("Do you accept the license agreement?").
				Affirmative("I accept").Negative("I do not accept").
				Value(&m.EULA).Validate(answers.ValidateEULA),
		)
	}, hidden: never, check: func() error { return answers.ValidateEULA(m.EULA) }})

	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(
			huh.NewNote().Title("Data provision and KSN").Description(ksnText),
			huh.NewConfirm().Title("Participate in Kaspersky Security Network?").
				Affirmative("Join KSN").Negative("Do not join").Value(&m.KSN),
		)
	}, hidden: never, check: func() error { return nil }})

	// With a hash from an unattended source (or the current one on
	// --reconfigure), an empty password keeps it.
	pwRule := answers.ValidatePassword
	pwDesc := fmt.Sprintf("Account %q. At least %d characters mixing three of: lower, upper, digits, other.", "admin", answers.MinPasswordLen)
	if keepHash {
		pwRule = optional(answers.ValidatePassword)
		pwDesc += " Leave empty to keep the current one."
	}
	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(
			huh.NewInput().Title("Administrator password").Description(pwDesc).
				EchoMode(huh.EchoModePassword).Value(&m.Password).Validate(pwRule),
			huh.NewInput().Title("Confirm password").EchoMode(huh.EchoModePassword).Value(&m.Confirm).
				Validate(func(c string) error { return answers.ValidateConfirm(m.Password, c) }),
		)
	}, hidden: never, check: func() error {
		if err := pwRule(m.Password); err != nil {
			return err
		}
		return answers.ValidateConfirm(m.Password, m.Confirm)
	}})

	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(huh.NewInput().Title("Host name").Description("Fully qualified name, e.g. gw1.example.com").
			Value(&m.Hostname).Validate(answers.ValidateHostname))
	}, hidden: never, check: func() error { return answers.ValidateHostname(m.Hostname) }})

	for _, n := range m.Nics {
		s = append(s, step{group: func() *huh.Group {
			return huh.NewGroup(huh.NewSelect[string]().Title("Network: interface "+n.Name).Options(
				huh.NewOption("DHCP (automatic)", answers.ModeDHCP), huh.NewOption("Static IPv4/IPv6", answers.ModeStatic),
			).Value(&n.Mode).Validate(answers.ValidateMode))
		}, hidden: never, check: func() error { return answers.ValidateMode(n.Mode) }})
		static := func() bool { return n.Mode != answers.ModeStatic }
		s = append(s, step{group: func() *huh.Group {
			return huh.NewGroup(
				huh.NewInput().Title(n.Name+": IPv4 address/prefix").Placeholder("192.0.2.10/24 (empty: none)").Value(&n.Addr4).Validate(optional(answers.ValidatePrefix4)),
				huh.NewInput().Title(n.Name+": IPv4 gateway").Placeholder("192.0.2.1 (optional)").Value(&n.Gw4).Validate(optional(func(g string) error { return answers.ValidateGateway(g, n.Addr4, true) })),
				huh.NewInput().Title(n.Name+": IPv6 address/prefix").Placeholder("2001:db8::10/64 (empty: none)").Value(&n.Addr6).Validate(func(v string) error {
					if strings.TrimSpace(v) == "" && strings.TrimSpace(n.Addr4) == "" {
						return errors.New("a static interface needs an IPv4 or IPv6 address")
					}
					return optional(answers.ValidatePrefix6)(v)
				}),
				huh.NewInput().Title(n.Name+": IPv6 gateway").Placeholder("optional").Value(&n.Gw6).Validate(optional(func(g string) error { return answers.ValidateGateway(g, n.Addr6, false) })),
				huh.NewInput().Title(n.Name+": DNS servers").Placeholder("comma separated").Value(&n.DNS).Validate(list(answers.ValidateAddress)),
				huh.NewInput().Title(n.Name+": search domain").Placeholder("optional").Value(&n.Search).Validate(optional(answers.ValidateDomain)),
			)
		}, hidden: static, check: func() error {
			return errors.Join(answers.ValidateInterface(m.answers("").Interfaces[indexOf(m.Nics, n)])...)
		}})
	}

	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(
			huh.NewInput().Title("NTP servers").Description("Comma separated; empty uses the system defaults.").Value(&m.NTP).Validate(list(answers.ValidateServer)),
			huh.NewInput().Title("Time zone").Description("IANA name, e.g. Europe/Prague or UTC").Value(&m.Timezone).Validate(answers.ValidateTimezone),
		)
	}, hidden: never, check: func() error {
		return errors.Join(answers.ValidateList(answers.SplitList(m.NTP), answers.ValidateServer), answers.ValidateTimezone(m.Timezone))
	}})

	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(huh.NewSelect[string]().Title("Node role").Options(
			huh.NewOption("Control node", answers.RoleControl), huh.NewOption("Secondary node (joins a Control node)", answers.RoleSecondary),
		).Value(&m.Role).Validate(answers.ValidateRole))
	}, hidden: never, check: func() error { return answers.ValidateRole(m.Role) }})
	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(
			huh.NewInput().Title("Control node address").Placeholder("host[:port]").Value(&m.Control).Validate(answers.ValidateControlAddress),
			huh.NewInput().Title("Join token").Description("Shown on the Control node when you add a node.").EchoMode(huh.EchoModePassword).Value(&m.Token).Validate(answers.ValidateJoinToken),
		)
	}, hidden: func() bool { return m.Role != answers.RoleSecondary }, check: func() error {
		return errors.Join(answers.ValidateControlAddress(m.Control), answers.ValidateJoinToken(m.Token))
	}})

	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(huh.NewConfirm().Title("Enable SSH access for the administrator?").
			Description("Off by default. Key-based login only.").Affirmative("Enable").Negative("Keep off").Value(&m.SSH))
	}, hidden: never, check: func() error { return nil }})
	s = append(s, step{group: func() *huh.Group {
		return huh.NewGroup(huh.NewInput().Title("Authorized public key").Placeholder("ssh-ed25519 AAAA... comment").
			Value(&m.Key).Validate(answers.ValidateAuthorizedKey),
			huh.NewConfirm().Title("Allow this key to log in as root too?").
				Description("Off by default. The administrator otherwise uses sudo for the product's commands.").
				Affirmative("Allow").Negative("No").Value(&m.Root))
	}, hidden: func() bool { return !m.SSH }, check: func() error { return answers.ValidateAuthorizedKey(m.Key) }})

	s = append(s, step{group: func() *huh.Group {
		review := huh.NewNote().Title("Review").DescriptionFunc(m.summary, m)
		if m.accessible {
			review = huh.NewNote().Title("Review").Description(m.summary())
		}
		return huh.NewGroup(
			review,
			huh.NewConfirm().Title("Apply these settings?").Affirmative("Apply").Negative("Go back").Value(&m.Apply),
		)
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

// summary is the review screen; secrets are shown only as "set".
func (m *model) summary() string {
	var b strings.Builder
	yn := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(&b, "Language %s · EULA accepted: %v · KSN: %s\n", m.Language, m.EULA, yn[m.KSN])
	fmt.Fprintf(&b, "Host name: %s · admin password: %s\n", m.Hostname, map[bool]string{true: "set", false: "NOT SET"}[m.Password != "" || m.keepHash])
	for _, n := range m.Nics {
		if n.Mode == answers.ModeDHCP {
			fmt.Fprintf(&b, "%s: DHCP", n.Name)
			if strings.TrimSpace(n.DNS+n.Search) != "" {
				fmt.Fprintf(&b, ", DNS %s  search %s", dash(n.DNS), dash(n.Search))
			}
			b.WriteString("\n")
			continue
		}
		fmt.Fprintf(&b, "%s: %s gw %s  %s gw %s\n", n.Name, dash(n.Addr4), dash(n.Gw4), dash(n.Addr6), dash(n.Gw6))
		fmt.Fprintf(&b, "   DNS %s  search %s\n", dash(n.DNS), dash(n.Search))
	}
	fmt.Fprintf(&b, "NTP: %s · time zone: %s\n", dash(m.NTP), m.Timezone)
	if m.Role == answers.RoleSecondary {
		fmt.Fprintf(&b, "Role: Secondary of %s (token set) · KSN follows Control\n", m.Control)
	} else {
		fmt.Fprintf(&b, "Role: Control node\n")
	}
	if m.SSH {
		k := strings.Fields(m.Key)
		fmt.Fprintf(&b, "SSH: on, key %s, root login %s\n", strings.Join(k[:min(len(k), 1)], " "), map[bool]string{true: "allowed", false: "off"}[m.Root])
	} else {
		b.WriteString("SSH: off\n")
	}
	return b.String()
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

// Run shows the wizard prefilled with a and returns the confirmed answers.
// A password hash given by an unattended source is kept when the admin
// leaves the password empty... it is never shown.
func Run(o Options, a answers.Answers) (answers.Answers, error) {
	if o.In == nil {
		o.In = os.Stdin
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	m := fromAnswers(a, o.Interfaces)
	keepHash := a.AdminPasswordHash != "" && a.AdminPassword == ""
	m.keepHash, m.accessible = keepHash, o.Accessible
	for {
		m.Apply = false
		var err error
		if o.Accessible {
			err = m.runAccessible(o, keepHash)
		} else {
			err = m.runForm(o, keepHash)
		}
		if err != nil {
			return answers.Answers{}, err
		}
		if !m.Apply {
			continue // "Go back": the form reopens with everything kept
		}
		hash := ""
		if keepHash && m.Password == "" {
			hash = a.AdminPasswordHash
		}
		res := m.answers(hash)
		if err := res.Validate(); err != nil {
			// Cannot normally happen (every field validated), but never
			// return answers that would fail to apply.
			o.Notices = []string{err.Error()}
			continue
		}
		return res, nil
	}
}

func (m *model) runForm(o Options, keepHash bool) error {
	var groups []*huh.Group
	for _, st := range m.steps(o, keepHash) {
		groups = append(groups, st.group().WithHideFunc(st.hidden))
	}
	f := huh.NewForm(groups...).WithWidth(78).WithShowHelp(true).WithInput(o.In).WithOutput(o.Out)
	ctx := o.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if err := f.RunWithContext(ctx); err != nil {
		if errors.Is(err, huh.ErrUserAborted) || ctx.Err() != nil {
			return ErrAborted
		}
		return fmt.Errorf("wizard: %w", err)
	}
	return nil
}

func (m *model) runAccessible(o Options, keepHash bool) error {
	for _, st := range m.steps(o, keepHash) {
		if st.hidden() {
			continue
		}
		for {
			g := st.group()
			f := huh.NewForm(g).WithAccessible(true).WithInput(o.In).WithOutput(o.Out)
			if err := f.Run(); err != nil {
				return fmt.Errorf("wizard: %w", err)
			}
			err := st.check()
			if err == nil {
				break
			}
			fmt.Fprintf(o.Out, "Error: %v\nPlease answer this step again.\n\n", err)
		}
	}
	return nil
}
