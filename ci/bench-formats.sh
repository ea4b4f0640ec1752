#!/usr/bin/env bash
# Formats benchmark (make bench-formats): our writers against qemu-img on the
# same raw disk in one run; prints wall time and output size of each tool and
# the ratios (speedup = qemu-img time / ours, size = ours / qemu-img's).
#
# Disk: the newest out/ksmg-*.raw if the image was built, else a generated
# sparse disk with 600 MiB of /usr files (binaries, libraries, text).
# Section 1, VMDK: `qemu-img convert -O vmdk -o subformat=streamOptimized`
#   vs ova/vmdk on a 2 GiB generated disk.
# Section 2, VHDX: ci/bench-formats-vhdx.sh (owned by the VHDX writer).
# Extra arguments go to ci/benchformats (e.g. -raw PATH, -runs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/benchformats" ./ci/benchformats
echo "== VMDK (OVA disk) =="
"$work/benchformats" -only vmdk -work "$work/run" -gen-size $((2 << 30)) "$@"
if [ -x ci/bench-formats-vhdx.sh ]; then
	echo
	echo "== VHDX =="
	ci/bench-formats-vhdx.sh "$@"
fi
