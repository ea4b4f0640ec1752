#!/usr/bin/env bash
# Installs the host packages listed in ci/packages.txt that are not installed yet.
# Idempotent: a machine that has them all runs no apt-get at all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t want < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/packages.txt" | tr -d ' ')
missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# Postfix asks how to configure itself; we only use its binaries (smtp-sink,
# smtp-source, and a private instance in the benchmark), so: no configuration.
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
