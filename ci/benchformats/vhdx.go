package main

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/ksmg-appliance/ksmg/vhdx"
)

// The VHDX row: our dynamic VHDX writer against qemu-img with the same
// subformat and block size (1 MiB, Microsoft's advice for Linux guests).
//
// vhdx.Write fsyncs its output before the rename; qemu-img convert's default
// cache mode for the target is "unsafe" (it never flushes), so the second
// row adds `sync FILE` to the reference for the same durability.
func init() {
	ours := func(ctx context.Context, raw, out string) error {
		return vhdx.Write(ctx, raw, out, vhdx.Options{
			Identity: "benchmark",
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}
	convert := "qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=1M"
	rows = append(rows, Row{
		Name: "vhdx dynamic 1M",
		Ext:  "vhdx",
		Ours: ours,
		Ref: func(raw, out string) []string {
			return append(strings.Fields(convert), raw, out)
		},
	}, Row{
		Name: "vhdx dynamic 1M +sync",
		Ext:  "vhdx",
		Ours: ours,
		Ref: func(raw, out string) []string {
			return []string{"sh", "-c", convert + ` "$1" "$2" && sync "$2"`, "sh", raw, out}
		},
	})
}
