#!/usr/bin/env bash
# Runs every Go test, including the QEMU boot tests over the images in
# $KSMG_IMAGE_DIR and the replay of the committed fuzz corpora.
set -euo pipefail
cd "$(dirname "$0")/.."
# One package at a time would waste the second core; more than two fights
# the QEMU (TCG) boot tests for CPU.
go test -p 2 -timeout 45m -count=1 ./...
