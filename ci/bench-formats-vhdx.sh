#!/usr/bin/env bash
# VHDX part of the formats benchmark: our writer (vhdx.Write) against
# `qemu-img convert -O vhdx -o subformat=dynamic,block_size=1M` on the same
# raw disk in one run; prints wall time and file size of each and the ratios.
# The "+sync" row adds `sync FILE` to qemu-img, whose default target cache
# mode never flushes, while vhdx.Write fsyncs before its rename.
# Disk: newest out/ksmg-*.raw, else a generated sparse 100 GiB disk with
# 600 MiB of /usr files (the appliance's shape). Extra arguments go to
# ci/benchformats (e.g. -raw PATH, -runs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/benchformats" ./ci/benchformats
"$work/benchformats" -only vhdx -work "$work/run" -gen-size $((100 << 30)) "$@"
