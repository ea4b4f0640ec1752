//go:build linux

package gatewayd

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// freeBind lets a configured address be bound before the interface holds it
// (IP_FREEBIND, IPV6_FREEBIND): the unit does not wait for
// network-online.target, so at boot `listen:` may name an address networkd
// has not configured yet.
func freeBind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
