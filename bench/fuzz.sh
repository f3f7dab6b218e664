#!/usr/bin/env bash
# The fuzz campaign: every cargo-fuzz target in fuzz/ under libFuzzer for a fixed time each
# (needs the nightly toolchain and cargo-fuzz: `cargo install cargo-fuzz --locked`).
# Each target starts from its seeds in fuzz/corpus/TARGET/ and grows a working corpus under
# fuzz/target/corpus/TARGET/ (not committed). A crash stops the run with the input saved in
# fuzz/artifacts/TARGET/: fix it, and copy the input to fuzz/regressions/TARGET/ so the
# default test command replays it (crates/tidings-server/tests/fuzz_corpus.rs).
#   usage: bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s, every target)
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
cd "$(dirname "$(readlink -f "$0")")/../fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(expr search_query canonical_json cursor activity compat_bodies engineio)
fi
cargo +nightly fuzz build
for target in "${targets[@]}"; do
  work="target/corpus/$target"
  mkdir -p "$work"
  echo "== $target: ${seconds}s"
  log="target/fuzz-$target.log"
  status=0
  cargo +nightly fuzz run "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 ||
    status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)' "$log" || true
  echo "   corpus: $(find "$work" -type f | wc -l) inputs"
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "FAIL: $target crashed (exit $status); the input is in fuzz/artifacts/$target/"
    exit "$status"
  fi
done
echo "fuzz campaign: ${#targets[@]} targets × ${seconds}s, no crash"
