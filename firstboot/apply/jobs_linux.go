//go:build linux

package apply

import (
	"context"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// bus queues activate's systemctl jobs over systemd's private socket, as
// systemctl itself does for root, on one connection: no systemctl process
// (and its start under TCG) on first boot's way to the gateway's start.
// The call still waits for PID 1 to queue the job (images/HARDENING.md,
// "First boot").
type bus struct {
	conn *sddbus.Conn
	err  error
}

// run queues the job of `systemctl args...`; handled is false when args
// are not a --no-block job or systemd cannot be reached (not root, no
// systemd), and the caller runs systemctl instead.
func (b *bus) run(ctx context.Context, args []string) (handled bool, err error) {
	verb, units, ok := busJob(args)
	if !ok {
		return false, nil
	}
	if b.conn == nil && b.err == nil {
		b.conn, b.err = sddbus.NewSystemdConnectionContext(ctx)
	}
	if b.err != nil {
		return false, nil
	}
	for _, u := range units {
		// A nil channel: the job is queued, not waited for (--no-block).
		var err error
		switch verb {
		case "start":
			_, err = b.conn.StartUnitContext(ctx, u, "replace", nil)
		case "stop":
			_, err = b.conn.StopUnitContext(ctx, u, "replace", nil)
		case "restart":
			_, err = b.conn.RestartUnitContext(ctx, u, "replace", nil)
		case "try-restart":
			_, err = b.conn.TryRestartUnitContext(ctx, u, "replace", nil)
		case "try-reload-or-restart":
			_, err = b.conn.ReloadOrTryRestartUnitContext(ctx, u, "replace", nil)
		default:
			// busVerbs and this switch must name the same verbs: a verb
			// without a method is an error, never a silent no-op.
			err = fmt.Errorf("no D-Bus method for systemctl %s", verb)
		}
		if err != nil {
			return true, fmt.Errorf("%s %s: %w", verb, u, err)
		}
	}
	return true, nil
}

func (b *bus) close() {
	if b.conn != nil {
		b.conn.Close()
	}
}
