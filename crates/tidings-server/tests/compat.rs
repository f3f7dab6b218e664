//! HTTP-level tests of the compat profiles: FeedStream's `/v1` (seed 001) and
//! activity-feed-system's `/me`, `/post`, … (seed 004), plus the examples of `docs/compat.md` run verbatim.

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tidings_server::compat::CompatConfig;
use tidings_server::compat::afs::seed_demo;
use tidings_server::config::ServerConfig;
use tidings_store::StoreConfig;

/// Sends a request to a path outside `/api/v1`; `key` goes in `X-App-Key`; `body` is sent as
/// raw text so malformed JSON can be tested.
async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{}", s.base, path));
    if let Some(key) = key {
        req = req.header("X-App-Key", key);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn fs_post(s: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    call(
        s,
        reqwest::Method::POST,
        path,
        None,
        Some(&body.to_string()),
    )
    .await
}

async fn fs_get(s: &TestServer, path: &str) -> (StatusCode, Value) {
    call(s, reqwest::Method::GET, path, None, None).await
}

/// The item ids of a consume, asserting it succeeded.
async fn consume(s: &TestServer, query: &str) -> Vec<String> {
    let (status, body) = fs_get(s, &format!("/v1/consume?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|i| i["item_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn publish_tweet(s: &TestServer, producer: &str, item: &str) {
    let (status, body) = fs_post(
        s,
        "/v1/publish",
        json!({"verb": "tweet", "timestamp": 1563221022, "producer_id": producer, "item_id": item}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "published": true}));
}

fn assert_fs_error(status: StatusCode, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn feedstream_subscribe_publish_consume_round_trip_with_paging() {
    let s = TestServer::start().await;
    let (status, body) = fs_post(
        &s,
        "/v1/subscribe",
        json!({"event_name": "feed", "consumer_id": "shayan", "producer_id": "joerogan"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "subscribed": true}));
    // Subscribing again changes nothing and says the same.
    let (_, again) = fs_post(
        &s,
        "/v1/subscribe",
        json!({"event_name": "feed", "consumer_id": "shayan", "producer_id": "joerogan"}),
    )
    .await;
    assert_eq!(again, json!({"ok": true, "subscribed": true}));

    for n in 120..=124 {
        publish_tweet(&s, "joerogan", &format!("tweet_{n}")).await;
    }
    // Another producer's tweets do not reach shayan.
    publish_tweet(&s, "someone-else", "tweet_999").await;

    let (status, body) = fs_get(&s, "/v1/consume?event_name=feed&consumer_id=shayan&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"ok": true, "data": [
            {"item_id": "tweet_124", "verb": "tweet"},
            {"item_id": "tweet_123", "verb": "tweet"},
            {"item_id": "tweet_122", "verb": "tweet"},
            {"item_id": "tweet_121", "verb": "tweet"},
            {"item_id": "tweet_120", "verb": "tweet"}
        ]})
    );
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan&limit=2").await,
        ["tweet_124", "tweet_123"]
    );
    assert_eq!(
        consume(
            &s,
            "event_name=feed&consumer_id=shayan&limit=2&before=tweet_123"
        )
        .await,
        ["tweet_122", "tweet_121"]
    );
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan&before=tweet_120").await,
        Vec::<String>::new()
    );
    let newer = consume(&s, "event_name=feed&consumer_id=shayan&after=tweet_121").await;
    assert_eq!(newer, ["tweet_124", "tweet_123", "tweet_122"]);
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan&after=tweet_124").await,
        Vec::<String>::new()
    );
    // The producer's own feed includes its tweets (include_actor = true for `feed`).
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=joerogan&limit=1").await,
        ["tweet_124"]
    );
    // Unknown consumers have an empty feed (and are not created by reading).
    let users = s.store.user_count().await.expect("count");
    assert!(
        consume(&s, "event_name=feed&consumer_id=nobody")
            .await
            .is_empty()
    );
    assert_eq!(s.store.user_count().await.expect("count"), users);

    // Producers and consumers are users under the reserved prefix.
    let user = s.store.user("fs-joerogan").await.expect("fs user");
    assert_eq!(user.display_name, "joerogan");

    let (status, body) = fs_post(
        &s,
        "/v1/unsubscribe",
        json!({"event_name": "feed", "consumer_id": "shayan", "producer_id": "joerogan"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "unsubscribed": true}));
    assert!(
        consume(&s, "event_name=feed&consumer_id=shayan")
            .await
            .is_empty()
    );
    // Unsubscribing again (or from someone never seen) changes nothing.
    let (_, again) = fs_post(
        &s,
        "/v1/unsubscribe",
        json!({"event_name": "feed", "consumer_id": "shayan", "producer_id": "ghost"}),
    )
    .await;
    assert_eq!(again, json!({"ok": true, "unsubscribed": true}));
    s.assert_verified().await;
}

async fn fs_subscribe(s: &TestServer, event: &str, consumer: &str, producer: &str) {
    let (status, body) = fs_post(
        s,
        "/v1/subscribe",
        json!({"event_name": event, "consumer_id": consumer, "producer_id": producer}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn fs_unsubscribe(s: &TestServer, event: &str, consumer: &str, producer: &str) {
    let (status, body) = fs_post(
        s,
        "/v1/unsubscribe",
        json!({"event_name": event, "consumer_id": consumer, "producer_id": producer}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An Activity event (a verb the notification feed lists, aimed at a consumer).
async fn fs_notify(s: &TestServer, verb: &str, producer: &str, item: &str, consumer: &str) {
    let (status, body) = fs_post(
        s,
        "/v1/publish",
        json!({"verb": verb, "timestamp": 1563221022, "producer_id": producer,
               "item_id": item, "consumer_id": consumer}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "published": true}));
}

#[tokio::test]
async fn feedstream_activity_events_reach_the_consumers_notification_feed() {
    let s = TestServer::start().await;
    // Activity events have relations just like Flat ones (FeedStream's README): the consumers
    // subscribe to the producer, here through the notification event itself.
    fs_subscribe(&s, "notification", "shayan", "joerogan").await;
    fs_subscribe(&s, "feed", "ana", "joerogan").await;
    for (verb, item) in [
        ("like", "post_1"),
        ("comment", "comment_7"),
        ("follow", "joe"),
    ] {
        fs_notify(&s, verb, "joerogan", item, "shayan").await;
    }
    let (status, body) = fs_get(&s, "/v1/consume?event_name=notification&consumer_id=shayan").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"ok": true, "data": [
            {"item_id": "joe", "verb": "follow"},
            {"item_id": "comment_7", "verb": "comment"},
            {"item_id": "post_1", "verb": "like"}
        ]})
    );
    // Aimed at shayan only: not in the producer's notifications, nor in anyone's flat feed.
    assert!(
        consume(&s, "event_name=notification&consumer_id=joerogan")
            .await
            .is_empty()
    );
    for consumer in ["shayan", "ana"] {
        assert!(
            consume(&s, &format!("event_name=feed&consumer_id={consumer}"))
                .await
                .is_empty()
        );
    }
    // Paging by item id works on notification feeds too.
    assert_eq!(
        consume(
            &s,
            "event_name=notification&consumer_id=shayan&before=comment_7"
        )
        .await,
        ["post_1"]
    );
    // The same like for a second consumer is one activity, notified to both.
    let seq = s.store.last_seq().await.expect("seq");
    fs_notify(&s, "like", "joerogan", "post_1", "ana").await;
    assert_eq!(s.store.last_seq().await.expect("seq"), seq);
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=ana").await,
        ["post_1"]
    );
    // An explicit event_name must take the verb, and an Activity event needs its consumer.
    let (status, body) = fs_post(
        &s,
        "/v1/publish",
        json!({"event_name": "notification", "verb": "share", "producer_id": "joerogan",
               "item_id": "x", "consumer_id": "shayan"}),
    )
    .await;
    assert_fs_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = fs_post(
        &s,
        "/v1/publish",
        json!({"event_name": "notification", "verb": "like", "producer_id": "joerogan", "item_id": "x"}),
    )
    .await;
    assert_fs_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);

    // Retracting an Activity event names its consumer (FeedStream's README) and takes it out of
    // that consumer's feed only.
    let (status, body) = fs_post(
        &s,
        "/v1/retract",
        json!({"verb": "like", "producer_id": "joerogan", "item_id": "post_1"}),
    )
    .await;
    assert_fs_error(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let retract_for = |consumer: &str| json!({"verb": "like", "producer_id": "joerogan", "item_id": "post_1", "consumer_id": consumer});
    let (status, body) = fs_post(&s, "/v1/retract", retract_for("shayan")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "retracted": true}));
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=shayan").await,
        ["joe", "comment_7"]
    );
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=ana").await,
        ["post_1"]
    );
    // Not shayan's any more; then ana's goes too.
    let (status, body) = fs_post(&s, "/v1/retract", retract_for("shayan")).await;
    assert_fs_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = fs_post(&s, "/v1/retract", retract_for("ana")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        consume(&s, "event_name=notification&consumer_id=ana")
            .await
            .is_empty()
    );
    // A retracted event can be sent anew, to the consumer it was retracted for too.
    fs_notify(&s, "like", "joerogan", "post_1", "shayan").await;
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=shayan").await,
        ["post_1", "joe", "comment_7"]
    );
    s.assert_verified().await;
}

#[tokio::test]
async fn feedstream_feeds_process_only_the_verbs_they_list() {
    let s = TestServer::start().await;
    fs_subscribe(&s, "feed", "shayan", "joerogan").await;
    publish_tweet(&s, "joerogan", "tweet_1").await;
    let seq = s.store.last_seq().await.expect("seq");
    let users = s.store.user_count().await.expect("count");
    // A tweet is a Flat event: no Activity feed lists it, so a consumer_id is refused rather
    // than landing in the notification feed (whose verbs are like, follow, comment, mention);
    // so is a verb no feed lists.
    // An Activity-event verb without its consumer_id is refused, as FeedStream's README says.
    for body in [
        json!({"verb": "tweet", "producer_id": "joerogan", "item_id": "tweet_2", "consumer_id": "shayan"}),
        json!({"verb": "poke", "producer_id": "joerogan", "item_id": "tweet_2", "consumer_id": "newcomer"}),
        json!({"verb": "like", "producer_id": "joerogan", "item_id": "tweet_1"}),
        json!({"verb": "mention", "producer_id": "someone-new", "item_id": "tweet_1"}),
    ] {
        let (status, got) = fs_post(&s, "/v1/publish", body.clone()).await;
        assert_fs_error(status, &got, StatusCode::UNPROCESSABLE_ENTITY);
        let message = got["error"].as_str().unwrap_or_default();
        assert!(message.contains("consumer_id"), "{body} → {message}");
    }
    let (status, got) = fs_post(
        &s,
        "/v1/retract",
        json!({"verb": "tweet", "producer_id": "joerogan", "item_id": "tweet_1", "consumer_id": "shayan"}),
    )
    .await;
    assert_fs_error(status, &got, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(s.store.last_seq().await.expect("seq"), seq);
    assert_eq!(s.store.user_count().await.expect("count"), users);
    assert!(
        consume(&s, "event_name=notification&consumer_id=shayan")
            .await
            .is_empty()
    );
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan").await,
        ["tweet_1"]
    );
}

#[tokio::test]
async fn feedstream_a_verb_listed_by_flat_and_activity_feeds_reaches_both() {
    let mut config = ServerConfig {
        feeds: tidings_server::compat::feedstream::default_feeds(),
        ..ServerConfig::default()
    };
    config.feeds.push(tidings_core::feeds::FeedSpec {
        verbs: vec!["like".into()],
        include_actor: true,
        ..tidings_core::feeds::FeedSpec::flat("likes")
    });
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    fs_subscribe(&s, "likes", "shayan", "joerogan").await;
    fs_subscribe(&s, "likes", "bob", "joerogan").await;
    fs_notify(&s, "like", "joerogan", "tweet_9", "shayan").await;
    // The consumer's notification feed, and every subscriber's flat "likes" feed.
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=shayan").await,
        ["tweet_9"]
    );
    assert_eq!(
        consume(&s, "event_name=likes&consumer_id=bob").await,
        ["tweet_9"]
    );
    assert!(
        consume(&s, "event_name=notification&consumer_id=bob")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn feedstream_unsubscribing_takes_a_producers_events_out_of_activity_feeds() {
    let s = TestServer::start().await;
    fs_subscribe(&s, "notification", "shayan", "joerogan").await;
    fs_subscribe(&s, "notification", "shayan", "lex").await;
    fs_notify(&s, "like", "joerogan", "post_1", "shayan").await;
    fs_notify(&s, "comment", "lex", "post_1", "shayan").await;
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=shayan").await,
        ["post_1", "post_1"]
    );
    fs_unsubscribe(&s, "notification", "shayan", "joerogan").await;
    let (_, body) = fs_get(&s, "/v1/consume?event_name=notification&consumer_id=shayan").await;
    assert_eq!(
        body,
        json!({"ok": true, "data": [{"item_id": "post_1", "verb": "comment"}]})
    );
    // A producer shayan is not subscribed to: its event is accepted and kept, not shown.
    fs_notify(&s, "mention", "stranger", "post_5", "shayan").await;
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=shayan").await,
        ["post_1"]
    );
    // The relation is read when consuming: subscribing again shows joerogan's events again.
    fs_subscribe(&s, "feed", "shayan", "joerogan").await;
    let (_, body) = fs_get(&s, "/v1/consume?event_name=notification&consumer_id=shayan").await;
    assert_eq!(
        body,
        json!({"ok": true, "data": [
            {"item_id": "post_1", "verb": "comment"},
            {"item_id": "post_1", "verb": "like"}
        ]})
    );
}

#[tokio::test]
async fn feedstream_retract_removes_from_consume() {
    let s = TestServer::start().await;
    fs_post(
        &s,
        "/v1/subscribe",
        json!({"event_name": "feed", "consumer_id": "shayan", "producer_id": "joerogan"}),
    )
    .await;
    publish_tweet(&s, "joerogan", "tweet_1").await;
    publish_tweet(&s, "joerogan", "tweet_2").await;
    // Publishing the same item again adds nothing.
    publish_tweet(&s, "joerogan", "tweet_2").await;
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan").await,
        ["tweet_2", "tweet_1"]
    );
    let retract = json!({"verb": "tweet", "producer_id": "joerogan", "item_id": "tweet_2"});
    let (status, body) = fs_post(&s, "/v1/retract", retract.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "retracted": true}));
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan").await,
        ["tweet_1"]
    );
    // Again: nothing left to retract.
    let (status, body) = fs_post(&s, "/v1/retract", retract).await;
    assert_fs_error(status, &body, StatusCode::NOT_FOUND);
    // Another producer cannot retract it.
    let (status, body) = fs_post(
        &s,
        "/v1/retract",
        json!({"verb": "tweet", "producer_id": "shayan", "item_id": "tweet_1"}),
    )
    .await;
    assert_fs_error(status, &body, StatusCode::NOT_FOUND);
    // A retracted item can be published anew.
    publish_tweet(&s, "joerogan", "tweet_2").await;
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan").await,
        ["tweet_2", "tweet_1"]
    );
    s.assert_verified().await;
}

#[tokio::test]
async fn feedstream_bad_input_is_refused_in_its_shape_and_changes_nothing() {
    let s = TestServer::start().await;
    publish_tweet(&s, "joerogan", "tweet_1").await;
    let users = s.store.user_count().await.expect("count");
    let seq = s.store.last_seq().await.expect("seq");

    let cases: Vec<(&str, Value, StatusCode)> = vec![
        (
            "/v1/subscribe",
            json!({"event_name": "nope", "consumer_id": "a", "producer_id": "b"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/subscribe",
            json!({"event_name": "feed", "consumer_id": "a"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/subscribe",
            json!({"event_name": "feed", "consumer_id": "a", "producer_id": "a"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/unsubscribe",
            json!({"event_name": "nope", "consumer_id": "a", "producer_id": "b"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/publish",
            json!({"verb": "tweet", "producer_id": "a"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/publish",
            json!({"verb": "two words", "producer_id": "a", "item_id": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/publish",
            json!({"verb": "tweet", "producer_id": ["a"], "item_id": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/publish",
            json!({"verb": "tweet", "producer_id": "a", "item_id": "x", "timestamp": "yesterday"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/publish",
            json!({"event_name": "nope", "verb": "tweet", "producer_id": "a", "item_id": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/retract",
            json!({"verb": "tweet", "producer_id": "ghost", "item_id": "tweet_1"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1/retract",
            json!({"verb": "tweet", "item_id": "tweet_1"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, want) in cases {
        let (status, got) = fs_post(&s, path, body.clone()).await;
        assert_fs_error(status, &got, want);
        let _ = body;
    }
    // Not JSON, no body, not an object.
    for raw in ["{\"verb\": \"tweet\",}", "", "[1]"] {
        let (status, got) = call(&s, reqwest::Method::POST, "/v1/publish", None, Some(raw)).await;
        assert_fs_error(status, &got, StatusCode::BAD_REQUEST);
    }
    for (query, want) in [
        ("event_name=nope&consumer_id=fs", StatusCode::NOT_FOUND),
        ("consumer_id=joerogan", StatusCode::BAD_REQUEST),
        ("event_name=feed", StatusCode::BAD_REQUEST),
        (
            "event_name=feed&consumer_id=joerogan&limit=0",
            StatusCode::BAD_REQUEST,
        ),
        (
            "event_name=feed&consumer_id=joerogan&limit=abc",
            StatusCode::BAD_REQUEST,
        ),
        (
            "event_name=feed&consumer_id=joerogan&before=nothing",
            StatusCode::NOT_FOUND,
        ),
        (
            "event_name=feed&consumer_id=joerogan&before=tweet_1&after=tweet_1",
            StatusCode::BAD_REQUEST,
        ),
        (
            "event_name=aggregated&consumer_id=joerogan",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, got) = fs_get(&s, &format!("/v1/consume?{query}")).await;
        assert_fs_error(status, &got, want);
    }
    let (status, got) = fs_get(&s, "/v1/nothing-here").await;
    assert_fs_error(status, &got, StatusCode::NOT_FOUND);
    assert_eq!(s.store.user_count().await.expect("count"), users);
    assert_eq!(s.store.last_seq().await.expect("seq"), seq);
    // The prefix is reserved: nobody signs up as a FeedStream id.
    let r = s
        .request(
            reqwest::Method::POST,
            "/users",
            None,
            Some(json!({"username": "fs-joerogan2", "password": "correct horse"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "invalid_username");
}

#[tokio::test]
async fn profiles_can_be_disabled_in_the_config_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidings.toml");
    std::fs::write(&path, "[compat]\nfeedstream = false\n").expect("write");
    let config = ServerConfig::load(&path).expect("config");
    assert_eq!(
        config.compat,
        CompatConfig {
            feedstream: false,
            afs: true
        }
    );
    std::fs::write(&path, "[compat]\nfeedstrem = false\n").expect("write");
    assert!(ServerConfig::load(&path).is_err(), "typos are refused");

    let s = TestServer::start_with(
        ServerConfig {
            compat: CompatConfig {
                feedstream: false,
                afs: false,
            },
            ..ServerConfig::default()
        },
        StoreConfig::default(),
    )
    .await;
    let (status, body) = fs_post(
        &s,
        "/v1/subscribe",
        json!({"event_name": "feed", "consumer_id": "a", "producer_id": "b"}),
    )
    .await;
    assert_fs_error(status, &body, StatusCode::NOT_FOUND);
    seed_demo(&s.store).await.expect("demo");
    let (status, body) = call(&s, reqwest::Method::GET, "/me", Some("abc123"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], true);
    assert_eq!(s.store.user_count().await.expect("count"), 3);
}

async fn afs(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Value {
    let text = body.map(|b| b.to_string());
    let (status, got) = call(s, method, path, Some(key), text.as_deref()).await;
    assert_eq!(status, StatusCode::OK, "{path}: {got}");
    got
}

async fn afs_post(s: &TestServer, path: &str, key: &str, body: Value) -> Value {
    afs(s, reqwest::Method::POST, path, key, Some(body)).await
}

async fn afs_get(s: &TestServer, path: &str, key: &str) -> Value {
    afs(s, reqwest::Method::GET, path, key, None).await
}

const IVAN: &str = "abc123";
const NICO: &str = "abc124";
const ERIC: &str = "abc125";

/// (actor_name, verb, object_id, object_type, target_name) of each feed item.
fn rows(feed: &Value) -> Vec<(String, String, Value, Value, Value)> {
    feed.as_array()
        .expect("feed list")
        .iter()
        .map(|i| {
            (
                i["actor_name"].as_str().unwrap_or("").to_owned(),
                i["verb"].as_str().unwrap_or("").to_owned(),
                i["object_id"].clone(),
                i["object_type"].clone(),
                i["target_name"].clone(),
            )
        })
        .collect()
}

fn row(
    actor: &str,
    verb: &str,
    object_id: Value,
    object_type: Value,
    target: Value,
) -> (String, String, Value, Value, Value) {
    (actor.into(), verb.into(), object_id, object_type, target)
}

#[tokio::test]
async fn afs_me_post_activity_and_my_feed() {
    let s = TestServer::start().await;
    let users = seed_demo(&s.store).await.expect("demo");
    assert_eq!(
        users.iter().map(|u| u.id).collect::<Vec<_>>(),
        [1, 2, 3],
        "a fresh data dir gives the seed's ids"
    );
    // Seeding again changes nothing.
    seed_demo(&s.store).await.expect("demo again");

    let me = afs_get(&s, "/me", IVAN).await;
    assert_eq!(me["id"], 1);
    assert_eq!(me["name"], "ivan");
    assert_eq!(me["auth_token"], "abc123");
    assert_eq!(me["follow_ids"], json!([2]));
    let created = me["created_at"].as_str().expect("created_at");
    assert!(
        created.ends_with(" GMT") && created.len() == 29,
        "{created}"
    );
    assert!(
        me["updated_at"]
            .as_str()
            .is_some_and(|u| u.ends_with(" GMT"))
    );
    let keys: Vec<&String> = me.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 6, "{me}");

    let post = afs_post(
        &s,
        "/post",
        IVAN,
        json!({"type": "post", "content": "foobar"}),
    )
    .await;
    assert_eq!(
        post,
        json!({"type": "post", "object_id": 1, "message": "Activity recorded"})
    );
    let photo = afs_post(
        &s,
        "/post",
        IVAN,
        json!({"type": "photo", "content": "photos1.jpeg"}),
    )
    .await;
    assert_eq!(
        photo,
        json!({"type": "photo", "object_id": 2, "message": "Activity recorded"})
    );
    let share = afs_post(
        &s,
        "/activity",
        NICO,
        json!({"verb": "share", "object": "photo:2"}),
    )
    .await;
    assert_eq!(
        share,
        json!({"verb": "share", "message": "Activity recorded"})
    );
    let like = afs_post(
        &s,
        "/activity",
        NICO,
        json!({"verb": "like", "object": "photo:2"}),
    )
    .await;
    assert_eq!(
        like,
        json!({"verb": "like", "message": "Activity recorded"})
    );
    let like_post = afs_post(
        &s,
        "/activity",
        ERIC,
        json!({"verb": "like", "object": "post:1"}),
    )
    .await;
    assert_eq!(like_post["verb"], "like");

    let mine = afs_get(&s, "/feed/my", NICO).await;
    assert_eq!(mine["next_url"], "");
    assert_eq!(
        rows(&mine["my_feed"]),
        [
            row("nico", "like", json!(2), json!("photo"), json!("ivan")),
            row("nico", "share", json!(2), json!("photo"), json!("ivan")),
        ]
    );
    let time = mine["my_feed"][0]["time"].as_str().expect("time");
    assert!(time.ends_with("+00:00") && time.contains('T'), "{time}");
    let ivan = afs_get(&s, "/feed/my", IVAN).await;
    assert_eq!(
        rows(&ivan["my_feed"]),
        [
            row("ivan", "post", json!(2), json!("photo"), Value::Null),
            row("ivan", "post", json!(1), json!("post"), Value::Null),
            row("ivan", "follow", Value::Null, Value::Null, json!("nico")),
        ]
    );
    // The same objects, seen through the native API: a Like and an Announce of ivan's photo.
    let notes = s
        .request(
            reqwest::Method::GET,
            "/feeds/notifications",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(notes.status, StatusCode::UNAUTHORIZED);
    s.assert_verified().await;
}

#[tokio::test]
async fn afs_follow_and_unfollow_change_the_friends_feed() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    afs_post(
        &s,
        "/post",
        NICO,
        json!({"type": "photo", "content": "nico.jpeg"}),
    )
    .await;
    afs_post(
        &s,
        "/post",
        ERIC,
        json!({"type": "post", "content": "eric says hi"}),
    )
    .await;

    // ivan follows nico (the demo), not eric.
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert_eq!(
        rows(&friends["friends_feed"]),
        [row("nico", "post", json!(1), json!("photo"), Value::Null)]
    );
    assert_eq!(friends["next_url"], "");
    let time = friends["friends_feed"][0]["time"].as_str().expect("time");
    assert!(time.ends_with(" GMT"), "{time}");

    let r = afs_post(&s, "/follow", IVAN, json!({"follow": "eric"})).await;
    assert_eq!(r, json!({"verb": "follow", "message": "User followed"}));
    let r = afs_post(&s, "/follow", IVAN, json!({"follow": "eric"})).await;
    assert_eq!(r, json!({"verb": "follow", "message": "Already followed"}));
    assert_eq!(afs_get(&s, "/me", IVAN).await["follow_ids"], json!([2, 3]));
    // Eric's earlier post is copied in on follow; his new ones arrive.
    afs_post(
        &s,
        "/post",
        ERIC,
        json!({"type": "post", "content": "again"}),
    )
    .await;
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert_eq!(
        rows(&friends["friends_feed"]),
        [
            row("eric", "post", json!(3), json!("post"), Value::Null),
            row("eric", "post", json!(2), json!("post"), Value::Null),
            row("nico", "post", json!(1), json!("photo"), Value::Null),
        ]
    );
    // A friend's like of a public post shows too.
    afs_post(
        &s,
        "/activity",
        NICO,
        json!({"verb": "like", "object": "post:3"}),
    )
    .await;
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert_eq!(
        rows(&friends["friends_feed"])[0],
        row("nico", "like", json!(3), json!("post"), json!("eric"))
    );

    let r = afs_post(&s, "/unfollow", IVAN, json!({"unfollow": "eric"})).await;
    assert_eq!(r, json!({"verb": "unfollow", "message": "User unfollowed"}));
    let r = afs_post(&s, "/unfollow", IVAN, json!({"unfollow": "eric"})).await;
    assert_eq!(
        r,
        json!({"verb": "unfollow", "message": "User not followed"})
    );
    assert_eq!(afs_get(&s, "/me", IVAN).await["follow_ids"], json!([2]));
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert!(
        rows(&friends["friends_feed"]).iter().all(|r| r.0 == "nico"),
        "{friends}"
    );
    // The seed's own unfollow example posts {"unfollow": …} to /follow: that works too.
    afs_post(&s, "/follow", IVAN, json!({"follow": "eric"})).await;
    let r = afs_post(&s, "/follow", IVAN, json!({"unfollow": "eric"})).await;
    assert_eq!(r, json!({"verb": "unfollow", "message": "User unfollowed"}));

    let mine = afs_get(&s, "/feed/my", IVAN).await;
    let verbs: Vec<(String, Value)> = rows(&mine["my_feed"])
        .into_iter()
        .map(|r| (r.1, r.4))
        .collect();
    assert_eq!(
        verbs,
        [
            ("unfollow".to_owned(), json!("eric")),
            ("follow".to_owned(), json!("eric")),
            ("unfollow".to_owned(), json!("eric")),
            ("follow".to_owned(), json!("eric")),
            ("follow".to_owned(), json!("nico")),
        ]
    );
}

#[tokio::test]
async fn afs_friends_feed_shows_only_people_the_caller_follows() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    // ivan follows nico (the demo); ivan posts a photo; eric, whom ivan does not follow,
    // likes it: that like is about ivan, but it is not a friend's activity.
    afs_post(
        &s,
        "/post",
        IVAN,
        json!({"type": "photo", "content": "ivan.jpeg"}),
    )
    .await;
    afs_post(
        &s,
        "/activity",
        ERIC,
        json!({"verb": "like", "object": "photo:1"}),
    )
    .await;
    afs_post(
        &s,
        "/activity",
        NICO,
        json!({"verb": "like", "object": "photo:1"}),
    )
    .await;
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert_eq!(
        rows(&friends["friends_feed"]),
        [row("nico", "like", json!(1), json!("photo"), json!("ivan"))]
    );
    // Once ivan unfollows nico, nico's like of ivan's photo leaves the friends feed too.
    let r = afs_post(&s, "/unfollow", IVAN, json!({"unfollow": "nico"})).await;
    assert_eq!(r, json!({"verb": "unfollow", "message": "User unfollowed"}));
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert_eq!(friends, json!({"friends_feed": [], "next_url": ""}));
    // Following eric shows eric's own activity, the like included.
    afs_post(&s, "/follow", IVAN, json!({"follow": "eric"})).await;
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert!(
        rows(&friends["friends_feed"]).iter().all(|r| r.0 == "eric"),
        "{friends}"
    );
}

#[tokio::test]
async fn afs_next_url_walks_every_item_once() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    for n in 0..5 {
        afs_post(
            &s,
            "/post",
            NICO,
            json!({"type": "post", "content": format!("n{n}")}),
        )
        .await;
    }
    for (path, key, field, want) in [
        ("/feed/friends?limit=2", IVAN, "friends_feed", 5),
        ("/feed/my?limit=2", NICO, "my_feed", 5),
    ] {
        let mut url = path.to_owned();
        let mut seen = Vec::new();
        let mut pages = 0;
        while !url.is_empty() {
            let page = afs_get(&s, &url, key).await;
            let items = page[field].as_array().expect("items").clone();
            assert!(items.len() <= 2);
            seen.extend(items.into_iter().map(|i| i["object_id"].clone()));
            url = page["next_url"].as_str().expect("next_url").to_owned();
            pages += 1;
            assert!(pages < 10, "next_url loops");
        }
        assert_eq!(seen.len(), want, "{path}: {seen:?}");
        assert_eq!(seen, [json!(5), json!(4), json!(3), json!(2), json!(1)]);
    }
}

#[tokio::test]
async fn afs_bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    afs_post(
        &s,
        "/post",
        IVAN,
        json!({"type": "photo", "content": "p.jpeg"}),
    )
    .await;
    afs_post(
        &s,
        "/activity",
        IVAN,
        json!({"verb": "like", "object": "photo:1"}),
    )
    .await;
    let seq = s.store.last_seq().await.expect("seq");

    // Keys: missing, unknown.
    for key in [None, Some("nope"), Some("")] {
        let (status, body) = call(&s, reqwest::Method::GET, "/me", key, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}: {body}");
        assert_eq!(body["error"], true);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, _) = call(
        &s,
        reqwest::Method::POST,
        "/post",
        Some("nope"),
        Some(r#"{"type":"post","content":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let cases: Vec<(&str, &str, StatusCode)> = vec![
        (
            "/post",
            r#"{"type":"video","content":"x"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/post", r#"{"type":"post"}"#, StatusCode::BAD_REQUEST),
        (
            "/post",
            r#"{"type":"post","content":5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/post",
            r#"{"type":"post","content":"x",}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/post", "", StatusCode::BAD_REQUEST),
        (
            "/activity",
            r#"{"verb":"poke","object":"photo:1"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/activity", r#"{"verb":"like"}"#, StatusCode::BAD_REQUEST),
        (
            "/activity",
            r#"{"verb":"like","object":"video:1"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/activity",
            r#"{"verb":"like","object":"photo:x"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/activity",
            r#"{"verb":"like","object":"photo:99"}"#,
            StatusCode::NOT_FOUND,
        ),
        // photo:1 exists, but it is not a post.
        (
            "/activity",
            r#"{"verb":"like","object":"post:1"}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            "/activity",
            r#"{"verb":"like","object":"photo:1"}"#,
            StatusCode::CONFLICT,
        ),
        ("/follow", r#"{"follow":"nobody"}"#, StatusCode::NOT_FOUND),
        ("/follow", r#"{"follow":"ivan"}"#, StatusCode::BAD_REQUEST),
        ("/follow", r#"{}"#, StatusCode::BAD_REQUEST),
        ("/unfollow", r#"{"follow":"nico"}"#, StatusCode::BAD_REQUEST),
        (
            "/unfollow",
            r#"{"unfollow":"nobody"}"#,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (path, body, want) in cases {
        let (status, got) = call(&s, reqwest::Method::POST, path, Some(IVAN), Some(body)).await;
        assert_eq!(status, want, "{path} {body}: {got}");
        assert_eq!(got["error"], true, "{path} {body}: {got}");
        assert!(got["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for path in [
        "/feed/my?limit=0",
        "/feed/friends?before=garbage",
        "/feed/my?limit=x",
    ] {
        let (status, got) = call(&s, reqwest::Method::GET, path, Some(IVAN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {got}");
    }
    assert_eq!(s.store.last_seq().await.expect("seq"), seq);
    assert_eq!(afs_get(&s, "/me", IVAN).await["follow_ids"], json!([2]));
}

/// One `docs/compat.md` example: a curl command and the response shown under it (`# …` lines).
struct Example {
    command: String,
    expected: Option<Value>,
}

/// The examples between `<!-- compat-examples -->` and `<!-- /compat-examples -->` markers in
/// `docs/compat.md`, in order.
fn doc_examples() -> Vec<Example> {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compat.md"))
            .expect("docs/compat.md");
    let mut out = Vec::new();
    let mut inside = false;
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed == "<!-- compat-examples -->" {
            inside = true;
            continue;
        }
        if trimmed == "<!-- /compat-examples -->" {
            inside = false;
            continue;
        }
        if !inside || !trimmed.starts_with("curl ") {
            continue;
        }
        // A command goes on after a trailing backslash, and inside a quoted body.
        let mut command = line.to_owned();
        loop {
            if command.ends_with('\\') {
                command.pop();
            } else if command.matches('\'').count() % 2 == 1 {
                command.push('\n');
            } else {
                break;
            }
            match lines.next() {
                Some(next) => command.push_str(next),
                None => break,
            }
        }
        let mut expected = String::new();
        while let Some(next) = lines.peek() {
            let Some(text) = next.trim().strip_prefix('#') else {
                break;
            };
            expected.push_str(text);
            expected.push('\n');
            lines.next();
        }
        let expected = (!expected.trim().is_empty()).then(|| {
            serde_json::from_str(&expected).unwrap_or_else(|e| {
                panic!("docs/compat.md response after {command:?} is not JSON: {e}")
            })
        });
        out.push(Example { command, expected });
    }
    out
}

/// Whether `got` matches `want`, where the string "…" in `want` stands for any value.
fn matches(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::String(w), _) if w == "…" => true,
        (Value::Object(w), Value::Object(g)) => {
            w.len() == g.len()
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|gv| matches(v, gv)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| matches(a, b))
        }
        _ => want == got,
    }
}

#[tokio::test]
async fn compat_doc_examples_run_verbatim() {
    let examples = doc_examples();
    assert!(
        examples.len() >= 15,
        "expected the compat examples of docs/compat.md, found {}",
        examples.len()
    );
    let s = TestServer::start().await;
    // docs/compat.md runs them after `tidings seed --demo` on a fresh data dir.
    seed_demo(&s.store).await.expect("demo");
    for example in examples {
        // Only the address differs from what a reader runs against `tidings serve`.
        let command = example.command.replace("http://127.0.0.1:8080", &s.base);
        // Off the runtime's thread: the server under test runs on it.
        let shell = command.clone();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&shell)
                .output()
        })
        .await
        .expect("join")
        .expect("run sh");
        assert!(output.status.success(), "{command}: {output:?}");
        let got: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{command}: not JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        if let Some(want) = example.expected {
            assert!(
                matches(&want, &got),
                "{}\n  docs/compat.md shows: {want}\n  server said: {got}",
                example.command
            );
        }
    }
}

#[tokio::test]
async fn accepted_writes_survive_a_restart() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    fs_post(
        &s,
        "/v1/subscribe",
        json!({"event_name": "feed", "consumer_id": "shayan", "producer_id": "joerogan"}),
    )
    .await;
    publish_tweet(&s, "joerogan", "tweet_1").await;
    fs_post(
        &s,
        "/v1/publish",
        json!({"verb": "mention", "producer_id": "joerogan", "item_id": "m1", "consumer_id": "shayan"}),
    )
    .await;
    afs_post(
        &s,
        "/post",
        NICO,
        json!({"type": "photo", "content": "a.jpeg"}),
    )
    .await;
    let dir = s.stop().await;

    let s = TestServer::start_in(dir, ServerConfig::default(), StoreConfig::default()).await;
    assert_eq!(
        consume(&s, "event_name=feed&consumer_id=shayan").await,
        ["tweet_1"]
    );
    assert_eq!(
        consume(&s, "event_name=notification&consumer_id=shayan").await,
        ["m1"]
    );
    // Verb types are registered again on first use after a restart.
    publish_tweet(&s, "joerogan", "tweet_2").await;
    let friends = afs_get(&s, "/feed/friends", IVAN).await;
    assert_eq!(
        rows(&friends["friends_feed"]),
        [row("nico", "post", json!(1), json!("photo"), Value::Null)]
    );
    let liked = afs_post(
        &s,
        "/activity",
        IVAN,
        json!({"verb": "like", "object": "photo:1"}),
    )
    .await;
    assert_eq!(liked["message"], "Activity recorded");
    s.assert_verified().await;
}

#[tokio::test]
async fn responses_keep_the_seeds_key_order() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    let client = reqwest::Client::new();
    let text = |path: &str, key: Option<&str>, body: Option<&str>| {
        let mut req = match body {
            Some(b) => client.post(format!("{}{path}", s.base)).body(b.to_owned()),
            None => client.get(format!("{}{path}", s.base)),
        };
        if let Some(key) = key {
            req = req.header("X-App-Key", key);
        }
        async move { req.send().await.expect("send").text().await.expect("text") }
    };
    let me = text("/me", Some(IVAN), None).await;
    assert!(
        me.starts_with(
            r#"{"id":1,"name":"ivan","auth_token":"abc123","follow_ids":[2],"created_at":"#
        ),
        "{me}"
    );
    let post = text(
        "/post",
        Some(IVAN),
        Some(r#"{"type":"post","content":"x"}"#),
    )
    .await;
    assert_eq!(
        post,
        r#"{"type":"post","object_id":1,"message":"Activity recorded"}"#
    );
    let mine = text("/feed/my?limit=1", Some(IVAN), None).await;
    assert!(
        mine.starts_with(r#"{"my_feed":[{"actor_name":"ivan","verb":"post","object_id":1,"object_type":"post","target_name":null,"time":"#),
        "{mine}"
    );
    let consumed = text("/v1/consume?event_name=feed&consumer_id=x", None, None).await;
    assert_eq!(consumed, r#"{"ok":true,"data":[]}"#);
    let refused = text("/v1/consume?event_name=nope&consumer_id=x", None, None).await;
    assert!(refused.starts_with(r#"{"ok":false,"error":"#), "{refused}");
}

#[tokio::test]
async fn any_user_can_mint_an_app_key() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let r = s.post(&ana, "/me/app-key", json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["username"], "ana");
    let key = r.body["app_key"].as_str().expect("key").to_owned();
    let me = afs_get(&s, "/me", &key).await;
    assert_eq!(me["name"], "ana");
    assert_eq!(me["auth_token"], key.as_str());
    // A new key replaces the old one.
    let r = s.post(&ana, "/me/app-key", json!({})).await;
    let newer = r.body["app_key"].as_str().expect("key").to_owned();
    assert_ne!(newer, key);
    let (status, _) = call(&s, reqwest::Method::GET, "/me", Some(&key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    afs_get(&s, "/me", &newer).await;
    // Without a session: 401 in the native shape.
    let r = s
        .request(reqwest::Method::POST, "/me/app-key", None, None, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn suspended_ids_and_oversized_bodies_are_refused_in_each_shape() {
    let s = TestServer::start().await;
    seed_demo(&s.store).await.expect("demo");
    publish_tweet(&s, "joerogan", "t1").await;
    s.store
        .set_user_status("fs-joerogan", tidings_store::model::UserStatus::Suspended)
        .await
        .expect("suspend");
    let (status, body) = fs_post(
        &s,
        "/v1/publish",
        json!({"verb": "tweet", "producer_id": "joerogan", "item_id": "t2"}),
    )
    .await;
    assert_fs_error(status, &body, StatusCode::FORBIDDEN);
    s.store
        .set_user_status("nico", tidings_store::model::UserStatus::Suspended)
        .await
        .expect("suspend");
    let (status, body) = call(&s, reqwest::Method::GET, "/me", Some(NICO), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], true);

    let huge = format!(
        r#"{{"verb":"tweet","producer_id":"a","item_id":"{}"}}"#,
        "x".repeat(300_000)
    );
    let (status, body) = call(&s, reqwest::Method::POST, "/v1/publish", None, Some(&huge)).await;
    assert_fs_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE);
    let huge = format!(r#"{{"type":"post","content":"{}"}}"#, "x".repeat(300_000));
    let (status, body) = call(&s, reqwest::Method::POST, "/post", Some(IVAN), Some(&huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], true);
}

#[tokio::test]
async fn feedstream_ids_written_as_whole_floats_are_integers_and_fractions_are_refused() {
    let s = TestServer::start().await;
    // JSON does not tell 7 from 7.0: both name the same producer and item.
    let (status, body) = fs_post(
        &s,
        "/v1/publish",
        json!({"verb": "tweet", "producer_id": 7.0, "item_id": 42}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = fs_post(
        &s,
        "/v1/retract",
        json!({"verb": "tweet", "producer_id": 7, "item_id": 42.0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for bad in [json!(7.5), json!(-9.3e18), json!(1.9e19)] {
        let (status, body) = fs_post(
            &s,
            "/v1/publish",
            json!({"verb": "tweet", "producer_id": bad, "item_id": "x"}),
        )
        .await;
        assert_fs_error(status, &body, StatusCode::BAD_REQUEST);
    }
}
