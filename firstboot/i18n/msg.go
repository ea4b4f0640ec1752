package i18n

import (
	"io"
	"strings"
	"unicode/utf8"

	"github.com/gosimple/unidecode"
	"golang.org/x/text/message"
)

var english = Printer(English)

// Msg is a catalog message kept with its arguments, so that it can be
// shown in whatever language the reader has chosen by then: Error and
// String give English (logs, the deployer's error reports), Localize the
// printer's language. Arguments that are errors or Localizers (another
// Msg, such as an unattended source's name) are localized too, and the
// errors among them are what Unwrap returns, so errors.Is and errors.As
// see through a Msg as through fmt.Errorf's %w.
type Msg struct {
	format string
	args   []any
	en     string
}

// Errorf makes a Msg; format is the message's catalog key. gotext finds
// every call with a constant format, as it does for Printer.Sprintf.
func Errorf(format string, args ...any) *Msg {
	return &Msg{format: format, args: args, en: english.Sprintf(format, args...)}
}

func (m *Msg) Error() string  { return m.en }
func (m *Msg) String() string { return m.en }

// Unwrap returns the message's error arguments.
func (m *Msg) Unwrap() []error {
	var errs []error
	for _, a := range m.args {
		if e, ok := a.(error); ok {
			errs = append(errs, e)
		}
	}
	return errs
}

// Localize formats the message with p.
func (m *Msg) Localize(p *message.Printer) string {
	args := make([]any, len(m.args))
	for i, a := range m.args {
		switch v := a.(type) {
		case error:
			a = Error(p, v)
		case Localizer:
			a = v.Localize(p)
		}
		args[i] = a
	}
	return p.Sprintf(m.format, args...)
}

// Localizer is an error (or notice) that can be told in another language.
type Localizer interface {
	Localize(p *message.Printer) string
}

// Error tells err in p's language: a Localizer localizes itself, a
// joined error each of its parts (one per line); anything else, such as
// an operating-system error, keeps its own text.
func Error(p *message.Printer, err error) string {
	if err == nil {
		return ""
	}
	// A type switch, not errors.As: an error that wraps a Localizer has
	// English text of its own, which must not be dropped.
	switch e := err.(type) { //nolint:errorlint // see above
	case Localizer:
		return e.Localize(p)
	case interface{ Unwrap() []error }:
		var lines []string
		for _, x := range e.Unwrap() {
			lines = append(lines, Error(p, x))
		}
		return strings.Join(lines, "\n")
	}
	return err.Error()
}

// ASCII transliterates s for a terminal that cannot show UTF-8 (a serial
// console set to a legacy character set): Czech loses its diacritics,
// Cyrillic is romanized ("Русский" becomes "Russkii"). gosimple/unidecode
// carries the Unicode-to-ASCII table.
func ASCII(s string) string { return unidecode.Unidecode(s) }

// ASCIIWriter transliterates what is written through it (see ASCII).
// A UTF-8 sequence split across writes is held until it is complete.
func ASCIIWriter(w io.Writer) io.Writer { return &asciiWriter{w: w} }

type asciiWriter struct {
	w    io.Writer
	tail []byte
}

func (a *asciiWriter) Write(p []byte) (int, error) {
	b := append(append([]byte(nil), a.tail...), p...)
	// Keep an incomplete rune at the end for the next write.
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	a.tail = append([]byte(nil), b[cut:]...)
	if _, err := io.WriteString(a.w, ASCII(string(b[:cut]))); err != nil {
		return 0, err
	}
	return len(p), nil
}
