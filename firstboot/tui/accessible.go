package tui

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/term"
	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// errBack is a "<" answer: go back one step.
var errBack = errors.New("back")

// prompter asks line by line: plain text out (transliterated when the
// terminal has no UTF-8), one line in per answer. Reads run in their own
// goroutine so that a cancelled context (another console finished the
// setup, SIGTERM) ends the wizard while it waits for a line.
type prompter struct {
	o  Options
	in *bufio.Reader
	fd int // the input's terminal, for unechoed secrets; -1 if none
}

type lineResult struct {
	s   string
	err error
}

func newPrompter(o Options) *prompter {
	if o.ASCII {
		o.Out = i18n.ASCIIWriter(o.Out)
	}
	pr := &prompter{o: o, in: bufio.NewReader(o.In), fd: -1}
	if f, ok := o.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pr.fd = int(f.Fd())
	}
	return pr
}

func (pr *prompter) say(s string) { _, _ = io.WriteString(pr.o.Out, s) }

// fail reports an answer that was not accepted.
func (pr *prompter) fail(p *message.Printer, text string) {
	pr.say(p.Sprintf("Error: %s", text) + "\n")
}

// read returns one answer line. A secret is read without echo from a
// terminal (from anything else it is an ordinary line).
func (pr *prompter) read(hidden bool) (string, error) {
	ch := make(chan lineResult, 1)
	var restore func()
	go func() {
		if hidden && pr.fd >= 0 && pr.in.Buffered() == 0 {
			b, err := term.ReadPassword(pr.fd)
			pr.say("\n")
			ch <- lineResult{string(b), err}
			return
		}
		s, err := pr.in.ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		ch <- lineResult{strings.TrimRight(s, "\r\n"), err}
	}()
	if hidden && pr.fd >= 0 {
		if st, err := term.GetState(pr.fd); err == nil {
			restore = func() { _ = term.Restore(pr.fd, st) }
		}
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return "", ErrAborted // end of input: nobody is there to answer
		}
		return r.s, nil
	case <-pr.o.Ctx.Done():
		if restore != nil {
			restore() // echo back on for whoever uses the terminal next
		}
		return "", ErrAborted
	}
}

// ask asks one field until its answer validates. "<" goes back a step.
func (pr *prompter) ask(p *message.Printer, m *model, f field) error {
	pr.say("\n" + f.title + "\n")
	if f.desc != "" {
		pr.say(f.desc + "\n")
	}
	switch f.kind {
	case note:
		if f.review {
			pr.say(m.summary(p))
		}
		return nil
	case choice, confirm:
		return pr.askChoice(p, f)
	}
	return pr.askLine(p, f)
}

// askChoice asks for the number of an option (a confirm's are yes, no):
// numbers can be typed on any keyboard layout and any terminal.
func (pr *prompter) askChoice(p *message.Printer, f field) error {
	opts := f.options
	current := 0
	if f.kind == confirm {
		opts = []option{{f.yes, "y"}, {f.no, "n"}}
		if !*f.b {
			current = 1
		}
	}
	for i, o := range opts {
		if f.kind == choice && o.value == *f.str {
			current = i
		}
		pr.say(fmt.Sprintf("  %d) %s\n", i+1, o.label))
	}
	for {
		count, keep := len(opts), current+1
		pr.say(p.Sprintf("Enter a number from 1 to %d (Enter keeps %d): ", count, keep))
		line, err := pr.read(false)
		if err != nil {
			return err
		}
		line = strings.TrimSpace(line)
		if line == "<" {
			return errBack
		}
		n := keep
		if line != "" {
			if n, err = strconv.Atoi(line); err != nil || n < 1 || n > count {
				pr.fail(p, p.Sprintf("%q is not a number from 1 to %d", line, count))
				continue
			}
		}
		var verr error
		if f.kind == confirm {
			*f.b = n == 1
			if f.validateB != nil {
				verr = f.validateB(*f.b)
			}
		} else {
			*f.str = opts[n-1].value
			if f.validate != nil {
				verr = f.validate(*f.str)
			}
		}
		if verr == nil {
			return nil
		}
		pr.fail(p, i18n.Error(p, verr))
	}
}

// askLine asks for a line of text; Enter alone keeps the current value.
func (pr *prompter) askLine(p *message.Printer, f field) error {
	for {
		switch {
		case f.kind == secret && *f.str != "":
			pr.say(p.Sprintf("(input hidden; Enter keeps the value given before)") + "\n")
		case f.kind == secret:
			pr.say(p.Sprintf("(input hidden)") + "\n")
		case *f.str != "":
			pr.say(p.Sprintf("Enter keeps: %s", *f.str) + "\n")
		case f.placeholder != "":
			pr.say(p.Sprintf("For example: %s", f.placeholder) + "\n")
		}
		pr.say("> ")
		line, err := pr.read(f.kind == secret)
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) == "<" {
			return errBack
		}
		v := *f.str
		if strings.TrimSpace(line) != "" {
			v = strings.TrimSpace(line)
		}
		if f.validate != nil {
			if err := f.validate(v); err != nil {
				pr.fail(p, i18n.Error(p, err))
				continue
			}
		}
		*f.str = v
		return nil
	}
}

// runAccessible asks every visible step; a step whose answers fail the
// step's own check is asked again, and "<" returns to the step before.
func (m *model) runAccessible(o Options, pr *prompter) error {
	steps := m.steps(o)
	var trail []int // visible steps answered so far, to go back through
	for i := 0; i < len(steps); {
		st := steps[i]
		if st.hidden() {
			i++
			continue
		}
		p := m.printer() // the language chosen so far speaks from this step on
		if i == 0 {
			pr.say(p.Sprintf("Answer each question and press Enter; type < to go back one step.") + "\n")
		}
		var err error
		for _, f := range st.fields(p) {
			if err = pr.ask(p, m, f); err != nil {
				break
			}
		}
		switch {
		case errors.Is(err, errBack):
			if len(trail) > 0 {
				i, trail = trail[len(trail)-1], trail[:len(trail)-1]
			}
			continue
		case err != nil:
			return err
		}
		if err := st.check(); err != nil {
			pr.fail(p, i18n.Error(p, err))
			pr.say(p.Sprintf("Please answer this step again.") + "\n")
			continue
		}
		trail = append(trail, i)
		i++
	}
	return nil
}
