#!/usr/bin/env bash
# Regenerates what is generated from the sources: the first-boot message
# catalogs (go generate: gotext, firstboot/i18n), the Packer plugin's HCL2
# specs (go generate: packer-sdc mapstructure-to-hcl2; both pinned by
# go.mod's tool directive) and its web docs (.web-docs/, compiled from docs/ with
# packer-sdc renderdocs and the integration template's script).
# `ci/generate.sh --check` fails if that changed any file (make lint).
set -euo pipefail
cd "$(dirname "$0")/.."
generated() {
	{ git ls-files -co --exclude-standard -- '*.hcl2spec.go' .web-docs firstboot/i18n/catalog.go 'firstboot/i18n/locales/*/out.gotext.json'; } | sort -u | while read -r f; do
		[ -f "$f" ] && sha256sum "$f"
	done
}
[ "${1:-}" = --check ] && before=$(generated)
go generate ./...
rm -rf .docs
trap 'rm -rf .docs' EXIT
quiet() { local out; out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }; }
quiet go tool packer-sdc renderdocs -src docs -partials docs-partials/ -dst .docs/
rm -rf .web-docs/components
quiet .web-docs/scripts/compile-to-webdocs.sh "." ".docs" ".web-docs" "ksmg-appliance"
if [ "${1:-}" = --check ]; then
	after=$(generated)
	if [ "$before" != "$after" ]; then
		echo "generated files were out of date (now regenerated; commit them):" >&2
		diff <(echo "$before") <(echo "$after") | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u >&2
		exit 1
	fi
fi
