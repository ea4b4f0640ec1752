//go:build !linux

package sources

import (
	"context"
	"errors"
)

// systemdMount exists on Linux only: the appliance is Linux.
func systemdMount(context.Context, string, string) (func(), error) {
	return nil, errors.New("mounting through systemd needs Linux")
}
