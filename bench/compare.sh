#!/usr/bin/env bash
# Tidings and its peers side by side, same machine, same run; appends a ratio table to
# bench/RESULTS.md (never overwrites it).
#
# usage:
#   bench/compare.sh            # full: 10k users x 100 follows (~7 min, more on first run)
#   bench/compare.sh --quick    # 2k users x 100 follows, short read runs (~2 min once set up)
#
# Peers are driven by the scripts in ../shared/bench-peers (called, not copied; override with
# SHARED=...): Stream-Framework on a private Redis (6390), the seed 004 PostgreSQL design with
# pgbench (5440; its friends feed and its raw fan-out INSERT), raw Redis pipelined LPUSH and raw
# SQLite inserts as ceilings. Tidings runs over HTTP on loopback on the same shape, with real
# follows (tidings seed --shape follows: each user followed by F others through Follow
# activities; posts go `to: followers`): once on the embedded store, once on PostgreSQL (the
# machine's server on 5432, a throwaway database) with two nodes and the NATS doorbell.
# Every server this script starts, it stops (trap EXIT). Work files: a fresh /tmp/tidings-compare.*.
set -euo pipefail
# --help prints the comment above.
if [ "${1:-}" = --help ]; then sed -n '2,/^set /s/^# \{0,1\}//p' "$0"; exit 0; fi
# Load generators are far faster than any person: the servers started here run without rate
# limits (decision 0016), which would otherwise answer most of the load with 429.
export TIDINGS_RATE_LIMITS=off

MODE=full
case "${1:-}" in
  --quick) MODE=quick ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$(cd "$REPO/../shared" && pwd)}
PEERS=$SHARED/bench-peers
RESULTS=$HERE/RESULTS.md
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BIN=$CARGO_TARGET_DIR/release/tidings
PY=/tmp/peers/venv/bin/python
PGCONN=(-h 127.0.0.1 -p 5440 -U postgres)

if [ "$MODE" = quick ]; then
  USERS=2000; FOLLOWS=100; SF_READS=5000; READ_S=5; SQLITE_ROWS=500000; REDIS_N=1000000; PG_T=5
else
  USERS=10000; FOLLOWS=100; SF_READS=20000; READ_S=15; SQLITE_ROWS=2000000; REDIS_N=3000000; PG_T=20
fi
MERGE_THRESHOLD=1000   # above every follower circle (FOLLOWS + owner): all fan-out on write
READ_WORKERS_MAX=32

WORK=$(mktemp -d /tmp/tidings-compare.XXXXXX)
PGADMIN=postgres://postgres@127.0.0.1:5432/postgres
PGDB=""
SERVER_PID=""
PEERS_STARTED=0
cleanup() {
  # shellcheck disable=SC2086 # several node PIDs
  if [ -n "$SERVER_PID" ]; then kill $SERVER_PID 2>/dev/null || true; wait $SERVER_PID 2>/dev/null || true; fi
  if [ -n "${PGDB:-}" ]; then psql "$PGADMIN" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  if [ "$PEERS_STARTED" = 1 ]; then bash "$PEERS/stop_all.sh" >/dev/null || true; fi
  rm -rf "$WORK/data" "$WORK/inbox.db" "$WORK/inbox.db-wal" "$WORK/inbox.db-shm"
}
trap cleanup EXIT
log() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

log "mode $MODE: $USERS users x $FOLLOWS follows; work files in $WORK"
(cd "$REPO" && cargo build --release -q -p tidings)
[ -x "$PY" ] || { log "installing the peers (setup.sh)"; bash "$PEERS/setup.sh" >"$WORK/setup.log" 2>&1; }

# ---------------------------------------------------------------- peers
PEERS_STARTED=1
log "Redis (6390): $(bash "$PEERS/start_redis.sh")"
log "Stream-Framework: every user posts once, then feed[:20] reads"
timeout 1200 "$PY" "$PEERS/sf_bench.py" --mode direct --users "$USERS" --follows "$FOLLOWS" \
  --reads "$SF_READS" --celebrity-posts 1 >"$WORK/sf.json"

log "ceiling: redis-benchmark LPUSH, pipelined -P 64, 10k keys"
redis-benchmark -h 127.0.0.1 -p 6390 -c 50 -P 64 -n "$REDIS_N" -r 10000 --csv \
  lpush 'list:__rand_int__' 1700000000000123 >"$WORK/redis.csv"
redis-cli -p 6390 flushall >/dev/null

log "ceiling: raw SQLite inbox inserts (Python sqlite3)"
timeout 600 python3 "$PEERS/sqlite_inbox_bench.py" --rows "$SQLITE_ROWS" --db "$WORK/inbox.db" \
  --max-seconds 120 >"$WORK/sqlite.json"

log "PostgreSQL (5440): pid $(bash "$PEERS/start_pg.sh")"
if [ "$(psql "${PGCONN[@]}" -X -A -t -c 'SELECT count(*) FROM follow_lists' 2>/dev/null || echo 0)" != 10000 ]; then
  log "loading the seed 004 data set (1M activities, 10k users x 100 follows; once per machine)"
  mkdir -p /tmp/peers/run
  python3 "$PEERS/pg/gen_data.py" /tmp/peers/run
  psql "${PGCONN[@]}" -X -q -f "$PEERS/pg/pg_setup.sql" >"$WORK/pg_setup.log"
fi
log "pgbench: the seed 004 friends feed (fan-out on read), 2 clients, ${PG_T}s"
mkdir -p "$WORK/pglog"
(cd "$WORK/pglog" && timeout $((PG_T + 120)) pgbench "${PGCONN[@]}" -n -M prepared -c 2 -j 2 -T "$PG_T" \
  -l -f "$PEERS/pg/timeline_any.sql" postgres >"$WORK/pgbench.txt" 2>&1)
log "pgbench: raw fan-out INSERT…SELECT into follower inboxes (fanout_insert.sql), 2 clients, ${PG_T}s"
PG_FOLLOWS_PER_USER=$(psql "${PGCONN[@]}" -X -A -t -c 'SELECT count(*) / count(DISTINCT followee_id) FROM follows')
timeout $((PG_T + 120)) pgbench "${PGCONN[@]}" -n -M prepared -c 2 -j 2 -T "$PG_T" \
  -f "$PEERS/pg/fanout_insert.sql" postgres >"$WORK/pgbench_fanout.txt" 2>&1
echo "$PG_FOLLOWS_PER_USER" >"$WORK/pg_follows_per_user.txt"
bash "$PEERS/stop_all.sh" >/dev/null
PEERS_STARTED=0

# ---------------------------------------------------------------- Tidings
# Bytes on disk: the WAL is checkpointed into the database first (the server is stopped), since a
# WAL file keeps its high-water size and would count scratch space, not stored entries.
size_of() {
  sqlite3 "$DATA/tidings.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  local t=0 f; for f in "$DATA/tidings.db" "$DATA/tidings.db-wal"; do [ -f "$f" ] && t=$((t + $(stat -c %s "$f"))); done; echo $t
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# run_tidings LABEL ARGS...: seed --shape follows through ARGS (a store), serve it (a second node
# too on PostgreSQL), fanout through the first node, closed-loop reads on the last one; JSON
# results in $WORK/LABEL_*.json, server CPU of every node for each phase.
run_tidings() {
  local label=$1; shift
  log "Tidings ($label): seed --shape follows"
  RUST_LOG=warn "$BIN" "$@" --data-dir "$WORK/$label" seed --shape follows --users "$USERS" \
    --follows "$FOLLOWS" --tokens "$USERS" >"$WORK/${label}_seed.txt" 2>"$WORK/${label}_seed.err"
  if [ "$label" = embedded ]; then size_of >"$WORK/bytes_before.txt"; fi
  local nodes=1 extra=()
  if [ "$label" = postgres ]; then nodes=2; extra=(--bus nats://127.0.0.1:4222); fi
  NODE_PIDS=(); NODE_BASES=()
  for n in $(seq 1 "$nodes"); do
    local p; p=$(port)
    RUST_LOG=warn "$BIN" "$@" --data-dir "$WORK/$label" --merge-threshold "$MERGE_THRESHOLD" \
      --follower-merge-threshold "$MERGE_THRESHOLD" "${extra[@]}" serve --listen "127.0.0.1:$p" \
      >"$WORK/${label}_server$n.log" 2>&1 &
    NODE_PIDS+=("$!"); NODE_BASES+=("http://127.0.0.1:$p"); SERVER_PID="${NODE_PIDS[*]}"
    for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$p/readyz" >/dev/null
  done
  local first=${NODE_BASES[0]} last=${NODE_BASES[$((nodes - 1))]} tokens=$WORK/$label/seed-tokens.txt
  ticks() { local out=""; for pid in "${NODE_PIDS[@]}"; do out="$out $(cpu_ticks "$pid")"; done; echo "$out"; }
  log "Tidings ($label): fanout (every user posts once to their followers, until routed everywhere)"
  local t0; t0=$(ticks)
  "$BIN" bench fanout --json --workers 256 --target "$first" --tokens "$tokens" \
    --server-pid "${NODE_PIDS[0]}" >"$WORK/${label}_fanout.json"
  # Every node must have applied the routing before the CPU is read.
  for base in "${NODE_BASES[@]}"; do
    for _ in $(seq 1 600); do
      lag=$(curl -fs "$base/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lag"])' 2>/dev/null || echo 1)
      [ "$lag" = 0 ] && break; sleep 0.1
    done
  done
  echo "{\"ticks_before\": \"$t0\", \"ticks_after\": \"$(ticks)\", \"ticks_per_s\": $(getconf CLK_TCK)}" >"$WORK/${label}_fanout_cpu.json"
  for w in 1 2 $READ_WORKERS_MAX; do
    log "Tidings ($label): GET /api/v1/inbox?limit=20 on the last node, closed loop, $w worker(s), ${READ_S}s"
    local r0; r0=$(ticks)
    "$BIN" bench read --json --workers "$w" --duration "$READ_S" --target "$last" --tokens "$tokens" \
      --server-pid "${NODE_PIDS[$((nodes - 1))]}" >"$WORK/${label}_read_w$w.json"
    echo "{\"ticks_before\": \"$r0\", \"ticks_after\": \"$(ticks)\"}" >"$WORK/${label}_read_cpu_w$w.json"
  done
  for pid in "${NODE_PIDS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
  SERVER_PID=""
}

DATA=$WORK/embedded
run_tidings embedded
BYTES_AFTER=$(size_of)
BYTES_BEFORE=$(cat "$WORK/bytes_before.txt")
sqlite3 -readonly "$DATA/tidings.db" \
  "SELECT (SELECT count(*) FROM inbox_entries), (SELECT sum(pgsize) FROM dbstat WHERE name = 'inbox_entries');" \
  >"$WORK/inbox_btree.txt"

PGDB=tidings_compare_$$
psql "$PGADMIN" -qc "CREATE DATABASE $PGDB"
run_tidings postgres --store "postgres://postgres@127.0.0.1:5432/$PGDB"
psql "$PGADMIN" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null

# ---------------------------------------------------------------- report
export WORK MODE USERS FOLLOWS BYTES_BEFORE BYTES_AFTER READ_WORKERS_MAX PG_T RESULTS REPO
python3 - <<'PY'
import csv, glob, json, os, platform, re, subprocess, datetime
W = os.environ['WORK']
j = lambda n: json.load(open(os.path.join(W, n)))
sf, sq = j('sf.json'), j('sqlite.json')
WMAX = int(os.environ['READ_WORKERS_MAX'])

def tidings(label):
    fan = j(f'{label}_fanout.json')
    cpu = j(f'{label}_fanout_cpu.json')
    hz = cpu['ticks_per_s']
    before = [int(x) for x in cpu['ticks_before'].split()]
    after = [int(x) for x in cpu['ticks_after'].split()]
    fan_cpu = [(b - a) / hz for a, b in zip(before, after)]
    reads, read_cpu = {}, {}
    for w in (1, 2, WMAX):
        reads[w] = j(f'{label}_read_w{w}.json')['ops'][0]
        c = j(f'{label}_read_cpu_w{w}.json')
        rb = [int(x) for x in c['ticks_before'].split()]
        ra = [int(x) for x in c['ticks_after'].split()]
        read_cpu[w] = [(b - a) / hz for a, b in zip(rb, ra)]
    return fan, fan_cpu, reads, read_cpu

E = tidings('embedded')
P = tidings('postgres')
redis = [r for r in csv.reader(open(os.path.join(W, 'redis.csv'))) if r and r[0] != 'test']
redis_rps = float(redis[0][1])
pg_txt = open(os.path.join(W, 'pgbench.txt')).read()
pg_tps = float(re.search(r'tps = ([\d.]+)', pg_txt).group(1))
lat = sorted(int(l.split()[2]) for f in glob.glob(os.path.join(W, 'pglog', 'pgbench_log.*')) for l in open(f))
pg_p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0
fan_txt = open(os.path.join(W, 'pgbench_fanout.txt')).read()
fan_tps = float(re.search(r'tps = ([\d.]+)', fan_txt).group(1))
per_user = float(open(os.path.join(W, 'pg_follows_per_user.txt')).read().strip() or 100)
pg_fan_rows = fan_tps * per_user
before, after = int(os.environ['BYTES_BEFORE']), int(os.environ['BYTES_AFTER'])
entries, btree = (open(os.path.join(W, 'inbox_btree.txt')).read().strip().split('|') + ['0', '0'])[:2]
entries, btree = int(entries or 0), int(btree or 0)
ef, pf = E[0]['fanout'], P[0]['fanout']
t_bytes = (after - before) / max(ef['deliveries'], 1)
sf_bytes = sf['memory']['delta_bytes_per_feed_entry']
best = lambda reads: max(reads, key=lambda w: reads[w]['throughput'])
ew, pw = best(E[2]), best(P[2])

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return '?'

def n(x, d=0):
    return f'{x:,.{d}f}'

def ratio(a, b):
    return f'{a / b:.2f}×' if b else '—'

sf_fan = sf['fanout']['inserts_per_s']
rows = [
    ('fan-out deliveries/s, embedded', n(ef['deliveries_per_s']),
     f"Stream-Framework direct, in-process: {n(sf_fan)}", ratio(ef['deliveries_per_s'], sf_fan), '≥ 10×'),
    ('fan-out deliveries/s, PostgreSQL (2 nodes)', n(pf['deliveries_per_s']),
     f"Stream-Framework direct, in-process: {n(sf_fan)}", ratio(pf['deliveries_per_s'], sf_fan), '≥ 10×'),
    ('fan-out deliveries/s, PostgreSQL (2 nodes)', n(pf['deliveries_per_s']),
     f"raw PostgreSQL fan-out INSERT…SELECT (fanout_insert.sql, pgbench -c 2): {n(pg_fan_rows)} rows/s",
     ratio(pf['deliveries_per_s'], pg_fan_rows), '≥ 1×'),
    ('fan-out deliveries/s, PostgreSQL vs embedded', n(pf['deliveries_per_s']),
     f"embedded, same run: {n(ef['deliveries_per_s'])}", ratio(pf['deliveries_per_s'], ef['deliveries_per_s']), '—'),
    ('fan-out deliveries/s, vs ceiling', n(ef['deliveries_per_s']),
     f'raw Redis LPUSH -P 64, 10k keys: {n(redis_rps)}', ratio(ef['deliveries_per_s'], redis_rps), '—'),
    ('fan-out deliveries/s, vs ceiling', n(ef['deliveries_per_s']),
     f"raw SQLite inserts (Python, 10k rows/tx): {n(sq['rows_per_s'])}", ratio(ef['deliveries_per_s'], sq['rows_per_s']), '—'),
    (f'feed reads/s, embedded (best: {ew} conns)', n(E[2][ew]['throughput']),
     f"Stream-Framework feed[:20], 1 client: {n(sf['reads']['reads_per_s'])}", ratio(E[2][ew]['throughput'], sf['reads']['reads_per_s']), '≥ 10×'),
    (f'feed reads/s, PostgreSQL node 2 (best: {pw} conns)', n(P[2][pw]['throughput']),
     f"embedded, same run (best: {ew} conns): {n(E[2][ew]['throughput'])}", ratio(P[2][pw]['throughput'], E[2][ew]['throughput']), '≥ 0.8×'),
    ('feed reads/s, 2 conns, embedded', n(E[2][2]['throughput']),
     f'PostgreSQL seed 004, pgbench -c 2: {n(pg_tps)}', ratio(E[2][2]['throughput'], pg_tps), '≥ 50×'),
    ('feed reads/s, 2 conns, PostgreSQL node 2', n(P[2][2]['throughput']),
     f'PostgreSQL seed 004, pgbench -c 2: {n(pg_tps)}', ratio(P[2][2]['throughput'], pg_tps), '≥ 50×'),
    ('read p99 ms, 2 clients, embedded (lower is better)', n(E[2][2]['p99_ms'], 2),
     f'PostgreSQL seed 004, pgbench -c 2: {n(pg_p99, 2)}', ratio(E[2][2]['p99_ms'], pg_p99), '≤ 1×'),
    ('storage B per inbox entry, embedded (lower is better)', n(t_bytes, 1),
     f'Redis (SF feeds, measured in this run): {n(sf_bytes, 1)}', ratio(t_bytes, sf_bytes), '≤ 32 B'),
    ('storage B per inbox entry, inbox_entries B-tree only', n(btree / max(entries, 1), 1),
     f'Redis (SF feeds, measured in this run): {n(sf_bytes, 1)}', ratio(btree / max(entries, 1), sf_bytes), '≤ 32 B'),
]
now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
head = sh(f"git -C {os.environ['REPO']} rev-parse --short HEAD")
dirty = ' (uncommitted changes)' if sh(f"git -C {os.environ['REPO']} status --porcelain --untracked-files=no") else ''
cpu_model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo")
out = []
out.append(f"\n## {now} · `{head}`{dirty} · compare.sh {'--quick' if os.environ['MODE'] == 'quick' else '(full)'}\n")
out.append(f"Machine: {sh('nproc')} cores ({cpu_model}), {mem}, {platform.platform()}; {sh('rustc --version')}; "
           f"load average at the end {open('/proc/loadavg').read().split()[0]} (shared with other work). "
           f"Load generator and servers share the cores.\n")
out.append(f"Shape: {os.environ['USERS']} users × {os.environ['FOLLOWS']} followers each (random), every user posts once "
           f"(Stream-Framework and Tidings); then newest-20 feed reads. Tidings uses real follows (Follow activities; "
           f"posts `to: followers`), every delivery written on publish, every publish acknowledged after COMMIT, all over "
           f"HTTP on loopback: once on the embedded store (one server), once on PostgreSQL 15 (this machine's server, "
           f"a throwaway database) with two nodes and the NATS doorbell (publishes through node 1, reads on node 2). "
           f"PostgreSQL peers use the seed 004 data set of bench-peers (10k users × 100 follows, 1M activities).\n")
out.append('| metric | Tidings | peer | ratio (Tidings ÷ peer) | target |')
out.append('| --- | --- | --- | --- | --- |')
for r in rows:
    out.append('| ' + ' | '.join(r) + ' |')
out.append('')
def detail(name, T):
    fan, fan_cpu, reads, read_cpu = T
    f = fan['fanout']
    cpu_per_delivery = ', '.join(f"node {i + 1} {1e6 * c / max(f['deliveries'], 1):.2f} µs" for i, c in enumerate(fan_cpu))
    return (f"{name}: {f['posts']} posts → {f['deliveries']:,} deliveries; acknowledged after {f['publish_s']:.2f} s "
            f"({f['posts_per_s']:,.0f} posts/s, publish p50 {fan['ops'][0]['p50_ms']:.1f} ms / p99 {fan['ops'][0]['p99_ms']:.1f} ms "
            f"with 256 in flight), routed after {f['routed_s']:.2f} s; server CPU per delivery: {cpu_per_delivery}. Reads: "
            + '; '.join(f"{w} conn(s) {r['throughput']:,.0f}/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, {r['errors']} errors, "
                        f"server CPU per read " + ', '.join(f"node {i + 1} {1e6 * c / max(r['ok'], 1):.0f} µs" for i, c in enumerate(read_cpu[w]))
                        for w, r in sorted(reads.items())) + '.')
out.append(detail('Tidings, embedded', E))
out.append('')
out.append(detail('Tidings, PostgreSQL, 2 nodes', P))
out.append('')
out.append(f"Storage (embedded): tidings.db + WAL (checkpointed) grew {after - before:,} B for {ef['deliveries']:,} deliveries; "
           f"the inbox_entries B-tree alone holds {entries:,} rows in {btree:,} B ({btree / max(entries, 1):.1f} B/row).")
out.append(f"Peers detail: Stream-Framework {sf['fanout']['posts']} posts in {sf['fanout']['wall_s']} s, reads p50 "
           f"{sf['reads']['p50_ms']} ms; raw SQLite {sq['rows']:,} rows at {sq['bytes_per_row']} B/row; pgbench friends feed "
           f"{len(lat):,} queries in {os.environ['PG_T']} s; pgbench fan-out {fan_tps:,.0f} posts/s × {per_user:.0f} followers.")
text = '\n'.join(out) + '\n'
if not os.path.exists(os.environ['RESULTS']):
    text = ('# Benchmark results\n\nAppended by `bench/compare.sh` (newest last); never edited by hand. '
            'Ratios are Tidings ÷ peer from the same run on the same machine.\n') + text
with open(os.environ['RESULTS'], 'a') as fh:
    fh.write(text)
print(text)
PY
log "appended to $RESULTS"
