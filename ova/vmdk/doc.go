// Package vmdk writes and verifies monolithic streamOptimized VMDK extents,
// the disk format an OVA carries for ESXi and vSphere.
//
// Layout written (VMware Virtual Disk Format 5.0, "Stream-Optimized
// Compressed Sparse Extents"):
//
//	sector 0        sparse extent header, gdOffset = GD_AT_END
//	sectors 1..20   embedded descriptor, createType="streamOptimized"
//	sector 128..    grains: 12-byte LBA marker + zlib data, padded to 512
//	                after each 512-grain group that holds data: GT marker + GT
//	                GD marker + grain directory
//	                footer marker + footer (header copy with the real gdOffset)
//	                end-of-stream marker
//
// All-zero grains are not stored, and grain tables whose 512 grains are all
// zero are not written (their directory entry is 0), so a 100 GiB disk with
// small partitions costs only its data. The source is read with
// SEEK_DATA/SEEK_HOLE where the OS has it, so holes are never read at all.
//
// Grains are deflated by one worker per core and written strictly in LBA
// order; each grain is compressed independently at a fixed level, so the same
// raw disk always gives the same bytes. The descriptor's CID and
// ddb.longContentID are derived from a SHA-256 over what was stored, and are
// patched into the reserved descriptor sectors when the stream is complete.
//
// Why not govmomi's vmdk.StreamOptimizedWriter (v0.56.0): it writes
// createType "vmfs" rather than "streamOptimized", does not pad grains to
// sector boundaries, writes no GT/GD metadata markers, no footer and only an
// end-of-stream marker, reads every byte of the source (no hole skipping) and
// compresses on one core. Its header struct layout matches ours and was used
// as a cross-check. qemu-img is the reference used by the tests and the
// benchmark; it is a separate process and not a library, so it cannot be the
// writer itself.
//
// Deflate: with cgo on Linux the grains are compressed by libdeflate
// (libdeflate-dev, bound in deflate_cgo.go), the fastest well-kept deflate
// implementation, whose level 6 is both smaller and faster than zlib's
// level 6. The pure-Go encoders were measured first and rejected as the
// default: klauspost/compress at level 6 and stdlib compress/flate even at
// level 9 write 2-5% more than zlib level 6, so the OVA would be larger than
// qemu-img's. Without cgo (e.g. the Windows cross-build) klauspost/compress
// is the fallback (deflate_pure.go); the output is still deterministic for
// a given build, but not byte-identical to the cgo build's.
package vmdk
