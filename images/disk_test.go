package images

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksmg-appliance/ksmg/appliance"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// renderLayout prints a layout the way a reviewer reads it: one block per
// partition, each command as its argv.
func renderLayout(l diskLayout) string {
	var b strings.Builder
	fmt.Fprintf(&b, "disk %d bytes (%d sectors)\n", l.Size, l.Size/sector)
	for _, p := range l.Parts {
		fmt.Fprintf(&b, "\npartition %d %s (%s, %s)\n", p.Index, p.Name, p.Type, p.Filesystem)
		fmt.Fprintf(&b, "  sectors  %d-%d\n  offset   %d\n  size     %d\n", p.FirstLBA, p.LastLBA, p.Offset, p.Size)
		fmt.Fprintf(&b, "  type     %s\n  guid     %s\n  image    %s\n", p.TypeGUID, p.GUID, p.Image)
		for _, c := range p.Mkfs {
			if len(c.Env) > 0 {
				fmt.Fprintf(&b, "  env      %s\n", strings.Join(c.Env, " "))
			}
			fmt.Fprintf(&b, "  run      %s\n", strings.Join(c.Args, " "))
		}
	}
	fmt.Fprintf(&b, "\nrun %s\n", strings.Join(l.Sgdisk.Args, " "))
	return b.String()
}

var testDirs = diskDirs{Rootfs: "/work/rootfs", Varfs: "/work/varfs", ESP: "/work/esp", Work: "/work", Disk: "/out/.tmp-ksmg-0.1.0.raw"}

// TestDiskLayoutGolden pins the default spec's disk: partition offsets,
// GUIDs and every mkfs/sgdisk argument. A change here changes every image;
// run `go test ./images -run DiskLayout -update` and review the diff.
func TestDiskLayoutGolden(t *testing.T) {
	t.Parallel()
	spec, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	got := renderLayout(planDisk(spec, newDiskIDs(spec), testDirs, DefaultSourceDateEpoch))
	golden := filepath.Join("testdata", "disk-layout.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("disk layout differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}

// TestDiskLayoutArithmetic checks the layout's invariants for several
// partition tables: 1 MiB aligned, contiguous, inside the disk with room
// for the backup GPT, sizes exact.
func TestDiskLayoutArithmetic(t *testing.T) {
	t.Parallel()
	base, err := appliance.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		sizes []appliance.Size
	}{
		{"default", nil},
		{"small", []appliance.Size{64 << 20, 1 << 30, 512 << 20}},
		{"odd MiB", []appliance.Size{33 << 20, 3001 << 20, 77 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := *base
			spec.Disk.Partitions = append([]appliance.Partition(nil), base.Disk.Partitions...)
			for i, s := range tc.sizes {
				spec.Disk.Partitions[i].Size = s
			}
			l := planDisk(&spec, newDiskIDs(&spec), testDirs, DefaultSourceDateEpoch)
			if len(l.Parts) != len(spec.Disk.Partitions) {
				t.Fatalf("%d partitions laid out, spec has %d", len(l.Parts), len(spec.Disk.Partitions))
			}
			next := int64(firstLBA)
			for i, p := range l.Parts {
				want := spec.Disk.Partitions[i]
				if p.FirstLBA != next || p.Offset != p.FirstLBA*sector || p.Offset%(1<<20) != 0 {
					t.Errorf("partition %d starts at LBA %d (offset %d), want %d, 1 MiB aligned", p.Index, p.FirstLBA, p.Offset, next)
				}
				if got := (p.LastLBA - p.FirstLBA + 1) * sector; got != int64(want.Size) || p.Size != int64(want.Size) {
					t.Errorf("partition %d spans %d bytes, spec says %d", p.Index, got, want.Size)
				}
				if p.GUID == "" || p.TypeGUID == "" || len(p.Mkfs) == 0 {
					t.Errorf("partition %d lacks a GUID, type or mkfs command: %+v", p.Index, p)
				}
				next = p.LastLBA + 1
			}
			if backup := l.Size/sector - 33; next > backup {
				t.Errorf("partitions end at LBA %d, past the backup GPT at %d", next, backup)
			}
			if last := l.Sgdisk.Args[len(l.Sgdisk.Args)-1]; last != testDirs.Disk {
				t.Errorf("sgdisk writes %q, want %q", last, testDirs.Disk)
			}
		})
	}
}
