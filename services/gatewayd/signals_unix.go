//go:build unix

package gatewayd

import (
	"os"
	"syscall"
)

var (
	stopSignals            = []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	reloadSignal os.Signal = syscall.SIGHUP
	reopenSignal os.Signal = syscall.SIGUSR1
)
