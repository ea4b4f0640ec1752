#!/usr/bin/env bash
# Runs golangci-lint at a pinned version with the repository's .golangci.yml.
# The binary is built once from the Go module proxy (a few CPU-minutes) and
# cached under $KSMG_CACHE/tools, like the other tools the tests build.
set -euo pipefail
cd "$(dirname "$0")/.."
version=v2.15.0
cache=${KSMG_CACHE:-$HOME/.cache/ksmg}
bin=$cache/tools/golangci-lint-$version/golangci-lint
if [ ! -x "$bin" ]; then
	echo "golangci-lint: building $version into $(dirname "$bin")" >&2
	mkdir -p "$(dirname "$bin")"
	tmp=$(mktemp -d "$(dirname "$bin")/.build-XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	# Its own module graph, not ours: GOFLAGS=-mod=readonly does not apply.
	GOFLAGS= GOBIN=$tmp go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version"
	mv "$tmp/golangci-lint" "$bin"
fi
# The Windows-only drivers are linted too.
"$bin" run "$@"
GOOS=windows "$bin" run "$@"
