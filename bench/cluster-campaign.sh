#!/usr/bin/env bash
# The cluster campaign at full length: three `tidings serve` nodes on a fresh PostgreSQL database
# and a private NATS server, 20 rounds of 100 publishes through every node while the router node
# is killed with kill -9 each round and NATS is stopped every other round; then every acknowledged
# publish must be in the log exactly once, every node and a late fourth node must serve the same
# inbox, the live client must have seen each entry once, and `tidings verify` must pass.
# CI runs the same test with 3 rounds (`cargo test -p tidings --test cluster`).
#   usage: bench/cluster-campaign.sh [ROUNDS]   (needs PostgreSQL on 127.0.0.1:5432)
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
cd "$(dirname "$(readlink -f "$0")")/.."
export TIDINGS_TEST_STORE="${TIDINGS_TEST_STORE:-postgres://postgres@127.0.0.1:5432/postgres}"
export TIDINGS_CLUSTER_ROUNDS="${1:-20}"
cargo test --release -p tidings --test cluster -- --nocapture
