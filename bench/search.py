#!/usr/bin/env python3
"""Search latency: `GET /api/v1/search` over HTTP against the raw engine in the same run.

Starts `tidings serve` on a fresh embedded store (and, with --postgres, on a fresh PostgreSQL
database), seeds a community through the API (users, a public and a private circle, posts of
20 words drawn Zipf-like from a 5,000-word vocabulary, one word in ~95 % of posts), then times
for a reader who may not read everything (a private circle they are not in, direct messages to
others):

  - HTTP: GET /search?q=WORD%20 (newest first) and &sort=best, sequential requests;
  - raw:  the engine alone, without visibility: SQLite FTS5 through Python's sqlite3 on the
          same file (top 20 by bm25 over every match, and the 20 newest), PostgreSQL through
          one psql session with \\timing (ts_rank_cd top 20 over every match, and the 20 newest).

Words: "rare" (a handful of posts), "ordinary" (~1 %), "common" (~95 %). Prints p50/p99 in ms.

  usage: bench/search.py --bin target/release/tidings [--posts 20000] [--postgres URL]
  (URL names an existing database to connect to; the run creates and drops its own beside it)
"""

import argparse
import concurrent.futures
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

VOCABULARY = [f"w{i}" for i in range(5000)]
COMMON = "common"
PASSWORD = "correct horse"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, token=None, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}/api/v1{path}", data=data, method=method)
        if token:
            req.add_header("authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(samples):
    return f"p50 {percentile(samples, 50):7.2f}  p99 {percentile(samples, 99):7.2f}"


def zipf_words(rng, n):
    # Weights 1/rank: a few words are frequent, most are rare.
    return rng.choices(VOCABULARY, weights=ZIPF, k=n)


ZIPF = [1 / (i + 1) for i in range(len(VOCABULARY))]


def seed(api, posts, rng):
    users = [f"u{i}" for i in range(100)]
    tokens = {}

    def signup(name):
        status, _ = api.call("POST", "/users", body={"username": name, "password": PASSWORD})
        assert status == 201, (name, status)
        status, body = api.call("POST", "/sessions", body={"username": name, "password": PASSWORD})
        assert status == 201, (name, status)
        return name, body["token"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        tokens = dict(pool.map(signup, users))
    owner = tokens["u0"]
    for name, vis, policy in [("open", "public", "open"), ("vault", "private", "invite")]:
        status, _ = api.call("POST", "/circles", owner, {"name": name, "visibility": vis, "join_policy": policy})
        assert status == 201, status
    # Everyone joins the public circle; half of them (not the reader, u99) the private one.
    def join(name):
        api.call("PUT", f"/circles/open/members/{name}", tokens[name])
        if int(name[1:]) < 50 and name != "u0":
            api.call("PUT", f"/circles/vault/members/{name}", owner)
            api.call("PUT", f"/circles/vault/members/{name}", tokens[name])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(join, users))
    plan = []
    for i in range(posts):
        author = users[i % 50] if i % 10 == 0 else rng.choice(users)
        words = zipf_words(rng, 20)
        if rng.random() < 0.95:
            words[rng.randrange(20)] = COMMON
        roll = rng.random()
        if roll < 0.6:
            to = ["circle:open"]
        elif roll < 0.7 and int(author[1:]) < 50:
            to = ["circle:vault"]
        elif roll < 0.8:
            to = [f"user:{rng.choice(users)}"]
        else:
            to = ["public"]
        plan.append((author, {"object": {"type": "Note", "content": " ".join(words)}, "to": to}))

    def publish(item):
        author, body = item
        status, _ = api.call("POST", "/outbox", tokens[author], body)
        return status

    started = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(publish, plan))
    bad = [s for s in statuses if s != 201]
    assert not bad, f"{len(bad)} publishes failed: {bad[:5]}"
    print(f"  seeded {posts} posts in {time.time() - started:.1f} s", flush=True)
    return tokens["u99"]


def http_times(api, token, word, sort, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = api.call("GET", f"/search?q={word}%20&sort={sort}&limit=20", token)
        times.append((time.perf_counter() - t0) * 1000)
        assert status == 200, status
    return times


def raw_sqlite_times(db, word, best, n):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    sql = (
        "SELECT rowid FROM search_fts WHERE search_fts MATCH ? ORDER BY rank LIMIT 20"
        if best
        else "SELECT rowid FROM search_fts WHERE search_fts MATCH ? ORDER BY rowid DESC LIMIT 20"
    )
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute(sql, (f'"{word}"',)).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return times


def raw_pg_times(url, word, best, n):
    q = f"to_tsquery('simple', '''{word}''')"
    sql = (
        f"SELECT seq FROM search_docs WHERE doc @@ {q} ORDER BY ts_rank_cd(doc, {q}, 1) DESC LIMIT 20;"
        if best
        else f"SELECT seq FROM search_docs WHERE doc @@ {q} ORDER BY seq DESC LIMIT 20;"
    )
    script = "\\timing on\n" + "\n".join([sql] * n) + "\n"
    out = subprocess.run(["psql", url, "-q", "-o", "/dev/null"], input=script, text=True,
                         capture_output=True, check=True).stdout
    times = [float(m) for m in re.findall(r"Time: ([0-9.]+) ms", out)]
    assert len(times) == n, out[-500:]
    return times


def frequencies(db_or_url, words, engine):
    out = {}
    for w in words:
        if engine == "sqlite":
            conn = sqlite3.connect(f"file:{db_or_url}?mode=ro", uri=True)
            out[w] = conn.execute("SELECT count(*) FROM search_fts WHERE search_fts MATCH ?", (f'"{w}"',)).fetchone()[0]
            conn.close()
        else:
            out[w] = int(subprocess.run(
                ["psql", db_or_url, "-Atc", f"SELECT count(*) FROM search_docs WHERE doc @@ to_tsquery('simple', '''{w}''')"],
                text=True, capture_output=True, check=True).stdout.strip())
    return out


def run(args, label, store_args, raw, engine_ref):
    data = tempfile.mkdtemp(prefix="tidings-bench-search-")
    port = free_port()
    cmd = [args.bin, "serve", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--rate-limits", "off", *store_args]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        api = Api(f"http://127.0.0.1:{port}")
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{api.base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        print(f"== {label}", flush=True)
        reader = seed(api, args.posts, random.Random(7))
        ref = engine_ref(data)
        if raw is raw_pg_times:
            # What autovacuum does on a live database: word statistics for the planner (without
            # them it guesses every word's frequency and walks the whole table for rare ones).
            subprocess.run(["psql", ref, "-qc", "ANALYZE"], check=True)
        counts = frequencies(ref, [args.rare, args.ordinary, COMMON], "sqlite" if raw is raw_sqlite_times else "pg")
        print(f"  matches: rare {args.rare}={counts[args.rare]}, ordinary {args.ordinary}={counts[args.ordinary]}, common={counts[COMMON]} of {args.posts}")
        print(f"  {'word':<10} {'order':<7} {'HTTP /search (visibility, render)':<36} raw engine (no visibility)")
        for word in [args.rare, args.ordinary, COMMON]:
            for sort in ["newest", "best"]:
                http = http_times(api, reader, word, sort, args.requests)
                eng = raw(ref, word, sort == "best", args.requests)
                print(f"  {word:<10} {sort:<7} {summary(http):<36} {summary(eng)}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default="target/release/tidings")
    p.add_argument("--posts", type=int, default=20000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rare", default="w3000")
    p.add_argument("--ordinary", default="w200")
    p.add_argument("--postgres", help="an existing database URL; a fresh database is made beside it")
    args = p.parse_args()
    run(args, f"embedded (SQLite FTS5), {args.posts} posts", [], raw_sqlite_times,
        lambda data: os.path.join(data, "tidings.db"))
    if args.postgres:
        base = args.postgres.rsplit("/", 1)[0]
        name = f"tidings_search_bench_{os.getpid()}"
        subprocess.run(["psql", args.postgres, "-qc", f"CREATE DATABASE {name}"], check=True)
        url = f"{base}/{name}"
        try:
            run(args, f"PostgreSQL (tsvector + GIN), {args.posts} posts", ["--store", url], raw_pg_times,
                lambda _data: url)
        finally:
            subprocess.run(["psql", args.postgres, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False)


if __name__ == "__main__":
    sys.exit(main())
