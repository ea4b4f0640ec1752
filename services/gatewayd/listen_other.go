//go:build !linux

package gatewayd

import "syscall"

// freeBind is Linux's; elsewhere (the tree builds there, the appliance does
// not run there) a configured address must exist when the daemon starts.
func freeBind(string, string, syscall.RawConn) error { return nil }
