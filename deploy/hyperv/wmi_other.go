//go:build !windows

package hyperv

import (
	"context"
	"errors"
)

// openWMI: the WMI driver talks DCOM through the Windows WMI client, which
// exists only on Windows; elsewhere use driver winrm.
func openWMI(context.Context, Config, string) (Host, error) {
	return nil, errors.New("driver wmi: runs only on Windows (use driver winrm from this system)")
}
