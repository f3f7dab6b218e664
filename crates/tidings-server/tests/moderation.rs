//! HTTP tests of moderation (decision 0029): reporting an activity, the report queue and its
//! resolution (dismiss, hide, remove, ban), circle bans, the public moderation log with
//! reporters kept to moderators, authorization across circles, bad input. Run on PostgreSQL
//! with `TIDINGS_TEST_STORE` (docs/testing.md).

mod common;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn id(activity: &Value) -> String {
    activity["id"].as_str().expect("id").to_owned()
}

/// ana owns the public circle `eng`; bob and cara are members; dan only reads it.
async fn community(s: &TestServer) -> [String; 4] {
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let cara = s.user("cara").await;
    let dan = s.user("dan").await;
    s.circle(&ana, "eng", "public", "open").await;
    for (token, name) in [(&bob, "bob"), (&cara, "cara")] {
        let r = s.put(token, &format!("/circles/eng/members/{name}")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    [ana, bob, cara, dan]
}

fn queue_ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["activity_id"].as_str().expect("activity_id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_report_reaches_the_queue_and_a_hide_takes_the_item_down() {
    let s = TestServer::start().await;
    let [ana, bob, cara, dan] = community(&s).await;
    let post = id(&s.note(&bob, "buy cheap pills", &["circle:eng"], &[]).await);

    let r = s
        .post(
            &cara,
            &format!("/activities/{post}/reports"),
            json!({"reason": "spam", "comment": "ads again"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["circles"], json!(["eng"]));
    assert_eq!(r.body["reason"], "spam");
    let flag = r.body["id"].as_str().expect("flag id").to_owned();
    // A reader who is not a member may report what they can read, too.
    let r = s
        .post(
            &dan,
            &format!("/activities/{post}/reports"),
            json!({"reason": "other"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Once per reporter while open; never one's own; never what one cannot read.
    let r = s
        .post(
            &cara,
            &format!("/activities/{post}/reports"),
            json!({"reason": "hate"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "already_reported")
    );
    let r = s
        .post(
            &bob,
            &format!("/activities/{post}/reports"),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "own_activity")
    );
    let r = s
        .post(
            &cara,
            "/activities/no-such-thing/reports",
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Members see neither the queue nor who reported.
    let r = s.get(&cara, "/circles/eng/reports").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "not_circle_moderator")
    );
    let r = s.get(&cara, "/circles/eng/moderation-log").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let entries = r.body["items"].as_array().expect("items").clone();
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert_eq!(e["action"], "report");
        assert!(e["actor"].is_null(), "reporter shown to a member: {e}");
    }
    assert!(!r.body.to_string().contains("ads again"));
    // The reporter's Flag is theirs and the keepers', not the author's.
    assert_eq!(
        s.get(&bob, &format!("/activities/{flag}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&ana, &format!("/activities/{flag}")).await.status,
        StatusCode::OK
    );

    // The owner's queue: the item, its reports with reporters, the author's record.
    let r = s.get(&ana, "/circles/eng/reports").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(queue_ids(&r.body), vec![post.clone()]);
    let item = &r.body["items"][0];
    assert_eq!(item["state"], "open");
    assert_eq!(item["activity"]["object"]["content"], "buy cheap pills");
    let reporters: Vec<&str> = item["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .map(|r| r["reporter"].as_str().expect("reporter"))
        .collect();
    assert_eq!(reporters, vec!["cara", "dan"]);
    assert_eq!(item["reports"][0]["comment"], "ads again");
    assert_eq!(item["author"]["username"], "bob");
    assert_eq!(item["author"]["posts"], 1);
    assert_eq!(item["author"]["reported"], 1);
    let r = s.get(&ana, "/circles/eng/moderation-log").await;
    assert_eq!(r.body["items"][1]["actor"], "cara");

    // Hide: both reports resolved, the item gone from every audience.
    let r = s
        .post(
            &ana,
            &format!("/circles/eng/reports/{post}/resolution"),
            json!({"decision": "hide", "reason": "spam is off-topic here"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["resolved"], 2);
    let decision = r.body["id"].as_str().expect("decision id").to_owned();
    s.settle().await;
    assert_eq!(
        s.get(&cara, &format!("/activities/{post}")).await.status,
        StatusCode::GONE
    );
    let stream = s.get(&dan, "/circles/eng/stream").await;
    assert!(!TestServer::ids(&stream.body).contains(&post));
    let inbox = s.get(&cara, "/inbox").await;
    assert!(!TestServer::ids(&inbox.body).contains(&post));
    // The author sees why: the decision is addressed to them.
    let r = s.get(&bob, &format!("/activities/{decision}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["moderation"]["reason"], "spam is off-topic here");
    assert_eq!(r.body["moderation"]["decision"], "hide");
    // The queue moves it to resolved; a second resolution is refused.
    assert!(queue_ids(&s.get(&ana, "/circles/eng/reports").await.body).is_empty());
    let r = s.get(&ana, "/circles/eng/reports?state=resolved").await;
    assert_eq!(queue_ids(&r.body), vec![post.clone()]);
    assert_eq!(r.body["items"][0]["retracted"], true);
    assert_eq!(r.body["items"][0]["author"]["taken_down"], 1);
    let r = s
        .post(
            &ana,
            &format!("/circles/eng/reports/{post}/resolution"),
            json!({"decision": "dismiss"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "already_resolved")
    );
    // A member reads who decided what and why.
    let r = s.get(&cara, "/circles/eng/moderation-log").await;
    assert_eq!(r.body["items"][0]["action"], "hide");
    assert_eq!(r.body["items"][0]["actor"], "ana");
    assert_eq!(r.body["items"][0]["object"], post.as_str());
    s.assert_verified().await;
}

#[tokio::test]
async fn a_banned_author_cannot_post_to_or_rejoin_the_circle() {
    let s = TestServer::start().await;
    let [ana, bob, cara, _dan] = community(&s).await;
    let kept = id(&s.note(&bob, "an old post", &["circle:eng"], &[]).await);
    let post = id(&s
        .note(&bob, "you are all idiots", &["circle:eng"], &[])
        .await);
    let r = s
        .post(
            &cara,
            &format!("/activities/{post}/reports"),
            json!({"reason": "harassment"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = s
        .post(
            &ana,
            &format!("/circles/eng/reports/{post}/resolution"),
            json!({"decision": "ban", "reason": "insults", "until": "2999-01-01T00:00:00+02:00"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["until"], "2998-12-31T22:00:00.000Z");

    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "let me back"}, "to": ["circle:eng"]}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "banned_from_circle")
    );
    // A reply inherits the circle: refused too.
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "reply"}, "inReplyTo": kept}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "banned_from_circle")
    );
    let r = s.put(&bob, "/circles/eng/members/bob").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "banned_from_circle")
    );
    // Not even the owner adds them back while the ban holds.
    let r = s.put(&ana, "/circles/eng/members/bob").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "banned_from_circle")
    );
    let members = s.get(&ana, "/circles/eng/members").await;
    assert!(!members.body.to_string().contains("\"bob\""));

    let r = s.get(&ana, "/circles/eng/bans").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["items"][0]["username"], "bob");
    assert_eq!(r.body["items"][0]["until"], "2998-12-31T22:00:00.000Z");
    assert_eq!(
        s.get(&cara, "/circles/eng/bans").await.status,
        StatusCode::FORBIDDEN
    );
    // Posts elsewhere are untouched.
    s.note(&bob, "still here", &["public"], &[]).await;
    s.assert_verified().await;
}

#[tokio::test]
async fn moderators_act_only_in_their_circles_and_never_on_the_owner() {
    let s = TestServer::start().await;
    let [ana, bob, cara, dan] = community(&s).await;
    let eve = s.user("eve").await;
    s.circle(&eve, "ops", "public", "open").await;
    s.circle(&eve, "secret", "private", "invite").await;
    // ana appoints cara moderator of eng.
    let r = s
        .request(
            reqwest::Method::PUT,
            "/circles/eng/members/cara",
            Some(&ana),
            Some(json!({"role": "moderator"})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let post = id(&s.note(&bob, "meh", &["circle:eng"], &[]).await);
    let owners = id(&s.note(&ana, "owner's post", &["circle:eng"], &[]).await);
    for target in [&post, &owners] {
        let r = s
            .post(
                &dan,
                &format!("/activities/{target}/reports"),
                json!({"reason": "off_topic"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // The moderator of eng sees eng's queue; eve (owner of another circle) does not.
    assert_eq!(
        s.get(&cara, "/circles/eng/reports").await.status,
        StatusCode::OK
    );
    let r = s.get(&eve, "/circles/eng/reports").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "not_circle_moderator")
    );
    let r = s
        .post(
            &eve,
            &format!("/circles/eng/reports/{post}/resolution"),
            json!({"decision": "hide"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "not_circle_moderator")
    );
    // eng's moderator finds nothing to resolve in ops, and a private circle does not exist
    // for outsiders.
    let r = s
        .post(
            &cara,
            &format!("/circles/ops/reports/{post}/resolution"),
            json!({"decision": "hide"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.get(&cara, "/circles/secret/reports").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get(&cara, "/circles/secret/moderation-log").await.status,
        StatusCode::NOT_FOUND
    );
    // The owner cannot be banned or removed from their own circle.
    for decision in ["ban", "remove"] {
        let r = s
            .post(
                &cara,
                &format!("/circles/eng/reports/{owners}/resolution"),
                json!({"decision": decision}),
            )
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "owner_cannot_leave")
        );
    }
    // A moderator removes a member: the item goes, and so does the membership.
    let r = s
        .post(
            &cara,
            &format!("/circles/eng/reports/{post}/resolution"),
            json!({"decision": "remove", "reason": "trolling"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let members = s.get(&ana, "/circles/eng/members").await;
    assert!(!members.body.to_string().contains("\"bob\""));
    // Removed, not banned: bob may join again.
    assert_eq!(
        s.put(&bob, "/circles/eng/members/bob").await.status,
        StatusCode::CREATED
    );
    // Dismissing leaves the item where it was.
    let r = s
        .post(
            &ana,
            &format!("/circles/eng/reports/{owners}/resolution"),
            json!({"decision": "dismiss"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        s.get(&dan, &format!("/activities/{owners}")).await.status,
        StatusCode::OK
    );
    // A site admin moderates every circle.
    let root = s.admin("root").await;
    assert_eq!(
        s.get(&root, "/circles/eng/reports?state=resolved")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bad_moderation_input_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    let [ana, bob, cara, _dan] = community(&s).await;
    let post = id(&s.note(&bob, "hello", &["circle:eng"], &[]).await);
    let before = s.store.last_seq().await.expect("last");
    for body in [
        json!({"reason": "boring"}),
        json!({}),
        json!({"reason": "spam", "comment": "x".repeat(1001)}),
        json!({"reason": "spam", "extra": 1}),
        json!({"reason": "spam", "comment": "bell\u{7}"}),
    ] {
        let r = s
            .post(&cara, &format!("/activities/{post}/reports"), body.clone())
            .await;
        assert!(
            r.status.is_client_error() && r.status != StatusCode::NOT_FOUND,
            "{body}: {:?}",
            r
        );
    }
    let r = s
        .post(
            &cara,
            &format!("/activities/{post}/reports"),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let after_report = s.store.last_seq().await.expect("last");
    assert_eq!(after_report, before + 1);
    for (body, code) in [
        (json!({"decision": "delete"}), ""),
        (
            json!({"decision": "ban", "until": "yesterday"}),
            "invalid_until",
        ),
        (
            json!({"decision": "ban", "until": "2001-01-01T00:00:00Z"}),
            "invalid_until",
        ),
        (
            json!({"decision": "hide", "until": "2999-01-01T00:00:00Z"}),
            "invalid_until",
        ),
        (
            json!({"decision": "hide", "reason": "r".repeat(1001)}),
            "invalid_note",
        ),
    ] {
        let r = s
            .post(
                &ana,
                &format!("/circles/eng/reports/{post}/resolution"),
                body.clone(),
            )
            .await;
        assert!(r.status.is_client_error(), "{body}: {:?}", r);
        if !code.is_empty() {
            assert_eq!(r.code(), code, "{body}");
        }
    }
    for path in [
        "/circles/eng/reports?limit=0",
        "/circles/eng/reports?state=all",
        "/circles/eng/moderation-log?limit=101",
        "/circles/eng/moderation-log?before=0",
    ] {
        assert_eq!(
            s.get(&ana, path).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    let r = s
        .post(
            &ana,
            "/circles/eng/reports/nothing/resolution",
            json!({"decision": "hide"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(s.store.last_seq().await.expect("last"), after_report);
    assert_eq!(
        s.get(&cara, &format!("/activities/{post}")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_blocked_person_cannot_reach_the_blocker_and_is_never_seen() {
    let s = TestServer::start().await;
    let [ana, bob, cara, _dan] = community(&s).await;
    // bob follows ana, and ana follows bob, before the block.
    for (token, whom) in [(&bob, "ana"), (&ana, "bob")] {
        let r = s
            .post(token, &format!("/users/{whom}/follow"), json!({}))
            .await;
        assert!(r.status.is_success(), "{:?}", r.body);
    }
    let anas = id(&s.note(&ana, "ana writes", &["circle:eng"], &[]).await);
    let r = s.put(&ana, "/me/blocks/bob").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(s.put(&ana, "/me/blocks/bob").await.status, StatusCode::OK);
    assert_eq!(
        s.get(&ana, "/me/blocks").await.body["items"],
        json!(["bob"])
    );

    // Addressing, following, replying: refused.
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "hey"}, "to": ["user:ana"]}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "blocked"));
    let r = s.post(&bob, "/users/ana/follow", json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "blocked"));
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "re"}, "inReplyTo": anas}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "blocked"));
    // The follows both ways ended.
    let r = s.get(&ana, "/users/ana/followers").await;
    assert!(!r.body.to_string().contains("\"bob\""), "{:?}", r.body);
    let r = s.get(&ana, "/users/ana/following").await;
    assert!(!r.body.to_string().contains("\"bob\""), "{:?}", r.body);

    // ana never sees bob's posts in the circle; cara still does.
    let bobs = id(&s.note(&bob, "bob in eng", &["circle:eng"], &[]).await);
    s.settle().await;
    assert!(!TestServer::ids(&s.get(&ana, "/inbox").await.body).contains(&bobs));
    assert!(TestServer::ids(&s.get(&cara, "/inbox").await.body).contains(&bobs));
    // A reply by cara to ana's post does not carry bob's… and cara replying to bob is fine.
    let r = s
        .post(
            &cara,
            "/outbox",
            json!({"object": {"content": "re bob"}, "inReplyTo": bobs}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Lifted: bob's posts show again, and he may address ana.
    assert_eq!(
        s.delete(&ana, "/me/blocks/bob").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.delete(&ana, "/me/blocks/bob").await.status,
        StatusCode::NOT_FOUND
    );
    s.settle().await;
    assert!(TestServer::ids(&s.get(&ana, "/inbox").await.body).contains(&bobs));
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "sorry"}, "to": ["user:ana"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

#[tokio::test]
async fn a_mute_hides_the_person_from_the_muter_only() {
    let s = TestServer::start().await;
    let [ana, bob, cara, _dan] = community(&s).await;
    let before = id(&s.note(&bob, "before the mute", &["circle:eng"], &[]).await);
    let r = s.put(&ana, "/me/mutes/bob").await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["kind"], "mute");
    let after = id(&s.note(&bob, "after the mute", &["circle:eng"], &[]).await);
    s.settle().await;
    let seen = TestServer::ids(&s.get(&ana, "/inbox").await.body);
    assert!(
        !seen.contains(&before) && !seen.contains(&after),
        "{seen:?}"
    );
    assert!(TestServer::ids(&s.get(&cara, "/inbox").await.body).contains(&after));
    // Muted people may still address the muter (a mute is one way).
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "hi"}, "to": ["user:ana"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(s.get(&ana, "/me/mutes").await.body["items"], json!(["bob"]));
    for (path, status) in [
        ("/me/mutes/ana", StatusCode::UNPROCESSABLE_ENTITY),
        ("/me/mutes/nobody", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(s.put(&ana, path).await.status, status, "{path}");
    }
    assert_eq!(
        s.delete(&ana, "/me/mutes/bob").await.status,
        StatusCode::NO_CONTENT
    );
    s.settle().await;
    assert!(TestServer::ids(&s.get(&ana, "/inbox").await.body).contains(&after));
}

#[tokio::test]
async fn a_group_post_never_reaches_a_member_who_blocks_its_author() {
    let s = TestServer::start().await;
    let [ana, bob, cara, _dan] = community(&s).await;
    let r = s
        .post(
            &bob,
            "/groups",
            json!({"name": "pals", "members": ["ana", "cara"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        s.put(&ana, "/me/blocks/bob").await.status,
        StatusCode::CREATED
    );
    // bob names the group, not ana: the post is accepted and ana is left out silently.
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"object": {"content": "to my pals"}, "to": ["group:pals"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let post = id(&r.body);
    s.settle().await;
    assert!(TestServer::ids(&s.get(&cara, "/inbox").await.body).contains(&post));
    // Lifting the block later does not bring it: it never reached her.
    assert_eq!(
        s.delete(&ana, "/me/blocks/bob").await.status,
        StatusCode::NO_CONTENT
    );
    s.settle().await;
    assert!(!TestServer::ids(&s.get(&ana, "/inbox").await.body).contains(&post));
}
