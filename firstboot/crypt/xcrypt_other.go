//go:build !linux || !cgo

package crypt

import "errors"

// Without cgo on Linux there is no libxcrypt to call (ksmg-firstboot is
// only built for the Linux appliance, with cgo; this keeps the package
// compiling elsewhere).
func xcrypt(password, prefix string, cost int, setting string) (string, error) {
	return "", errors.New("libxcrypt is not linked (build with cgo on Linux)")
}
