//! K-way merge of seq-ordered streams, the heart of the inbox multiplexer.
//!
//! Each source (written inbox entries, circle streams merged at read time) is
//! already sorted in the page direction; the merge keeps one head per source
//! in a binary heap, so a page costs O(limit · log k) rather than a sort of
//! everything. Sources are given in priority order: when several carry the
//! same seq, the one with the lowest index wins, so callers can tell why an
//! item is in the inbox.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Which way a page walks, and therefore how every source must be sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Newest first: sources sorted by seq descending (paging with `before`).
    Older,
    /// Oldest first: sources sorted by seq ascending (paging with `after`).
    Newer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum OrientedSeq {
    Desc(i64),
    Asc(Reverse<i64>),
}

fn orient(seq: i64, direction: Direction) -> OrientedSeq {
    match direction {
        Direction::Older => OrientedSeq::Desc(seq),
        Direction::Newer => OrientedSeq::Asc(Reverse(seq)),
    }
}

/// Merges direction-sorted sources into at most `limit` entries, collapsing duplicate seqs (lowest source index wins).
pub fn merge_sources<T: Clone>(
    sources: &[Vec<(i64, T)>],
    direction: Direction,
    limit: usize,
) -> Vec<(i64, T)> {
    let iters: Vec<_> = sources.iter().map(|s| s.iter().cloned()).collect();
    merge_iters_by(iters, direction, limit, |_, _| false)
}

/// A source's pending head in the lazy merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    key: OrientedSeq,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        // Earliest seq for the direction first, then the lowest source index.
        self.key
            .cmp(&other.key)
            .then_with(|| other.source.cmp(&self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Merges direction-sorted iterators lazily: each source is pulled only as far as the page
/// needs, so a page costs O((limit + k) · log k) pulls however long the sources are. Equal seqs
/// collapse into one entry whose item is the first source's, replaced by any later duplicate
/// for which `better(new, kept)` holds.
pub fn merge_iters_by<T, I, F>(
    mut sources: Vec<I>,
    direction: Direction,
    limit: usize,
    better: F,
) -> Vec<(i64, T)>
where
    I: Iterator<Item = (i64, T)>,
    F: Fn(&T, &T) -> bool,
{
    let mut out: Vec<(i64, T)> = Vec::with_capacity(limit.min(64));
    if limit == 0 {
        return out;
    }
    let mut pending: Vec<Option<(i64, T)>> = Vec::with_capacity(sources.len());
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (source, iter) in sources.iter_mut().enumerate() {
        let head = iter.next();
        if let Some((seq, _)) = &head {
            heap.push(Head {
                key: orient(*seq, direction),
                source,
            });
        }
        pending.push(head);
    }
    while let Some(head) = heap.pop() {
        let Some((seq, item)) = pending.get_mut(head.source).and_then(Option::take) else {
            continue;
        };
        match out.last_mut() {
            // Sorted sources put equal seqs next to each other.
            Some((last, kept)) if *last == seq => {
                if better(&item, kept) {
                    *kept = item;
                }
            }
            _ => {
                if out.len() >= limit {
                    break;
                }
                out.push((seq, item));
            }
        }
        if let Some(iter) = sources.get_mut(head.source)
            && let Some(next) = iter.next()
        {
            heap.push(Head {
                key: orient(next.0, direction),
                source: head.source,
            });
            if let Some(slot) = pending.get_mut(head.source) {
                *slot = Some(next);
            }
        }
    }
    out
}

/// Merges all entries of direction-sorted sources, collapsing duplicate seqs.
pub fn merge_all<T: Clone>(sources: &[Vec<(i64, T)>], direction: Direction) -> Vec<(i64, T)> {
    merge_sources(sources, direction, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn tagged(seqs: &[i64], tag: char) -> Vec<(i64, char)> {
        seqs.iter().map(|&s| (s, tag)).collect()
    }

    #[test]
    fn merges_older_with_priority() {
        let sources = vec![
            tagged(&[9, 5, 3], 'a'),
            tagged(&[10, 5, 4, 3, 1], 'b'),
            vec![],
        ];
        assert_eq!(
            merge_sources(&sources, Direction::Older, 10),
            vec![(10, 'b'), (9, 'a'), (5, 'a'), (4, 'b'), (3, 'a'), (1, 'b')]
        );
        assert_eq!(
            merge_sources(&sources, Direction::Older, 3),
            vec![(10, 'b'), (9, 'a'), (5, 'a')]
        );
    }

    #[test]
    fn merges_newer_with_priority() {
        let sources = vec![
            tagged(&[2, 4, 6], 'a'),
            tagged(&[1, 2, 6, 7], 'b'),
            tagged(&[6], 'c'),
        ];
        assert_eq!(
            merge_all(&sources, Direction::Newer),
            vec![(1, 'b'), (2, 'a'), (4, 'a'), (6, 'a'), (7, 'b')]
        );
        let reordered = vec![sources[2].clone(), sources[1].clone(), sources[0].clone()];
        assert_eq!(
            merge_all(&reordered, Direction::Newer),
            vec![(1, 'b'), (2, 'b'), (4, 'a'), (6, 'c'), (7, 'b')]
        );
    }

    #[test]
    fn edge_cases() {
        let none: Vec<Vec<(i64, ())>> = vec![];
        assert!(merge_all(&none, Direction::Older).is_empty());
        let sources = vec![tagged(&[3, 2, 1], 'a')];
        assert!(merge_sources(&sources, Direction::Older, 0).is_empty());
        assert_eq!(merge_all(&sources, Direction::Older).len(), 3);
        // Duplicates within one source collapse too.
        let dup = vec![tagged(&[5, 5, 4], 'a')];
        assert_eq!(merge_all(&dup, Direction::Older), vec![(5, 'a'), (4, 'a')]);
        let extremes = vec![
            tagged(&[i64::MIN, 0, i64::MAX], 'a'),
            tagged(&[i64::MAX], 'b'),
        ];
        assert_eq!(
            merge_all(&extremes, Direction::Newer),
            vec![(i64::MIN, 'a'), (0, 'a'), (i64::MAX, 'a')]
        );
    }

    #[test]
    fn unsorted_input_does_not_panic() {
        let sources = vec![tagged(&[1, 9, 3, 3, 7], 'a'), tagged(&[8, 2, 10], 'b')];
        for dir in [Direction::Older, Direction::Newer] {
            assert!(merge_sources(&sources, dir, 4).len() <= 4);
            assert!(merge_all(&sources, dir).len() <= 8);
        }
    }

    fn reference(
        sources: &[Vec<(i64, usize)>],
        direction: Direction,
        limit: usize,
    ) -> Vec<(i64, usize)> {
        let mut all: Vec<(i64, usize, usize)> = sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |&(seq, v)| (seq, i, v)))
            .collect();
        all.sort_by(|a, b| {
            let by_seq = match direction {
                Direction::Older => b.0.cmp(&a.0),
                Direction::Newer => a.0.cmp(&b.0),
            };
            by_seq.then(a.1.cmp(&b.1))
        });
        all.dedup_by_key(|e| e.0);
        all.into_iter()
            .take(limit)
            .map(|(seq, _, v)| (seq, v))
            .collect()
    }

    /// Sorted, duplicate-free sources over a small seq range so they overlap.
    /// Each entry's payload is unique so the test can see which source won.
    fn arb_sources(direction: Direction) -> impl Strategy<Value = Vec<Vec<(i64, usize)>>> {
        prop::collection::vec(prop::collection::btree_set(-5i64..60, 0..25), 0..6).prop_map(
            move |sets| {
                sets.into_iter()
                    .enumerate()
                    .map(|(i, set)| {
                        let mut v: Vec<(i64, usize)> = set
                            .into_iter()
                            .map(|s| (s, i * 1000 + s.unsigned_abs() as usize))
                            .collect();
                        if direction == Direction::Older {
                            v.reverse();
                        }
                        v
                    })
                    .collect()
            },
        )
    }

    fn arb_dir() -> impl Strategy<Value = Direction> {
        prop_oneof![Just(Direction::Older), Just(Direction::Newer)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_reference(
            (direction, sources) in arb_dir().prop_flat_map(|d| (Just(d), arb_sources(d))),
            limit in 0usize..80,
        ) {
            prop_assert_eq!(
                merge_sources(&sources, direction, limit),
                reference(&sources, direction, limit)
            );
            prop_assert_eq!(
                merge_all(&sources, direction),
                reference(&sources, direction, usize::MAX)
            );
        }

        #[test]
        fn cursor_walk_yields_each_seq_once(
            (direction, sources) in arb_dir().prop_flat_map(|d| (Just(d), arb_sources(d))),
            page_sizes in prop::collection::vec(1usize..8, 1..20),
        ) {
            let mut walked: Vec<i64> = Vec::new();
            let mut bound: Option<i64> = None;
            let mut page = 0usize;
            loop {
                // Apply the cursor per source, the way a store would.
                let filtered: Vec<Vec<(i64, usize)>> = sources
                    .iter()
                    .map(|s| {
                        s.iter()
                            .filter(|(seq, _)| match (bound, direction) {
                                (None, _) => true,
                                (Some(b), Direction::Older) => *seq < b,
                                (Some(b), Direction::Newer) => *seq > b,
                            })
                            .cloned()
                            .collect()
                    })
                    .collect();
                let size = page_sizes[page % page_sizes.len()];
                page += 1;
                let got = merge_sources(&filtered, direction, size);
                prop_assert!(got.len() <= size);
                let Some(&(last, _)) = got.last() else { break };
                walked.extend(got.iter().map(|(seq, _)| *seq));
                bound = Some(last);
            }
            let distinct: BTreeSet<i64> = sources.iter().flatten().map(|(s, _)| *s).collect();
            let expected: Vec<i64> = match direction {
                Direction::Older => distinct.into_iter().rev().collect(),
                Direction::Newer => distinct.into_iter().collect(),
            };
            prop_assert_eq!(walked, expected);
        }

        #[test]
        fn arbitrary_input_is_bounded(
            sources in prop::collection::vec(prop::collection::vec((any::<i64>(), any::<u8>()), 0..10), 0..5),
            direction in arb_dir(),
            limit in 0usize..20,
        ) {
            let got = merge_sources(&sources, direction, limit);
            prop_assert!(got.len() <= limit);
        }
    }
}
