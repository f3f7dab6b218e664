//! `tidings seed`: a synthetic community written through the engine (the store port, so routing
//! is real), deterministic from `--seed`.
//!
//! Shape: circle sizes follow a power law (circle *i* has about `largest · i^-0.6` members, so a
//! few are huge and most are small); every member is subscribed `*@circle` by joining; some users
//! add tag-filtered subscriptions; activities pick a circle by size, an author among its members,
//! tags from a Zipf-like vocabulary, and some are replies or likes. Users follow `--follow-degree`
//! others each, picked with a power-law in-degree (a few producers with very many followers).

use anyhow::Context;
use futures::future::join_all;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tidings_core::activity::{Limits, TypeStatus, normalize};
use tidings_core::expr::parse;
use tidings_store::model::{JoinPolicy, User, Visibility};
use tidings_store::model::{NewCircle, PublishInput};
use tidings_store::{Store, StoreError};

/// Which community to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Power-law circles, tag-filtered subscriptions, activities with replies and likes.
    Community,
    /// The Stream-Framework workload's follow graph and nothing else: every user owns a circle
    /// `f-USERNAME` whose members are `--follows` random other users (its followers). Follows
    /// are modelled as circles until the feeds issue lands; no activity is published, so
    /// `tidings bench fanout` can time the publishes over HTTP.
    FollowCircles,
    /// The Stream-Framework workload's follow graph with real follows: every user is followed
    /// by `--follows` random other users, each through a Follow activity (the same graph as
    /// follow-circles, drawn from the same seed); no post is published, so `tidings bench
    /// fanout` can time the posts to followers over HTTP.
    Follows,
    /// One producer, `celebrity`, followed by `--users` others (each a Follow activity
    /// through the engine), for `tidings bench celebrity`. Tokens: the celebrity's first.
    Celebrity,
    /// A small realistic community for the README screenshot and for trying the web app:
    /// named people, circles, posts with replies and reactions (the size flags are ignored;
    /// password `demo-password`, tokens first for `ana`).
    Demo,
}

/// What to generate.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedArgs {
    /// Only create activity-feed-system's demo users (ivan `abc123`, nico `abc124`, eric
    /// `abc125`, ivan following nico), so the README's compat examples work as written.
    #[arg(long)]
    pub demo: bool,
    /// Which community to generate.
    #[arg(long, value_enum, default_value_t = Shape::Community)]
    pub shape: Shape,
    /// Followers of each user (follow-circles).
    #[arg(long, default_value_t = 100)]
    pub follows: usize,
    /// Users each user follows, drawn with a power-law in-degree (community).
    #[arg(long, default_value_t = 5)]
    pub follow_degree: usize,
    /// Users to create.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Circles to create.
    #[arg(long, default_value_t = 50)]
    pub circles: usize,
    /// Members of the largest circle.
    #[arg(long, default_value_t = 500)]
    pub largest: usize,
    /// Activities to publish.
    #[arg(long, default_value_t = 10_000)]
    pub activities: usize,
    /// Session tokens to mint (written to `<data-dir>/seed-tokens.txt` for `tidings bench`).
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    /// Random seed: the same seed gives the same community.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Requests in flight against the store (bigger batches per commit).
    #[arg(long, default_value_t = 2_000)]
    pub concurrency: usize,
}

const TAGS: &[&str] = &[
    "release", "design", "urgent", "question", "idea", "bug", "news", "review", "meetup", "docs",
    "perf", "security", "ops", "hiring", "random", "music", "photo", "travel", "food", "books",
];

fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// Index drawn with probability proportional to `weights` (given as a cumulative table).
fn pick(cumulative: &[f64], rng: &mut StdRng) -> usize {
    let total = cumulative.last().copied().unwrap_or(1.0);
    let x = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c < x)
        .min(cumulative.len().saturating_sub(1))
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

/// Runs futures with bounded concurrency, advancing a progress bar.
async fn in_chunks<F, T>(futures: Vec<F>, chunk: usize, bar: &ProgressBar) -> Vec<T>
where
    F: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(futures.len());
    let mut iter = futures.into_iter().peekable();
    while iter.peek().is_some() {
        let batch: Vec<F> = iter.by_ref().take(chunk).collect();
        let n = batch.len();
        out.extend(join_all(batch).await);
        bar.inc(n as u64);
    }
    bar.finish();
    out
}

/// Creates `count` users named after their number (continuing after `offset` existing ones).
async fn create_users(
    store: &Store,
    count: usize,
    offset: usize,
    chunk: usize,
) -> anyhow::Result<Vec<User>> {
    // One password hash for every seeded user: argon2 per user would dominate the run.
    let hash = tidings_server::auth::hash_password("seed-password")
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let bar_users = bar(count, "users");
    let futures: Vec<_> = (0..count)
        .map(|i| {
            let name = format!("u{:06}", offset + i);
            store.create_user(
                name.clone(),
                format!("User {name}"),
                Some(hash.clone()),
                false,
            )
        })
        .collect();
    in_chunks(futures, chunk, &bar_users)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("creating users")
}

/// Mints a session token for each of the first `count` users into `<data-dir>/seed-tokens.txt`.
async fn write_tokens(
    store: &Store,
    data_dir: &Path,
    users: &[User],
    count: usize,
    chunk: usize,
) -> anyhow::Result<std::path::PathBuf> {
    let users = &users[..count.min(users.len())];
    let tokens: Vec<(String, String)> = users
        .iter()
        .map(|_| tidings_server::auth::new_token())
        .collect();
    let futures: Vec<_> = users
        .iter()
        .zip(&tokens)
        .map(|(user, (_, hash))| store.create_session(user.id, hash.clone()))
        .collect();
    let bar_tokens = bar(users.len(), "tokens");
    for result in in_chunks(futures, chunk, &bar_tokens).await {
        result.context("creating a session")?;
    }
    let mut lines = String::new();
    for (user, (token, _)) in users.iter().zip(&tokens) {
        lines.push_str(&format!("{} {}\n", user.username, token));
    }
    // With a PostgreSQL store nothing else creates the data directory.
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let tokens_path = data_dir.join("seed-tokens.txt");
    std::fs::write(&tokens_path, lines)
        .with_context(|| format!("writing {}", tokens_path.display()))?;
    Ok(tokens_path)
}

/// Generates the community into `store`; writes tokens next to the data.
pub async fn seed(store: &Store, data_dir: &Path, args: &SeedArgs) -> anyhow::Result<()> {
    if args.demo {
        let users = tidings_server::compat::afs::seed_demo(store)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        for (user, (_, key)) in users.iter().zip(tidings_server::compat::afs::DEMO_USERS) {
            println!("{} (id {}): X-App-Key {key}", user.username, user.id);
        }
        return Ok(());
    }
    match args.shape {
        Shape::FollowCircles => return seed_follow_circles(store, data_dir, args).await,
        Shape::Celebrity => return seed_celebrity(store, data_dir, args).await,
        Shape::Follows => return seed_follows(store, data_dir, args).await,
        Shape::Demo => return crate::seed_demo::seed_demo(store, data_dir).await,
        Shape::Community => {}
    }
    if args.users < 2 || args.circles < 1 || args.largest < 2 {
        anyhow::bail!("seed needs --users >= 2, --circles >= 1 and --largest >= 2");
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let chunk = args.concurrency.max(1);
    let offset = store.user_count().await?;
    let users = create_users(store, args.users, offset as usize, chunk).await?;

    // Circles with power-law sizes.
    let sizes: Vec<usize> = (0..args.circles)
        .map(|i| {
            let size = args.largest as f64 * ((i + 1) as f64).powf(-0.6);
            (size as usize).clamp(2, users.len().max(2))
        })
        .collect();
    let mut circles = Vec::with_capacity(args.circles);
    let mut members: Vec<Vec<usize>> = Vec::with_capacity(args.circles);
    let bar_circles = bar(args.circles, "circles");
    for (i, &size) in sizes.iter().enumerate() {
        let owner = rng.random_range(0..users.len());
        let name = format!(
            "c{:04}-{}",
            offset as usize / 1000 + i,
            TAGS[i % TAGS.len()]
        );
        let circle = store
            .create_circle(
                users[owner].clone(),
                NewCircle {
                    name: name.clone(),
                    display_name: format!("Circle {i}"),
                    description: format!("A seeded circle about {}", TAGS[i % TAGS.len()]),
                    visibility: if i % 10 == 9 {
                        Visibility::Private
                    } else {
                        Visibility::Public
                    },
                    join_policy: JoinPolicy::Open,
                },
            )
            .await
            .with_context(|| format!("creating circle {name}"))?;
        // Distinct members: a random sample of the users, owner first.
        let mut chosen = std::collections::BTreeSet::new();
        chosen.insert(owner);
        while chosen.len() < size.min(users.len()) {
            chosen.insert(rng.random_range(0..users.len()));
        }
        let list: Vec<usize> = std::iter::once(owner)
            .chain(chosen.into_iter().filter(|&u| u != owner))
            .collect();
        circles.push((circle, owner));
        members.push(list);
        bar_circles.inc(1);
    }
    bar_circles.finish();

    let total_members: usize = members.iter().map(|m| m.len().saturating_sub(1)).sum();
    let bar_members = bar(total_members, "memberships");
    let mut futures = Vec::with_capacity(total_members);
    for ((circle, owner), list) in circles.iter().zip(&members) {
        for &member in list.iter().skip(1) {
            futures.push(store.put_member(
                &circle.name,
                &users[member].username,
                users[*owner].clone(),
                None,
                None,
            ));
        }
    }
    for result in in_chunks(futures, chunk, &bar_members).await {
        result.context("adding a member")?;
    }

    // Tag-filtered subscriptions for one user in five.
    let mut subs = Vec::new();
    for (u, user) in users.iter().enumerate() {
        if u % 5 == 0 {
            let tag = TAGS[rng.random_range(0..TAGS.len())];
            let expr = if u % 2 == 0 {
                format!("{tag}@*")
            } else {
                format!(
                    "{tag}@{}",
                    circles[rng.random_range(0..circles.len())].0.name
                )
            };
            let expr = parse(&expr).map_err(|e| anyhow::anyhow!(e.message))?;
            subs.push(store.add_subscription(user.clone(), expr));
        }
    }
    let bar_subs = bar(subs.len(), "subscriptions");
    for result in in_chunks(subs, chunk, &bar_subs).await {
        // Private circles refuse outsiders' subscriptions; that is expected here.
        let _ = result;
    }

    // Follows with a power-law in-degree: user i is picked as a followee with weight
    // 1/(i+1)^0.8, so a few producers have very many followers; `--follow-degree` per user.
    if args.follow_degree > 0 && users.len() > 1 {
        let followee_weights = cumulative((1..=users.len()).map(|r| (r as f64).powf(-0.8)));
        let mut pairs = Vec::new();
        for (u, _) in users.iter().enumerate() {
            let mut chosen = std::collections::BTreeSet::new();
            let want = args.follow_degree.min(users.len() - 1);
            let mut tries = 0;
            while chosen.len() < want && tries < want * 20 {
                tries += 1;
                let v = pick(&followee_weights, &mut rng);
                if v != u {
                    chosen.insert(v);
                }
            }
            pairs.extend(chosen.into_iter().map(|v| (u, v)));
        }
        follow_all(store, &users, &pairs, chunk).await?;
    }

    // Activities: circle by size, author among members, Zipf-ish tags, replies and likes; one
    // in five Creates also goes to the author's followers.
    let circle_weights = cumulative(sizes.iter().map(|&s| s as f64));
    let tag_weights = cumulative((1..=TAGS.len()).map(|r| 1.0 / r as f64));
    let limits = Limits::default();
    let bar_activities = bar(args.activities, "activities");
    let mut recent: Vec<Vec<String>> = vec![Vec::new(); circles.len()];
    let mut published = 0usize;
    while published < args.activities {
        let n = chunk.min(args.activities - published);
        let mut batch = Vec::with_capacity(n);
        let mut batch_circles = Vec::with_capacity(n);
        for k in 0..n {
            let c = pick(&circle_weights, &mut rng);
            let list = &members[c];
            let author = list[rng.random_range(0..list.len())];
            let circle_name = &circles[c].0.name;
            let roll = rng.random_range(0..100);
            let body = if roll < 10 && !recent[c].is_empty() {
                let target = &recent[c][rng.random_range(0..recent[c].len())];
                json!({"type": "Like", "object": target, "to": [format!("circle:{circle_name}")]})
            } else {
                let mut tags = vec![TAGS[pick(&tag_weights, &mut rng)]];
                if rng.random_bool(0.3) {
                    tags.push(TAGS[pick(&tag_weights, &mut rng)]);
                }
                let mut to = vec![format!("circle:{circle_name}")];
                if roll >= 80 {
                    to.push("followers".to_owned());
                }
                let mut doc = json!({
                    "type": "Create",
                    "object": {"type": "Note", "content": format!("Seeded note {} in {circle_name}", published + k)},
                    "to": to,
                    "tag": tags,
                });
                if roll < 30 && !recent[c].is_empty() {
                    doc["inReplyTo"] = json!(recent[c][rng.random_range(0..recent[c].len())]);
                }
                doc
            };
            let draft = normalize(&body, &limits, &|_| TypeStatus::BuiltIn)
                .map_err(|e| anyhow::anyhow!("seed draft: {e}"))?;
            batch.push(store.publish(PublishInput {
                actor: users[author].clone(),
                draft,
                idempotency_key: None,
            }));
            batch_circles.push(c);
        }
        let results = join_all(batch).await;
        for (result, c) in results.into_iter().zip(batch_circles) {
            let done = match result {
                Ok(done) => done,
                // A second like of the same activity by the same person is refused: skip it.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e).context("publishing"),
            };
            let slot = &mut recent[c];
            if slot.len() >= 32 {
                slot.remove(0);
            }
            slot.push(done.id);
        }
        published += n;
        bar_activities.inc(n as u64);
    }
    bar_activities.finish();

    let bar_route = ProgressBar::new_spinner();
    bar_route.set_message("waiting for routing to finish");
    let last = store.last_seq().await?;
    store.wait_routed(last).await?;
    bar_route.finish_and_clear();

    // Tokens for the load tool.
    let tokens_path = write_tokens(store, data_dir, &users, args.tokens, chunk).await?;

    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "seeded {} users, {} circles ({} memberships), {} activities in {:.1}s; tokens in {}",
        users.len(),
        circles.len(),
        total_members + circles.len(),
        args.activities,
        elapsed,
        tokens_path.display()
    );
    Ok(())
}

/// The follow graph of the Stream-Framework workload, expressed as one follower circle per user.
async fn seed_follow_circles(
    store: &Store,
    data_dir: &Path,
    args: &SeedArgs,
) -> anyhow::Result<()> {
    if args.users < 2 || args.follows < 1 || args.follows >= args.users {
        anyhow::bail!(
            "seed --shape follow-circles needs --users >= 2 and 1 <= --follows < --users"
        );
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let chunk = args.concurrency.max(1);
    let offset = store.user_count().await?;
    let users = create_users(store, args.users, offset as usize, chunk).await?;

    let bar_circles = bar(users.len(), "circles");
    let futures: Vec<_> = users
        .iter()
        .map(|user| {
            store.create_circle(
                user.clone(),
                NewCircle {
                    name: follower_circle(&user.username),
                    display_name: format!("Followers of {}", user.username),
                    description: "Stands in for a follow graph until follows land".to_owned(),
                    visibility: Visibility::Public,
                    // Nobody joins a follower list by themselves: the owner adds them.
                    join_policy: JoinPolicy::Invite,
                },
            )
        })
        .collect();
    for result in in_chunks(futures, chunk, &bar_circles).await {
        result.context("creating a follower circle")?;
    }

    // `follows` distinct followers per user, never the user itself, drawn like sf_bench.py
    // draws followees (a uniform sample of the others).
    let n = users.len();
    let names: Vec<String> = users.iter().map(|u| follower_circle(&u.username)).collect();
    let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(n * args.follows);
    for owner in 0..n {
        let mut chosen = std::collections::BTreeSet::new();
        while chosen.len() < args.follows {
            let pick = rng.random_range(0..n - 1);
            chosen.insert(if pick >= owner { pick + 1 } else { pick });
        }
        pairs.extend(chosen.into_iter().map(|f| (owner as u32, f as u32)));
    }
    // Futures are made one chunk at a time: a million pending ones would hold gigabytes.
    let bar_members = bar(pairs.len(), "follows");
    for batch in pairs.chunks(chunk) {
        let futures = batch.iter().map(|&(owner, follower)| {
            let owner = owner as usize;
            store.put_member(
                &names[owner],
                &users[follower as usize].username,
                users[owner].clone(),
                None,
                None,
            )
        });
        for result in join_all(futures).await {
            result.context("adding a follower")?;
        }
        bar_members.inc(batch.len() as u64);
    }
    bar_members.finish();
    let tokens_path = write_tokens(store, data_dir, &users, args.tokens, chunk).await?;
    println!(
        "seeded {} users, each followed by {} others (as follower circles f-USERNAME) in {:.1}s; \
         tokens in {}",
        n,
        args.follows,
        started.elapsed().as_secs_f64(),
        tokens_path.display()
    );
    Ok(())
}

/// Publishes a Follow for each `(follower, followee)` pair, `chunk` at a time.
async fn follow_all(
    store: &Store,
    users: &[User],
    pairs: &[(usize, usize)],
    chunk: usize,
) -> anyhow::Result<()> {
    let bar_follows = bar(pairs.len(), "follows");
    for batch in pairs.chunks(chunk) {
        let futures = batch.iter().map(|&(follower, followee)| {
            let doc =
                json!({"type": "Follow", "object": format!("user:{}", users[followee].username)});
            let draft = normalize(&doc, &Limits::default(), &|_| TypeStatus::BuiltIn);
            let actor = users[follower].clone();
            async move {
                let draft = draft.map_err(|e| anyhow::anyhow!(e.message))?;
                store
                    .publish(PublishInput {
                        actor,
                        draft,
                        idempotency_key: None,
                    })
                    .await
                    .context("following")
            }
        });
        for result in join_all(futures).await {
            result?;
        }
        bar_follows.inc(batch.len() as u64);
    }
    bar_follows.finish();
    Ok(())
}

/// `--users` users, each followed by `--follows` random others through Follow activities.
async fn seed_follows(store: &Store, data_dir: &Path, args: &SeedArgs) -> anyhow::Result<()> {
    if args.users < 2 || args.follows < 1 || args.follows >= args.users {
        anyhow::bail!("seed --shape follows needs --users >= 2 and 1 <= --follows < --users");
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let chunk = args.concurrency.max(1);
    let offset = store.user_count().await?;
    let users = create_users(store, args.users, offset as usize, chunk).await?;
    // The same draw as follow-circles: `follows` distinct followers per user.
    let n = users.len();
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(n * args.follows);
    for followee in 0..n {
        let mut chosen = std::collections::BTreeSet::new();
        while chosen.len() < args.follows {
            let pick = rng.random_range(0..n - 1);
            chosen.insert(if pick >= followee { pick + 1 } else { pick });
        }
        pairs.extend(chosen.into_iter().map(|f| (f, followee)));
    }
    // Not addressed to the followee: follow notifications are not what is measured.
    follow_all(store, &users, &pairs, chunk).await?;
    // The follows are routed in the background; the seed is done when they all are.
    let last = store.last_seq().await?;
    store.wait_routed(last).await?;
    let tokens_path = write_tokens(store, data_dir, &users, args.tokens, chunk).await?;
    println!(
        "seeded {} users, each followed by {} others (Follow activities) in {:.1}s; tokens in {}",
        n,
        args.follows,
        started.elapsed().as_secs_f64(),
        tokens_path.display()
    );
    Ok(())
}

/// A producer with `--users` followers, each following through a Follow activity.
async fn seed_celebrity(store: &Store, data_dir: &Path, args: &SeedArgs) -> anyhow::Result<()> {
    if args.users < 1 {
        anyhow::bail!("seed --shape celebrity needs --users >= 1");
    }
    let started = Instant::now();
    let chunk = args.concurrency.max(1);
    let hash = tidings_server::auth::hash_password("seed-password")
        .map_err(|e| anyhow::anyhow!(e.message))?;
    let celebrity = store
        .create_user("celebrity".into(), "Celebrity".into(), Some(hash), false)
        .await
        .context("creating the celebrity (seed into an empty data dir)")?;
    let offset = store.user_count().await?;
    let fans = create_users(store, args.users, offset as usize, chunk).await?;
    // Not addressed to the celebrity: a million follow notifications are not what is measured.
    let follow = normalize(
        &json!({"type": "Follow", "object": "user:celebrity"}),
        &Limits::default(),
        &|_| TypeStatus::BuiltIn,
    )
    .map_err(|e| anyhow::anyhow!(e.message))?;
    let bar_follows = bar(fans.len(), "follows");
    for batch in fans.chunks(chunk) {
        let futures = batch.iter().map(|fan| {
            store.publish(PublishInput {
                actor: fan.clone(),
                draft: follow.clone(),
                idempotency_key: None,
            })
        });
        for result in join_all(futures).await {
            result.context("following the celebrity")?;
        }
        bar_follows.inc(batch.len() as u64);
    }
    bar_follows.finish();
    let mut users = vec![celebrity];
    users.extend(fans);
    let tokens_path = write_tokens(store, data_dir, &users, args.tokens.max(2), chunk).await?;
    println!(
        "seeded `celebrity` with {} followers in {:.1}s; tokens in {} (the celebrity's first)",
        args.users,
        started.elapsed().as_secs_f64(),
        tokens_path.display()
    );
    Ok(())
}

/// The circle that stands for `username`'s followers.
pub fn follower_circle(username: &str) -> String {
    format!("f-{username}")
}
