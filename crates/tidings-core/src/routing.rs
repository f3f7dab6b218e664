//! Who receives an activity, and why.
//!
//! The store gathers the facts (the activity's author, addressees, circles and tags, and the
//! candidate subscriptions with whether each subscriber may read the circle) and
//! [`route_activity`] decides the deliveries. One delivery per user; when several reasons hold,
//! the strongest one is kept as the entry's `via`: author, then addressed, then the oldest
//! matching subscription, then a follow of the author (the weakest, so unfollowing can remove
//! exactly the entries a follow alone put there).

use crate::expr::SubscriptionExpr;
use std::collections::BTreeMap;

/// Why an inbox holds an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// The inbox owner published it.
    Author,
    /// It was addressed to the owner by name.
    Addressed,
    /// A subscription of the owner matched it.
    Subscription {
        /// The subscription's id.
        id: i64,
        /// Its expression, e.g. `release@eng`.
        expr: String,
    },
    /// The owner follows the author.
    Follow {
        /// The author's username.
        author: String,
    },
}

impl Via {
    /// Stable text form stored with the entry and shown to clients.
    pub fn as_text(&self) -> String {
        match self {
            Via::Author => "author".to_owned(),
            Via::Addressed => "addressed".to_owned(),
            Via::Subscription { id, expr } => format!("subscription:{id}:{expr}"),
            Via::Follow { author } => format!("follow:{author}"),
        }
    }
}

/// A subscription that might match the activity.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Subscription id (older ids win ties).
    pub id: i64,
    /// The subscriber.
    pub user_id: i64,
    /// The parsed expression.
    pub expr: SubscriptionExpr,
    /// Whether the subscriber may read each circle the activity is in, by circle name.
    pub readable_circles: Vec<String>,
}

/// The facts about one activity that routing needs.
#[derive(Debug, Clone)]
pub struct RouteFacts<'a> {
    /// The author's user id.
    pub author: i64,
    /// Users addressed by name.
    pub addressed: &'a [i64],
    /// Circles the activity is addressed to that are fanned out on write.
    pub pushed_circles: &'a [String],
    /// All tags of the activity (user and system).
    pub tags: &'a [String],
    /// Followers of the author who get it written (empty unless it is addressed to followers or
    /// the public, and the author is fanned out on write).
    pub followers: &'a [i64],
    /// The author's username (for the `follow:NAME` reason).
    pub author_name: &'a str,
    /// Saved searches that matched the activity and whose subscriber may read it (the store
    /// checks both, see [`crate::saved`]): they rank as subscriptions, oldest first.
    pub searches: &'a [SearchHit],
}

/// A saved search that matched an activity its subscriber may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The subscription's id.
    pub id: i64,
    /// The subscriber.
    pub user_id: i64,
    /// Its term, e.g. `"tokio panic"@eng`.
    pub expr: String,
}

/// One inbox entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The inbox owner.
    pub user_id: i64,
    /// Why it is delivered.
    pub via: Via,
}

/// Decides the deliveries for one activity, at most one per user, sorted by user id.
pub fn route_activity(facts: &RouteFacts<'_>, candidates: &[Candidate]) -> Vec<Delivery> {
    let mut best: BTreeMap<i64, Via> = BTreeMap::new();
    let mut offer = |user_id: i64, via: Via| {
        best.entry(user_id)
            .and_modify(|current| {
                if via < *current {
                    *current = via.clone();
                }
            })
            .or_insert(via);
    };
    offer(facts.author, Via::Author);
    for &user in facts.addressed {
        offer(user, Via::Addressed);
    }
    for candidate in candidates {
        let hit = facts.pushed_circles.iter().any(|circle| {
            candidate.expr.matches(facts.tags, circle)
                && candidate.readable_circles.iter().any(|c| c == circle)
        });
        if hit {
            offer(
                candidate.user_id,
                Via::Subscription {
                    id: candidate.id,
                    expr: candidate.expr.to_string(),
                },
            );
        }
    }
    for hit in facts.searches {
        offer(
            hit.user_id,
            Via::Subscription {
                id: hit.id,
                expr: hit.expr.clone(),
            },
        );
    }
    for &follower in facts.followers {
        offer(
            follower,
            Via::Follow {
                author: facts.author_name.to_owned(),
            },
        );
    }
    best.into_iter()
        .map(|(user_id, via)| Delivery { user_id, via })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;

    fn cand(id: i64, user: i64, expr: &str, readable: &[&str]) -> Candidate {
        Candidate {
            id,
            user_id: user,
            expr: parse(expr).expect("valid expr"),
            readable_circles: readable.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn strongest_reason_wins_and_each_user_once() {
        let tags = vec!["release".to_string()];
        let circles = vec!["eng".to_string()];
        let facts = RouteFacts {
            author: 1,
            addressed: &[2, 1],
            pushed_circles: &circles,
            tags: &tags,
            followers: &[7, 2, 3],
            author_name: "ana",
            searches: &[],
        };
        let candidates = vec![
            cand(10, 1, "*@eng", &["eng"]),
            cand(11, 2, "*@eng", &["eng"]),
            cand(13, 3, "release@*", &["eng"]),
            cand(12, 3, "release@eng", &["eng"]),
            cand(14, 4, "urgent@eng", &["eng"]),
            cand(15, 5, "*@design", &["eng"]),
            cand(16, 6, "*@*", &[]),
        ];
        let out = route_activity(&facts, &candidates);
        assert_eq!(
            out,
            vec![
                Delivery {
                    user_id: 1,
                    via: Via::Author
                },
                Delivery {
                    user_id: 2,
                    via: Via::Addressed
                },
                Delivery {
                    user_id: 3,
                    via: Via::Subscription {
                        id: 12,
                        expr: "release@eng".into()
                    }
                },
                Delivery {
                    user_id: 7,
                    via: Via::Follow {
                        author: "ana".into()
                    }
                },
            ]
        );
    }

    #[test]
    fn saved_searches_rank_as_subscriptions_above_follows() {
        let tags: Vec<String> = vec![];
        let searches = vec![
            SearchHit {
                id: 20,
                user_id: 2,
                expr: "\"tokio\"".into(),
            },
            SearchHit {
                id: 21,
                user_id: 3,
                expr: "\"tokio\"@eng".into(),
            },
            SearchHit {
                id: 22,
                user_id: 4,
                expr: "\"panic\"".into(),
            },
        ];
        let circles = vec!["eng".to_string()];
        let facts = RouteFacts {
            author: 1,
            addressed: &[4],
            pushed_circles: &circles,
            tags: &tags,
            followers: &[2],
            author_name: "ana",
            searches: &searches,
        };
        let out = route_activity(&facts, &[cand(10, 3, "*@eng", &["eng"])]);
        let vias: Vec<(i64, String)> = out.iter().map(|d| (d.user_id, d.via.as_text())).collect();
        assert_eq!(
            vias,
            [
                (1, "author".to_owned()),
                (2, "subscription:20:\"tokio\"".to_owned()),
                (3, "subscription:10:*@eng".to_owned()),
                (4, "addressed".to_owned()),
            ]
        );
    }

    #[test]
    fn merged_circles_are_not_pushed() {
        let tags: Vec<String> = vec![];
        let facts = RouteFacts {
            author: 1,
            addressed: &[],
            pushed_circles: &[],
            tags: &tags,
            followers: &[],
            author_name: "ana",
            searches: &[],
        };
        let out = route_activity(&facts, &[cand(1, 2, "*@big", &["big"])]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].via, Via::Author);
    }
}
