//go:build !linux

package apply

import "context"

// bus: systemd runs on Linux only; elsewhere systemctl is run (and fails).
type bus struct{}

func (*bus) run(context.Context, []string) (bool, error) { return false, nil }
func (*bus) close()                                      {}
