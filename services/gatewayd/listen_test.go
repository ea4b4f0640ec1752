//go:build linux

package gatewayd

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestListenBeforeTheAddressExists: the unit does not wait for
// network-online.target, so at boot `listen:` may name an address that
// networkd has not put on the interface yet. The daemon must start anyway
// (IP_FREEBIND); a plain bind fails with "cannot assign requested address".
// The addresses are from the documentation ranges, on no interface here.
func TestListenBeforeTheAddressExists(t *testing.T) {
	addrs := []string{"192.0.2.77:2525"}
	if _, err := os.Stat("/proc/net/if_inet6"); err == nil {
		addrs = append(addrs, "[2001:db8::77]:2525")
	} else {
		t.Logf("this kernel has no IPv6 (%v): only the IPv4 address is tried", err)
	}
	for _, addr := range addrs {
		t.Run(addr, func(t *testing.T) {
			ready := make(chan struct{}, 4)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runInProcess(ctx, t, []string{addr}, func(state string) {
				if state == "READY=1" {
					ready <- struct{}{}
				}
			})
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("the daemon did not start with listen: [%s]: %v", addr, err)
			case <-time.After(30 * time.Second):
				t.Fatal("no READY=1")
			}
			cancel() // right after READY=1: TestStopRightAfterReady's case too
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run = %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30 s of the stop")
			}
		})
	}
}
