package apply

import (
	"bytes"
	"context"
	"os"
	"strings"

	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
)

// Paths of the language settings (Debian's locale and console-setup files).
const (
	// LocalePath is systemd's locale file, which PID 1 (services) and
	// localectl read; Debian 13 makes /etc/default/locale (pam_env, older
	// tools) a symbolic link to it.
	LocalePath        = "/etc/locale.conf"
	DefaultLocalePath = "/etc/default/locale"
	KeyboardPath      = "/etc/default/keyboard"
	// keymapCache is console-setup's compiled keymap loader for the old
	// layout. It is removed with the switch, so that even if activation
	// cannot compile the new one, the next boot's keyboard-setup.sh
	// compiles it (setupcon -k) rather than loading a stale keymap.
	keymapCache = "/etc/console-setup/cached_setup_keyboard.sh"
)

// planLanguage queues the system locale (the image has every product
// language's locale generated, so nothing is compiled here) and the
// console keyboard of lang.
func planLanguage(t *tx, o Options, lang string) {
	t.mkdir(o.path("/etc/default"), 0o755, 0, 0)
	t.file(o.path(LocalePath), i18n.LocaleFile(lang), 0o644, 0, 0)
	// Replacing Debian's link with a file would leave the two disagreeing
	// the next time either is written through its own name.
	if fi, err := os.Lstat(o.path(DefaultLocalePath)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.file(o.path(DefaultLocalePath), i18n.LocaleFile(lang), 0o644, 0, 0)
	}
	t.file(o.path(KeyboardPath), i18n.KeyboardFile(lang), 0o644, 0, 0)
	t.remove(o.path(keymapCache))
}

// activateLanguage has console-setup apply the new keymap and font now, as
// a boot would: restarting console-setup.service runs its `setupcon
// --save` (compile, cache, load on the consoles) in PID 1's context. Run
// from first boot itself, setupcon could reach no console (the unit's
// private /dev holds only its own terminal) and is no program its AppArmor
// profile may run. New login sessions read the locale from
// /etc/default/locale (pam_env). A failure is only logged: the files are
// in place, and without the removed cache the next boot's
// keyboard-setup.sh compiles the keymap itself.
func activateLanguage(ctx context.Context, o Options, execute func(ctx context.Context, name string, args ...string) ([]byte, error)) {
	args := []string{"--no-ask-password", "--no-block", "restart", "console-setup.service"}
	if out, err := execute(ctx, "systemctl", args...); err != nil {
		o.Log.Warn("console keymap not switched now; the next boot does it", "cmd", "systemctl "+strings.Join(args, " "), "err", err, "output", string(bytes.TrimSpace(out)))
	}
}
