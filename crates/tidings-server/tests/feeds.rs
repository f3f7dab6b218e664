//! HTTP-level tests of follows, feeds (flat, notification, aggregated), seen/read markers and
//! reactions.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use tidings_core::feeds::{FeedKind, FeedSpec, GroupPart};
use tidings_server::config::ServerConfig;
use tidings_store::StoreConfig;

fn id_of(activity: &Value) -> String {
    activity["id"].as_str().expect("id").to_owned()
}

/// Reasons of the items by `actor` (a reader's own Follow is in their home too).
fn vias_of(page: &Value, actor: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["activity"]["actor"] == format!("user:{actor}"))
                .map(|i| i["via"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn vias(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["via"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn home(s: &TestServer, token: &str) -> Value {
    let r = s.get(token, "/feeds/home?limit=100").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

async fn start(store: StoreConfig) -> TestServer {
    TestServer::start_with(ServerConfig::default(), store).await
}

#[tokio::test]
async fn follow_copies_recent_posts_and_unfollow_removes_them() {
    let s = start(StoreConfig {
        follow_copy_limit: 3,
        ..StoreConfig::default()
    })
    .await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    s.circle(&ana, "secret", "private", "invite").await;
    for i in 1..=4 {
        s.note(&ana, &format!("public {i}"), &["public"], &[]).await;
    }
    let followers_only = s.note(&ana, "for followers", &["followers"], &[]).await;
    s.note(&ana, "circle only", &["circle:secret"], &[]).await;

    // Before following, bob cannot read the followers-only post.
    let r = s
        .get(&bob, &format!("/activities/{}", id_of(&followers_only)))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = s.post(&bob, "/users/ana/follow", json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["type"], "Follow");
    assert_eq!(r.body["object"], "user:ana");
    s.settle().await;

    // The copy limit keeps the newest three follower-visible posts (never the circle one).
    let page = home(&s, &bob).await;
    let contents = TestServer::contents(&page);
    assert_eq!(contents, vec!["for followers", "public 4", "public 3"]);
    assert_eq!(vias_of(&page, "ana"), vec!["follow:ana"; 3], "{page}");
    assert_eq!(
        vias_of(&page, "bob"),
        vec!["author"],
        "the reader's own Follow"
    );
    let r = s
        .get(&bob, &format!("/activities/{}", id_of(&followers_only)))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a follower reads followers-only posts"
    );

    // New posts arrive; strangers see nothing of the followers-only ones.
    s.note(&ana, "after the follow", &["followers"], &[]).await;
    let contents = TestServer::contents(&home(&s, &bob).await);
    assert_eq!(
        contents.first().map(String::as_str),
        Some("after the follow")
    );
    assert!(TestServer::contents(&home(&s, &carol).await).is_empty());

    // Lists and counts.
    let r = s.get(&carol, "/users/ana/followers").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["items"][0]["user"]["username"], "bob");
    let r = s.get(&carol, "/users/bob/following").await;
    assert_eq!(r.body["items"][0]["user"]["username"], "ana");

    // Refusals change nothing.
    let again = s.post(&bob, "/users/ana/follow", json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "already_following");
    let me = s.post(&bob, "/users/bob/follow", json!({})).await;
    assert_eq!(me.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(me.code(), "cannot_follow_self");
    let nobody = s.post(&bob, "/users/nobody/follow", json!({})).await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&carol, "/users/ana/followers").await.body["total"], 1);

    // Unfollow: an Undo, and every item the follow brought leaves the feed.
    let r = s.delete(&bob, "/users/ana/follow").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["type"], "Undo");
    s.settle().await;
    assert!(
        TestServer::contents(&home(&s, &bob).await)
            .iter()
            .all(|c| !c.contains("public") && !c.contains("follow"))
    );
    let r = s
        .get(&bob, &format!("/activities/{}", id_of(&followers_only)))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.delete(&bob, "/users/ana/follow").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_following");
    assert_eq!(s.get(&carol, "/users/ana/followers").await.body["total"], 0);

    // Following again copies the recent posts in again.
    s.post(&bob, "/users/ana/follow", json!({})).await;
    s.settle().await;
    assert_eq!(TestServer::contents(&home(&s, &bob).await).len(), 3);
    s.assert_verified().await;
}

#[tokio::test]
async fn a_producer_above_the_threshold_is_merged_at_read_time_invisibly() {
    // Threshold 1: with two followers ana is read from her outbox at read time.
    let s = start(StoreConfig {
        follower_merge_threshold: 1,
        ..StoreConfig::default()
    })
    .await;
    let ana = s.user("ana").await;
    let fans = [s.user("f1").await, s.user("f2").await, s.user("f3").await];
    s.note(&ana, "before", &["public"], &[]).await;
    for fan in &fans {
        s.post(fan, "/users/ana/follow", json!({})).await;
    }
    s.settle().await;
    for i in 0..5 {
        s.note(&ana, &format!("after {i}"), &["followers"], &[])
            .await;
    }
    for fan in &fans {
        let page = home(&s, fan).await;
        assert_eq!(
            TestServer::contents(&page),
            vec![
                "after 4", "after 3", "after 2", "after 1", "after 0", "before"
            ]
        );
        assert_eq!(vias_of(&page, "ana"), vec!["follow:ana"; 6]);
    }
    // The inbox and the home feed are the same projection.
    let inbox = s.get(&fans[0], "/inbox?limit=100").await.body;
    assert_eq!(
        TestServer::ids(&inbox),
        TestServer::ids(&home(&s, &fans[0]).await)
    );
    // An unfollowed merged producer leaves the feed too.
    s.delete(&fans[1], "/users/ana/follow").await;
    s.settle().await;
    assert!(TestServer::contents(&home(&s, &fans[1]).await).is_empty());
}

#[tokio::test]
async fn notifications_with_seen_and_read_markers_shared_across_devices() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let ana_phone = s.login("ana", "correct horse").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    let dave = s.user("dave").await;
    let post = s.note(&ana, "my photo", &["public"], &[]).await;
    let post_id = id_of(&post);

    assert_eq!(
        s.post(&bob, &format!("/activities/{post_id}/like"), json!({}))
            .await
            .status,
        StatusCode::CREATED
    );
    s.publish(
        &carol,
        json!({"object": {"type": "Note", "content": "nice"}, "inReplyTo": post_id}),
    )
    .await;
    s.post(&dave, "/users/ana/follow", json!({})).await;
    s.note(&bob, "hey @ana", &["user:ana"], &[]).await;
    // Own activity never notifies.
    s.post(&ana, &format!("/activities/{post_id}/like"), json!({}))
        .await;
    s.settle().await;

    let r = s.get(&ana, "/feeds/notifications").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(vias(&r.body), vec!["mention", "follow", "reply", "like"]);
    assert_eq!(r.body["unseen"], 4);
    assert_eq!(r.body["unread"], 4);
    let cursors: Vec<String> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["cursor"].as_str().expect("cursor").to_owned())
        .collect();

    // Seen: everything. Read: up to the second oldest.
    let r = s.post(&ana, "/feeds/notifications/seen", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["unseen"], 0);
    assert_eq!(r.body["unread"], 4);
    let r = s
        .post(
            &ana,
            "/feeds/notifications/read",
            json!({"cursor": cursors[2]}),
        )
        .await;
    assert_eq!(r.body["unread"], 2);
    // Markers never move back.
    let r = s
        .post(
            &ana,
            "/feeds/notifications/read",
            json!({"cursor": cursors[3]}),
        )
        .await;
    assert_eq!(r.body["unread"], 2);
    // The second device sees the same state.
    let r = s.get(&ana_phone, "/feeds").await;
    let notifications = r
        .body
        .as_array()
        .expect("feeds")
        .iter()
        .find(|f| f["name"] == "notifications")
        .cloned()
        .expect("notifications feed");
    assert_eq!(notifications["unseen"], 0);
    assert_eq!(notifications["unread"], 2);

    // Undoing the like removes its notification; retracting the post removes the like's.
    s.note(&carol, "second mention @ana", &["user:ana"], &[])
        .await;
    s.settle().await;
    let r = s.get(&ana_phone, "/feeds/notifications").await;
    assert_eq!(r.body["unseen"], 1);
    s.delete(&bob, &format!("/activities/{post_id}/like")).await;
    s.settle().await;
    let r = s.get(&ana, "/feeds/notifications").await;
    assert_eq!(vias(&r.body), vec!["mention", "mention", "follow", "reply"]);

    // Bad input: clear errors, nothing changed.
    let r = s
        .post(&ana, "/feeds/notifications/read", json!({"cursor": "nope"}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .request(
            reqwest::Method::POST,
            "/feeds/notifications/seen",
            Some(&ana),
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "an empty body marks everything");
    let r = s
        .post(&ana, "/feeds/notifications/seen", json!({"bogus": 1}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.get(&ana, "/feeds/nope").await.status,
        StatusCode::NOT_FOUND
    );
    // A filter the feed's kind cannot apply (decision 0015: 422, not the request's shape).
    let r = s.get(&ana, "/feeds/notifications?tags=x").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.get(&ana, "/feeds/home?before=garbage").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s.get(&ana, "/feeds/notifications").await;
    assert_eq!(r.body["unread"], 3);
}

#[tokio::test]
async fn likes_and_shares_count_once_per_actor_and_undo() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let carol = s.user("carol").await;
    let post = id_of(&s.note(&ana, "likeable", &["public"], &[]).await);

    for who in [&bob, &carol] {
        let r = s
            .post(who, &format!("/activities/{post}/like"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        assert_eq!(r.body["type"], "Like");
    }
    let again = s
        .post(&bob, &format!("/activities/{post}/like"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "already_liked");
    let r = s
        .post(&bob, &format!("/activities/{post}/share"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["type"], "Announce");
    s.settle().await;

    let shown = s.get(&ana, &format!("/activities/{post}")).await.body;
    assert_eq!(shown["tidings"]["likes"], 2);
    assert_eq!(shown["tidings"]["shares"], 1);
    // Listings carry the same counts as the single read.
    let outbox = s.get(&carol, "/users/ana/outbox").await.body;
    assert_eq!(outbox["items"][0]["activity"], shown);

    let r = s.delete(&bob, &format!("/activities/{post}/like")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = s.delete(&bob, &format!("/activities/{post}/like")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_liked");
    let shown = s.get(&ana, &format!("/activities/{post}")).await.body;
    assert_eq!(shown["tidings"]["likes"], 1);
    // Liking again after undoing is allowed.
    let r = s
        .post(&bob, &format!("/activities/{post}/like"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let shown = s.get(&ana, &format!("/activities/{post}")).await.body;
    assert_eq!(shown["tidings"]["likes"], 2);

    // Unknown and retracted activities.
    let r = s.post(&bob, "/activities/nope/like", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.post(&ana, &format!("/activities/{post}/retract"), json!({}))
        .await;
    let r = s
        .post(&carol, &format!("/activities/{post}/share"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    // Counts survive a restart (rebuilt from the log).
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, ServerConfig::default(), StoreConfig::default()).await;
    let bob = s.login("bob", "correct horse").await;
    let page = s.get(&bob, "/users/bob/outbox?limit=10").await.body;
    assert!(!page["items"].as_array().expect("items").is_empty());
    s.assert_verified().await;
}

#[tokio::test]
async fn aggregated_feed_groups_and_pages_stably() {
    let mut config = ServerConfig::default();
    config.feeds.push(FeedSpec {
        kind: FeedKind::Aggregated,
        source: Some(FeedKind::Notification),
        group_by: vec![GroupPart::Verb, GroupPart::Object],
        ..FeedSpec::flat("alerts")
    });
    config.feeds.push(FeedSpec {
        verbs: vec!["create".into()],
        include_actor: false,
        ..FeedSpec::flat("posts")
    });
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let ana = s.user("ana").await;
    let mut fans = Vec::new();
    for i in 0..4 {
        fans.push(s.user(&format!("fan{i}")).await);
    }
    let photo = id_of(&s.note(&ana, "photo", &["public"], &[]).await);
    let other = id_of(&s.note(&ana, "other", &["public"], &[]).await);
    for fan in &fans {
        s.post(fan, &format!("/activities/{photo}/like"), json!({}))
            .await;
        s.post(fan, "/users/ana/follow", json!({})).await;
    }
    s.post(&fans[0], &format!("/activities/{other}/like"), json!({}))
        .await;
    s.settle().await;

    let r = s.get(&ana, "/feeds/alerts?limit=10").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let groups = r.body["items"].as_array().expect("groups").clone();
    let summary: Vec<(String, u64, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["verb"].as_str().unwrap_or("").to_owned(),
                g["activity_count"].as_u64().unwrap_or(0),
                g["actor_count"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Like".to_owned(), 1, 1),
            ("Follow".to_owned(), 4, 4),
            ("Like".to_owned(), 4, 4),
        ]
    );
    assert_eq!(groups[2]["actors"][0]["username"], "fan3");
    assert_eq!(groups[2]["activities"][0]["activity"]["object"], photo);
    assert_eq!(r.body["unseen"], 3);

    // Pages of one group walk every group exactly once, in order.
    let mut walked = Vec::new();
    let mut path = "/feeds/alerts?limit=1".to_owned();
    loop {
        let page = s.get(&ana, &path).await.body;
        for g in page["items"].as_array().expect("items") {
            walked.push(g["id"].as_str().expect("id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/feeds/alerts?limit=1&before={next}"),
            None => break,
        }
    }
    let all: Vec<String> = groups
        .iter()
        .map(|g| g["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(walked, all);
    assert_eq!(walked.iter().collect::<HashSet<_>>().len(), 3);

    // A verb-filtered flat feed without the reader's own activities.
    let own_post = s.note(&fans[0], "fan post", &["public"], &[]).await;
    s.note(&ana, "ana again", &["public"], &[]).await;
    s.settle().await;
    let posts = s.get(&fans[0], "/feeds/posts").await.body;
    assert!(!TestServer::ids(&posts).contains(&id_of(&own_post)));
    assert!(
        posts["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["activity"]["type"] == "Create")
    );
    assert_eq!(
        TestServer::contents(&posts).first().map(String::as_str),
        Some("ana again")
    );

    // The default aggregated feed folds the home feed.
    let r = s.get(&fans[1], "/feeds/aggregated").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(!r.body["items"].as_array().expect("items").is_empty());
}

#[tokio::test]
async fn retraction_leaves_every_feed() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.post(&bob, "/users/ana/follow", json!({})).await;
    let post = id_of(&s.note(&ana, "soon gone", &["public"], &[]).await);
    s.post(&bob, &format!("/activities/{post}/like"), json!({}))
        .await;
    s.settle().await;
    assert!(TestServer::ids(&home(&s, &bob).await).contains(&post));
    assert_eq!(s.get(&ana, "/feeds/notifications").await.body["unread"], 2);
    s.post(&ana, &format!("/activities/{post}/retract"), json!({}))
        .await;
    s.settle().await;
    assert!(!TestServer::ids(&home(&s, &bob).await).contains(&post));
    let agg = s.get(&bob, "/feeds/aggregated?limit=50").await.body;
    assert!(!agg.to_string().contains("soon gone"));
    // The like of the retracted post is no longer a notification; the follow still is.
    let n = s.get(&ana, "/feeds/notifications").await.body;
    assert_eq!(vias(&n), vec!["follow"]);
}

#[test]
fn bad_feed_declarations_are_refused_at_load() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidings.toml");
    std::fs::write(
        &path,
        "[[feeds]]\nname = \"notification\"\nkind = \"notification\"\nverbs = [\"like\", \"follow\", \"comment\", \"mention\"]\ninclude_actor = false\nmax_cache = 200\n\n[[feeds]]\nname = \"feed\"\nkind = \"flat\"\nverbs = [\"tweet\"]\n",
    )
    .expect("write");
    let config = ServerConfig::load(&path).expect("valid feeds load");
    assert!(config.feed("notification").is_some());
    assert!(config.feed("home").is_some(), "defaults stay");
    std::fs::write(
        &path,
        "[[feeds]]\nname = \"n\"\nkind = \"notification\"\nverbs = [\"tweet\"]\n",
    )
    .expect("write");
    let err = ServerConfig::load(&path).expect_err("a tweet is no notification reason");
    assert!(err.to_string().contains("notification reason"), "{err}");
    std::fs::write(&path, "[[feeds]]\nname = \"x\"\nkind = \"sideways\"\n").expect("write");
    assert!(ServerConfig::load(&path).is_err());
}

#[tokio::test]
async fn the_caller_can_ask_whom_they_follow_and_what_they_reacted_to() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let relationship = |who: &str| format!("/users/{who}/follow");

    let r = s.get(&bob, &relationship("ana")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"following": false, "followed_by": false}));
    s.post(&bob, "/users/ana/follow", json!({})).await;
    assert_eq!(
        s.get(&bob, &relationship("ana")).await.body,
        json!({"following": true, "followed_by": false})
    );
    assert_eq!(
        s.get(&ana, &relationship("bob")).await.body,
        json!({"following": false, "followed_by": true})
    );
    s.delete(&bob, "/users/ana/follow").await;
    assert_eq!(
        s.get(&bob, &relationship("ana")).await.body,
        json!({"following": false, "followed_by": false})
    );
    let r = s.get(&bob, &relationship("nobody")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let first = id_of(&s.note(&ana, "one", &["public"], &[]).await);
    let second = id_of(&s.note(&ana, "two", &["public"], &[]).await);
    s.post(&bob, &format!("/activities/{first}/like"), json!({}))
        .await;
    s.post(&bob, &format!("/activities/{second}/share"), json!({}))
        .await;
    s.post(&bob, &format!("/activities/{second}/like"), json!({}))
        .await;
    s.delete(&bob, &format!("/activities/{second}/like")).await;
    let r = s
        .get(
            &bob,
            &format!("/me/reactions?activities={second},{first},nope"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["items"],
        json!([
            {"activity": second, "liked": false, "shared": true},
            {"activity": first, "liked": true, "shared": false},
            {"activity": "nope", "liked": false, "shared": false},
        ])
    );
    // Ana's own view: she reacted to nothing.
    let r = s
        .get(&ana, &format!("/me/reactions?activities={first}"))
        .await;
    assert_eq!(
        r.body["items"],
        json!([{"activity": first, "liked": false, "shared": false}])
    );
    let too_many = vec!["x"; 101].join(",");
    for query in ["", "activities=", &format!("activities={too_many}")] {
        let r = s.get(&bob, &format!("/me/reactions?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.code(), "invalid_query");
    }
}

#[tokio::test]
async fn joining_an_open_circle_notifies_its_keepers_and_fills_no_inbox() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mod_meg = s.user("meg").await;
    let bob = s.user("bob").await;
    let cyd = s.user("cyd").await;
    s.circle(&ana, "eng", "public", "open").await;
    s.circle(&ana, "club", "public", "approval").await;
    let r = s.put(&mod_meg, "/circles/eng/members/meg").await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = s
        .request(
            reqwest::Method::PUT,
            "/circles/eng/members/meg",
            Some(&ana),
            Some(json!({"role": "moderator"})),
            &[],
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    s.settle().await;
    let ana_inbox = s.get(&ana, "/inbox").await.body;
    let bob_inbox = s.get(&bob, "/inbox").await.body;

    // Bob joins by himself: the owner and the moderator are told, once.
    let r = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let again = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(again.status, StatusCode::OK);
    // Asking to join an approval circle, and being added by a moderator, raise nothing.
    assert!(
        s.put(&cyd, "/circles/club/members/cyd")
            .await
            .status
            .is_success()
    );
    assert!(
        s.put(&ana, "/circles/eng/members/cyd")
            .await
            .status
            .is_success()
    );
    s.settle().await;
    // Meg joined by herself too (before Ana made her a moderator): Ana heard of both.
    for (keeper, joiners) in [(&ana, vec!["bob", "meg"]), (&mod_meg, vec!["bob"])] {
        let r = s.get(keeper, "/feeds/notifications").await;
        let joins: Vec<&Value> = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|i| i["via"] == "join")
            .collect();
        let who: Vec<&str> = joins
            .iter()
            .filter_map(|j| j["activity"]["tidings"]["actor"]["username"].as_str())
            .collect();
        assert_eq!(who, joiners, "{:?}", r.body);
        assert!(joins.iter().all(|j| j["activity"]["type"] == "Join"
            && j["activity"]["object"] == "circle:eng"));
    }
    // Nobody's inbox (the joiner's included) gets an item for it, and the circle's stream
    // neither.
    assert_eq!(
        s.get(&ana, "/inbox").await.body["items"],
        ana_inbox["items"]
    );
    assert_eq!(
        s.get(&bob, "/inbox").await.body["items"],
        bob_inbox["items"]
    );
    let stream = s.get(&bob, "/circles/eng/stream").await.body;
    assert!(
        stream["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["activity"]["type"] != "Join"),
        "{stream:?}"
    );
    // Bob himself hears nothing of his own join; Cyd was never notified of anything.
    let r = s.get(&bob, "/feeds/notifications").await;
    assert_eq!(vias(&r.body), Vec::<String>::new());
}

#[tokio::test]
async fn optional_bodies_may_be_json_null_and_a_filter_a_feed_cannot_apply_is_422() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    // `null` is how JSON says "no body": the same as sending none.
    let r = s
        .request(
            reqwest::Method::POST,
            "/feeds/notifications/seen",
            Some(&ana),
            Some(Value::Null),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The same for joining a circle, whose body is optional too.
    let bo = s.user("bo").await;
    s.circle(&bo, "eng", "public", "open").await;
    let r = s
        .request(
            reqwest::Method::PUT,
            "/circles/eng/members/ana",
            Some(&ana),
            Some(Value::Null),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Well-formed filters on a feed kind that takes none: the pairing is refused, not the shape.
    let r = s.get(&ana, "/feeds/notifications?tags=release").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.code(), "filter_not_supported");
    // A malformed filter is still the request's fault.
    let r = s.get(&ana, "/feeds/home?tags=!!").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
}
