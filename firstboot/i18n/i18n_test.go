package i18n

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"golang.org/x/text/feature/plural"
	"golang.org/x/text/language"
)

// gotextFile is the part of a gotext JSON file the tests read.
type gotextFile struct {
	Language string `json:"language"`
	Messages []struct {
		ID                json.RawMessage `json:"id"`
		Message           string          `json:"message"`
		Translation       json.RawMessage `json:"translation"`
		TranslatorComment string          `json:"translatorComment"`
		Fuzzy             bool            `json:"fuzzy"`
	} `json:"messages"`
}

func readGotext(t *testing.T, path string) gotextFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f gotextFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// texts lists a translation's texts: one, or one per plural case.
func texts(raw json.RawMessage) (msgs []string, cases map[string]string, arg string) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil, ""
	}
	var sel struct {
		Msg    string `json:"msg"`
		Select *struct {
			Feature string `json:"feature"`
			Arg     string `json:"arg"`
			Cases   map[string]struct {
				Msg string `json:"msg"`
			} `json:"cases"`
		} `json:"select"`
	}
	if json.Unmarshal(raw, &sel) != nil || sel.Select == nil {
		return []string{sel.Msg}, nil, ""
	}
	cases = map[string]string{}
	for form, c := range sel.Select.Cases {
		msgs = append(msgs, c.Msg)
		cases[form] = c.Msg
	}
	return msgs, cases, sel.Select.Arg
}

var placeholderRE = regexp.MustCompile(`\{[A-Za-z0-9_]+\}`)

func placeholders(s string) []string {
	p := placeholderRE.FindAllString(s, -1)
	sort.Strings(p)
	return p
}

// integerForms are the CLDR plural categories lang uses for whole numbers.
func integerForms(lang string) []string {
	names := map[plural.Form]string{plural.Zero: "zero", plural.One: "one", plural.Two: "two", plural.Few: "few", plural.Many: "many", plural.Other: "other"}
	seen := map[string]bool{}
	for n := 0; n < 1000; n++ {
		seen[names[plural.Cardinal.MatchPlural(language.MustParse(lang), n, 0, 0, 0, 0)]] = true
	}
	var out []string
	for f := range seen {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// TestEveryCatalogHasEveryMessage: every message of the English catalog is
// translated in every other one, with the same placeholders, plural
// messages with every form the language uses for whole numbers, and a
// text equal to the English one only where a translator said so.
func TestEveryCatalogHasEveryMessage(t *testing.T) {
	t.Parallel()
	// The compiled catalog first: what the wizard really looks up.
	keys := make([]string, 0, len(messageKeyToIndex))
	for k := range messageKeyToIndex {
		keys = append(keys, k)
	}
	if len(keys) < 100 {
		t.Fatalf("the catalog has only %d messages; extraction failed?", len(keys))
	}
	for _, lang := range Languages {
		for _, k := range keys {
			if !Translated(lang, k) {
				t.Errorf("%s: no translation of %q", lang, k)
			}
		}
	}

	en := readGotext(t, "locales/en/out.gotext.json")
	english := map[string]string{}
	for _, m := range en.Messages {
		english[string(m.ID)] = m.Message
	}
	for _, lang := range Languages[1:] {
		f := readGotext(t, filepath.Join("locales", lang, "out.gotext.json"))
		if len(f.Messages) != len(en.Messages) {
			t.Errorf("%s has %d messages, English %d", lang, len(f.Messages), len(en.Messages))
		}
		for _, m := range f.Messages {
			src, ok := english[string(m.ID)]
			if !ok {
				t.Errorf("%s: message %s is not in the English catalog", lang, m.ID)
				continue
			}
			msgs, cases, arg := texts(m.Translation)
			if m.Fuzzy || len(msgs) == 0 || msgs[0] == "" {
				t.Errorf("%s: %q is not translated", lang, src)
				continue
			}
			for _, tr := range msgs {
				if strings.Join(placeholders(tr), ",") != strings.Join(placeholders(src), ",") {
					t.Errorf("%s: %q: placeholders %v, English has %v", lang, tr, placeholders(tr), placeholders(src))
				}
				if tr == src && m.TranslatorComment != "same as English on purpose" {
					t.Errorf("%s: %q is the English text", lang, src)
				}
			}
			if cases != nil {
				if !strings.Contains(src, "{"+arg+"}") {
					t.Errorf("%s: %q: plural argument %s is not a placeholder", lang, src, arg)
				}
				for _, form := range integerForms(lang) {
					if cases[form] == "" {
						t.Errorf("%s: %q: plural form %q missing", lang, src, form)
					}
				}
			}
		}
	}
}

// TestPluralForms spells out the forms a reader sees.
func TestPluralForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lang string
		n    int
		want string
	}{
		{"en", 1, "1 failed unit: x"}, {"en", 2, "2 failed units: x"},
		{"cs", 1, "1 selhaná jednotka: x"}, {"cs", 3, "3 selhané jednotky: x"}, {"cs", 5, "5 selhaných jednotek: x"},
		{"ru", 1, "1 сбойный юнит: x"}, {"ru", 3, "3 сбойных юнита: x"}, {"ru", 5, "5 сбойных юнитов: x"},
		{"ru", 11, "11 сбойных юнитов: x"}, {"ru", 21, "21 сбойный юнит: x"},
	} {
		if got := Printer(tc.lang).Sprintf("%d failed units: %s", tc.n, "x"); got != tc.want {
			t.Errorf("%s %d: %q, want %q", tc.lang, tc.n, got, tc.want)
		}
	}
}

func TestMsgLocalizes(t *testing.T) {
	t.Parallel()
	inner := Errorf("time zone %q is not in the tz database", "Mars/Olympus")
	outer := Errorf("unattended answer rejected: %v", inner)
	if got, want := outer.Error(), `unattended answer rejected: time zone "Mars/Olympus" is not in the tz database`; got != want {
		t.Errorf("English: %q, want %q", got, want)
	}
	if got, want := outer.Localize(Printer(Czech)), `odmítnutá odpověď automatického nastavení: časové pásmo "Mars/Olympus" není v databázi tz`; got != want {
		t.Errorf("Czech: %q, want %q", got, want)
	}
	joined := errors.Join(inner, errors.New("an operating-system error"))
	if got, want := Error(Printer(Russian), joined), "часового пояса \"Mars/Olympus\" нет в базе tz\nan operating-system error"; got != want {
		t.Errorf("Russian joined: %q, want %q", got, want)
	}
}

func TestLanguages(t *testing.T) {
	t.Parallel()
	for lang, want := range map[string]string{English: "English", Czech: "Čeština", Russian: "Русский"} {
		if got := Name(lang); got != want {
			t.Errorf("Name(%s) = %q, want %q", lang, got, want)
		}
	}
	for loc, want := range map[string]string{"cs_CZ.UTF-8": "cs", "ru_RU": "ru", "en_US.UTF-8@euro": "en", "C.UTF-8": "", "de_DE.UTF-8": "", "": ""} {
		if got := FromLocale(loc); got != want {
			t.Errorf("FromLocale(%q) = %q, want %q", loc, got, want)
		}
	}
	if got := string(KeyboardFile(Russian)); !strings.Contains(got, `XKBLAYOUT="us,ru"`) || !strings.Contains(got, `XKBOPTIONS="grp:alt_shift_toggle,grp_led:scroll"`) {
		t.Errorf("Russian keyboard:\n%s", got)
	}
	if got := string(KeyboardFile(Czech)); !strings.Contains(got, `XKBLAYOUT="cz"`) {
		t.Errorf("Czech keyboard:\n%s", got)
	}
	if got := string(LocaleFile(Czech)); !strings.Contains(got, "\nLANG=cs_CZ.UTF-8\n") {
		t.Errorf("Czech locale:\n%s", got)
	}
	if got := strings.Join(Locales(), ","); got != "en_US.UTF-8 UTF-8,cs_CZ.UTF-8 UTF-8,ru_RU.UTF-8 UTF-8" {
		t.Errorf("Locales() = %s", got)
	}
}

func TestASCII(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"Čeština: žluťoučký kůň": "Cestina: zlutoucky kun", "Русский язык": "Russkii iazyk"} {
		if got := ASCII(in); got != want {
			t.Errorf("ASCII(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGeneratedUpToDate runs this package's go:generate command into a
// scratch copy and compares: the committed catalog.go and out.gotext.json
// files must be exactly what go generate makes from the code and the
// translations (a message added to the code without regenerating, or a
// hand-edited generated file, fails here).
func TestGeneratedUpToDate(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("i18n.go")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^//go:generate go tool gotext (.*)$`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no go:generate gotext line in i18n.go")
	}
	tmp := t.TempDir()
	for _, lang := range Languages {
		dst := filepath.Join(tmp, "locales", lang)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join("locales", lang, "messages.gotext.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, "messages.gotext.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"tool", "gotext", "-dir=" + filepath.Join(tmp, "locales")}
	for _, a := range strings.Fields(string(m[1])) {
		if strings.HasPrefix(a, "-out=") {
			a = "-out=" + filepath.Join(tmp, strings.TrimPrefix(a, "-out="))
		}
		args = append(args, a)
	}
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	files := []string{"catalog.go"}
	for _, lang := range Languages {
		files = append(files, filepath.Join("locales", lang, "out.gotext.json"))
	}
	for _, f := range files {
		want, err := os.ReadFile(filepath.Join(tmp, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what go generate makes: run `go generate ./firstboot/i18n` and commit the result", f)
		}
	}
}
