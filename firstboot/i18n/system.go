package i18n

import "fmt"

// System is what a language sets on the appliance: the system locale and
// the console keyboard (console-setup's /etc/default/keyboard, in XKB
// names, which ckbcomp turns into the console keymap).
type System struct {
	Locale     string // LANG, e.g. cs_CZ.UTF-8; generated when the image is built
	XKBLayout  string
	XKBVariant string
	XKBOptions string
}

// Czech gets the Czech QWERTZ layout; Russian gets Debian's usual pair:
// US Latin first (commands and host names are Latin) and Russian, toggled
// with Alt+Shift, Scroll Lock lit while Russian is active.
var systems = map[string]System{
	English: {Locale: "en_US.UTF-8", XKBLayout: "us"},
	Czech:   {Locale: "cs_CZ.UTF-8", XKBLayout: "cz"},
	Russian: {Locale: "ru_RU.UTF-8", XKBLayout: "us,ru", XKBVariant: ",", XKBOptions: "grp:alt_shift_toggle,grp_led:scroll"},
}

// SystemOf returns the system settings of lang (English for an unknown one).
func SystemOf(lang string) System {
	if s, ok := systems[lang]; ok {
		return s
	}
	return systems[English]
}

// Locales lists the locales the image generates at build time, as lines
// of /etc/locale.gen, so that first boot only switches between them.
func Locales() []string {
	var out []string
	for _, l := range Languages {
		out = append(out, systems[l].Locale+" UTF-8")
	}
	return out
}

// LocaleFile is /etc/default/locale for lang.
func LocaleFile(lang string) []byte {
	return []byte(fmt.Sprintf("# Written by ksmg-firstboot (language %s).\nLANG=%s\n", lang, SystemOf(lang).Locale))
}

// KeyboardFile is console-setup's /etc/default/keyboard for lang.
func KeyboardFile(lang string) []byte {
	s := SystemOf(lang)
	return []byte(fmt.Sprintf(`# Written by ksmg-firstboot (language %s); see keyboard(5).
XKBMODEL="pc105"
XKBLAYOUT=%q
XKBVARIANT=%q
XKBOPTIONS=%q
BACKSPACE="guess"
`, lang, s.XKBLayout, s.XKBVariant, s.XKBOptions))
}
