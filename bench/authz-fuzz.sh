#!/usr/bin/env bash
# The authorization fuzz at full length: a random community of 10 users, then REQUESTS random
# requests by random users against every route that takes other people's ids, each answer
# checked against the reference model in crates/tidings-server/tests/authz.rs (zero cross-user
# reads or writes). The seed is printed; TIDINGS_AUTHZ_SEED=N replays a run.
# The default test command runs the same test with 3000 requests.
#   usage: bench/authz-fuzz.sh [REQUESTS]   (default 100000)
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
cd "$(dirname "$(readlink -f "$0")")/.."
export TIDINGS_AUTHZ_REQUESTS="${1:-100000}"
cargo test -p tidings-server --test authz -- --nocapture
