#!/usr/bin/env bash
# Benchmark: ksmg-gatewayd against Postfix, side by side in one run.
#
# Postfix's smtp-source opens $BENCH_SESSIONS parallel sessions and sends
# $BENCH_MESSAGES messages of $BENCH_SIZE bytes, one per connection, first to
# ksmg-gatewayd (durable spool, relaying to a Postfix smtp-sink), then to a
# private Postfix instance relaying to the same sink (relayhost). Everything is
# on 127.0.0.1. For each it prints messages per second for
#   acceptance: smtp-source's wall time (every message accepted with 250), and
#   delivery:   from the first connection until the sink has all messages,
# and the ratios ours/postfix. Both MTAs get the same outgoing parallelism
# ($BENCH_RELAY_CONCURRENCY: our relay.workers, Postfix's
# default_destination_concurrency_limit); everything else is their default.
#
#   make bench-gateway                    # the issue's numbers: 10000 x 5 KB, 100 sessions
#   BENCH_MESSAGES=1000 ci/bench-gateway.sh   # a quick trial
set -euo pipefail
cd "$(dirname "$0")/.."

messages=${BENCH_MESSAGES:-10000}
sessions=${BENCH_SESSIONS:-100}
size=${BENCH_SIZE:-5120}
concurrency=${BENCH_RELAY_CONCURRENCY:-32}
timeout=${BENCH_TIMEOUT:-600} # seconds per phase
sink_port=${BENCH_SINK_PORT:-20025}
gw_port=${BENCH_GATEWAY_PORT:-20026}
pf_port=${BENCH_POSTFIX_PORT:-20027}
gateway=${KSMG_BIN_DIR:-$PWD/bin}/ksmg-gatewayd

die() { echo "bench-gateway: $*" >&2; exit 1; }
for tool in smtp-source smtp-sink postfix; do
	command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool missing: run ci/deps.sh"
done
export PATH=$PATH:/usr/sbin
[ -x "$gateway" ] || die "$gateway missing: run make build"
[ "$(id -u)" -eq 0 ] || die "must run as root (a private Postfix instance needs it)"

work=$(mktemp -d /tmp/ksmg-bench.XXXXXX)
chmod 0755 "$work" # Postfix's unprivileged daemons must reach their queue
sink_pid="" gw_pid="" pf_started=""
cleanup() {
	set +e
	[ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null && stop_wait "$gw_pid"
	if [ -n "$pf_started" ]; then
		local master
		master=$(tr -d ' ' <"$work/postfix/queue/pid/master.pid" 2>/dev/null)
		postfix -c "$work/postfix/etc" stop >/dev/null 2>&1
		[ -n "$master" ] && stop_wait "$master"
	fi
	[ -n "$sink_pid" ] && kill -TERM "$sink_pid" 2>/dev/null && stop_wait "$sink_pid"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_wait PID: wait up to 30 s for a process we signalled, then kill it.
# (Postfix's master is not our child, so poll rather than wait.)
stop_wait() {
	for _ in $(seq 300); do
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

now() { date +%s.%N; }

# wait_port PORT: until something accepts connections on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 300); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nothing listens on 127.0.0.1:$1 after 30 s"
}

# sink_count: messages the sink has received so far (smtp-sink -c counter).
sink_count() {
	local n
	n=$(tail -c 200 "$work/sink.out" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1)
	echo "${n#mesg=}"
}

# run NAME PORT: one phase; sets accept_s and deliver_s.
run() {
	local name=$1 port=$2 before target start accepted n deadline
	before=$(sink_count)
	target=$((${before:-0} + messages))
	start=$(now)
	smtp-source -s "$sessions" -m "$messages" -l "$size" \
		-f "bench@source.test" -t "rcpt@dest.test" "127.0.0.1:$port" \
		>"$work/$name.source" 2>&1 || { cat "$work/$name.source" >&2; die "$name: smtp-source failed"; }
	accepted=$(now)
	deadline=$(($(date +%s) + timeout))
	while :; do
		n=$(sink_count)
		[ "${n:-0}" -ge "$target" ] && break
		[ "$(date +%s)" -lt "$deadline" ] || die "$name: sink has $((${n:-0} - ${before:-0})) of $messages messages after ${timeout}s"
		sleep 0.05
	done
	accept_s=$(awk -v a="$start" -v b="$accepted" 'BEGIN { printf "%.3f", b - a }')
	deliver_s=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
	[ "$n" -eq "$target" ] || die "$name: sink got $((n - before)) messages, sent $messages"
}

# The sink, shared by both phases. smtp-sink refuses to run as root.
smtp-sink -u nobody -c "127.0.0.1:$sink_port" 1024 >"$work/sink.out" 2>&1 &
sink_pid=$!
wait_port "$sink_port"

# --- ksmg-gatewayd ---
mkdir -p "$work/gw"
cat >"$work/gw/config.yaml" <<YAML
hostname: bench-gateway.test
listen: ["127.0.0.1:$gw_port"]
spool_dir: $work/gw/queue
tls:
  cert_file: $work/gw/tls/gateway.crt
  key_file: $work/gw/tls/gateway.key
  generate: true
trusted_networks: ["127.0.0.0/8"]
relay:
  default_route: "127.0.0.1:$sink_port"
  default_tls: none
  workers: $concurrency
backup:
  dir: $work/gw/backup
logging:
  messages_file: $work/gw/ksmg-messages
  important_file: $work/gw/ksmg-important
  trace_dir: $work/gw/trace
  events_dir: $work/gw/events
YAML
"$gateway" --config "$work/gw/config.yaml" >"$work/gw/stderr" 2>&1 &
gw_pid=$!
wait_port "$gw_port" || { cat "$work/gw/stderr" >&2; exit 1; }
run ksmg "$gw_port"
ours_accept=$accept_s ours_deliver=$deliver_s
kill -TERM "$gw_pid"; stop_wait "$gw_pid"; gw_pid=""

# --- Postfix, a private instance: own config and queue, loopback only ---
pf=$work/postfix
mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
chown postfix "$pf/data"
cat >"$pf/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench-postfix.test
mydomain = test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink_port
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_destination_concurrency_limit = $concurrency
smtp_tls_security_level = none
smtpd_tls_security_level = none
alias_maps =
alias_database =
biff = no
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
CF
# Postfix's default services, not chrooted (the queue is in a temp dir), and
# smtpd on a loopback port instead of 25.
cat >"$pf/etc/master.cf" <<CF
127.0.0.1:$pf_port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CF
postfix -c "$pf/etc" check || { cat "$pf/maillog" >&2; die "postfix check failed"; }
pf_started=1
postfix -c "$pf/etc" start >"$pf/start.log" 2>&1 || { cat "$pf/start.log" "$pf/maillog" >&2; die "postfix start failed"; }
wait_port "$pf_port"
run postfix "$pf_port"
pf_accept=$accept_s pf_deliver=$deliver_s

awk -v n="$messages" -v s="$sessions" -v z="$size" -v c="$concurrency" \
	-v oa="$ours_accept" -v od="$ours_deliver" -v pa="$pf_accept" -v pd="$pf_deliver" 'BEGIN {
	printf "%d messages of %d bytes, %d sessions, relay concurrency %d\n", n, z, s, c
	printf "%-14s %10s %12s %10s %12s\n", "", "accept s", "accept msg/s", "deliver s", "deliver msg/s"
	printf "%-14s %10.2f %12.0f %10.2f %12.0f\n", "ksmg-gatewayd", oa, n/oa, od, n/od
	printf "%-14s %10.2f %12.0f %10.2f %12.0f\n", "postfix", pa, n/pa, pd, n/pd
	printf "ratio ours/postfix (msg/s): accept %.2f, deliver %.2f\n", pa/oa, pd/od
}'
