package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/text/message"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/apply"
	"github.com/ksmg-appliance/ksmg/firstboot/crypt"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
	"github.com/ksmg-appliance/ksmg/firstboot/tui"
)

// catalog gives the text a screen must show, from the message catalogs,
// and fails the test when the catalog lacks the message in its language:
// a missing translation would otherwise show English and still match.
type catalog struct {
	t    *testing.T
	lang string
	p    *message.Printer
}

func catalogOf(t *testing.T, lang string) catalog {
	return catalog{t: t, lang: lang, p: i18n.Printer(lang)}
}

func (c catalog) tr(key string, args ...any) string {
	c.t.Helper()
	if !i18n.Translated(c.lang, key) {
		c.t.Fatalf("%s: the catalog has no translation of %q", c.lang, key)
	}
	return c.p.Sprintf(key, args...)
}

// TestWizardWalk drives the full-screen wizard in a real 80x24 terminal
// in each language: the language is chosen on the first screen, every
// later step is checked against that language's catalog, including a
// refused EULA, a weak password, a wrong confirmation, a gateway outside
// its prefix, a bad time zone and join token; then it walks back from the
// review to the first screen and forward again, and applies.
func TestWizardWalk(t *testing.T) {
	t.Parallel()
	for i, lang := range i18n.Languages {
		t.Run(lang, func(t *testing.T) {
			t.Parallel()
			wizardWalk(t, lang, i)
		})
	}
}

// TestWizardOnStdinConsole runs the full-screen wizard as the unit does
// (--console-on-stdin, standard output not a terminal): it draws on the
// terminal it reads from, and a choice made there takes effect.
func TestWizardOnStdinConsole(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	tt := startTerm(t, []string{"TERM=xterm-256color"}, append(hermetic(t, root), "--no-unattended", "--console-on-stdin")...)
	en := catalogOf(t, i18n.English)
	s := tt.focus(en.tr("Language"))
	for _, l := range i18n.Languages {
		if !strings.Contains(s, i18n.Name(l)) {
			t.Fatalf("language menu lacks %q:\n%s", i18n.Name(l), s)
		}
	}
	tt.keys("Enter")
	tt.focus(en.tr("License agreement"))
}

func wizardWalk(t *testing.T, lang string, menuIndex int) {
	root := scratchRoot(t)
	tt := startTerm(t, []string{"TERM=xterm-256color"}, append(hermetic(t, root), "--no-unattended")...)
	en, c := catalogOf(t, i18n.English), catalogOf(t, lang)

	// The first screen speaks the prefilled language (English) and names
	// every language in that language itself.
	s := tt.focus(en.tr("Language"))
	for _, l := range i18n.Languages {
		if !strings.Contains(s, i18n.Name(l)) {
			t.Fatalf("language menu lacks %q:\n%s", i18n.Name(l), s)
		}
	}
	for range menuIndex {
		tt.keys("Down")
	}
	tt.keys("Enter")
	chosen := len(tt.seen) // screens from here on must be in lang

	// The whole summary fits the screen, heading to button.
	tt.focus(c.tr("License agreement"))
	s = tt.waitText(c.tr(tui.EULASummary)) // the first frame of a rebuilt form may come before its size
	tt.wantText(s, c.tr("Next"))
	tt.keys("Enter")
	s = tt.focus(c.tr("Do you accept the license agreement?"))
	tt.wantText(s, c.tr("Full text: %s (also in the web interface).", tui.EULAPath))
	tt.keys("Enter") // refusing is not possible
	tt.waitText(c.tr("the license agreement must be accepted to continue"))
	tt.keys("y")

	s = tt.focus(c.tr("Participate in Kaspersky Security Network?"))
	tt.wantText(s, c.tr("Data provision and KSN"))
	tt.keys("Enter") // default: do not join

	tt.fill(c.tr("Administrator password"), "short")
	tt.waitText(c.tr("password is too short: it has %d characters, the minimum is %d", 5, answers.MinPasswordLen))
	tt.fill(c.tr("Administrator password"), "Correct-Horse-9")
	tt.fill(c.tr("Confirm password"), "Correct-Horse-8")
	tt.waitText(c.tr("the passwords do not match"))
	tt.fill(c.tr("Confirm password"), "Correct-Horse-9")

	if s := tt.focus(c.tr("Host name")); strings.Contains(s, "Correct-Horse") {
		t.Fatal("password echoed on screen")
	}
	tt.fill(c.tr("Host name"), "gw1.example.com")

	tt.focus(c.tr("Network: interface %s", "eth0"))
	tt.keys("Down", "Enter") // static
	tt.fill(c.tr("%s: IPv4 address/prefix", "eth0"), "192.0.2.10/24")
	tt.fill(c.tr("%s: IPv4 gateway", "eth0"), "198.51.100.1")
	tt.waitText(c.tr("gateway %q is not inside %s", "198.51.100.1", "192.0.2.0/24"))
	tt.fill(c.tr("%s: IPv4 gateway", "eth0"), "192.0.2.1")
	tt.fill(c.tr("%s: IPv6 address/prefix", "eth0"), "2001:db8::10/64")
	tt.fill(c.tr("%s: IPv6 gateway", "eth0"), "")
	tt.fill(c.tr("%s: DNS servers", "eth0"), "192.0.2.53, 192.0.2.54")
	tt.fill(c.tr("%s: search domain", "eth0"), "example.com")

	tt.fill(c.tr("NTP servers"), "ntp1.example.com")
	tt.fill(c.tr("Time zone"), "Mars/Olympus")
	tt.waitText(c.tr("time zone %q is not in the tz database", "Mars/Olympus"))
	tt.fill(c.tr("Time zone"), "Europe/Prague")

	tt.focus(c.tr("Node role"))
	tt.keys("Down", "Enter") // Secondary
	tt.fill(c.tr("Control node address"), "ctl.example.com:8443")
	tt.fill(c.tr("Join token"), "short")
	tt.waitText(c.tr("join token must be 16-512 characters of A-Z a-z 0-9 . _ ~ + / = -"))
	tt.fill(c.tr("Join token"), "0123456789abcdef0123")

	tt.focus(c.tr("Enable SSH access for the administrator?"))
	tt.keys("y")
	tt.fill(c.tr("Authorized public key"), testKey)
	tt.focus(c.tr("Allow this key to log in as root too?"))
	tt.keys("Enter") // default: no root login

	review := checkReview(t, tt, c)

	// Back through every step to the first screen (now in lang too), each
	// value kept, then forward again.
	titles := []string{
		c.tr("Language"), c.tr("License agreement"), c.tr("Do you accept the license agreement?"), c.tr("Participate in Kaspersky Security Network?"),
		c.tr("Administrator password"), c.tr("Confirm password"), c.tr("Host name"), c.tr("Network: interface %s", "eth0"),
		c.tr("%s: IPv4 address/prefix", "eth0"), c.tr("%s: IPv4 gateway", "eth0"), c.tr("%s: IPv6 address/prefix", "eth0"),
		c.tr("%s: IPv6 gateway", "eth0"), c.tr("%s: DNS servers", "eth0"), c.tr("%s: search domain", "eth0"),
		c.tr("NTP servers"), c.tr("Time zone"), c.tr("Node role"), c.tr("Control node address"), c.tr("Join token"),
		c.tr("Enable SSH access for the administrator?"), c.tr("Authorized public key"), c.tr("Allow this key to log in as root too?"),
	}
	for i := len(titles) - 1; i >= 0; i-- {
		tt.keys("BTab")
		tt.focus(titles[i])
	}
	tt.wantText(tt.screen(), c.tr("Welcome. This wizard sets up the mail gateway appliance."))
	for _, title := range titles {
		tt.focus(title)
		tt.keys("Enter")
	}
	if again := checkReview(t, tt, c); again != review {
		t.Errorf("review changed after walking back and forth:\n%s\nbefore:\n%s", again, review)
	}
	tt.keys("y")
	done := tt.waitFor("EXIT=")
	if !strings.Contains(done, "EXIT=0") || !strings.Contains(done, c.tr("SSH host key fingerprints:")) || !strings.Contains(done, "ED25519 SHA256:") {
		t.Fatalf("apply did not finish cleanly:\n%s", done)
	}
	tt.wantText(done, c.tr("ksmg appliance is set up."))
	tt.wantText(done, c.tr("Host name: %s   Role: %s", "gw1.example.com", c.tr("Secondary node")))
	checkNoEnglish(t, lang, tt.seen[chosen:])

	sys := i18n.SystemOf(lang)
	for p, want := range map[string]string{
		"/etc/hostname": "gw1.example.com\n",
		"/etc/timezone": "Europe/Prague\n",
		"/etc/systemd/network/50-ksmg-eth0.network": "Address=192.0.2.10/24\nGateway=192.0.2.1\nAddress=2001:db8::10/64\nDNS=192.0.2.53\nDNS=192.0.2.54\nDomains=example.com\n",
		apply.NTPPath:           "NTP=ntp1.example.com\n",
		apply.NodeConfigPath:    "role: secondary\ncontrol_address: ctl.example.com:8443\njoin_token: 0123456789abcdef0123\nlanguage: " + lang + "\n",
		apply.AuthorizedKeys:    testKey + "\n",
		apply.LocalePath:        "\nLANG=" + sys.Locale + "\n",
		apply.DefaultLocalePath: "\nLANG=" + sys.Locale + "\n",
		apply.KeyboardPath:      "XKBLAYOUT=" + strconv.Quote(sys.XKBLayout) + "\n",
	} {
		if got := readFile(t, root, p); !strings.Contains(got, want) {
			t.Errorf("%s:\n%s\nwant:\n%s", p, got, want)
		}
	}
	if got := readFile(t, root, apply.NodeConfigPath); !strings.Contains(got, "ksn:\n    enabled: false\n    source: control-node\n") {
		t.Errorf("KSN must follow the control node on a Secondary node:\n%s", got)
	}
	var hash string
	for _, l := range strings.Split(readFile(t, root, "/etc/shadow"), "\n") {
		if f := strings.Split(l, ":"); f[0] == apply.AdminUser {
			hash = f[1]
		}
	}
	if !crypt.Verify("Correct-Horse-9", hash) {
		t.Fatalf("admin password hash %q does not verify", hash)
	}
	if !apply.Done(root) {
		t.Fatal("completion stamp missing")
	}
}

// checkReview waits for the review and checks every line against the
// catalog; it returns the review's text.
func checkReview(t *testing.T, tt *tmuxTerm, c catalog) string {
	t.Helper()
	// huh renders the review note's DescriptionFunc asynchronously, so the
	// confirm field can show a frame before the summary: wait for each line.
	review := tt.focus(c.tr("Apply these settings?"))
	for _, want := range []string{
		c.tr("Language: %s · EULA accepted: %s · KSN: %s", i18n.Name(c.lang), c.tr("yes"), c.tr("off")),
		c.tr("Host name: %s · admin password: %s", "gw1.example.com", c.tr("set")),
		c.tr("%s: %s gw %s  %s gw %s", "eth0", "192.0.2.10/24", "192.0.2.1", "2001:db8::10/64", "-"),
		c.tr("DNS %s  search %s", "192.0.2.53, 192.0.2.54", "example.com"),
		c.tr("NTP: %s · time zone: %s", "ntp1.example.com", "Europe/Prague"),
		c.tr("Role: Secondary node of %s (token set) · KSN follows the Control node", "ctl.example.com:8443"),
		c.tr("SSH: on, key %s", "ssh-ed25519"),
		c.tr("Apply"), c.tr("Go back"), c.tr("toggle"), c.tr("back"),
	} {
		review = tt.waitText(want)
	}
	for _, line := range strings.Split(review, "\n") {
		if len([]rune(line)) > 80 {
			t.Errorf("line wider than 80 columns: %q", line)
		}
	}
	if strings.Contains(review, "0123456789abcdef0123") || strings.Contains(review, "Correct-Horse") {
		t.Fatal("review shows a secret")
	}
	var body []string
	for _, l := range strings.Split(review, "\n") {
		body = append(body, strings.TrimRight(l, " "))
	}
	return strings.Join(body, "\n")
}

// checkNoEnglish fails on English left on a non-English screen: English
// function words (which Czech and Russian never use), and for Russian any
// Latin word that is not a name, a key label or a typed value.
func checkNoEnglish(t *testing.T, lang string, screens []string) {
	t.Helper()
	if lang == i18n.English {
		return
	}
	english := map[string]bool{"the": true, "and": true, "with": true, "must": true, "this": true, "your": true, "you": true,
		"are": true, "not": true, "for": true, "from": true, "will": true, "set": true, "off": true, "yes": true, "back": true,
		"next": true, "submit": true, "toggle": true, "select": true, "accept": true, "name": true, "address": true}
	allowedLatin := map[string]bool{"ksmg": true, "DHCP": true, "IPv4": true, "IPv6": true, "Kaspersky": true, "Security": true,
		"Network": true, "KPSN": true, "enter": true, "shift": true, "ctrl": true, "Europe": true, "Prague": true, "Moscow": true, "admin": true,
		"AAAA": true, "IANA": true, "tab": true, "English": true, "share": true, "appliance": true, "EULA": true, "example": true, "ntp1": true,
		"Olympus": true, "Mars": true, "short": true, "Correct": true, "Horse": true, "gw1": true, "eth0": true, "ed25519": true,
		"SHA256": true, "ED25519": true, "ECDSA": true, "EXIT": true, "GiB": true}
	for _, s := range screens {
		// Host key fingerprints are random base64: "…+WRgXUqKwPuM" is no word.
		s = fingerprintRE.ReplaceAllString(s, "SHA256:")
		for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			ascii := strings.IndexFunc(w, func(r rune) bool { return r > unicode.MaxASCII }) < 0
			if !ascii || strings.ToUpper(w) == w {
				continue // not Latin, or an acronym (KSN, DHCP, SSH, ...)
			}
			if english[strings.ToLower(w)] || lang == i18n.Russian && len(w) >= 3 && !allowedLatin[w] && strings.IndexFunc(w, unicode.IsDigit) < 0 && !isTypedValue(w) {
				t.Errorf("%s screen shows English %q:\n%s", lang, w, s)
				return
			}
		}
	}
}

var fingerprintRE = regexp.MustCompile(`SHA256:[A-Za-z0-9+/]+=*`)

// isTypedValue: parts of what the test typed (host names, keys, time zones).
func isTypedValue(w string) bool {
	for _, v := range []string{testKey, "gw1.example.com ctl.example.com ntp1.example.com Europe/Prague Mars/Olympus usr/share/doc/ksmg-appliance/EULA.txt"} {
		if strings.Contains(v, w) {
			return true
		}
	}
	return false
}

// TestWizardAccessible runs the line-prompt mode a serial console gets
// (TERM=dumb: transliterated ASCII), also in a real terminal since
// passwords are read from a tty: in Russian, with a refused EULA, a step
// back with "<", and checks that nothing but ASCII was printed.
func TestWizardAccessible(t *testing.T) {
	t.Parallel()
	root := scratchRoot(t)
	tt := startTerm(t, []string{"TERM=dumb"}, append(hermetic(t, root), "--no-unattended")...)
	en, ru := catalogOf(t, i18n.English), catalogOf(t, i18n.Russian)
	seen := map[string]int{}
	// step answers the next occurrence of prompt in the scrollback.
	step := func(prompt, text string) {
		t.Helper()
		hidden := strings.HasPrefix(prompt, ru.tr("(input hidden)")[:10])
		prompt = strings.TrimSpace(i18n.ASCII(prompt))
		seen[prompt]++
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(tt.history(), prompt) < seen[prompt] {
			if time.Now().After(deadline) {
				t.Fatalf("prompt %q #%d never came:\n%s", prompt, seen[prompt], tt.history())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if hidden {
			// The hint comes just before the terminal's echo is turned off.
			time.Sleep(500 * time.Millisecond)
		}
		if text != "" {
			tt.typeText(text)
		}
		tt.keys("Enter")
	}
	step(en.tr("Enter a number from 1 to %d (Enter keeps %d): ", 3, 1), "3") // Русский
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 2), "2") // refuse the EULA
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 2), "1")
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 2), "<") // back to the EULA
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 1), "")  // accepted before: kept
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 2), "")  // KSN off
	step(ru.tr("(input hidden)"), "Correct-Horse-9")
	step(ru.tr("(input hidden)"), "Correct-Horse-9")
	step(ru.tr("Host name"), "gw2")
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 1), "1") // DHCP
	step(ru.tr("NTP servers"), "")
	step(ru.tr("Enter keeps: %s", "UTC"), "")
	step(ru.tr("Enter a number from 1 to %d (Enter keeps %d): ", 2, 1), "1") // Control node
	step(ru.tr("Enable SSH access for the administrator?"), "")
	step(ru.tr("Apply these settings?"), "1")
	done := tt.waitFor("EXIT=")
	if !strings.Contains(done, "EXIT=0") {
		t.Fatalf("accessible run failed:\n%s", tt.history())
	}
	h := tt.history()
	for _, want := range []string{
		ru.tr("Error: %s", ru.tr("the license agreement must be accepted to continue")),
		ru.tr("Do you accept the license agreement?"),
		ru.tr("Language: %s · EULA accepted: %s · KSN: %s", i18n.Name(i18n.Russian), ru.tr("yes"), ru.tr("off")),
		ru.tr("ksmg appliance is set up."),
	} {
		if !strings.Contains(h, i18n.ASCII(want)) {
			t.Errorf("history lacks %q:\n%s", i18n.ASCII(want), h)
		}
	}
	if i := strings.IndexFunc(h, func(r rune) bool { return r > unicode.MaxASCII }); i >= 0 {
		t.Errorf("non-ASCII output on a terminal without UTF-8: %q", h[i:min(len(h), i+40)])
	}
	if strings.Contains(h, "Correct-Horse-9") {
		t.Fatalf("password echoed:\n%s", h)
	}
	if got := readFile(t, root, "/etc/systemd/network/50-ksmg-eth0.network"); !strings.Contains(got, "DHCP=yes") {
		t.Fatalf("network file:\n%s", got)
	}
	if got := readFile(t, root, apply.NodeConfigPath); !strings.Contains(got, "role: control") || !strings.Contains(got, "enabled: false") || !strings.Contains(got, "language: ru") {
		t.Fatalf("node config:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(root, apply.AuthorizedKeys)); !os.IsNotExist(err) {
		t.Fatal("SSH key written although SSH stays off")
	}
}

// TestTwoConsoles: the wizard runs on tty1 and the serial port at once;
// when one console applies, the other's wizard ends by itself, in the
// full-screen and in the line-prompt mode.
func TestTwoConsoles(t *testing.T) {
	t.Parallel()
	for _, term := range []string{"xterm-256color", "dumb"} {
		t.Run(term, func(t *testing.T) {
			t.Parallel()
			root := scratchRoot(t)
			args := append(hermetic(t, root), "--no-unattended", "--poll", "200ms")
			idle := startTerm(t, []string{"TERM=" + term}, args...)
			idle.waitText(i18n.ASCII(catalogOf(t, i18n.English).tr("Language")))
			kvArgs := append(hermetic(t, root), sourceSetups["seed"](t, completeKV("gw-other"))...)
			if out, err := runNoTTY(t, kvArgs...); err != nil {
				t.Fatalf("the other console's apply failed: %v\n%s", err, out)
			}
			s := idle.waitFor("EXIT=")
			if !strings.Contains(s, "Setup was completed on another console.") || !strings.Contains(s, "EXIT=0") {
				t.Fatalf("idle console did not stand down:\n%s", s)
			}
			if got := readFile(t, root, "/etc/hostname"); got != "gw-other\n" {
				t.Fatalf("hostname %q", got)
			}
		})
	}
}
