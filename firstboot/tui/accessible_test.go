package tui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// TestAccessibleInEachLanguage runs the line prompts in-process with
// scripted answers: the language chosen first speaks from the next step on,
// a bad answer is reported in it, and ASCII mode prints nothing else.
func TestAccessibleInEachLanguage(t *testing.T) {
	t.Parallel()
	for i, lang := range i18n.Languages {
		for _, ascii := range []bool{false, true} {
			t.Run(lang+map[bool]string{false: "", true: "-ascii"}[ascii], func(t *testing.T) {
				t.Parallel()
				input := strings.Join([]string{
					string(rune('1' + i)), // language
					"1",                   // accept the EULA
					"9", "",               // KSN: out of range, then keep "off"
					"Correct-Horse-9", "Correct-Horse-9",
					"gw3", "", "", "UTC", "", "", "1",
				}, "\n") + "\n"
				var out bytes.Buffer
				a := answers.Defaults()
				got, err := Run(Options{Interfaces: []string{"eth0"}, Accessible: true, ASCII: ascii, Ctx: context.Background(),
					In: strings.NewReader(input), Out: &out}, a)
				if err != nil {
					t.Fatalf("%v\n%s", err, out.String())
				}
				if got.Language != lang || got.Hostname != "gw3" || !got.EULAAccepted || got.KSN || got.Timezone != "UTC" {
					t.Fatalf("answers %+v\n%s", got, out.String())
				}
				p := i18n.Printer(lang)
				text := out.String()
				for _, want := range []string{
					p.Sprintf("Do you accept the license agreement?"),
					p.Sprintf("Error: %s", p.Sprintf("%q is not a number from 1 to %d", "9", 2)),
					p.Sprintf("Host name: %s · admin password: %s", "gw3", p.Sprintf("set")),
				} {
					if ascii {
						want = i18n.ASCII(want)
					}
					if !strings.Contains(text, want) {
						t.Errorf("output lacks %q:\n%s", want, text)
					}
				}
				nonASCII := strings.IndexFunc(text, func(r rune) bool { return r > unicode.MaxASCII }) >= 0
				if ascii && nonASCII {
					t.Errorf("ASCII mode printed non-ASCII:\n%s", text)
				}
				if !ascii && lang != i18n.English && !nonASCII {
					t.Errorf("%s output has no letter of its own:\n%s", lang, text)
				}
			})
		}
	}
}

// TestAccessibleEndsWithContext: another console finishing the setup
// cancels the context; a wizard waiting for a line returns at once.
func TestAccessibleEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	defer w.Close()
	done := make(chan error, 1)
	go func() {
		_, err := Run(Options{Interfaces: []string{"eth0"}, Accessible: true, Ctx: ctx, In: r, Out: &bytes.Buffer{}}, answers.Defaults())
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, ErrAborted) {
		t.Fatalf("got %v, want ErrAborted", err)
	}
}
