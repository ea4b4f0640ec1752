//go:build linux

package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ksmg-appliance/ksmg/firstboot/answers"
	"github.com/ksmg-appliance/ksmg/firstboot/i18n"
	"github.com/ksmg-appliance/ksmg/firstboot/status"
	"github.com/ksmg-appliance/ksmg/images/boottest"
)

// The console font checks. The image's VT font is console-setup's
// Uni2-Terminus16 (images/language.go). Two tests:
//
//   - TestConsoleFontCoversCatalogs: every character of every catalog
//     message, and of the wizard's frame, has a glyph in that font.
//   - TestConsoleShowsLanguages boots the image with a display, lets the
//     first-boot wizard draw its language menu on tty1 and takes QEMU
//     screendumps: the words "Čeština" and "Русский" must appear drawn
//     with the font's own glyphs, pixel for pixel, at character cells.
//     The kernel's built-in font (CP437: no Č, no š, no Cyrillic) or a
//     Latin-only console-setup font draws other pixels there, so the test
//     fails whenever the font that is really loaded lacks the glyphs. The
//     VT's text buffer (/dev/vcs) would not tell: it holds the characters
//     whatever the font can draw. The serial wizard of the same boot must
//     print transliterated ASCII (nobody answers its UTF-8 probe).

const consoleFont = "usr/share/consolefonts/Uni2-Terminus16.psf.gz"

// psfFont is a PC Screen Font: bitmaps and the Unicode table.
type psfFont struct {
	width, height int
	glyphs        [][]byte // height rows of (width+7)/8 bytes, MSB = leftmost pixel
	index         map[rune]int
}

func (f *psfFont) rowBytes() int { return (f.width + 7) / 8 }

// pixel reports whether glyph g has ink at x, y.
func (f *psfFont) pixel(g, x, y int) bool {
	return f.glyphs[g][y*f.rowBytes()+x/8]&(0x80>>(x%8)) != 0
}

// parsePSF reads PSF1 and PSF2 fonts (gzipped or not). Hand-written: no
// maintained Go module reads console fonts, and the formats are small
// (see kbd's font-formats documentation).
func parsePSF(data []byte) (*psfFont, error) {
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	}
	f := &psfFont{index: map[rune]int{}}
	switch {
	case len(data) >= 4 && data[0] == 0x36 && data[1] == 0x04: // PSF1
		mode, size := data[2], int(data[3])
		n := 256
		if mode&1 != 0 {
			n = 512
		}
		f.width, f.height = 8, size
		tab, err := f.readGlyphs(data, 4, n, size, mode&2 != 0)
		if err != nil {
			return nil, fmt.Errorf("psf1: %w", err)
		}
		for g := 0; g < n && len(tab) >= 2; g++ {
			seq := false
			for len(tab) >= 2 {
				v := binary.LittleEndian.Uint16(tab)
				tab = tab[2:]
				if v == 0xFFFF {
					break
				}
				if v == 0xFFFE {
					seq = true
				}
				if !seq {
					f.index[rune(v)] = g
				}
			}
		}
	case len(data) >= 32 && binary.LittleEndian.Uint32(data) == 0x864ab572: // PSF2
		hdr := binary.LittleEndian.Uint32(data[8:])
		flags := binary.LittleEndian.Uint32(data[12:])
		n := int(binary.LittleEndian.Uint32(data[16:]))
		size := int(binary.LittleEndian.Uint32(data[20:]))
		f.height, f.width = int(binary.LittleEndian.Uint32(data[24:])), int(binary.LittleEndian.Uint32(data[28:]))
		tab, err := f.readGlyphs(data, int(hdr), n, size, flags&1 != 0)
		if err != nil {
			return nil, fmt.Errorf("psf2: %w", err)
		}
		for g := 0; g < n && len(tab) > 0; g++ {
			end := bytes.IndexByte(tab, 0xFF)
			if end < 0 {
				end = len(tab)
			}
			entry := tab[:end]
			if s := bytes.IndexByte(entry, 0xFE); s >= 0 {
				entry = entry[:s] // sequences follow; single code points first
			}
			for len(entry) > 0 {
				r, n := utf8.DecodeRune(entry)
				f.index[r] = g
				entry = entry[n:]
			}
			if end == len(tab) {
				break
			}
			tab = tab[end+1:]
		}
	default:
		return nil, errors.New("not a PSF font")
	}
	return f, nil
}

// readGlyphs takes n glyphs of size bytes at off and returns the Unicode
// table that follows them.
func (f *psfFont) readGlyphs(data []byte, off, n, size int, unicodeTable bool) ([]byte, error) {
	if off < 0 || len(data) < off+n*size {
		return nil, errors.New("truncated glyphs")
	}
	for i := 0; i < n; i++ {
		f.glyphs = append(f.glyphs, data[off+i*size:off+(i+1)*size])
	}
	if !unicodeTable {
		return nil, errors.New("no unicode table")
	}
	return data[off+n*size:], nil
}

// imageFont reads the console font from the console-setup-linux package
// the image was built from (the package cache's pool).
func imageFont(t *testing.T) *psfFont {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(cacheDir(t), "repo", "*", "pool", "console-setup-linux_*.deb"))
	if len(debs) == 0 {
		t.Fatalf("no console-setup-linux package in the package cache %s: build the image first (make images)", cacheDir(t))
	}
	deb := debs[len(debs)-1]
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -xO "./$2"`, "sh", deb, consoleFont)
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("read %s from %s: %v", consoleFont, deb, err)
	}
	f, err := parsePSF(data)
	if err != nil {
		t.Fatalf("%s: %v", consoleFont, err)
	}
	return f
}

// TestConsoleFontCoversCatalogs: every character the wizard, the
// unattended errors and the status line can show in any language has a
// glyph in the console font.
func TestConsoleFontCoversCatalogs(t *testing.T) {
	f := imageFont(t)
	// The frame of the fields the wizard uses (huh's default theme: thick
	// left border, select cursor, help separators and arrows, error mark)
	// and the language names.
	text := "┃>•…←→↑↓* " + strings.Join([]string{i18n.Name("en"), i18n.Name("cs"), i18n.Name("ru")}, "")
	for _, lang := range i18n.Languages {
		b, err := os.ReadFile(filepath.Join("..", "firstboot", "i18n", "locales", lang, "out.gotext.json"))
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Messages []struct {
				Translation json.RawMessage `json:"translation"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(b, &file); err != nil {
			t.Fatal(err)
		}
		for _, m := range file.Messages {
			text += string(m.Translation) // JSON keeps non-ASCII as is; its own punctuation is ASCII
		}
	}
	missing := map[rune]bool{}
	for _, r := range text {
		if r >= ' ' && !unicode.IsSpace(r) {
			if _, ok := f.index[r]; !ok {
				missing[r] = true
			}
		}
	}
	for r := range missing {
		t.Errorf("console font %s has no glyph for %q (U+%04X)", consoleFont, r, r)
	}
}

// qmp is a minimal QEMU Machine Protocol client: enough for screendump.
type qmp struct {
	conn net.Conn
	dec  *json.Decoder
}

func dialQMP(ctx context.Context, sock string) (*qmp, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "unix", sock); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: %w (last: %w)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	q := &qmp{conn: conn, dec: json.NewDecoder(conn)}
	var greeting map[string]any
	if err := q.dec.Decode(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if err := q.do("qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) do(cmd string, args any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.conn).Encode(req); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.dec.Decode(&resp); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return fmt.Errorf("qmp %s: %s", cmd, resp.Error.Desc)
		}
		return nil
	}
}

// ppm is a decoded P6 screendump.
type ppm struct {
	w, h int
	pix  []byte // RGB
}

func readPPM(path string) (*ppm, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(bytes.NewReader(b))
	var p ppm
	var magic string
	var maxv int
	if _, err := fmt.Fscan(r, &magic, &p.w, &p.h, &maxv); err != nil {
		return nil, fmt.Errorf("%s: PPM header: %w", path, err)
	}
	if magic != "P6" {
		return nil, fmt.Errorf("%s: %q, not a P6 PPM", path, magic)
	}
	if maxv != 255 {
		return nil, fmt.Errorf("%s: %d-level PPM, want 8-bit", path, maxv)
	}
	if _, err := r.ReadByte(); err != nil { // the one white-space byte after the header
		return nil, err
	}
	p.pix = make([]byte, p.w*p.h*3)
	if _, err := io.ReadFull(r, p.pix); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

func (p *ppm) at(x, y int) [3]byte {
	i := (y*p.w + x) * 3
	return [3]byte{p.pix[i], p.pix[i+1], p.pix[i+2]}
}

// cellMatches compares the character cell at pixel (x0, y0) with glyph g:
// the cell's most frequent colour is its background, every other pixel
// is ink, and ink must be exactly where the glyph has it.
func cellMatches(p *ppm, f *psfFont, x0, y0, g int) bool {
	count := map[[3]byte]int{}
	for y := 0; y < f.height; y++ {
		for x := 0; x < f.width; x++ {
			count[p.at(x0+x, y0+y)]++
		}
	}
	var bg [3]byte
	best := -1
	for c, n := range count {
		if n > best {
			bg, best = c, n
		}
	}
	for y := 0; y < f.height; y++ {
		for x := 0; x < f.width; x++ {
			if (p.at(x0+x, y0+y) != bg) != f.pixel(g, x, y) {
				return false
			}
		}
	}
	return true
}

// findWord looks for word drawn with f at any character cell of p.
func findWord(p *ppm, f *psfFont, word string) (col, row int, ok bool) {
	var glyphs []int
	for _, r := range word {
		g, ok := f.index[r]
		if !ok {
			return 0, 0, false
		}
		glyphs = append(glyphs, g)
	}
	cols, rows := p.w/f.width, p.h/f.height
	for row := 0; row < rows; row++ {
		for col := 0; col+len(glyphs) <= cols; col++ {
			match := true
			for i, g := range glyphs {
				if !cellMatches(p, f, (col+i)*f.width, row*f.height, g) {
					match = false
					break
				}
			}
			if match {
				return col, row, true
			}
		}
	}
	return 0, 0, false
}

// lineWatcher is an io.Writer for the serial console that remembers the
// text and tells when a string appeared.
type lineWatcher struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
	w    io.Writer
}

func (l *lineWatcher) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if strings.Contains(l.buf.String(), l.want) {
		l.once.Do(func() { close(l.seen) })
	}
	return l.w.Write(p)
}

func (l *lineWatcher) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestConsoleShowsLanguages boots the image without answers, so the
// first-boot wizard waits on tty1 and the serial console, and checks what
// both show (see the top of this file).
func TestConsoleShowsLanguages(t *testing.T) {
	raw := testImage(t)
	f := imageFont(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "qmp.sock")
	serialLog := postMortemLog(t, "ksmg-console-serial-*.log")
	// The serial wizard's language prompt: the system is up to the wizard.
	prompt := i18n.Printer(i18n.English).Sprintf("Enter a number from 1 to %d (Enter keeps %d): ", 3, 1)
	serial := &lineWatcher{want: strings.TrimSpace(prompt), seen: make(chan struct{}), w: serialLog}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	booted := make(chan error, 1)
	go func() {
		_, err := boottest.Run(ctx, boottest.Options{
			Disk: raw, NoSMTP: true, Timeout: 15 * time.Minute, Serial: serial,
			ExtraArgs: []string{"-vga", "std", "-qmp", "unix:" + sock + ",server=on,wait=off"},
		})
		booted <- err
	}()
	select {
	case <-serial.seen:
	case err := <-booted:
		t.Fatalf("boot ended before the serial wizard asked for the language: %v\n%s\n(serial log: %s)", err, tail(serial.String()), serialLog.Name())
	case <-time.After(12 * time.Minute):
		t.Fatalf("the serial wizard never asked for the language:\n%s\n(serial log: %s)", tail(serial.String()), serialLog.Name())
	}

	// The serial console: transliterated, ASCII only.
	out := serial.String()
	wizard := out[strings.LastIndex(out, "ksmg appliance setup"):]
	for _, want := range []string{i18n.ASCII(i18n.Name(i18n.Czech)), i18n.ASCII(i18n.Name(i18n.Russian))} {
		if !strings.Contains(wizard, want) {
			t.Errorf("serial wizard does not offer %q:\n%s", want, wizard)
		}
	}
	own := withoutSystemdStatus(wizard)
	if i := strings.IndexFunc(own, func(r rune) bool { return r > unicode.MaxASCII }); i >= 0 {
		t.Errorf("serial wizard printed non-ASCII on a terminal that did not answer the UTF-8 probe: %q", own[i:min(len(own), i+40)])
	}

	// The VM console: the words drawn with the font's glyphs.
	qctx, qcancel := context.WithTimeout(ctx, time.Minute)
	q, err := dialQMP(qctx, sock)
	qcancel()
	if err != nil {
		t.Fatal(err)
	}
	defer q.conn.Close()
	words := []string{i18n.Name(i18n.Czech), i18n.Name(i18n.Russian)}
	shot := filepath.Join(dir, "screen.ppm")
	deadline := time.Now().Add(3 * time.Minute) // console-setup may load the font after the wizard drew
	for {
		if err := q.do("screendump", map[string]any{"filename": shot}); err != nil {
			t.Fatal(err)
		}
		p, err := readPPM(shot)
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		for _, w := range words {
			if col, row, ok := findWord(p, f, w); ok {
				t.Logf("%q drawn at column %d, row %d of the %dx%d console", w, col, row, p.w/f.width, p.h/f.height)
			} else {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("ksmg-console-%d.ppm", os.Getpid()))
			_ = os.Rename(shot, keep)
			t.Fatalf("tty1 never showed %q drawn with %s's glyphs (last screendump kept: %s)", missing, consoleFont, keep)
		}
		time.Sleep(3 * time.Second)
	}
	cancel()
	if err := <-booted; err != nil {
		t.Logf("boot stopped (on purpose: the wizard waits forever): %.80v", err)
	}
}

// postMortemLog is a file for a boot's serial log, kept when the test
// fails (its name is in the failure) and removed when it passes.
func postMortemLog(t *testing.T, pattern string) *os.File {
	t.Helper()
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if !t.Failed() {
			os.Remove(f.Name())
		}
	})
	return f
}

func tail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// TestBootStatusInChosenLanguage: an unattended first boot with
// ksmg.language=ru makes Russian the system language, and the console
// status line's sentence for people comes in Russian from the catalog,
// telling the same facts as the machine-readable line after it.
func TestBootStatusInChosenLanguage(t *testing.T) {
	raw := testImage(t)
	creds, _, err := answers.Unattended("ksmg-ru")
	if err != nil {
		t.Fatal(err)
	}
	creds["ksmg.language"] = i18n.Russian
	serialLog := postMortemLog(t, "ksmg-status-serial-*.log")
	serial := &lineWatcher{want: "\x00", seen: make(chan struct{}), w: serialLog}
	res, err := boottest.Run(context.Background(), boottest.Options{Disk: raw, Credentials: creds, Serial: serial, Timeout: 15 * time.Minute})
	if err != nil {
		t.Fatalf("boot: %v (serial log: %s)", err, serialLog.Name())
	}
	n := func(k string) int64 {
		v, err := res.Int(k)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	facts := status.Facts{
		State: res.State(), SecureBoot: res.Status["secureboot"] == "1", VarFSBytes: n("var_fs_bytes"),
		SSH: res.Status["ssh"], Gateway: res.Status["gateway"], Hostname: res.Status["hostname"], Version: res.Status["version"],
	}
	if f := res.Status["failed"]; f != "none" {
		facts.Failed = strings.Split(f, ",")
	}
	want := facts.Human(i18n.Printer(i18n.Russian))
	if !strings.Contains(serial.String(), want) {
		t.Fatalf("console lacks the Russian status sentence %q after %q (serial log: %s)", want, res.StatusLine, serialLog.Name())
	}
	t.Logf("%s\n%s", res.StatusLine, want)
}

// systemdStatusName is how systemd highlights the unit in its status lines
// ("[  OK  ] Finished <name> - ..."), which PID 1 writes to /dev/console
// while units still start, in the middle of the serial wizard's output.
const systemdStatusName = "\x1b[0;1;39m"

// withoutSystemdStatus drops systemd's status lines from console output,
// leaving what the console's other writers (the wizard) wrote. systemd
// shortens a long unit name with "…" whatever the terminal: seen between
// the serial wizard's lines in a fresh-clone run, "Finished
// systemd-networkd-persiste… - ...".
func withoutSystemdStatus(out string) string {
	lines := strings.SplitAfter(out, "\n")
	kept := lines[:0]
	for _, l := range lines {
		if !strings.Contains(l, systemdStatusName) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept, "")
}

func TestWithoutSystemdStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		// From a fresh-clone run's serial log.
		{"status line among the wizard's", "Language\n[\x1b[0;32m  OK  \x1b[0m] Finished \x1b[0;1;39msystemd-networkd-persiste…\x1b[0mistent Storage in systemd-networkd.\n  1) English\n", "Language\n  1) English\n"},
		// The wizard's own non-ASCII stays, for the check to see it.
		{"the wizard's own text", "  2) Čeština\n", "  2) Čeština\n"},
		{"no line end", "Enter a number", "Enter a number"},
	} {
		if got := withoutSystemdStatus(tc.in); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
