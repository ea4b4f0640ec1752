package main

import (
	"io"
	"os"
)

// terminalUTF8 decides whether the line prompts may print UTF-8. A serial
// console's far end may be anything from a modern terminal to a legacy
// one with an 8-bit character set, and the locale of this side says
// nothing about it, so "auto" asks the terminal itself (probeUTF8); one
// that does not answer, or TERM=dumb, gets transliterated ASCII, which
// every terminal shows.
func terminalUTF8(mode string, in *os.File, out io.Writer) bool {
	switch mode {
	case "utf-8", "utf8", "UTF-8":
		return true
	case "ascii":
		return false
	}
	if t := os.Getenv("TERM"); t == "" || t == "dumb" {
		return false
	}
	utf8, known := probeUTF8(in, out)
	return known && utf8
}
