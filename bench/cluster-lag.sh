#!/usr/bin/env bash
# Replication lag across cluster nodes: publish-to-client latency when the publish goes through
# node A and the live clients (SSE) sit on node B, against the same run with both on one node,
# and against the embedded store; at --rate publishes/s (default 1,000) for --seconds (10).
# The latency is measured from when each publish was due to when its event reached the client on
# B, so it bounds "COMMIT on A to visible in an inbox read on B" from above (B's SSE reads its
# own index). Appends a table to bench/RESULTS.md.
#   usage: bench/cluster-lag.sh [RATE] [SECONDS]   (PostgreSQL on 127.0.0.1:5432, NATS on 4222)
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
# Load generators are far faster than any person: the servers started here run without rate
# limits (decision 0016), which would otherwise answer most of the load with 429.
export TIDINGS_RATE_LIMITS=off
RATE=${1:-1000}
SECONDS_=${2:-10}
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
# TIDINGS_BIN runs an already built binary instead of building a release one (the docs test
# runs this script at smoke scale with its debug build); TIDINGS_BENCH_RESULTS appends elsewhere.
BIN=${TIDINGS_BIN:-$CARGO_TARGET_DIR/release/tidings}
RESULTS=${TIDINGS_BENCH_RESULTS:-$HERE/RESULTS.md}
ADMIN=${PGADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
BUS=${BUS:-nats://127.0.0.1:4222}
WORK=$(mktemp -d /tmp/tidings-lag.XXXXXX)
DB=tidings_lag_$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { printf '[lag %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 1 300); do curl -fs "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

[ -n "${TIDINGS_BIN:-}" ] || (cd "$REPO" && cargo build --release -q -p tidings)
URL=${ADMIN%/*}/$DB
psql "$ADMIN" -qc "CREATE DATABASE $DB"
SEED=(seed --users 200 --circles 1 --largest 200 --activities 0 --tokens 20)
log "seeding 200 users in one circle on PostgreSQL and on the embedded store"
RUST_LOG=warn "$BIN" --store "$URL" --data-dir "$WORK/pg" "${SEED[@]}" >/dev/null
RUST_LOG=warn "$BIN" --data-dir "$WORK/embedded" "${SEED[@]}" >/dev/null
CIRCLE=$(psql "$URL" -Atc "SELECT name FROM circles ORDER BY id LIMIT 1")

start() { # start NAME ARGS... ; sets $BASE and $PID
  local p; p=$(port)
  RUST_LOG=warn "$BIN" "${@:2}" serve --listen "127.0.0.1:$p" >"$WORK/$1.log" 2>&1 &
  PID=$!; PIDS+=("$PID"); BASE=http://127.0.0.1:$p
  wait_ready "$BASE"
}
push() { # push OUT STREAMS_BASE PUBLISH_BASE SERVER_PID TOKENS
  "$BIN" bench push --json --connections 20 --circle "$CIRCLE" --publish-rate "$RATE" \
    --duration "$SECONDS_" --target "$2" --publish-target "$3" --server-pid "$4" \
    --tokens "$5" >"$WORK/$1.json"
}

log "embedded store, one server"
start embedded --data-dir "$WORK/embedded"; E_BASE=$BASE; E_PID=$PID
push embedded "$E_BASE" "$E_BASE" "$E_PID" "$WORK/embedded/seed-tokens.txt"
kill "$E_PID"; wait "$E_PID" 2>/dev/null || true

log "PostgreSQL, two nodes with the NATS doorbell"
start a --store "$URL" --bus "$BUS"; A=$BASE; A_PID=$PID
start b --store "$URL" --bus "$BUS"; B=$BASE; B_PID=$PID
push same_node "$B" "$B" "$B_PID" "$WORK/pg/seed-tokens.txt"
push cross_bus "$B" "$A" "$B_PID" "$WORK/pg/seed-tokens.txt"
kill "$A_PID" "$B_PID"; wait "$A_PID" "$B_PID" 2>/dev/null || true

log "PostgreSQL, two nodes without a bus (polling every 5 ms)"
start a2 --store "$URL"; A=$BASE; A_PID=$PID
start b2 --store "$URL"; B=$BASE; B_PID=$PID
push cross_poll "$B" "$A" "$B_PID" "$WORK/pg/seed-tokens.txt"

export WORK RATE SECONDS_ REPO
python3 - <<'PY' | tee -a "$RESULTS"
import json, os, subprocess, datetime
W = os.environ['WORK']
runs = [('embedded', 'embedded store, clients and publishes on one server'),
        ('same_node', 'PostgreSQL, clients and publishes on node B'),
        ('cross_bus', 'PostgreSQL, publish on A, clients on B, NATS doorbell'),
        ('cross_poll', 'PostgreSQL, publish on A, clients on B, no bus (5 ms poll)')]
r = {k: json.load(open(os.path.join(W, k + '.json'))) for k, _ in runs}
head = subprocess.run(['git', '-C', os.environ['REPO'], 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
print(f"\n## {now} · `{head}` · cluster-lag.sh {os.environ['RATE']}/s × {os.environ['SECONDS_']} s\n")
print('Publish-to-client latency (from when each publish was due to its SSE event on the client), '
      '20 live clients in one circle of 200, 1 publisher; load generator and servers share the 2 cores. '
      'Ratios are against the embedded store in the same run. Server CPU is the clients\' node, per event. '
      '"Publish acknowledged" is from when each publish was due to its 201 (after the COMMIT): the part of '
      'the publish-to-client time spent before the commit.\n')
print('| run | events received/expected | p50 ms | p99 ms | max ms | p99 ÷ embedded | publish acknowledged p50 / p99 ms | server CPU µs/event |')
print('| --- | --- | --- | --- | --- | --- | --- | --- |')
base = r['embedded']['p99_ms']
for k, name in runs:
    x = r[k]
    cpu = x.get('server_cpu_s')
    per = f"{cpu * 1e6 / max(x['received_events'], 1):.0f}" if cpu is not None else '—'
    print(f"| {name} | {x['received_events']:,}/{x['expected_events']:,} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['max_ms']:.2f} | {x['p99_ms'] / base:.2f}× | {x.get('publish_p50_ms', 0):.2f} / {x.get('publish_p99_ms', 0):.2f} | {per} |")
PY
