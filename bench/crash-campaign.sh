#!/usr/bin/env bash
# The crash campaign on the embedded store at full length: one `tidings serve` over a data dir,
# four writers publishing without pause (each publish with an Idempotency-Key, some re-sent on
# purpose), `kill -9` at a random moment of every round, then restart, `tidings verify`, and
# every acknowledged publish checked. At the end: each key in the outbox exactly once (zero
# lost, zero duplicates) and in the reader's inbox. The client's log of acknowledged publishes
# is written to $TIDINGS_CRASH_LOG (default: crash-acked.jsonl in the cargo target dir).
# The same rounds then run for the integration bus: durable queue enqueues and acks
# (tests/queue_crash.rs: no acknowledged enqueue lost, each idempotency key stored once) and
# webhook deliveries under sustained publishing (tests/bus_crash.rs: every acknowledged publish
# delivered, each under one webhook-id).
# The default test command runs the same tests with 2 rounds (`cargo test -p tidings --test crash
# --test queue_crash --test bus_crash`).
#   usage: bench/crash-campaign.sh [ROUNDS]   (default 20)
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
cd "$(dirname "$(readlink -f "$0")")/.."
export TIDINGS_CRASH_ROUNDS="${1:-20}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$target_dir"
export TIDINGS_CRASH_LOG="${TIDINGS_CRASH_LOG:-$target_dir/crash-acked.jsonl}"
cargo test -p tidings --test crash --test queue_crash --test bus_crash -- --nocapture
