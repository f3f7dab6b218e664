//! Micro-benchmarks of the hot pure code: `cargo bench -p tidings-core`.
//!
//! Inputs are shaped like production: a typical published Note with tags and an action, the
//! 100 `*@circle` subscriptions of a follower circle, 20–50 merge sources of 1k–100k seqs, and
//! cursors as clients send them back. Data is generated from a fixed seed so runs compare.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use tidings_core::activity::{Limits, TypeStatus, normalize};
use tidings_core::canonical::{activity_digest, canonical_json, chain_hash, verify_activity};
use tidings_core::cursor;
use tidings_core::expr::{SubscriptionExpr, parse};
use tidings_core::merge::{Direction, merge_iters_by, merge_sources};
use tidings_core::routing::{Candidate, RouteFacts, route_activity};

/// A small deterministic generator (xorshift64*): the benches need no `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a client posts: a Note of tweet-to-blog size with two tags and a `read` action.
fn posted(content_chars: usize) -> Value {
    let content: String = "Shipping the new inbox multiplexer today. "
        .chars()
        .cycle()
        .take(content_chars)
        .collect();
    json!({
        "type": "Create",
        "object": {
            "type": "Note",
            "content": content,
            "summary": "Release notes, week 47",
            "url": "https://blog.example/posts/2026/11/multiplexer"
        },
        "to": ["circle:eng-platform", "user:bob"],
        "tag": ["release", "#Announcement"],
        "actions": [{"name": "read", "url": "https://blog.example/posts/2026/11/multiplexer", "method": "GET"}]
    })
}

/// The stored record of [`posted`], with its digest, as the store keeps it.
fn stored(content_chars: usize) -> Value {
    let draft = match normalize(&posted(content_chars), &Limits::default(), &|_| {
        TypeStatus::BuiltIn
    }) {
        Ok(draft) => draft,
        Err(e) => panic!("bench input must be valid: {e}"),
    };
    let mut record = draft.into_record(
        "01936f4e-8a2b-7c3d-9e4f-5a6b7c8d9e0f",
        "user:ana",
        "2026-11-23T09:41:07.123Z",
    );
    let digest = activity_digest(&record);
    record["digest"] = json!(digest);
    record
}

fn bench_canonical(c: &mut Criterion) {
    let mut group = c.benchmark_group("canonical");
    for chars in [280usize, 2_000] {
        let record = stored(chars);
        let bytes = canonical_json(&record).len() as u64;
        group.throughput(Throughput::Bytes(bytes));
        group.bench_with_input(
            BenchmarkId::new("canonical_json", chars),
            &record,
            |b, r| b.iter(|| canonical_json(black_box(r))),
        );
        group.bench_with_input(
            BenchmarkId::new("activity_digest", chars),
            &record,
            |b, r| b.iter(|| activity_digest(black_box(r))),
        );
        group.bench_with_input(BenchmarkId::new("verify", chars), &record, |b, r| {
            b.iter(|| verify_activity(black_box(r)))
        });
        // The whole pure part of a publish: validate, build the record, digest it.
        let input = posted(chars);
        group.bench_with_input(
            BenchmarkId::new("normalize_record_digest", chars),
            &input,
            |b, input| {
                b.iter(|| {
                    let draft = normalize(black_box(input), &Limits::default(), &|_| {
                        TypeStatus::BuiltIn
                    });
                    draft.map(|d| {
                        let record = d.into_record("id", "user:ana", "2026-11-23T09:41:07Z");
                        activity_digest(&record)
                    })
                })
            },
        );
    }
    group.throughput(Throughput::Elements(1));
    let digest = activity_digest(&stored(280));
    let prev = chain_hash(None, &digest);
    group.bench_function("chain_hash", |b| {
        b.iter(|| chain_hash(Some(black_box(&prev)), black_box(&digest)))
    });
    group.finish();
}

fn bench_expr(c: &mut Criterion) {
    let mut group = c.benchmark_group("expr");
    for input in [
        "release@eng",
        "*@design-team",
        "#Urgent@*",
        "  Release @ Eng  ",
    ] {
        group.bench_with_input(BenchmarkId::new("parse", input.trim()), input, |b, s| {
            b.iter(|| parse(black_box(s)))
        });
    }
    let tags: Vec<String> = ["release", "announcement", "sys:note", "sys:major"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let exprs: Vec<SubscriptionExpr> = ["*@eng", "release@eng", "urgent@eng", "release@*"]
        .iter()
        .filter_map(|s| parse(s).ok())
        .collect();
    group.bench_function("matches_4_exprs_4_tags", |b| {
        b.iter(|| {
            exprs
                .iter()
                .filter(|e| e.matches(black_box(&tags), black_box("eng")))
                .count()
        })
    });
    group.finish();

    // Routing one activity to a circle: the follower circle of the SF workload has 100
    // `*@circle` members; a larger fanned-out circle a few hundred, some tag-filtered.
    let mut group = c.benchmark_group("routing");
    let circles = vec!["f-u004711".to_string()];
    for audience in [100usize, 1_000] {
        let candidates: Vec<Candidate> = (0..audience)
            .filter_map(|i| {
                let expr = if i % 10 == 9 {
                    "release@f-u004711"
                } else {
                    "*@f-u004711"
                };
                Some(Candidate {
                    id: i as i64 + 1,
                    user_id: (i as i64) * 7 + 3,
                    expr: parse(expr).ok()?,
                    readable_circles: circles.clone(),
                })
            })
            .collect();
        let facts = RouteFacts {
            author: 4711,
            addressed: &[12, 99],
            pushed_circles: &circles,
            tags: &tags,
            followers: &[],
            author_name: "bench",
            searches: &[],
        };
        group.throughput(Throughput::Elements(audience as u64));
        group.bench_with_input(
            BenchmarkId::new("route_activity", audience),
            &candidates,
            |b, cands| b.iter(|| route_activity(black_box(&facts), black_box(cands))),
        );
    }
    group.finish();
}

/// `k` sources, newest first, of 1k–100k seqs each, interleaved over one log.
fn sources(k: usize, rng: &mut Rng) -> Vec<Vec<(i64, u32)>> {
    (0..k)
        .map(|source| {
            let len = 1_000 + rng.below(99_001) as usize;
            let mut seq = 10_000_000i64;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                seq -= 1 + rng.below(40) as i64;
                v.push((seq, source as u32));
            }
            v
        })
        .collect()
}

fn bench_merge(c: &mut Criterion) {
    let mut group = c.benchmark_group("merge");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for k in [20usize, 50] {
        let srcs = sources(k, &mut rng);
        for limit in [20usize, 200] {
            group.throughput(Throughput::Elements(limit as u64));
            // The multiplexer's path: lazy iterators over borrowed slices, one page.
            group.bench_with_input(
                BenchmarkId::new(format!("page_k{k}"), limit),
                &srcs,
                |b, srcs| {
                    b.iter(|| {
                        let iters: Vec<_> = srcs.iter().map(|s| s.iter().copied()).collect();
                        merge_iters_by(iters, Direction::Older, black_box(limit), |_, _| false)
                    })
                },
            );
        }
        // A page deep in history: each source starts at the cursor (found by the store).
        let bound = 9_000_000i64;
        let deep: Vec<Vec<(i64, u32)>> = srcs
            .iter()
            .map(|s| s.iter().copied().filter(|(seq, _)| *seq < bound).collect())
            .collect();
        group.throughput(Throughput::Elements(20));
        group.bench_with_input(
            BenchmarkId::new(format!("deep_page_k{k}"), 20),
            &deep,
            |b, srcs| {
                b.iter(|| {
                    let iters: Vec<_> = srcs.iter().map(|s| s.iter().copied()).collect();
                    merge_iters_by(iters, Direction::Older, 20, |_, _| false)
                })
            },
        );
    }
    // Small owned sources through the cloning entry point (e.g. `Newer` polling).
    let small: Vec<Vec<(i64, u32)>> = sources(20, &mut rng)
        .into_iter()
        .map(|mut s| {
            s.truncate(50);
            s.reverse();
            s
        })
        .collect();
    group.throughput(Throughput::Elements(20));
    group.bench_function("merge_sources_newer_k20", |b| {
        b.iter(|| merge_sources(black_box(&small), Direction::Newer, 20))
    });
    group.finish();
}

fn bench_cursor(c: &mut Criterion) {
    let mut group = c.benchmark_group("cursor");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        b.iter(|| cursor::encode(black_box(1_234_567)))
    });
    let good = cursor::encode(1_234_567);
    group.bench_function("decode", |b| b.iter(|| cursor::decode(black_box(&good))));
    let mut tampered = good.clone().into_bytes();
    tampered[7] = if tampered[7] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8_lossy(&tampered).into_owned();
    group.bench_function("decode_tampered", |b| {
        b.iter(|| cursor::decode(black_box(&tampered)))
    });
    // A page of 20 items each carries a cursor.
    let mut rng = Rng(7);
    let seqs: Vec<i64> = (0..20).map(|_| rng.below(50_000_000) as i64).collect();
    group.throughput(Throughput::Elements(20));
    group.bench_function("encode_page_of_20", |b| {
        b.iter_batched(
            || seqs.clone(),
            |seqs| seqs.into_iter().map(cursor::encode).collect::<Vec<_>>(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Content routing: 10,000 filtered topics of mixed shapes (`tag@circle` with a JSONPath
/// predicate, types, authors, and 1% that no index key narrows), one published activity
/// matched against all of them.
fn bench_routing(c: &mut Criterion) {
    use tidings_core::filter::{Facts, Filter, TopicIndex};
    let mut group = c.benchmark_group("content_routing");
    let mut rng = Rng(0x70b1_c5ee_d000_0001);
    let mut index = TopicIndex::default();
    for i in 0..10_000u64 {
        let text = match i % 100 {
            0 => format!("$.object.amount > {}", rng.below(1_000)),
            1..=9 => format!("type == Create and author == shop{}", rng.below(500)),
            10..=19 => format!(
                "object_type == Invoice{} or tag == t{}",
                rng.below(300),
                rng.below(2_000)
            ),
            _ => format!(
                "t{}@c{} and $.object.amount > {}",
                rng.below(2_000),
                rng.below(200),
                rng.below(1_000)
            ),
        };
        index.insert(i, Filter::parse(&text).expect("bench filter"));
    }
    let record = json!({
        "type": "Create", "actor": "user:shop7", "to": ["circle:c17", "public"],
        "tag": ["t42", "t1999", "sys:note"],
        "object": {"type": "Note", "amount": 420, "content": "an order was paid"},
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("match_10k_topics", |b| {
        b.iter(|| black_box(index.matching(&Facts::of(black_box(&record)))))
    });
    // The baseline: every filter evaluated, no index.
    let mut scan_rng = Rng(0x70b1_c5ee_d000_0001);
    let filters: Vec<Filter> = (0..10_000u64)
        .map(|i| {
            let rng = &mut scan_rng;
            let text = match i % 100 {
                0 => format!("$.object.amount > {}", rng.below(1_000)),
                1..=9 => format!("type == Create and author == shop{}", rng.below(500)),
                10..=19 => format!(
                    "object_type == Invoice{} or tag == t{}",
                    rng.below(300),
                    rng.below(2_000)
                ),
                _ => format!(
                    "t{}@c{} and $.object.amount > {}",
                    rng.below(2_000),
                    rng.below(200),
                    rng.below(1_000)
                ),
            };
            Filter::parse(&text).expect("bench filter")
        })
        .collect();
    group.bench_function("scan_10k_topics_unindexed", |b| {
        b.iter(|| {
            let facts = Facts::of(black_box(&record));
            black_box(filters.iter().filter(|f| f.matches(&facts)).count())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_canonical,
    bench_expr,
    bench_merge,
    bench_cursor,
    bench_routing
);
criterion_main!(benches);
