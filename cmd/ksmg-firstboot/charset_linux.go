package main

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// probeUTF8 prints "é" (two bytes in UTF-8) at column 1 and asks the
// terminal where its cursor is (CSI 6n): a UTF-8 terminal drew one
// character and answers column 2, a terminal with an 8-bit charset drew
// two and answers column 3. The line is erased afterwards. The terminal is
// read in non-canonical mode with a 0.3 s timeout per read, so that
// a terminal that never answers costs at most a second and leaves no
// reader behind to steal the first answer typed.
func probeUTF8(in *os.File, out io.Writer) (utf8, known bool) {
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return false, false
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 0, 3
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return false, false
	}
	defer func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }()
	if _, err := io.WriteString(out, "\r\xc3\xa9\x1b[6n"); err != nil {
		return false, false
	}
	defer func() { _, _ = io.WriteString(out, "\r\x1b[K") }()
	var got []byte
	buf := make([]byte, 32)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && len(got) < 64; {
		n, err := in.Read(buf)
		if err != nil && err != io.EOF {
			return false, false
		}
		got = append(got, buf[:n]...)
		if col, ok := parseCPR(got); ok {
			return col == 2, true
		}
	}
	return false, false
}

// parseCPR reads the column out of a cursor position report, ESC [ row ; col R.
func parseCPR(b []byte) (col int, ok bool) {
	i := bytes.LastIndex(b, []byte("\x1b["))
	if i < 0 || !bytes.HasSuffix(b, []byte("R")) {
		return 0, false
	}
	_, c, found := bytes.Cut(b[i+2:len(b)-1], []byte(";"))
	if !found {
		return 0, false
	}
	n, err := strconv.Atoi(string(c))
	return n, err == nil
}
