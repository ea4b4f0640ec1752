package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/ksmg-appliance/ksmg/vhdx"
)

// The VHDX row: our dynamic VHDX writer against qemu-img with the same
// subformat and block size (1 MiB, Microsoft's advice for Linux guests).
func init() {
	rows = append(rows, Row{
		Name: "vhdx dynamic 1M",
		Ext:  "vhdx",
		Ours: func(ctx context.Context, raw, out string) error {
			return vhdx.Write(ctx, raw, out, vhdx.Options{
				Identity: "benchmark",
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
		},
		Ref: func(raw, out string) []string {
			return []string{"qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic,block_size=1M", raw, out}
		},
	})
}
