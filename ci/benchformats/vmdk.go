package main

import (
	"context"
	"flag"
	"os"

	"github.com/ksmg-appliance/ksmg/ova/vmdk"
)

func init() {
	rows = append(rows, Row{
		Name: "vmdk (" + vmdk.Encoder + ")",
		Ext:  "vmdk",
		Ours: func(ctx context.Context, raw, out string) error {
			src, err := os.Open(raw)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := os.Create(out)
			if err != nil {
				return err
			}
			defer dst.Close()
			if _, err := vmdk.Convert(ctx, src, dst, vmdk.Options{Level: level}); err != nil {
				return err
			}
			return dst.Close()
		},
		Ref: func(raw, out string) []string {
			return []string{"qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, out}
		},
	})
}

// level lets the benchmark try other deflate levels (-vmdk-level) when
// choosing vmdk.DefaultLevel; 0 uses the default.
var level int

func init() {
	flag.IntVar(&level, "vmdk-level", 0, "zlib level for the vmdk row (0 = vmdk.DefaultLevel)")
}
