#!/usr/bin/env bash
# Tidings alone on bench/compare.sh's fan-out shape (10,000 users, each followed through a
# circle by 100 others; every user publishes once, every delivery written on publish): fan-out
# deliveries/s and bytes per inbox entry, for one or more binaries in turn (a before/after pair
# in the same sitting gives the ratio to trust on a shared machine).
#
#   bench/fanout-storage.sh target/release/tidings [OTHER_BINARY ...]
#
# Needs sqlite3 and curl. Data dirs: a fresh /tmp/tidings-fanout.*, removed on exit.
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
# Load generators are far faster than any person: the servers started here run without rate
# limits (decision 0016), which would otherwise answer most of the load with 429.
export TIDINGS_RATE_LIMITS=off
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
USERS=${USERS:-10000}
FOLLOWS=${FOLLOWS:-100}
WORK=$(mktemp -d /tmp/tidings-fanout.XXXXXX)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Bytes on disk after a checkpoint (the WAL keeps its high-water size otherwise).
size_of() {
  sqlite3 "$1/tidings.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  local t=0 f
  for f in "$1/tidings.db" "$1/tidings.db-wal"; do [ -f "$f" ] && t=$((t + $(stat -c %s "$f"))); done
  echo "$t"
}

n=0
for BIN in "$@"; do
  n=$((n + 1))
  DATA=$WORK/data$n
  RUST_LOG=warn "$BIN" --data-dir "$DATA" seed --shape follow-circles --users "$USERS" \
    --follows "$FOLLOWS" --tokens "$USERS" >/dev/null 2>&1
  BEFORE=$(size_of "$DATA")
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  RUST_LOG=warn "$BIN" --data-dir "$DATA" --merge-threshold 1000 serve \
    --listen "127.0.0.1:$PORT" >"$WORK/server$n.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  "$BIN" bench fanout --json --workers 256 --target "http://127.0.0.1:$PORT" \
    --tokens "$DATA/seed-tokens.txt" --server-pid "$SERVER_PID" >"$WORK/fanout$n.json"
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
  AFTER=$(size_of "$DATA")
  BTREE=$(sqlite3 -readonly "$DATA/tidings.db" \
    "SELECT (SELECT count(*) FROM inbox_entries) || ' ' || (SELECT sum(pgsize) FROM dbstat WHERE name = 'inbox_entries');")
  python3 - "$BIN" "$BEFORE" "$AFTER" "$BTREE" "$WORK/fanout$n.json" <<'PY'
import json, sys
binary, before, after, btree, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
entries, pages = map(int, btree.split())
fan = json.load(open(path))["fanout"]
print(f"{binary}: {fan['deliveries']} deliveries, {fan['deliveries_per_s']:,.0f}/s "
      f"(routed in {fan['routed_s']:.2f} s); {(after - before) / entries:.1f} B of database growth "
      f"per entry, {pages / entries:.1f} B per entry in the inbox_entries B-tree")
PY
done
