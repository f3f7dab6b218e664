#!/usr/bin/env bash
# Tidings and its peers side by side, same machine, same run; appends a ratio table to
# bench/RESULTS.md (never overwrites it).
#
#   bench/compare.sh            # full: 10k users x 100 follows (~7 min, more on first run)
#   bench/compare.sh --quick    # 2k users x 100 follows, short read runs (~2 min once set up)
#
# Peers are driven by the scripts in ../shared/bench-peers (called, not copied; override with
# SHARED=...): Stream-Framework on a private Redis (6390), the seed 004 PostgreSQL design with
# pgbench (5440), raw Redis pipelined LPUSH and raw SQLite inserts as ceilings. Tidings runs over
# HTTP on loopback on the same shape; follows do not exist yet, so "u is followed by F users" is
# a circle f-u owned by u with those F members (tidings seed --shape follow-circles).
# Every server this script starts, it stops (trap EXIT). Work files: a fresh /tmp/tidings-compare.*.
set -euo pipefail

MODE=full
case "${1:-}" in
  --quick) MODE=quick ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
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
SERVER_PID=""
PEERS_STARTED=0
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
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
bash "$PEERS/stop_all.sh" >/dev/null
PEERS_STARTED=0

# ---------------------------------------------------------------- Tidings
DATA=$WORK/data
log "Tidings: seed --shape follow-circles"
RUST_LOG=warn "$BIN" --data-dir "$DATA" seed --shape follow-circles --users "$USERS" \
  --follows "$FOLLOWS" --tokens "$USERS" >"$WORK/seed.txt" 2>"$WORK/seed.err"
# Bytes on disk: the WAL is checkpointed into the database first (the server is stopped), since a
# WAL file keeps its high-water size and would count scratch space, not stored entries.
size_of() {
  sqlite3 "$DATA/tidings.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
  local t=0 f; for f in "$DATA/tidings.db" "$DATA/tidings.db-wal"; do [ -f "$f" ] && t=$((t + $(stat -c %s "$f"))); done; echo $t
}
BYTES_BEFORE=$(size_of)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TARGET=http://127.0.0.1:$PORT
RUST_LOG=warn "$BIN" --data-dir "$DATA" --merge-threshold "$MERGE_THRESHOLD" serve \
  --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do curl -fs "$TARGET/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$TARGET/healthz" >/dev/null
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TOKENS=$DATA/seed-tokens.txt
log "Tidings: fanout (every user publishes once to their follower circle, until routed)"
T0=$(cpu_ticks)
"$BIN" bench fanout --json --workers 256 --target "$TARGET" --tokens "$TOKENS" --server-pid "$SERVER_PID" >"$WORK/fanout.json"
T1=$(cpu_ticks)
echo "{\"server_cpu_s\": $(( (T1 - T0) ))e0, \"ticks_per_s\": $(getconf CLK_TCK)}" >"$WORK/fanout_cpu.json"
for w in 1 2 $READ_WORKERS_MAX; do
  log "Tidings: GET /api/v1/inbox?limit=20, closed loop, $w worker(s), ${READ_S}s"
  R0=$(cpu_ticks)
  "$BIN" bench read --json --workers "$w" --duration "$READ_S" --target "$TARGET" --tokens "$TOKENS" \
    --server-pid "$SERVER_PID" >"$WORK/read_w$w.json"
  echo "{\"server_cpu_s\": $(( $(cpu_ticks) - R0 ))e0}" >"$WORK/read_cpu_w$w.json"
done
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
BYTES_AFTER=$(size_of)
sqlite3 -readonly "$DATA/tidings.db" \
  "SELECT (SELECT count(*) FROM inbox_entries), (SELECT sum(pgsize) FROM dbstat WHERE name = 'inbox_entries');" \
  >"$WORK/inbox_btree.txt"

# ---------------------------------------------------------------- report
export WORK MODE USERS FOLLOWS BYTES_BEFORE BYTES_AFTER READ_WORKERS_MAX PG_T RESULTS REPO
python3 - <<'PY'
import csv, glob, json, os, platform, re, subprocess, datetime
W = os.environ['WORK']
j = lambda n: json.load(open(os.path.join(W, n)))
sf, sq, fan = j('sf.json'), j('sqlite.json'), j('fanout.json')
reads = {w: j(f'read_w{w}.json')['ops'][0] for w in (1, 2, int(os.environ['READ_WORKERS_MAX']))}
# The highest read rate of the closed-loop runs (the 2 cores are shared, so more connections
# are not always faster).
wmax = max(reads, key=lambda w: reads[w]['throughput'])
read_cpu = {w: j(f'read_cpu_w{w}.json')['server_cpu_s'] for w in reads}
redis = [r for r in csv.reader(open(os.path.join(W, 'redis.csv'))) if r and r[0] != 'test']
redis_rps = float(redis[0][1])
pg_txt = open(os.path.join(W, 'pgbench.txt')).read()
pg_tps = float(re.search(r'tps = ([\d.]+)', pg_txt).group(1))
lat = sorted(int(l.split()[2]) for f in glob.glob(os.path.join(W, 'pglog', 'pgbench_log.*')) for l in open(f))
pg_p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000.0
f = fan['fanout']
cpu = j('fanout_cpu.json')
server_cpu = cpu['server_cpu_s'] / cpu['ticks_per_s']
read_cpu = {w: c / cpu['ticks_per_s'] for w, c in read_cpu.items()}
before, after = int(os.environ['BYTES_BEFORE']), int(os.environ['BYTES_AFTER'])
entries, btree = (open(os.path.join(W, 'inbox_btree.txt')).read().strip().split('|') + ['0', '0'])[:2]
entries, btree = int(entries or 0), int(btree or 0)
t_bytes = (after - before) / max(f['deliveries'], 1)
sf_bytes = sf['memory']['delta_bytes_per_feed_entry']

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return '?'

def n(x, d=0):
    return f'{x:,.{d}f}'

def ratio(a, b):
    return f'{a / b:.2f}×' if b else '—'

rows = [
    ('fan-out deliveries/s (higher is better)', n(f['deliveries_per_s']),
     f"Stream-Framework direct, in-process: {n(sf['fanout']['inserts_per_s'])}", ratio(f['deliveries_per_s'], sf['fanout']['inserts_per_s']), '≥ 10× (≥ 150k/s)'),
    ('fan-out deliveries/s, vs ceiling', n(f['deliveries_per_s']),
     f'raw Redis LPUSH -P 64, 10k keys: {n(redis_rps)}', ratio(f['deliveries_per_s'], redis_rps), '—'),
    ('fan-out deliveries/s, vs ceiling', n(f['deliveries_per_s']),
     f"raw SQLite inserts (Python, 10k rows/tx): {n(sq['rows_per_s'])}", ratio(f['deliveries_per_s'], sq['rows_per_s']), '—'),
    (f'feed reads/s, 20 hydrated (best: {wmax} conns)', n(reads[wmax]['throughput']),
     f"Stream-Framework feed[:20], 1 client: {n(sf['reads']['reads_per_s'])}", ratio(reads[wmax]['throughput'], sf['reads']['reads_per_s']), '≥ 10× (≥ 20k/s)'),
    (f'feed reads/s, 20 hydrated (best: {wmax} conns)', n(reads[wmax]['throughput']),
     f'PostgreSQL seed 004 friends query, pgbench -c 2: {n(pg_tps)}', ratio(reads[wmax]['throughput'], pg_tps), '≥ 50×'),
    ('feed reads/s, 2 conns (same clients as pgbench)', n(reads[2]['throughput']),
     f'PostgreSQL seed 004, pgbench -c 2: {n(pg_tps)}', ratio(reads[2]['throughput'], pg_tps), '≥ 50×'),
    ('read p99 ms, 1 client (lower is better)', n(reads[1]['p99_ms'], 2),
     f"Stream-Framework, 1 client: {n(sf['reads']['p99_ms'], 2)}", ratio(reads[1]['p99_ms'], sf['reads']['p99_ms']), '≤ 1×'),
    ('read p99 ms, 2 clients (lower is better)', n(reads[2]['p99_ms'], 2),
     f'PostgreSQL seed 004, pgbench -c 2: {n(pg_p99, 2)}', ratio(reads[2]['p99_ms'], pg_p99), '≤ 1×'),
    ('storage B per inbox entry (lower is better)', n(t_bytes, 1),
     f'Redis (SF feeds, measured in this run): {n(sf_bytes, 1)}', ratio(t_bytes, sf_bytes), '≤ 32 B'),
    ('storage B per inbox entry (lower is better)', n(t_bytes, 1),
     'PostgreSQL inbox table (bench-peers README, not measured here): 100', ratio(t_bytes, 100.0), '≤ 32 B'),
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
           f"(Stream-Framework and Tidings); then newest-20 feed reads. PostgreSQL uses the seed 004 data set of "
           f"bench-peers (10k users × 100 follows, 1M activities) whatever the mode. **Tidings has no follows yet: "
           f"the follow graph is modelled as circles** (user u owns circle f-u whose members are u's followers), "
           f"every delivery written on publish (`--merge-threshold {1000}`), every publish acknowledged after COMMIT "
           f"(synchronous=FULL), all over HTTP on loopback.\n")
out.append('| metric | Tidings | peer | ratio (Tidings ÷ peer) | issue 3 target |')
out.append('| --- | --- | --- | --- | --- |')
for r in rows:
    out.append('| ' + ' | '.join(r) + ' |')
out.append('')
out.append(f"Tidings detail: {f['posts']} posts → {f['deliveries']:,} deliveries; all acknowledged after "
           f"{f['publish_s']:.2f} s ({f['posts_per_s']:,.0f} posts/s, publish p50 {fan['ops'][0]['p50_ms']:.1f} ms / "
           f"p99 {fan['ops'][0]['p99_ms']:.1f} ms with 256 in flight), routed after {f['routed_s']:.2f} s; server CPU "
           f"{server_cpu:.1f} s for the fan-out ({server_cpu / f['routed_s']:.2f} cores). Reads (closed loop): "
           + '; '.join(f"{w} conn(s) {r['throughput']:,.0f}/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, "
                       f"{r['errors']} errors, server CPU {1e6 * read_cpu[w] / max(r['ok'], 1):.0f} µs/read"
                       for w, r in sorted(reads.items()))
           + f". Storage: tidings.db + WAL (checkpointed) grew {after - before:,} B for {f['deliveries']:,} deliveries (includes the "
           f"{f['posts']} activities, their stream links and indexes); the inbox_entries B-tree alone holds "
           f"{entries:,} rows in {btree:,} B ({btree / max(entries, 1):.1f} B/row).")
out.append(f"Peers detail: Stream-Framework {sf['fanout']['posts']} posts in {sf['fanout']['wall_s']} s, reads p50 "
           f"{sf['reads']['p50_ms']} ms; raw SQLite {sq['rows']:,} rows at {sq['bytes_per_row']} B/row, read20 "
           f"{sq['read20_per_s']:,}/s in-process; pgbench {len(lat):,} queries in {os.environ['PG_T']} s.")
text = '\n'.join(out) + '\n'
if not os.path.exists(os.environ['RESULTS']):
    text = ('# Benchmark results\n\nAppended by `bench/compare.sh` (newest last); never edited by hand. '
            'Ratios are Tidings ÷ peer from the same run on the same machine.\n') + text
with open(os.environ['RESULTS'], 'a') as fh:
    fh.write(text)
print(text)
PY
log "appended to $RESULTS"
