#!/usr/bin/env bash
# Build benchmark: wall time and peak memory of `ksmg build` with a cold
# package cache (empty temporary KSMG_CACHE: packages fetched from the
# mirror) and a warm one (second build, nothing downloaded), next to the
# reference tool on the same input: a bare mmdebstrap of the same package
# set from the same local repository (the floor any build of this rootfs
# pays). Prints each and the ratio warm/reference. Needs root and the
# binaries from `make build` in bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${KSMG_BIN_DIR:-$PWD/bin}
[ -x "$BIN/ksmg" ] || { echo "bench-build: $BIN/ksmg missing: run make build" >&2; exit 1; }
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench-build: GNU time missing (ci/packages.txt: time)" >&2; exit 1; }

tmp=$(mktemp -d /var/tmp/ksmg-bench-build.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export KSMG_CACHE="$tmp/cache"

run() { # label, command...
	local label=$1; shift
	"$TIME" -f "%e %M" -o "$tmp/$label.time" "$@" >"$tmp/$label.log" 2>&1 || {
		echo "bench-build: $label failed:" >&2; tail -n 30 "$tmp/$label.log" >&2; exit 1; }
	read -r secs kib <"$tmp/$label.time"
	printf '%-34s %8.1f s  peak RSS %6d MiB\n' "$label" "$secs" $((kib / 1024))
	eval "${label//-/_}_secs=$secs"
}

echo "ksmg build benchmark ($(nproc) cores, $(date -u +%FT%TZ))"
run cold-ksmg-build "$BIN/ksmg" build --json --bin "$BIN" --out "$tmp/out-cold" --format raw
run warm-ksmg-build "$BIN/ksmg" build --json --bin "$BIN" --out "$tmp/out-warm" --format raw

# Reference: mmdebstrap alone, same packages, same local repository.
repo=$(ls -d "$KSMG_CACHE"/repo/*/ | head -n 1)
pkgs=$(sed -n '/^packages:/,/^[a-z]/{s/^  - //p}' appliance/appliance.yaml | paste -sd, -)
run reference-mmdebstrap mmdebstrap --mode=root --variant=minbase --include="$pkgs" \
	--aptopt='Acquire::Languages "none"' --aptopt='APT::Install-Recommends "false"' \
	trixie "$tmp/ref.tar" "deb [trusted=yes] copy://${repo%/} trixie main"

cmp -s "$tmp/out-cold/SHA256SUMS" "$tmp/out-warm/SHA256SUMS" && same=yes || same=no
echo "cold and warm disks identical: $same"
awk -v w="$warm_ksmg_build_secs" -v r="$reference_mmdebstrap_secs" -v c="$cold_ksmg_build_secs" \
	'BEGIN { printf "ratio warm/reference: %.2f   ratio cold/warm: %.2f   goal: warm <= 60 s\n", w / r, c / w }'
