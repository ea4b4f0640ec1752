//go:build linux

package sources

import (
	"context"
	"fmt"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/coreos/go-systemd/v22/unit"
	godbus "github.com/godbus/dbus/v5"
)

// systemdMount asks PID 1 for a transient mount unit of dev at
// where (read-only, no fsck) and returns how to stop it. PID 1 resolves dev
// in its own /dev: the sandboxed first-boot unit has a private /dev without
// the drive, and systemd-mount(1) looks the node up in the caller's
// namespace first ("Failed to make path /dev/sdc absolute", seen in the
// booted image). The mount propagates into the caller's namespace.
//
// The request goes over systemd's private socket, as systemctl does for
// root: on the bus, a caller without CAP_SYS_ADMIN is sent to polkit,
// which the image does not have.
func systemdMount(ctx context.Context, dev, where string) (func(), error) {
	conn, err := sddbus.NewSystemdConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	name := unit.UnitNamePathEscape(where) + ".mount"
	props := []sddbus.Property{
		sddbus.PropDescription("ksmg first boot: config drive"),
		{Name: "What", Value: godbus.MakeVariant(dev)},
		{Name: "Where", Value: godbus.MakeVariant(where)},
		{Name: "Options", Value: godbus.MakeVariant(mountOptions)},
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
	}
	if err := waitJob(ctx, func(ch chan<- string) (int, error) {
		return conn.StartTransientUnitContext(ctx, name, "fail", props, ch)
	}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mount %s at %s (%s): %w", dev, where, name, err)
	}
	return func() {
		// A fresh context: unmount even when ctx was cancelled.
		stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = waitJob(stop, func(ch chan<- string) (int, error) {
			return conn.StopUnitContext(stop, name, "replace", ch)
		})
		conn.Close()
	}, nil
}

// waitJob queues a job with start and waits for its result.
func waitJob(ctx context.Context, start func(chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := start(ch); err != nil {
		return err
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("job %s", res)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
