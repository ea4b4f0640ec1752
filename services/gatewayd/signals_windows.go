//go:build windows

package gatewayd

import "os"

// Windows has no SIGHUP/SIGUSR1: the daemon is built there only so that the
// tree compiles (the appliance is Linux); reload and reopen need a restart.
// The two values are distinct placeholders that are never delivered.
var (
	stopSignals            = []os.Signal{os.Interrupt}
	reloadSignal os.Signal = neverSignal("reload")
	reopenSignal os.Signal = neverSignal("reopen")
)

type neverSignal string

func (s neverSignal) String() string { return string(s) }
func (neverSignal) Signal()          {}
