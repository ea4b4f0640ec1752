//go:build !linux

package apply

import "errors"

func setHostname(string) error { return errors.New("setting the host name is supported on Linux only") }
