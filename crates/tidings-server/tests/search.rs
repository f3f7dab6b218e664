//! HTTP tests of `GET /api/v1/search`: bad input is a 400 with a clear code and changes
//! nothing; paging walks every result once; operators, phrases, prefixes and exclusions;
//! highlights are escaped and marked; a reader finds only what they may read; circles and
//! people; saved searches as subscriptions (`POST /api/v1/subscriptions` with
//! `"tokio panic"@eng`) arriving live with their reason. Run on PostgreSQL with
//! `TIDINGS_TEST_STORE` (docs/testing.md).

mod common;

use common::TestServer;
use common::sse::SseClient;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Ids of the activities a search finds, walking every page.
async fn find_all(s: &TestServer, token: &str, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = format!("/search?{query}");
    loop {
        let r = s.get(token, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        ids.extend(TestServer::ids(&r.body));
        match r.body["next"].as_str() {
            Some(next) => path = format!("/search?{query}&before={next}"),
            None => return ids,
        }
    }
}

fn id(activity: &Value) -> String {
    activity["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn bad_queries_are_400s_that_change_nothing() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    s.note(&ana, "hello tokio", &["public"], &[]).await;
    let last = s.store.last_seq().await.expect("last");
    let long = "a".repeat(300);
    for (query, code) in [
        (format!("q={long}"), "query_too_long"),
        ("q=%22open".to_owned(), "query_unclosed_quote"),
        ("q=from:".to_owned(), "query_empty_operator"),
        ("q=in:Bad!Name".to_owned(), "query_invalid_operator"),
        (format!("q={}", "ab%20".repeat(17)), "query_too_many_terms"),
        ("q=".to_owned(), "query_empty"),
        ("q=%20%20--".to_owned(), "query_empty"),
        ("q=tokio&limit=0".to_owned(), "invalid_limit"),
        ("q=tokio&limit=101".to_owned(), "invalid_limit"),
        ("q=tokio&before=nonsense".to_owned(), "invalid_cursor"),
        ("q=tokio&since=yesterday".to_owned(), "invalid_filter"),
        ("q=tokio&author=Not%20A%20Name".to_owned(), "invalid_filter"),
        ("q=tokio&object_type=No%20te".to_owned(), "invalid_filter"),
        (
            "q=tokio&type=people&circle=eng".to_owned(),
            "invalid_filter",
        ),
    ] {
        let r = s.get(&ana, &format!("/search?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {:?}", r.body);
        assert_eq!(r.code(), code, "{query}: {:?}", r.body);
        assert!(
            !r.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{query}: a message"
        );
    }
    for query in ["q=tokio&type=bogus", "q=tokio&sort=worst"] {
        let r = s.get(&ana, &format!("/search?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {:?}", r.body);
    }
    let r = s
        .request(reqwest::Method::GET, "/search?q=tokio", None, None, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.store.last_seq().await.expect("last"),
        last,
        "nothing stored"
    );
    s.assert_verified().await;
}

#[tokio::test]
async fn pages_walk_every_result_once_in_both_orders() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let mut published = Vec::new();
    for i in 0..7 {
        let a = s
            .note(&ana, &format!("alpha number {i}"), &["public"], &[])
            .await;
        published.push(id(&a));
    }
    s.note(&ana, "beta only", &["public"], &[]).await;
    published.reverse();
    assert_eq!(
        find_all(&s, &ana, "q=alpha&limit=3").await,
        published,
        "newest first"
    );
    let best = find_all(&s, &ana, "q=alpha&limit=2&sort=best").await;
    assert_eq!(best.len(), 7);
    let mut sorted = best.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "no result twice: {best:?}");
    let r = s.get(&ana, "/search?q=alpha&sort=best&limit=1").await;
    assert!(r.body["items"][0]["score"].is_number(), "{:?}", r.body);
    // A page that is the last says so.
    let r = s.get(&ana, "/search?q=beta").await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(1));
    assert!(r.body["next"].is_null());
}

#[tokio::test]
async fn operators_highlights_and_visibility() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bo = s.user("bo").await;
    let cy = s.user("cy").await;
    s.circle(&ana, "eng", "private", "invite").await;
    // Invited by the owner, then accepted.
    let r = s.put(&ana, "/circles/eng/members/bo").await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let r = s.put(&bo, "/circles/eng/members/bo").await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let public = s
        .publish(
            &ana,
            json!({"object": {"type": "Article", "name": "Tokio <panic>", "content": "the <script>alert(1)</script> runtime & friends"},
                   "to": ["public"], "tag": ["rust"]}),
        )
        .await;
    let private = s
        .note(&ana, "tokio roadmap for eng", &["circle:eng"], &["plans"])
        .await;
    let direct = s.note(&bo, "tokio question", &["user:ana"], &[]).await;
    // Visibility: the outsider finds the public post only.
    assert_eq!(find_all(&s, &cy, "q=tokio").await, [id(&public)]);
    assert_eq!(
        find_all(&s, &bo, "q=tokio").await,
        [id(&direct), id(&private), id(&public)]
    );
    assert_eq!(
        find_all(&s, &ana, "q=tokio").await,
        [id(&direct), id(&private), id(&public)]
    );
    assert!(find_all(&s, &cy, "q=roadmap").await.is_empty());
    assert!(find_all(&s, &cy, "q=in:eng").await.is_empty());
    // Operators and filters.
    assert_eq!(find_all(&s, &bo, "q=in:eng").await, [id(&private)]);
    assert_eq!(
        find_all(&s, &bo, "q=tokio&circle=eng").await,
        [id(&private)]
    );
    assert_eq!(find_all(&s, &ana, "q=from:bo%20tokio").await, [id(&direct)]);
    assert_eq!(find_all(&s, &ana, "q=tokio&author=bo").await, [id(&direct)]);
    assert_eq!(find_all(&s, &ana, "q=tag:rust").await, [id(&public)]);
    assert_eq!(
        find_all(&s, &ana, "q=tokio&tag=plans").await,
        [id(&private)]
    );
    assert_eq!(
        find_all(&s, &ana, "q=tokio&object_type=Article").await,
        [id(&public)]
    );
    assert_eq!(
        find_all(&s, &ana, "q=tokio%20-roadmap%20-%22question%22").await,
        [id(&public)]
    );
    assert_eq!(
        find_all(&s, &ana, "q=%22tokio%20roadmap%22").await,
        [id(&private)]
    );
    assert_eq!(find_all(&s, &ana, "q=roa").await, [id(&private)], "prefix");
    assert!(
        find_all(&s, &ana, "q=roa%20").await.is_empty(),
        "a finished word is whole"
    );
    assert!(
        find_all(&s, &ana, "q=tokio&since=2100-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert_eq!(
        find_all(&s, &ana, "q=tokio&until=2100-01-01T00:00:00%2B02:00")
            .await
            .len(),
        3
    );
    // Highlights: escaped, with marks around the matched words only.
    let r = s.get(&cy, "/search?q=tokio%20runtime").await;
    let hit = &r.body["items"][0];
    assert_eq!(
        hit["highlight"]["title"],
        json!("<mark>Tokio</mark> &lt;panic&gt;")
    );
    assert_eq!(
        hit["highlight"]["snippet"],
        json!("the &lt;script&gt;alert(1)&lt;/script&gt; <mark>runtime</mark> &amp; friends")
    );
    // A retraction leaves the index at once; a hide hides it from the one who hid it.
    let r = s
        .post(
            &ana,
            &format!("/activities/{}/retract", id(&public)),
            json!({}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert!(find_all(&s, &cy, "q=tokio").await.is_empty());
    let r = s.delete(&ana, &format!("/inbox/{}", id(&direct))).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(find_all(&s, &ana, "q=tokio").await, [id(&private)]);
    assert_eq!(
        find_all(&s, &bo, "q=tokio").await,
        [id(&direct), id(&private)]
    );
}

#[tokio::test]
async fn circles_and_people() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let cy = s.user("cy").await;
    s.user("anatole").await;
    s.circle(&ana, "gardening", "public", "open").await;
    s.circle(&ana, "garden-secrets", "private", "invite").await;
    let names = |r: &common::Resp, key: &str, field: &str| -> Vec<String> {
        r.body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i[key][field].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let r = s.get(&cy, "/search?type=circles&q=garden").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(names(&r, "circle", "name"), ["gardening"]);
    assert_eq!(
        r.body["items"][0]["highlight"]["snippet"],
        json!("the <mark>gardening</mark> circle")
    );
    let r = s.get(&ana, "/search?type=circles&q=garden&limit=1").await;
    let first = names(&r, "circle", "name");
    let next = r.body["next"].as_str().expect("next").to_owned();
    let r = s
        .get(
            &ana,
            &format!("/search?type=circles&q=garden&limit=1&before={next}"),
        )
        .await;
    let mut both = first;
    both.extend(names(&r, "circle", "name"));
    both.sort();
    assert_eq!(both, ["garden-secrets", "gardening"]);
    let r = s.get(&cy, "/search?type=people&q=ana&sort=best").await;
    assert_eq!(names(&r, "user", "username"), ["ana", "anatole"]);
}

#[tokio::test]
async fn saved_searches_arrive_live_with_their_reason() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bo = s.user("bo").await;
    s.circle(&ana, "eng", "public", "open").await;
    s.circle(&ana, "sec", "private", "invite").await;

    // Bad terms are 400s with a position, and store nothing.
    for (expr, position) in [
        ("\"tokio", 6),
        ("\"tokio\"eng", 7),
        ("\"tokio\"@Bad!", 11),
        ("\"tok* -x\"", 0),
        ("\"from:ana\"", 0),
    ] {
        let r = s.post(&bo, "/subscriptions", json!({ "expr": expr })).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{expr}: {:?}", r.body);
        assert_eq!(r.code(), "invalid_expression", "{expr}");
        assert_eq!(r.body["error"]["details"]["position"], position, "{expr}");
    }
    // A private circle the caller may not read is unknown to them.
    let r = s
        .post(&bo, "/subscriptions", json!({"expr": "\"tokio\"@sec"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let before = s.get(&bo, "/subscriptions").await.body;

    let r = s
        .post(
            &bo,
            "/subscriptions",
            json!({"expr": "  \"Tokio   panic\"@Eng "}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["expr"], "\"Tokio panic\"@eng");
    let in_eng = r.body["id"].as_i64().expect("id");
    let again = s
        .post(
            &bo,
            "/subscriptions",
            json!({"expr": "\"Tokio panic\"@eng"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "saving it twice keeps one");
    let r = s
        .post(&bo, "/subscriptions", json!({"expr": "\"rust async\""}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let anywhere = r.body["id"].as_i64().expect("id");
    let listed = s.get(&bo, "/subscriptions").await.body;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        before["items"].as_array().map(|v| v.len() + 2)
    );

    let mut live = SseClient::open(&s, "", &bo, None).await;
    let ready = live.expect("ready").await;
    let start = ready.json()["cursor"].as_str().expect("cursor").to_owned();

    s.note(&ana, "tokio is calm today", &["circle:eng"], &[])
        .await;
    s.note(&ana, "A TOKIO task: panic at startup", &["public"], &[])
        .await;
    let hit = s
        .note(
            &ana,
            "The tokio runtime: panic at startup!",
            &["circle:eng"],
            &[],
        )
        .await;
    s.note(&ana, "rust async secrets", &["circle:sec"], &[])
        .await;
    s.note(&ana, "rust async for followers", &["followers"], &[])
        .await;
    let book = s
        .note(&ana, "A book on Rust and async", &["public"], &[])
        .await;

    let got = live.entries(2).await;
    let vias: Vec<String> = got
        .iter()
        .map(|e| e.json()["via"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        vias,
        [
            format!("subscription:{in_eng}:\"Tokio panic\"@eng"),
            format!("subscription:{anywhere}:\"rust async\""),
        ]
    );
    assert_eq!(got[0].json()["activity"]["id"], hit["id"]);
    assert_eq!(got[1].json()["activity"]["id"], book["id"]);
    live.assert_quiet().await;

    // Resumable: the same items from the cursor the stream started at, over REST and SSE.
    let page = s.get(&bo, &format!("/inbox?after={start}")).await;
    assert_eq!(
        TestServer::ids(&page.body),
        [id(&book), id(&hit)],
        "{:?}",
        page.body
    );
    let mut resumed = SseClient::open(&s, "", &bo, Some(&start)).await;
    resumed.expect("ready").await;
    let replay: Vec<Value> = resumed
        .entries(2)
        .await
        .iter()
        .map(|e| e.json()["activity"]["id"].clone())
        .collect();
    assert_eq!(replay, [hit["id"].clone(), book["id"].clone()]);

    // What a saved search delivered is what the search finds.
    assert_eq!(
        find_all(&s, &bo, "q=tokio%20panic%20in:eng&sort=newest").await,
        [id(&hit)]
    );
    // Removed: nothing more arrives.
    let r = s.delete(&bo, &format!("/subscriptions/{anywhere}")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    s.note(&ana, "more rust async", &["public"], &[]).await;
    live.assert_quiet().await;
    s.assert_verified().await;
}
