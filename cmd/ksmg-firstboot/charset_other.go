//go:build !linux

package main

import (
	"io"
	"os"
)

// probeUTF8: the appliance is Linux; elsewhere the terminal is not asked.
func probeUTF8(*os.File, io.Writer) (utf8, known bool) { return false, false }
