package images

import (
	"fmt"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// consoleSetup is console-setup's configuration: a Unicode console with
// Terminus in the "Uni2" character set, which covers Latin (with Czech
// diacritics), Slavic Cyrillic and Greek in one 512-glyph font, so every
// product language shows on the VM console from the first screen of the
// wizard on (its language menu names Čeština and Русский) and no font
// switch is needed when the language changes.
const consoleSetup = `# Written by ksmg build; see console-setup(5).
ACTIVE_CONSOLES="/dev/tty[1-6]"
CHARMAP="UTF-8"
CODESET="Uni2"
FONTFACE="Terminus"
FONTSIZE="8x16"
`

// languageHook is the mmdebstrap customize hook that prepares the
// product's languages at build time, so that first boot only switches
// between them: the locales of every language are compiled (locale-gen),
// the system locale is English until the wizard sets another, and
// console-setup's font and keymap are compiled and cached for the boot
// (setupcon --save-only; the cache is what console-setup.service and
// keyboard-setup.service load without running ckbcomp).
func languageHook() string {
	var b strings.Builder
	b.WriteString("set -e\n")
	fmt.Fprintf(&b, "printf '%%s\\n' %s > \"$1/etc/locale.gen\"\n", shellQuote(i18n.Locales()...))
	b.WriteString("chroot \"$1\" locale-gen\n")
	fmt.Fprintf(&b, "printf '# Written by ksmg build; ksmg-firstboot sets the chosen language.\\nLANG=%s\\n' > \"$1/etc/default/locale\"\n", i18n.SystemOf(i18n.English).Locale)
	fmt.Fprintf(&b, "printf '%%s' %s > \"$1/etc/default/keyboard\"\n", shellQuote(string(i18n.KeyboardFile(i18n.English))))
	fmt.Fprintf(&b, "printf '%%s' %s > \"$1/etc/default/console-setup\"\n", shellQuote(consoleSetup))
	b.WriteString("rm -f \"$1\"/etc/console-setup/cached_*\n")
	b.WriteString("chroot \"$1\" setupcon --force --save-only\n")
	return b.String()
}

// shellQuote quotes each word for sh (single quotes).
func shellQuote(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
