// Package vhdx writes and validates VHDX disk images (Microsoft's MS-VHDX
// format, version 1) for Hyper-V Generation 2 virtual machines and SCVMM.
//
// Write converts a raw disk into a dynamic VHDX: 1 MiB blocks (Microsoft's
// guidance for Linux guests), every region and block 1 MiB aligned, logical
// sectors of 512 bytes and physical sectors of 4096 bytes, an empty 1 MiB
// log (LogGuid zero) and GUIDs derived from an identity string, so the same
// input gives the same bytes. The raw disk is read with SEEK_DATA/SEEK_HOLE,
// so holes in a sparse input cost nothing, and the output is itself sparse.
//
// Blocks that hold only zeros are not stored. Their BAT entries are in state
// PAYLOAD_BLOCK_ZERO rather than PAYLOAD_BLOCK_NOT_PRESENT: MS-VHDX 2.5.1.1
// lets a reader return arbitrary data for a NOT_PRESENT block of a dynamic
// disk, while ZERO defines the contents as zeros, which is what the raw disk
// had there (QEMU writes ZERO for the same reason, its block_state_zero).
//
// Inspect reads a VHDX and checks every structure the writer produces
// (signatures, CRC-32C checksums, sequence numbers, region tables, metadata
// items and flags, BAT entries), naming the structure that failed. It reads
// fixed-size structures and streams the BAT, so hostile input can neither
// panic it nor make it allocate more than 1 MiB plus 16 bytes per MiB of
// file (the overlap check of stored blocks).
//
// The format is hand-written: no maintained Go library writes VHDX.
// github.com/Microsoft/go-winio/vhd drives Windows' virtdisk.dll (Windows
// only, and it creates empty disks rather than converting), and running
// qemu-img would make the build depend on an external tool and give up
// deterministic GUIDs; qemu-img serves instead as the independent reader and
// writer in the tests and as the reference in the benchmark.
package vhdx
