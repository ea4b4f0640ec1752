#!/usr/bin/env bash
# Deploy benchmark (make bench-deploy): a 100-node fleet (1 control + 99
# secondaries) into govmomi's vCenter simulator through `ksmg deploy fleet`'s
# runner with its default bounded concurrency (4), and the same 100 nodes
# imported one at a time with the same vsphere driver, in the same run, each
# into a fresh simulator. Prints the wall time of each and the ratio.
#
# Two rounds: no added latency (vcsim answers in microseconds and shares
# the CPUs with us, so the ratio mostly shows local parallelism), and 20 ms
# per vSphere API call (the simulator's DelayConfig), standing for a real
# vCenter's round trips. Neither is a real vCenter: the disk upload, the
# datastore and the guest are simulated.
# Extra arguments go to ci/benchdeploy (e.g. -nodes 50 -concurrency 8 -delay 0,50).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/benchdeploy" ./ci/benchdeploy
"$work/benchdeploy" "$@"
