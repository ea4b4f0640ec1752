package tui

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/huh"
	"github.com/charmbracelet/lipgloss"
	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// huhField turns a field into its huh form field in p's language.
func (m *model) huhField(p *message.Printer, f field) huh.Field {
	switch f.kind {
	case note:
		n := huh.NewNote().Title(f.title)
		if f.next != "" {
			n.Next(true).NextLabel(f.next)
		}
		if f.review {
			return n.DescriptionFunc(func() string { return plainNote(m.summary(p)) }, m)
		}
		return n.Description(plainNote(f.desc))
	case choice:
		var opts []huh.Option[string]
		for _, o := range f.options {
			opts = append(opts, huh.NewOption(o.label, o.value))
		}
		s := huh.NewSelect[string]().Title(f.title).Options(opts...).Value(f.str)
		if f.desc != "" {
			s.Description(f.desc)
		}
		if f.validate != nil {
			s.Validate(localized(p, f.validate))
		}
		return s
	case confirm:
		c := huh.NewConfirm().Title(f.title).Affirmative(f.yes).Negative(f.no).Value(f.b)
		if f.desc != "" {
			c.Description(f.desc)
		}
		if f.validateB != nil {
			c.Validate(func(v bool) error {
				if err := f.validateB(v); err != nil {
					return errors.New(i18n.Error(p, err))
				}
				return nil
			})
		}
		return c
	default: // input, secret
		in := huh.NewInput().Title(f.title).Value(f.str)
		if f.desc != "" {
			in.Description(f.desc)
		}
		if f.placeholder != "" {
			in.Placeholder(f.placeholder)
		}
		if f.kind == secret {
			in.EchoMode(huh.EchoModePassword)
		}
		if f.validate != nil {
			in.Validate(localized(p, f.validate))
		}
		return in
	}
}

// keyMap is huh's key map with the help line in p's language (key names
// stay as they are printed on keyboards).
func keyMap(p *message.Printer) *huh.KeyMap {
	k := huh.NewDefaultKeyMap()
	back, next, submit := p.Sprintf("back"), p.Sprintf("next"), p.Sprintf("submit")
	k.Input.Prev.SetHelp("shift+tab", back)
	k.Input.Next.SetHelp("enter", next)
	k.Input.Submit.SetHelp("enter", submit)
	k.Input.AcceptSuggestion.SetHelp("ctrl+e", p.Sprintf("complete"))
	k.Note.Prev.SetHelp("shift+tab", back)
	k.Note.Next.SetHelp("enter", next)
	k.Note.Submit.SetHelp("enter", submit)
	k.Confirm.Prev.SetHelp("shift+tab", back)
	k.Confirm.Next.SetHelp("enter", next)
	k.Confirm.Submit.SetHelp("enter", submit)
	k.Confirm.Toggle.SetHelp("←/→", p.Sprintf("toggle"))
	k.Confirm.Accept.SetHelp("y", p.Sprintf("yes"))
	k.Confirm.Reject.SetHelp("n", p.Sprintf("no"))
	k.Select.Prev.SetHelp("shift+tab", back)
	k.Select.Next.SetHelp("enter", p.Sprintf("select"))
	k.Select.Submit.SetHelp("enter", submit)
	k.Select.Up.SetHelp("↑", p.Sprintf("up"))
	k.Select.Down.SetHelp("↓", p.Sprintf("down"))
	k.Select.Filter.SetHelp("/", p.Sprintf("filter"))
	k.Select.SetFilter.SetHelp("esc", p.Sprintf("set filter"))
	k.Select.ClearFilter.SetHelp("esc", p.Sprintf("clear filter"))
	return k
}

// form builds the whole wizard as one huh.Form in p's language. lang is
// the language select of the first step, so the host can tell when the
// form has moved past it.
func (m *model) form(o Options, p *message.Printer) (f *huh.Form, lang huh.Field) {
	var groups []*huh.Group
	for i, st := range m.steps(o) {
		var fs []huh.Field
		for _, x := range st.fields(p) {
			hf := m.huhField(p, x)
			if i == 0 && x.kind == choice {
				lang = hf
			}
			fs = append(fs, hf)
		}
		groups = append(groups, huh.NewGroup(fs...).WithHideFunc(st.hidden))
	}
	f = huh.NewForm(groups...).WithWidth(78).WithShowHelp(true).WithKeyMap(keyMap(p))
	f.SubmitCmd, f.CancelCmd = tea.Quit, tea.Interrupt
	return f, lang
}

// host runs the form and rebuilds it in the chosen language when the
// language step is left, so every later screen speaks that language. The
// rebuilt form starts at the step after the language; going back there
// works as before since it is the same form.
type host struct {
	m     *model
	o     Options
	form  *huh.Form
	lang  huh.Field
	built string // the language the form speaks
}

func (h *host) build(skipLanguage bool) tea.Cmd {
	h.built = h.m.Language
	h.form, h.lang = h.m.form(h.o, h.m.printer())
	cmd := h.form.Init()
	if skipLanguage {
		cmd = tea.Sequence(cmd, h.form.NextGroup())
	}
	return cmd
}

func (h *host) Init() tea.Cmd { return h.build(false) }

func (h *host) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	f, cmd := h.form.Update(msg)
	h.form = f.(*huh.Form)
	if h.form.State == huh.StateNormal && h.m.Language != h.built && h.form.GetFocusedField() != h.lang {
		return h, tea.Batch(cmd, h.build(true))
	}
	return h, cmd
}

func (h *host) View() string { return h.form.View() }

func (m *model) runForm(o Options) error {
	h := &host{m: m, o: o}
	prog := tea.NewProgram(h, tea.WithInput(o.In), tea.WithOutput(o.Out), tea.WithContext(o.Ctx))
	_, err := prog.Run()
	switch {
	case h.form != nil && h.form.State == huh.StateAborted, errors.Is(err, tea.ErrInterrupted), o.Ctx.Err() != nil:
		return ErrAborted
	case err != nil:
		return fmt.Errorf("wizard: %w", err)
	case h.form.State != huh.StateCompleted:
		return ErrAborted
	}
	return nil
}

// useRenderer has lipgloss (huh's styles) render for the wizard's
// terminal when that is not standard output (ksmg-firstboot
// --console-on-stdin): colour support and background are then the
// console's. The background is asked now, before bubbletea takes the
// terminal and would swallow the answer (what bubbletea's own init does
// for standard output).
func useRenderer(out io.Writer) {
	if out == io.Writer(os.Stdout) {
		return
	}
	r := lipgloss.NewRenderer(out)
	_ = r.HasDarkBackground()
	lipgloss.SetDefaultRenderer(r)
}

// noteMarkup escapes the characters huh's note renders as markup (_ and *
// for italic and bold, ` for code, \ for an escape): a note shows texts
// that are not markup, such as a path in a rejected answer
// ("/var/lib/hyperv/.kvp_pool_0" lost its underscores) or "ksmg.* keys".
var noteMarkup = strings.NewReplacer(`\`, `\\`, "_", `\_`, "*", `\*`, "`", "\\`")

func plainNote(s string) string { return noteMarkup.Replace(s) }
