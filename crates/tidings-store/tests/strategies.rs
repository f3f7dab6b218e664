//! Fan-out on write and merge at read must be indistinguishable: the same random community and
//! script (circles, subscriptions, follows, unfollows, blocks, mutes, items taken down by
//! moderators), run with every circle and producer
//! fanned out, with every one merged at read time, and mixed (sources switch as their audience
//! grows), must give every user the same inbox (items, order, `via`) and the same cursor walk.
//! Posts to user groups (`group:NAME`, members changing between posts) and direct messages
//! (their conversations) are part of the script.
//!
//! The same holds across adapters and nodes: with `TIDINGS_TEST_STORE` naming a PostgreSQL
//! database, the script also runs on PostgreSQL (one node, then two nodes sharing one database
//! with the steps alternating between them), and every node must read exactly what the
//! embedded store reads.

use proptest::prelude::*;
use serde_json::{Value, json};
use tidings_core::activity::{Limits, TypeStatus, normalize};
use tidings_core::expr::parse;
use tidings_core::moderation::{Decision, ReportReason};
use tidings_store::Store;
use tidings_store::model::{ActivitySearch, NewCircle, PublishInput, SearchSort};
use tidings_store::model::{InboxFilter, JoinPolicy, PageFrom, User, Visibility};
use tidings_store::{DecisionInput, SilenceKind, StoreConfig, StoreLocation};

#[derive(Debug, Clone)]
enum Step {
    /// User joins circle (owner adds them).
    Join(usize, usize),
    /// User subscribes: (user, tag or None, circle or None).
    Subscribe(usize, Option<usize>, Option<usize>),
    /// User publishes to a circle with tags, optionally also addressing another user.
    Publish(usize, usize, Vec<usize>, Option<usize>),
    /// User removes their oldest open subscription.
    Unsubscribe(usize),
    /// User leaves a circle.
    Leave(usize, usize),
    /// User hides the newest activity they can see (by index in the published list).
    Hide(usize, usize),
    /// User follows another.
    Follow(usize, usize),
    /// User unfollows another.
    Unfollow(usize, usize),
    /// User publishes to their followers (or, with true, the public) with tags.
    PublishToFollowers(usize, bool, Vec<usize>),
    /// User marks their notifications seen (and, with true, read) up to now.
    Mark(usize, bool),
    /// User saves a search for a word (posts carry their tags' words in their text) on one
    /// circle or (None) everywhere: `"alpha"@c1`, `"beta"`.
    SaveSearch(usize, usize, Option<usize>),
    /// User blocks (true) or mutes another.
    Silence(usize, usize, bool),
    /// User reports a published activity; the owner of its circle hides it (moderation).
    ModerationHide(usize, usize),
    /// Owner adds (true) or removes a user from their group `g` (made on first use).
    Group(usize, usize, bool),
    /// User publishes to their group `g` with tags (refused while they have none).
    PublishToGroup(usize, Vec<usize>),
    /// User sends a direct message to another (a conversation).
    Direct(usize, usize),
}

const TAGS: &[&str] = &["alpha", "beta", "gamma"];
const USERS: usize = 5;
const CIRCLES: usize = 3;

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..USERS, 0..CIRCLES).prop_map(|(u, c)| Step::Join(u, c)),
        1 => (
            0..USERS,
            proptest::option::of(0..TAGS.len()),
            proptest::option::of(0..CIRCLES)
        )
            .prop_map(|(u, t, c)| Step::Subscribe(u, t, c)),
        2 => (
            0..USERS,
            0..CIRCLES,
            proptest::collection::vec(0..TAGS.len(), 0..3),
            proptest::option::of(0..USERS)
        )
            .prop_map(|(u, c, t, to)| Step::Publish(u, c, t, to)),
        1 => (0..USERS).prop_map(Step::Unsubscribe),
        1 => (0..USERS, 0..CIRCLES).prop_map(|(u, c)| Step::Leave(u, c)),
        1 => (0..USERS, 0..64usize).prop_map(|(u, i)| Step::Hide(u, i)),
        1 => (0..USERS, 0..USERS, any::<bool>()).prop_map(|(u, v, b)| Step::Silence(u, v, b)),
        1 => (0..USERS, 0..64usize).prop_map(|(u, i)| Step::ModerationHide(u, i)),
        // Follows and posts to followers often enough that producers pass the copy limit and
        // the merge threshold while others keep following and unfollowing.
        2 => (0..USERS, 0..USERS).prop_map(|(u, v)| Step::Follow(u, v)),
        1 => (0..USERS, 0..USERS).prop_map(|(u, v)| Step::Unfollow(u, v)),
        3 => (
            0..USERS,
            any::<bool>(),
            proptest::collection::vec(0..TAGS.len(), 0..2)
        )
            .prop_map(|(u, p, t)| Step::PublishToFollowers(u, p, t)),
        1 => (0..USERS, any::<bool>()).prop_map(|(u, r)| Step::Mark(u, r)),
        1 => (0..USERS, 0..TAGS.len(), proptest::option::of(0..CIRCLES))
            .prop_map(|(u, w, c)| Step::SaveSearch(u, w, c)),
        // Groups: membership changes around posts to the group (a member removed before a
        // post must not get it, whichever way its audience is routed).
        2 => (0..USERS, 0..USERS, any::<bool>()).prop_map(|(u, v, a)| Step::Group(u, v, a)),
        2 => (0..USERS, proptest::collection::vec(0..TAGS.len(), 0..2))
            .prop_map(|(u, t)| Step::PublishToGroup(u, t)),
        1 => (0..USERS, 0..USERS).prop_map(|(u, v)| Step::Direct(u, v)),
    ]
}

/// One inbox item as compared across strategies: (seq, content, via).
type Item = (i64, String, String);

/// What the users read: each one's inbox walked in pages, then each one's notification feed
/// (seqs, then a last item with its unseen/unread counts), so one comparison covers all.
type Reads = Vec<Vec<Item>>;

/// Publishes a document as a user; the seq when accepted (routing awaited).
async fn publish(store: &Store, actor: &User, doc: Value) -> Option<(i64, String)> {
    let draft = normalize(&doc, &Limits::default(), &|_| TypeStatus::BuiltIn).expect("draft");
    let p = store
        .publish(PublishInput {
            actor: actor.clone(),
            draft,
            idempotency_key: None,
        })
        .await
        .ok()?;
    store.wait_routed(p.seq).await.expect("routed");
    Some((p.seq, p.id))
}

/// Where a run keeps its data.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// A fresh embedded store.
    Embedded,
    /// A fresh PostgreSQL database served by this many nodes.
    Postgres(usize),
    /// The embedded store, copied into a fresh PostgreSQL database (`tidings store copy`)
    /// before reading.
    CopiedToPostgres,
    /// The embedded store, its projections then re-derived from the log (`tidings rebuild`)
    /// before reading.
    Rebuilt,
    /// One PostgreSQL node, its projections then re-derived from the log before reading.
    RebuiltOnPostgres,
}

fn config(merge_threshold: i64) -> StoreConfig {
    StoreConfig {
        merge_threshold,
        follower_merge_threshold: merge_threshold,
        follow_copy_limit: 1,
        ..StoreConfig::default()
    }
}

/// The nodes of a fresh store at `place` and where it is (the temp dir must outlive them).
fn open_nodes(
    place: Place,
    merge_threshold: i64,
) -> (Vec<Store>, StoreLocation, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(merge_threshold);
    let (nodes, location) = match place {
        Place::Embedded | Place::CopiedToPostgres | Place::Rebuilt => {
            let location = StoreLocation::Embedded(dir.path().into());
            (
                vec![Store::open(&location, config).expect("open")],
                location,
            )
        }
        Place::Postgres(_) | Place::RebuiltOnPostgres => {
            let count = match place {
                Place::Postgres(count) => count,
                _ => 1,
            };
            let admin = std::env::var("TIDINGS_TEST_STORE").expect("TIDINGS_TEST_STORE");
            let name = format!("tidings_p_{}", uuid::Uuid::now_v7().simple());
            let url = tidings_store::create_postgres_database(&admin, &name).expect("database");
            let location = StoreLocation::Postgres(url);
            let nodes = (0..count)
                .map(|_| Store::open(&location, config.clone()).expect("open node"))
                .collect();
            (nodes, location)
        }
    };
    (nodes, location, dir)
}

/// Runs the script on the embedded store; returns each user's inbox walked in pages.
async fn run(merge_threshold: i64, script: &[Step], page: usize) -> Reads {
    run_at(Place::Embedded, merge_threshold, script, page).await
}

/// Runs the script at `place`, step `n` through node `n % nodes`; every node must then read
/// the same inboxes. Returns them.
async fn run_at(place: Place, merge_threshold: i64, script: &[Step], page: usize) -> Reads {
    let (mut nodes, location, dir) = open_nodes(place, merge_threshold);
    let store = &nodes[0];
    let mut users: Vec<User> = Vec::new();
    for i in 0..USERS {
        users.push(
            store
                .create_user(format!("u{i}"), format!("U{i}"), None, false)
                .await
                .expect("user"),
        );
    }
    // Circle i is owned by user i; the last one is private.
    for (c, owner) in users.iter().enumerate().take(CIRCLES) {
        store
            .create_circle(
                owner.clone(),
                NewCircle {
                    name: format!("c{c}"),
                    display_name: format!("C{c}"),
                    description: String::new(),
                    visibility: if c == CIRCLES - 1 {
                        Visibility::Private
                    } else {
                        Visibility::Public
                    },
                    join_policy: JoinPolicy::Open,
                },
            )
            .await
            .expect("circle");
    }
    let mut published: Vec<String> = Vec::new();
    // Each user's open subscriptions: (id, the circle it is on, None for `tag@*`).
    let mut open_subs: Vec<Vec<(i64, Option<usize>)>> = vec![Vec::new(); USERS];
    for (n, step) in script.iter().enumerate() {
        // Each step goes to the next node, which first catches up (a client reading its own
        // writes on another node waits for the same).
        let store = &nodes[n % nodes.len()];
        store.sync().await.expect("sync");
        match step {
            Step::Join(u, c) => {
                let _ = store
                    .put_member(
                        &format!("c{c}"),
                        &users[*u].username,
                        users[*c].clone(),
                        None,
                        None,
                    )
                    .await;
            }
            Step::Subscribe(u, t, c) => {
                let expr = format!(
                    "{}@{}",
                    t.map_or("*", |t| TAGS[t]),
                    c.map_or("*".to_owned(), |c| format!("c{c}"))
                );
                let expr = parse(&expr).expect("expr");
                if let Ok((sub, true)) = store.add_subscription(users[*u].clone(), expr).await {
                    open_subs[*u].push((sub.id, *c));
                }
            }
            Step::SaveSearch(u, w, c) => {
                let term = match c {
                    Some(c) => format!("\"{}\"@c{c}", TAGS[*w]),
                    None => format!("\"{}\"", TAGS[*w]),
                };
                let saved = tidings_core::saved::parse_saved(&term).expect("term");
                if let Ok((sub, true)) = store.add_subscription(users[*u].clone(), saved).await {
                    open_subs[*u].push((sub.id, *c));
                }
            }
            Step::Publish(u, c, tags, to) => {
                let mut audience = vec![format!("circle:c{c}")];
                if let Some(to) = to {
                    audience.push(format!("user:u{to}"));
                }
                let tags: Vec<&str> = tags.iter().map(|t| TAGS[*t]).collect();
                // The tags' words in the text too, for saved searches to find.
                let content = format!("m{n} {}", tags.join(" "));
                let doc: Value =
                    json!({"object": {"content": content}, "to": audience, "tag": tags});
                if let Some((_, id)) = publish(store, &users[*u], doc).await {
                    published.push(id);
                }
            }
            Step::PublishToFollowers(u, public, tags) => {
                let tags: Vec<&str> = tags.iter().map(|t| TAGS[*t]).collect();
                let to = if *public { "public" } else { "followers" };
                let doc = json!({"object": {"content": format!("m{n} {}", tags.join(" "))}, "to": [to], "tag": tags});
                if let Some((_, id)) = publish(store, &users[*u], doc).await {
                    published.push(id);
                }
            }
            Step::Follow(u, v) => {
                let doc = json!({"type": "Follow", "object": format!("user:u{v}"), "to": [format!("user:u{v}")]});
                publish(store, &users[*u], doc).await;
            }
            Step::Unfollow(u, v) => {
                if let Ok(Some(follow)) = store.follow_activity(&users[*u], &format!("u{v}")).await
                {
                    publish(store, &users[*u], json!({"type": "Undo", "object": follow})).await;
                }
            }
            Step::Unsubscribe(u) => {
                if !open_subs[*u].is_empty() {
                    let (id, _) = open_subs[*u].remove(0);
                    store
                        .remove_subscription(users[*u].id, id)
                        .await
                        .expect("unsubscribe");
                }
            }
            Step::Leave(u, c) => {
                let left = store
                    .remove_member(&format!("c{c}"), &users[*u].username, users[*u].clone())
                    .await;
                if left.is_ok() {
                    // Leaving a circle closes one's subscriptions on it.
                    open_subs[*u].retain(|(_, on)| *on != Some(*c));
                }
            }
            Step::Hide(u, i) => {
                if let Some(id) = published.get(*i) {
                    let _ = store.hide_in_inbox(users[*u].clone(), id).await;
                }
            }
            Step::Silence(u, v, block) => {
                let kind = if *block {
                    SilenceKind::Block
                } else {
                    SilenceKind::Mute
                };
                let _ = store
                    .silence(users[*u].clone(), &format!("u{v}"), kind)
                    .await;
            }
            Step::ModerationHide(u, i) => {
                if let Some(id) = published.get(*i)
                    && let Ok(report) = store
                        .report(users[*u].clone(), id, ReportReason::Spam, String::new())
                        .await
                    && let Some(owner) = report
                        .circles
                        .first()
                        .and_then(|c| c.strip_prefix('c'))
                        .and_then(|c| c.parse::<usize>().ok())
                {
                    let hide = DecisionInput {
                        decision: Decision::Hide,
                        reason: String::new(),
                        until: None,
                    };
                    let _ = store
                        .resolve_reports(&report.circles[0], id, users[owner].clone(), hide)
                        .await;
                }
            }
            Step::Group(u, v, add) => {
                let reference =
                    tidings_core::conversations::GroupRef::parse("g").expect("group ref");
                let member = users[*v].username.clone();
                let exists = store
                    .group(users[*u].clone(), reference.clone())
                    .await
                    .is_ok();
                let _ = match (exists, *add) {
                    (false, true) => store
                        .create_group(users[*u].clone(), "g".into(), None, vec![member])
                        .await
                        .map(|_| ()),
                    (true, true) => store
                        .add_group_members(users[*u].clone(), reference, vec![member])
                        .await
                        .map(|_| ()),
                    (true, false) => store
                        .remove_group_members(users[*u].clone(), reference, vec![member])
                        .await
                        .map(|_| ()),
                    (false, false) => Ok(()),
                };
            }
            Step::PublishToGroup(u, tags) => {
                let tags: Vec<&str> = tags.iter().map(|t| TAGS[*t]).collect();
                let doc =
                    json!({"object": {"content": format!("m{n}")}, "to": ["group:g"], "tag": tags});
                if let Some((_, id)) = publish(store, &users[*u], doc).await {
                    published.push(id);
                }
            }
            Step::Direct(u, v) => {
                let doc =
                    json!({"object": {"content": format!("m{n}")}, "to": [format!("user:u{v}")]});
                if let Some((_, id)) = publish(store, &users[*u], doc).await {
                    published.push(id);
                }
            }
            Step::Mark(u, read) => {
                store
                    .mark_feed(users[*u].clone(), "notifications", None, *read)
                    .await
                    .expect("mark");
            }
        }
    }
    if let Place::CopiedToPostgres = place {
        // Move the finished community into PostgreSQL and read it there instead.
        for node in &nodes {
            node.close();
        }
        let admin = std::env::var("TIDINGS_TEST_STORE").expect("TIDINGS_TEST_STORE");
        let name = format!("tidings_y_{}", uuid::Uuid::now_v7().simple());
        let url = tidings_store::create_postgres_database(&admin, &name).expect("database");
        let target = StoreLocation::Postgres(url);
        tidings_store::copy_store(&StoreLocation::Embedded(dir.path().into()), &target)
            .expect("copy");
        let copied = Store::open(&target, config(merge_threshold)).expect("open the copy");
        let report = copied.verify().await.expect("verify the copy");
        assert!(report.ok(), "{:?}", report.problems);
        nodes = vec![copied];
    }
    if let Place::Rebuilt | Place::RebuiltOnPostgres = place {
        // Stop the store, wipe and re-derive its projections from the log, serve it again.
        for node in &nodes {
            node.close();
        }
        drop(nodes);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let report = loop {
            match tidings_store::rebuild(&location, &config(merge_threshold)) {
                // A closed node's PostgreSQL sessions end a moment after it lets go of them.
                Err(tidings_store::StoreError::Locked { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => break other.expect("rebuild"),
            }
        };
        // The rebuild routed the whole log itself (the reopened store has nothing left to do).
        assert_eq!(report.routed, report.last_seq, "{report:?}");
        nodes = vec![Store::open(&location, config(merge_threshold)).expect("reopen")];
    }
    let mut per_node = Vec::new();
    for store in &nodes {
        store.sync().await.expect("sync");
        let last = store.last_seq().await.expect("last seq");
        store.wait_routed(last).await.expect("routed");
        per_node.push(read_inboxes(store, &users, page).await);
    }
    for node in &nodes {
        node.close();
    }
    for (i, inboxes) in per_node.iter().enumerate().skip(1) {
        assert_eq!(
            inboxes, &per_node[0],
            "node {i} reads differently from node 0"
        );
    }
    per_node.swap_remove(0)
}

/// Every user's inbox, walked newest first in pages of `page`.
async fn read_inboxes(store: &Store, users: &[User], page: usize) -> Reads {
    let mut inboxes = Vec::new();
    let notifications = tidings_core::feeds::FeedSpec::defaults()
        .into_iter()
        .find(|f| f.name == "notifications")
        .expect("notifications feed");
    for user in users {
        let mut items = Vec::new();
        let mut from = PageFrom::Newest;
        loop {
            let p = store
                .inbox(user.clone(), InboxFilter::default(), from, page)
                .await
                .expect("inbox");
            for item in &p.items {
                let doc: Value = serde_json::from_str(&item.activity).expect("json");
                items.push((
                    item.seq,
                    doc["object"]["content"].as_str().unwrap_or("").to_owned(),
                    item.via.clone().unwrap_or_default(),
                ));
            }
            match p.items.last() {
                Some(last) if p.has_older => from = PageFrom::Before(last.seq),
                _ => break,
            }
        }
        inboxes.push(items);
    }
    // What each user finds searching everything (an exclusion alone matches every indexed
    // activity): the search index is a projection too, and visibility is part of its query.
    for user in users {
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let hits = store
                .search_activities(
                    user.clone(),
                    ActivitySearch {
                        query: tidings_core::search::parse("-nothingatall").expect("query"),
                        object_types: Vec::new(),
                        since: None,
                        until: None,
                        sort: SearchSort::Newest,
                        after,
                        limit: page,
                    },
                )
                .await
                .expect("search");
            found.extend(
                hits.items
                    .iter()
                    .map(|h| (h.seq, h.snippet.clone(), "search".to_owned())),
            );
            match hits.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        inboxes.push(found);
    }
    for user in users {
        let notes = store
            .notification_page(user.clone(), &notifications, PageFrom::Newest, 100)
            .await
            .expect("notifications");
        let counts = store.feed_counts(user, &notifications).expect("counts");
        let mut feed: Vec<Item> = notes
            .items
            .iter()
            .map(|i| (i.seq, String::new(), i.via.clone().unwrap_or_default()))
            .collect();
        feed.push((
            counts.seen_cursor,
            format!("unseen {} unread {}", counts.unseen, counts.unread),
            counts.read_cursor.to_string(),
        ));
        inboxes.push(feed);
    }
    // Each user's conversations (a projection of the log too): last message, people, unread.
    for user in users {
        let list = store
            .conversations(user.clone(), PageFrom::Newest, 100)
            .await
            .expect("conversations");
        inboxes.push(
            list.items
                .iter()
                .map(|c| (c.last_seq, c.participants.join(","), c.unread.to_string()))
                .collect(),
        );
    }
    inboxes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn fan_out_and_merge_at_read_read_the_same(
        script in proptest::collection::vec(step(), 1..64),
        page in 1usize..5,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let pushed = runtime.block_on(run(i64::MAX, &script, page));
        let merged = runtime.block_on(run(0, &script, page));
        let mixed = runtime.block_on(run(1, &script, page));
        prop_assert_eq!(&pushed, &merged);
        prop_assert_eq!(&pushed, &mixed);
        // Walking in pages yields each item once.
        for inbox in pushed.iter().take(USERS) {
            let mut seen = std::collections::HashSet::new();
            for (seq, _, _) in inbox {
                prop_assert!(seen.insert(*seq), "{} twice", seq);
            }
        }
    }
}

/// Whether the PostgreSQL runs are configured; says so loudly when they are not.
fn postgres_configured() -> bool {
    if std::env::var("TIDINGS_TEST_STORE").is_ok() {
        return true;
    }
    eprintln!(
        "!!! PostgreSQL runs of the strategy property test did NOT run: set TIDINGS_TEST_STORE \
         (e.g. postgres://postgres@127.0.0.1/test) to run them"
    );
    assert!(
        std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
        "TIDINGS_REQUIRE_POSTGRES is set but TIDINGS_TEST_STORE is not"
    );
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// DESIGN principle 2: the projections are derived from the log. Wiping them and routing
    /// the whole log again (`tidings rebuild`) gives every user exactly what the live store
    /// gave them: inbox items, order, `via`, cursor walk, notifications and counts.
    #[test]
    fn rebuilt_projections_read_what_the_live_store_reads(
        script in proptest::collection::vec(step(), 1..64),
        page in 1usize..5,
        merge_threshold in prop_oneof![Just(0i64), Just(1), Just(i64::MAX)],
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let live = runtime.block_on(run_at(Place::Embedded, merge_threshold, &script, page));
        let rebuilt = runtime.block_on(run_at(Place::Rebuilt, merge_threshold, &script, page));
        prop_assert_eq!(&live, &rebuilt);
        if std::env::var("TIDINGS_TEST_STORE").is_ok() {
            let rebuilt =
                runtime.block_on(run_at(Place::RebuiltOnPostgres, merge_threshold, &script, page));
            prop_assert_eq!(&live, &rebuilt);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn postgres_nodes_read_what_the_embedded_store_reads(
        script in proptest::collection::vec(step(), 1..48),
        page in 1usize..5,
        merge_threshold in prop_oneof![Just(0i64), Just(1), Just(i64::MAX)],
    ) {
        if postgres_configured() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let embedded = runtime.block_on(run_at(Place::Embedded, merge_threshold, &script, page));
            let one = runtime.block_on(run_at(Place::Postgres(1), merge_threshold, &script, page));
            let two = runtime.block_on(run_at(Place::Postgres(2), merge_threshold, &script, page));
            let copied =
                runtime.block_on(run_at(Place::CopiedToPostgres, merge_threshold, &script, page));
            prop_assert_eq!(&embedded, &one);
            prop_assert_eq!(&embedded, &two);
            prop_assert_eq!(&embedded, &copied);
        }
    }
}
