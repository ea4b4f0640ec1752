#!/usr/bin/env bash
# make audit: measures the built image (out/ksmg-*.raw) with OpenSCAP
# (ANSSI-BP-028 intermediary, trixie's ssg-debian content) and Lynis (trixie's
# package, run inside the booted image); builds nothing. See ci/audit/main.go
# and images/HARDENING.md.
#
# The two packages come from Debian trixie with apt itself (a private apt
# state under the cache, the archive keyring for signatures), pinned to the
# versions below, and are cached: a warm run downloads nothing.
# Extra arguments go to ci/audit (e.g. -image PATH, -skip-boot, -strict, -keep DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
SSG_VERSION=0.1.76-1
LYNIS_VERSION=3.1.4-1
MIRROR=${KSMG_AUDIT_MIRROR:-http://deb.debian.org/debian}
cache=${KSMG_CACHE:-$HOME/.cache/ksmg}/audit
debs=$cache/debs
ssg=$debs/ssg-debian_${SSG_VERSION}_all.deb
lynis=$debs/lynis_${LYNIS_VERSION}_all.deb

if [ ! -s "$ssg" ] || [ ! -s "$lynis" ]; then
	apt=$cache/apt
	mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$debs"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" > "$apt/sources.list"
	opts=(-q -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt"
		-o Dir::State::status=/dev/null -o APT::Architecture=amd64 -o Debug::NoLocking=1
		-o APT::Sandbox::User=root -o Acquire::Languages=none
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false)
	apt-get "${opts[@]}" update
	(cd "$debs" && apt-get "${opts[@]}" download "ssg-debian=$SSG_VERSION" "lynis=$LYNIS_VERSION")
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/audit" ./ci/audit
"$work/audit" -ssg-deb "$ssg" -lynis-deb "$lynis" "$@"
