#!/usr/bin/env bash
# Work queues: `tidings bench queues` against the embedded store and against PostgreSQL (the
# machine's server on 5432, a throwaway database), durable and memory queues, one run.
#
#   bench/queues.sh [JOBS] [BIN]    # JOBS default 100000; BIN default target/release/tidings
#
# Each server runs on a fresh scratch dir without rate limits (a load generator is not a person)
# and is stopped by its PID at exit; the throwaway database is dropped. Peers (BullMQ, pgmq)
# are not driven by this script yet.
set -euo pipefail
export TIDINGS_RATE_LIMITS=off
JOBS=${1:-100000}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-$REPO/target/release/tidings}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
WORK=$(mktemp -d /tmp/tidings-queues.XXXXXX)
DB="tidings_queues_bench_$$"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

run() { # name, store (dir or URL)
  local name=$1 store=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  RUST_LOG=warn "$BIN" --store "$store" admin create-user "root$port" --password 'correct horse' --admin \
    | sed "s/^/root /" > "$WORK/$name-token.txt"
  RUST_LOG=warn "$BIN" --store "$store" serve --listen "127.0.0.1:$port" &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  echo "== $name"
  "$BIN" bench queues --target "http://127.0.0.1:$port" --tokens "$WORK/$name-token.txt" \
    --jobs "$JOBS" --publish-rate 1000 --duration 10
  kill "$pid"
}

run embedded "$WORK/embedded"
psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
run postgres "$PG/$DB"
