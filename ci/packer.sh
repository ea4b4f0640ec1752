#!/usr/bin/env bash
# Prints the path of a Packer binary for the plugin tests, building it once
# from module source into the tool cache ($KSMG_CACHE/packer/<version>/).
# v1.9.5 is the last Packer release under an open-source licence (MPL-2.0);
# `go install` of it does not resolve here, so the module's source is
# downloaded through the module proxy and built in a copy of it.
set -euo pipefail
version=${PACKER_VERSION:-1.9.5}
cache=${KSMG_CACHE:-$HOME/.cache/ksmg}
dir=$cache/packer/$version
bin=$dir/packer
if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "Packer v$version"; then
	echo "$bin"
	exit 0
fi
mkdir -p "$dir"
# Outside any module, so that no go.mod is consulted or changed.
src=$(cd / && GOFLAGS= go mod download -json "github.com/hashicorp/packer@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "packer.sh: module source of packer v$version not found" >&2; exit 1; }
work=$(mktemp -d "$dir/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
echo "packer.sh: building Packer v$version from module source (about 10 CPU-minutes, once)" >&2
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' -o "$work/packer.bin" .)
mv -f "$work/packer.bin" "$bin"
echo "$bin"
