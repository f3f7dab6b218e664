//! HTTP tests of conversations and user groups (decision 0027): direct messages grouped by
//! participants, with unread counts and read markers; only participants see a conversation;
//! a new message arrives live with its conversation id; groups are addressable, filter the
//! inbox, join a circle in one step, and never leak a post to someone removed before it.
//! Run on PostgreSQL with `TIDINGS_TEST_STORE` (docs/testing.md).

mod common;

use common::TestServer;
use common::sse::SseClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn dm(content: &str, to: &[&str]) -> Value {
    json!({"type": "Create", "object": {"type": "Note", "content": content}, "to": to})
}

fn conversation(list: &Value, participants: &[&str]) -> Value {
    list["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|c| c["participants"] == json!(participants))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no conversation of {participants:?} in {list}"))
}

#[tokio::test]
async fn direct_messages_group_into_conversations_with_unread_counts() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let cy = s.user("cy").await;

    let first = s.publish(&ana, dm("hi bob", &["user:bob"])).await;
    let reply = s
        .publish(
            &bob,
            json!({"type": "Create", "object": {"type": "Note", "content": "hi ana"},
                   "inReplyTo": first["id"]}),
        )
        .await;
    s.publish(&ana, dm("all three", &["user:bob", "user:cy"]))
        .await;
    // Not conversations: public, circle and self-only posts.
    s.note(&ana, "public news", &["public"], &[]).await;
    s.note(&ana, "note to self", &["user:ana"], &[]).await;

    let list = s.get(&bob, "/conversations").await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(2));
    // Newest message first: the three-person conversation.
    assert_eq!(
        list.body["items"][0]["participants"],
        json!(["ana", "bob", "cy"])
    );
    let pair = conversation(&list.body, &["ana", "bob"]);
    assert_eq!(pair["last_message"]["id"], reply["id"]);
    // Bob wrote the last message of the pair; ana's first one is unread for him.
    assert_eq!(pair["unread"], 1);
    let id = pair["id"].as_str().expect("id").to_owned();

    // Ana's view: the same id, bob's reply unread.
    let ana_list = s.get(&ana, "/conversations").await.body;
    let ana_pair = conversation(&ana_list, &["ana", "bob"]);
    assert_eq!(ana_pair["id"], id.as_str());
    assert_eq!(ana_pair["unread"], 1);

    // Messages, newest first, paged.
    let page = s.get(&ana, &format!("/conversations/{id}?limit=1")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(TestServer::contents(&page.body), vec!["hi ana"]);
    assert_eq!(page.body["items"][0]["conversation"], id.as_str());
    let next = page.body["next"].as_str().expect("next");
    let older = s
        .get(&ana, &format!("/conversations/{id}?limit=1&before={next}"))
        .await;
    assert_eq!(TestServer::contents(&older.body), vec!["hi bob"]);
    assert!(older.body["next"].is_null());

    // Marking read clears the count; a marker never moves back.
    let read = s
        .post(&ana, &format!("/conversations/{id}/read"), json!(null))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["unread"], 0);
    let first_cursor = older.body["items"][0]["cursor"].as_str().expect("cursor");
    let back = s
        .post(
            &ana,
            &format!("/conversations/{id}/read"),
            json!({"cursor": first_cursor}),
        )
        .await;
    assert_eq!(back.body["unread"], 0, "{:?}", back.body);
    // A new message from bob is unread again.
    s.publish(&bob, dm("one more", &["user:ana"])).await;
    let ana_pair = conversation(&s.get(&ana, "/conversations").await.body, &["ana", "bob"]);
    assert_eq!(ana_pair["unread"], 1);
    assert_eq!(ana_pair["last_message"]["object"]["content"], "one more");

    // Outsiders: cy is not in the pair, so it does not exist for her; a malformed id neither.
    for path in [
        format!("/conversations/{id}"),
        "/conversations/cv_nope".to_owned(),
    ] {
        let r = s.get(&cy, &path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {:?}", r.body);
    }
    let r = s
        .post(&cy, &format!("/conversations/{id}/read"), json!(null))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get(&cy, "/conversations").await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Bad input.
    for path in ["/conversations?limit=0", "/conversations?before=zzz"] {
        assert_eq!(
            s.get(&ana, path).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    let r = s
        .post(
            &ana,
            &format!("/conversations/{id}/read"),
            json!({"cursor": "bad"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // A retracted message leaves the conversation.
    let last = s
        .get(&ana, &format!("/conversations/{id}?limit=1"))
        .await
        .body;
    let last_id = last["items"][0]["activity"]["id"].as_str().expect("id");
    let r = s
        .post(&bob, &format!("/activities/{last_id}/retract"), json!(null))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    s.settle().await;
    let ana_pair = conversation(&s.get(&ana, "/conversations").await.body, &["ana", "bob"]);
    assert_eq!(ana_pair["unread"], 0);
    assert_eq!(ana_pair["last_message"]["object"]["content"], "hi ana");
    s.assert_verified().await;
}

#[tokio::test]
async fn a_new_message_arrives_live_with_its_conversation() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let mut live = SseClient::open(&s, "", &bob, None).await;
    live.expect("ready").await;
    s.publish(&ana, dm("are you there?", &["user:bob"])).await;
    let event = live.expect("entry").await.json();
    let id = event["conversation"]
        .as_str()
        .expect("conversation id")
        .to_owned();
    assert!(id.starts_with("cv_"), "{event}");
    assert_eq!(event["activity"]["object"]["content"], "are you there?");
    let list = s.get(&bob, "/conversations").await.body;
    assert_eq!(list["items"][0]["id"], id.as_str());
    // The inbox item carries it too; a public post does not.
    s.note(&ana, "hello all", &["public"], &[]).await;
    let inbox = s.get(&ana, "/inbox").await.body;
    assert!(inbox["items"][0]["conversation"].is_null(), "{inbox}");
    assert_eq!(inbox["items"][1]["conversation"], id.as_str());
}

#[tokio::test]
async fn groups_address_filter_and_never_leak_after_removal() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let cy = s.user("cy").await;
    let dee = s.user("dee").await;

    let r = s
        .post(
            &ana,
            "/groups",
            json!({"name": "Friends", "members": ["bob", "cy"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["address"], "group:friends");
    assert_eq!(r.body["members"], json!(["bob", "cy"]));
    // Bad input changes nothing.
    let before = s.store.last_seq().await.expect("last");
    for (body, status) in [
        (
            json!({"name": "friends", "members": []}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"name": "no good", "members": []}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "x", "members": ["nobody"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"name": "x", "extra": 1}), StatusCode::BAD_REQUEST),
    ] {
        let r = s.post(&ana, "/groups", body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
    }
    assert_eq!(s.store.last_seq().await.expect("last"), before);

    let first = s
        .note(&ana, "dinner friday?", &["group:friends"], &[])
        .await;
    for (who, gets) in [(&bob, true), (&cy, true), (&dee, false)] {
        let inbox = s.get(who, "/inbox").await.body;
        assert_eq!(
            TestServer::ids(&inbox).contains(&first["id"].as_str().unwrap_or("").to_owned()),
            gets
        );
    }
    // Nobody else may address or see ana's group (it does not exist for them).
    let r = s
        .post(&bob, "/outbox", dm("hijack", &["group:friends"]))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "unknown_group");
    assert_eq!(
        s.get(&bob, "/groups/friends").await.status,
        StatusCode::NOT_FOUND
    );

    // Cy leaves the group: the next post does not reach her, the earlier one stays.
    let r = s.delete(&ana, "/groups/friends/members/cy").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["members"], json!(["bob"]));
    let second = s.note(&ana, "bob only now", &["group:friends"], &[]).await;
    let cy_inbox = TestServer::ids(&s.get(&cy, "/inbox").await.body);
    assert!(cy_inbox.contains(&first["id"].as_str().unwrap_or("").to_owned()));
    assert!(!cy_inbox.contains(&second["id"].as_str().unwrap_or("").to_owned()));
    let r = s
        .get(
            &cy,
            &format!("/activities/{}", second["id"].as_str().unwrap_or("")),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "not readable either");
    // A reply from bob goes back to the group as it is now (ana's group, bob does not own it).
    let reply = s
        .publish(
            &bob,
            json!({"type": "Create", "object": {"type": "Note", "content": "yes!"},
                   "inReplyTo": second["id"]}),
        )
        .await;
    assert!(
        TestServer::ids(&s.get(&ana, "/inbox").await.body)
            .contains(&reply["id"].as_str().unwrap_or("").to_owned())
    );

    // from=group:NAME narrows ana's inbox to the members' posts.
    let r = s
        .post(&ana, "/groups/friends/members", json!({"members": ["dee"]}))
        .await;
    assert_eq!(r.body["members"], json!(["bob", "dee"]));
    s.note(&bob, "bob says", &["public"], &[]).await;
    s.note(&cy, "cy says", &["user:ana"], &[]).await;
    s.note(&dee, "dee says", &["user:ana"], &[]).await;
    let narrowed = s.get(&ana, "/inbox?from=group:friends").await;
    assert_eq!(narrowed.status, StatusCode::OK, "{:?}", narrowed.body);
    assert_eq!(
        TestServer::contents(&narrowed.body),
        vec!["dee says", "yes!"],
        "bob's public post is not in ana's inbox (she does not follow him)"
    );
    assert_eq!(
        s.get(&ana, "/inbox?from=bob").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.get(&ana, "/inbox?from=group:nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&ana, "/groups").await.body["items"][0]["name"],
        "friends"
    );

    // Membership changes are activities in ana's outbox (unlisted), verified like any.
    s.assert_verified().await;
    assert_eq!(
        s.delete(&ana, "/groups/friends").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.get(&ana, "/groups/friends").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn circle_groups_and_adding_a_group_to_a_circle() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let cy = s.user("cy").await;
    s.circle(&ana, "eng", "private", "invite").await;
    s.circle(&ana, "ops", "private", "invite").await;
    s.post(
        &ana,
        "/groups",
        json!({"name": "pals", "members": ["bob", "cy"]}),
    )
    .await;
    // One step: the whole group joins the circle.
    let r = s
        .post(&ana, "/circles/eng/members", json!({"group": "pals"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
    let members = s.get(&ana, "/circles/eng/members").await.body;
    assert_eq!(
        members["items"].as_array().map(Vec::len),
        Some(3),
        "{members}"
    );
    // Bob is no moderator of ops, and the group is not his.
    let r = s
        .post(&bob, "/circles/ops/members", json!({"group": "pals"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);

    // A circle's group: made by its owner, used by its members, changed only by keepers.
    let r = s
        .post(
            &ana,
            "/groups",
            json!({"name": "leads", "circle": "eng", "members": ["bob"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["address"], "group:leads@eng");
    let r = s
        .post(&bob, "/groups", json!({"name": "mine", "circle": "eng"}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let post = s.note(&cy, "to the leads", &["group:leads@eng"], &[]).await;
    assert!(
        TestServer::ids(&s.get(&bob, "/inbox").await.body)
            .contains(&post["id"].as_str().unwrap_or("").to_owned())
    );
    let r = s
        .post(&cy, "/groups/leads@eng/members", json!({"members": ["cy"]}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let listed = s.get(&cy, "/groups").await.body;
    assert_eq!(listed["items"][0]["address"], "group:leads@eng");
    // An outsider of the circle may not address it.
    let dee = s.user("dee").await;
    let r = s
        .post(&dee, "/outbox", dm("hi", &["group:leads@eng"]))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Not a timed test: prints read latencies of the conversation endpoints (debug build, embedded
/// store; debug numbers are only for comparing with each other). Run with `--ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn conversation_read_figures() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mut people = Vec::new();
    for i in 0..100 {
        people.push(s.user(&format!("p{i}")).await);
    }
    for i in 0..100 {
        s.post(&ana, "/outbox", dm("hello", &[&format!("user:p{i}")]))
            .await;
    }
    for n in 0..400 {
        s.post(&people[0], "/outbox", dm(&format!("m{n}"), &["user:ana"]))
            .await;
    }
    s.settle().await;
    let id = s.get(&ana, "/conversations?limit=1").await.body["items"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (what, path) in [
        (
            "list of 100 conversations, first page of 20",
            "/conversations".to_owned(),
        ),
        (
            "a 401-message conversation, first page of 20",
            format!("/conversations/{id}"),
        ),
        ("inbox, first page of 20", "/inbox".to_owned()),
    ] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = std::time::Instant::now();
            let r = s.get(&ana, &path).await;
            times.push(t.elapsed());
            assert_eq!(r.status, StatusCode::OK);
        }
        times.sort();
        println!(
            "{what}: p50 {:?} p99 {:?}",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}
