//! HTTP-level tests of the work queues (decision 0023), each run on a durable queue (the
//! store: embedded, or PostgreSQL with TIDINGS_TEST_STORE) and on a memory queue.

mod common;

use common::{Resp, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn create(server: &TestServer, token: &str, body: Value) -> Resp {
    server.post(token, "/queues", body).await
}

/// Creates a queue of `discipline` and returns its name.
async fn queue(
    server: &TestServer,
    token: &str,
    name: &str,
    durable: bool,
    extra: Value,
) -> String {
    let mut body = json!({"name": name, "durable": durable});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let r = create(server, token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    name.to_owned()
}

async fn enqueue(server: &TestServer, token: &str, q: &str, body: Value) -> Vec<i64> {
    let r = server.post(token, &format!("/queues/{q}/jobs"), body).await;
    assert!(r.status.is_success(), "{:?}", r.body);
    r.body["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_i64().expect("id"))
        .collect()
}

async fn lease(server: &TestServer, token: &str, q: &str, max: u64, wait_ms: u64) -> Vec<Value> {
    let r = server
        .post(
            token,
            &format!("/queues/{q}/lease"),
            json!({"max": max, "wait_ms": wait_ms}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["jobs"].as_array().expect("jobs").clone()
}

async fn stats(server: &TestServer, token: &str, q: &str) -> Value {
    let r = server.get(token, &format!("/queues/{q}")).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["stats"].clone()
}

fn ack_path(q: &str, job: &Value) -> String {
    format!("/queues/{q}/jobs/{}/ack", job["id"])
}

fn token_of(job: &Value) -> Value {
    json!({"lease_token": job["lease_token"]})
}

#[tokio::test]
async fn disciplines_serve_exactly_in_order_after_the_consumer_resumes() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    let priorities = [3, 0, 7, 3, 7, -2, 0, 5];
    for durable in [true, false] {
        for discipline in ["fifo", "lifo", "priority"] {
            let q = queue(
                &server,
                &admin,
                &format!("{discipline}-{durable}"),
                durable,
                json!({"discipline": discipline}),
            )
            .await;
            // The consumer is paused: jobs arrive one by one, nothing leases them.
            for (n, priority) in priorities.iter().enumerate() {
                enqueue(
                    &server,
                    &admin,
                    &q,
                    json!({"payload": {"n": n}, "priority": priority}),
                )
                .await;
            }
            assert_eq!(stats(&server, &admin, &q).await["ready"], 8);
            // Resumed: it leases three at a time until the queue is empty.
            let mut served = Vec::new();
            loop {
                let jobs = lease(&server, &admin, &q, 3, 0).await;
                if jobs.is_empty() {
                    break;
                }
                for job in &jobs {
                    served.push(job["payload"]["n"].as_i64().expect("n"));
                    let r = server.post(&admin, &ack_path(&q, job), token_of(job)).await;
                    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
                }
            }
            let expected: Vec<i64> = match discipline {
                "fifo" => (0..8).collect(),
                "lifo" => (0..8).rev().collect(),
                // Highest first, oldest first within a priority.
                _ => vec![2, 4, 7, 0, 3, 1, 6, 5],
            };
            assert_eq!(served, expected, "{q}");
            let s = stats(&server, &admin, &q).await;
            assert_eq!(
                (s["enqueued"].as_i64(), s["acked"].as_i64()),
                (Some(8), Some(8))
            );
        }
    }
}

#[tokio::test]
async fn an_expired_lease_redelivers_and_its_stale_token_is_refused() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("expiry-{durable}"),
            durable,
            json!({"visibility_timeout_ms": 300}),
        )
        .await;
        let ids = enqueue(&server, &admin, &q, json!({"payload": "x"})).await;
        let first = lease(&server, &admin, &q, 1, 0).await;
        assert_eq!(first[0]["id"], ids[0]);
        assert_eq!(first[0]["attempts"], 1);
        // Leased: nobody else gets it.
        assert!(lease(&server, &admin, &q, 1, 0).await.is_empty());
        assert_eq!(stats(&server, &admin, &q).await["leased"], 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = lease(&server, &admin, &q, 1, 0).await;
        assert_eq!(second[0]["id"], ids[0]);
        assert_eq!(second[0]["attempts"], 2);
        assert_eq!(second[0]["last_error"], "lease expired");
        assert_ne!(second[0]["lease_token"], first[0]["lease_token"]);
        // The first consumer's ack comes too late: 409, and the job stays leased.
        let stale = server
            .post(&admin, &ack_path(&q, &first[0]), token_of(&first[0]))
            .await;
        assert_eq!(stale.status, StatusCode::CONFLICT);
        assert_eq!(stale.code(), "lease_lost");
        let stale = server
            .post(
                &admin,
                &format!("/queues/{q}/jobs/{}/nack", ids[0]),
                token_of(&first[0]),
            )
            .await;
        assert_eq!(stale.status, StatusCode::CONFLICT);
        assert_eq!(stats(&server, &admin, &q).await["leased"], 1);
        let ok = server
            .post(&admin, &ack_path(&q, &second[0]), token_of(&second[0]))
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        // Acked jobs are gone: a second ack is 404.
        let gone = server
            .post(&admin, &ack_path(&q, &second[0]), token_of(&second[0]))
            .await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_nack_with_a_delay_holds_the_job_back_then_serves_it_again() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("nack-{durable}"),
            durable,
            json!({}),
        )
        .await;
        enqueue(&server, &admin, &q, json!({"payload": 1})).await;
        let job = lease(&server, &admin, &q, 1, 0).await.remove(0);
        let r = server
            .post(
                &admin,
                &format!("/queues/{q}/jobs/{}/nack", job["id"]),
                json!({"lease_token": job["lease_token"], "delay_ms": 400, "error": "busy"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["state"], "delayed");
        let s = stats(&server, &admin, &q).await;
        assert_eq!(
            (s["delayed"].as_i64(), s["ready"].as_i64()),
            (Some(1), Some(0))
        );
        assert!(lease(&server, &admin, &q, 1, 0).await.is_empty());
        // A waiting lease gets it once the delay has passed.
        let started = Instant::now();
        let again = lease(&server, &admin, &q, 1, 3000).await;
        assert_eq!(again[0]["id"], job["id"]);
        assert_eq!(again[0]["attempts"], 2);
        assert_eq!(again[0]["last_error"], "busy");
        assert!(started.elapsed() < Duration::from_millis(1500));
        // A nack without a delay follows the queue's backoff; with delay 0 it is ready at once.
        let r = server
            .post(
                &admin,
                &format!("/queues/{q}/jobs/{}/nack", job["id"]),
                json!({"lease_token": again[0]["lease_token"], "delay_ms": 0}),
            )
            .await;
        assert_eq!(r.body["state"], "ready");
        assert_eq!(lease(&server, &admin, &q, 1, 0).await.len(), 1);
    }
}

#[tokio::test]
async fn a_job_past_max_attempts_goes_to_the_dead_list_and_comes_back_on_retry() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("dead-{durable}"),
            durable,
            json!({"max_attempts": 2, "backoff": {"initial_ms": 0, "factor": 1, "max_ms": 0}}),
        )
        .await;
        let ids = enqueue(
            &server,
            &admin,
            &q,
            json!({"jobs": [{"payload": "a"}, {"payload": "b"}, {"payload": "c"}]}),
        )
        .await;
        // Every delivery of every job fails: two attempts each, then the dead list.
        for attempt in 1..=2 {
            let jobs = lease(&server, &admin, &q, 10, 0).await;
            assert_eq!(jobs.len(), 3);
            for job in jobs {
                assert_eq!(job["attempts"], attempt);
                let r = server
                    .post(
                        &admin,
                        &format!("/queues/{q}/jobs/{}/nack", job["id"]),
                        json!({"lease_token": job["lease_token"], "error": "boom"}),
                    )
                    .await;
                let expected = if attempt == 2 { "dead" } else { "ready" };
                assert_eq!(r.body["state"], expected, "{:?}", r.body);
            }
        }
        assert!(lease(&server, &admin, &q, 10, 0).await.is_empty());
        let dead = server
            .get(&admin, &format!("/queues/{q}/dead?limit=2"))
            .await;
        assert_eq!(dead.status, StatusCode::OK);
        let listed: Vec<i64> = dead.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(listed, ids[..2]);
        assert_eq!(dead.body["jobs"][0]["last_error"], "boom");
        let rest = server
            .get(
                &admin,
                &format!("/queues/{q}/dead?after={}", dead.body["next"]),
            )
            .await;
        assert_eq!(rest.body["jobs"][0]["id"], ids[2]);
        let s = stats(&server, &admin, &q).await;
        assert_eq!(
            (s["dead"].as_i64(), s["failed"].as_i64()),
            (Some(3), Some(3))
        );
        // Retry one, then all.
        let one = server
            .post(
                &admin,
                &format!("/queues/{q}/dead/retry"),
                json!({"id": ids[1]}),
            )
            .await;
        assert_eq!(one.body["retried"], 1);
        let jobs = lease(&server, &admin, &q, 10, 0).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(
            (jobs[0]["id"].as_i64(), jobs[0]["attempts"].as_i64()),
            (Some(ids[1]), Some(1))
        );
        let missing = server
            .post(
                &admin,
                &format!("/queues/{q}/dead/retry"),
                json!({"id": ids[1]}),
            )
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let all = server
            .request(
                Method::POST,
                &format!("/queues/{q}/dead/retry"),
                Some(&admin),
                None,
                &[],
            )
            .await;
        assert_eq!(all.body["retried"], 2, "{:?}", all.body);
        assert_eq!(lease(&server, &admin, &q, 10, 0).await.len(), 2);
    }
}

#[tokio::test]
async fn a_retried_enqueue_stores_once_and_answers_the_first_id() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("idem-{durable}"),
            durable,
            json!({}),
        )
        .await;
        let body = json!({"payload": {"order": 7}, "idempotency_key": "order-7", "group": "eu"});
        let first = server
            .post(&admin, &format!("/queues/{q}/jobs"), body.clone())
            .await;
        assert_eq!(first.status, StatusCode::CREATED);
        assert_eq!(first.body["jobs"][0]["duplicate"], false);
        let again = server
            .post(&admin, &format!("/queues/{q}/jobs"), body)
            .await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body["jobs"][0]["id"], first.body["jobs"][0]["id"]);
        assert_eq!(again.body["jobs"][0]["duplicate"], true);
        let s = stats(&server, &admin, &q).await;
        assert_eq!(
            (s["ready"].as_i64(), s["enqueued"].as_i64()),
            (Some(1), Some(1))
        );
        let job = lease(&server, &admin, &q, 5, 0).await;
        assert_eq!(job.len(), 1);
        assert_eq!(job[0]["group"], "eu");
        assert_eq!(job[0]["payload"], json!({"order": 7}));
    }
}

#[tokio::test]
async fn a_waiting_lease_wakes_when_a_job_arrives() {
    let server = std::sync::Arc::new(TestServer::start().await);
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("poll-{durable}"),
            durable,
            json!({}),
        )
        .await;
        let waiting = {
            let (server, admin, q) = (server.clone(), admin.clone(), q.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let jobs = lease(&server, &admin, &q, 1, 10_000).await;
                (jobs, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let enqueued_at = Instant::now();
        let ids = enqueue(&server, &admin, &q, json!({"payload": "wake"})).await;
        let (jobs, waited) = waiting.await.expect("lease task");
        assert_eq!(jobs[0]["id"], ids[0]);
        assert!(
            waited >= Duration::from_millis(300),
            "it waited for the job"
        );
        assert!(
            enqueued_at.elapsed() < Duration::from_secs(2),
            "woken, not timed out"
        );
        // With nothing to lease, the wait ends empty after wait_ms.
        let started = Instant::now();
        assert!(lease(&server, &admin, &q, 1, 300).await.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}

#[tokio::test]
async fn queues_are_listed_inspected_and_deleted_with_their_jobs() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    queue(
        &server,
        &admin,
        "kept",
        true,
        json!({"discipline": "priority", "rate_limit": 50}),
    )
    .await;
    let memory = create(
        &server,
        &admin,
        json!({"name": "scratch", "durable": false}),
    )
    .await;
    assert_eq!(memory.body["durable"], false);
    assert!(
        memory.body["persistence"]
            .as_str()
            .expect("note")
            .contains("lost when the node restarts")
    );
    enqueue(
        &server,
        &admin,
        "kept",
        json!({"jobs": [{"payload": 1}, {"payload": 2, "delay_ms": 60000}]}),
    )
    .await;
    enqueue(&server, &admin, "scratch", json!({"payload": 1})).await;
    lease(&server, &admin, "scratch", 1, 0).await;
    let list = server.get(&admin, "/queues").await;
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|q| q["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["kept", "scratch"]);
    let kept = server.get(&admin, "/queues/kept").await.body;
    assert_eq!(kept["discipline"], "priority");
    assert_eq!(kept["rate_limit"], 50);
    assert_eq!(kept["durable"], true);
    assert_eq!(kept["stats"]["ready"], 1);
    assert_eq!(kept["stats"]["delayed"], 1);
    assert!(kept["stats"]["oldest_ready_age_ms"].as_i64().is_some());
    assert_eq!(stats(&server, &admin, "scratch").await["leased"], 1);
    // A name is taken whatever kind of queue holds it.
    for durable in [true, false] {
        let taken = create(&server, &admin, json!({"name": "kept", "durable": durable})).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.code(), "queue_exists");
        let taken = create(
            &server,
            &admin,
            json!({"name": "scratch", "durable": durable}),
        )
        .await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
    }
    for (name, dropped) in [("kept", 2), ("scratch", 1)] {
        let r = server.delete(&admin, &format!("/queues/{name}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["jobs_dropped"], dropped);
        assert_eq!(
            server.get(&admin, &format!("/queues/{name}")).await.status,
            StatusCode::NOT_FOUND
        );
        let r = server
            .post(
                &admin,
                &format!("/queues/{name}/jobs"),
                json!({"payload": 1}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_stores_nothing() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for (body, code) in [
        (json!({"name": "Bad Name"}), "invalid_queue_name"),
        (json!({"name": "_x"}), "invalid_queue_name"),
        (json!({"name": "q", "discipline": "random"}), "invalid_json"),
        (
            json!({"name": "q", "visibility_timeout_ms": 0}),
            "invalid_queue_request",
        ),
        (
            json!({"name": "q", "max_attempts": 5000}),
            "invalid_queue_request",
        ),
        (
            json!({"name": "q", "rate_limit": 0}),
            "invalid_queue_request",
        ),
        (
            json!({"name": "q", "backoff": {"initial_ms": 1, "factor": 0.5, "max_ms": 2}}),
            "invalid_queue_request",
        ),
        (json!({"name": "q", "surprise": true}), "invalid_json"),
    ] {
        let r = create(&server, &admin, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.code(), code, "{body}");
    }
    assert_eq!(server.get(&admin, "/queues").await.body["items"], json!([]));
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("strict-{durable}"),
            durable,
            json!({}),
        )
        .await;
        let jobs = format!("/queues/{q}/jobs");
        for body in [
            json!({}),
            json!({"jobs": []}),
            json!({"payload": 1, "priority": 2_000_000_000i64}),
            json!({"payload": 1, "delay_ms": -1}),
            json!({"payload": 1, "idempotency_key": ""}),
            json!({"payload": 1, "priority": 2.5}),
            // One bad job refuses the whole batch.
            json!({"jobs": [{"payload": 1}, {"payload": 2, "delay_ms": -5}]}),
            json!({"jobs": [{"payload": 1}], "payload": 2}),
        ] {
            let r = server.post(&admin, &jobs, body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {:?}", r.body);
        }
        let s = stats(&server, &admin, &q).await;
        assert_eq!(
            (s["enqueued"].as_i64(), s["ready"].as_i64()),
            (Some(0), Some(0))
        );
        let lease_path = format!("/queues/{q}/lease");
        for body in [
            json!({"max": 0}),
            json!({"max": 101}),
            json!({"wait_ms": 20_001}),
            json!([1]),
            json!([null, null]),
            json!({"max": 1.5}),
        ] {
            let r = server.post(&admin, &lease_path, body.clone()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        }
        // Whole numbers may be written as JSON floats (5.0), as JSON Schema allows.
        enqueue(&server, &admin, &q, json!({"payload": 1, "priority": 3.0})).await;
        let r = server
            .post(&admin, &lease_path, json!({"max": 1.0, "wait_ms": 0.0}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let job = r.body["jobs"][0].clone();
        assert_eq!(job["priority"], 3);
        let r = server.post(&admin, &ack_path(&q, &job), json!({})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = server
            .post(
                &admin,
                &format!("/queues/{q}/jobs/{}/nack", job["id"]),
                json!({"lease_token": job["lease_token"], "delay_ms": -1}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = server
            .post(&admin, &format!("/queues/{q}/jobs/abc/ack"), token_of(&job))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        // None of that touched the lease.
        assert_eq!(stats(&server, &admin, &q).await["leased"], 1);
        let r = server
            .post(&admin, &ack_path(&q, &job), token_of(&job))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = server.post(&admin, "/queues/nope/lease", json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_admins_use_queues() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    let user = server.user("ann").await;
    queue(&server, &admin, "jobs", true, json!({})).await;
    enqueue(&server, &admin, "jobs", json!({"payload": 1})).await;
    let job = lease(&server, &admin, "jobs", 1, 0).await.remove(0);
    let token = token_of(&job);
    let id = job["id"].clone();
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/queues".into(),
            Some(json!({"name": "mine"})),
        ),
        (Method::GET, "/queues".into(), None),
        (Method::GET, "/queues/jobs".into(), None),
        (Method::DELETE, "/queues/jobs".into(), None),
        (
            Method::POST,
            "/queues/jobs/jobs".into(),
            Some(json!({"payload": 2})),
        ),
        (
            Method::POST,
            "/queues/jobs/lease".into(),
            Some(json!({"max": 5})),
        ),
        (
            Method::POST,
            format!("/queues/jobs/jobs/{id}/ack"),
            Some(token.clone()),
        ),
        (
            Method::POST,
            format!("/queues/jobs/jobs/{id}/nack"),
            Some(token.clone()),
        ),
        (Method::GET, "/queues/jobs/dead".into(), None),
        (
            Method::POST,
            "/queues/jobs/dead/retry".into(),
            Some(json!({})),
        ),
    ];
    for (method, path, body) in &calls {
        let r = server
            .request(method.clone(), path, Some(&user), body.clone(), &[])
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(r.code(), "queue_forbidden");
        let r = server
            .request(method.clone(), path, None, body.clone(), &[])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // Nothing changed: one queue, its one job still leased.
    let list = server.get(&admin, "/queues").await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    let s = stats(&server, &admin, "jobs").await;
    assert_eq!(
        (s["enqueued"].as_i64(), s["leased"].as_i64()),
        (Some(1), Some(1))
    );
    let r = server
        .post(&admin, &format!("/queues/jobs/jobs/{id}/ack"), token)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_batch_ack_answers_for_each_job() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("batch-{durable}"),
            durable,
            json!({}),
        )
        .await;
        enqueue(
            &server,
            &admin,
            &q,
            json!({"jobs": [{"payload": 1}, {"payload": 2}, {"payload": 3}]}),
        )
        .await;
        let jobs = lease(&server, &admin, &q, 3, 0).await;
        let body = json!({"jobs": [
            {"id": jobs[0]["id"], "lease_token": jobs[0]["lease_token"]},
            {"id": jobs[1]["id"], "lease_token": "someone-else"},
            {"id": 999_999, "lease_token": jobs[2]["lease_token"]},
            {"id": jobs[2]["id"], "lease_token": jobs[2]["lease_token"]},
        ]});
        let r = server.post(&admin, &format!("/queues/{q}/ack"), body).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let outcomes: Vec<&str> = r.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["outcome"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(outcomes, ["acked", "lease_lost", "not_found", "acked"]);
        let s = stats(&server, &admin, &q).await;
        assert_eq!(
            (s["acked"].as_i64(), s["leased"].as_i64()),
            (Some(2), Some(1))
        );
        for bad in [json!({"jobs": []}), json!({"jobs": [{"id": 1}]})] {
            let r = server.post(&admin, &format!("/queues/{q}/ack"), bad).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST);
        }
    }
}

/// Registers a service with `scopes` and returns its key.
async fn service(server: &TestServer, admin: &str, name: &str, scopes: Value) -> String {
    let r = server
        .post(admin, "/services", json!({"name": name, "scopes": scopes}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body["key"].as_str().expect("key").to_owned()
}

/// A service with the `queues` scope produces and consumes with its key; it may not create,
/// inspect or delete queues, and a service without the scope may do nothing.
#[tokio::test]
async fn services_with_the_queues_scope_produce_and_consume() {
    let server = TestServer::start().await;
    let admin = server.admin("root").await;
    for durable in [true, false] {
        let q = queue(
            &server,
            &admin,
            &format!("work-{durable}"),
            durable,
            json!({}),
        )
        .await;
        let worker = service(
            &server,
            &admin,
            &format!("worker-{durable}"),
            json!(["queues"]),
        )
        .await;
        let shop = service(
            &server,
            &admin,
            &format!("shop-{durable}"),
            json!(["publish"]),
        )
        .await;
        let ids = enqueue(&server, &worker, &q, json!({"payload": {"order": 7}})).await;
        let job = lease(&server, &worker, &q, 1, 0).await.remove(0);
        assert_eq!(job["id"].as_i64(), ids.first().copied());
        let r = server
            .post(&worker, &ack_path(&q, &job), token_of(&job))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        for (method, path, body) in [
            (
                Method::POST,
                "/queues".to_owned(),
                Some(json!({"name": "theirs"})),
            ),
            (Method::GET, format!("/queues/{q}"), None),
            (Method::DELETE, format!("/queues/{q}"), None),
        ] {
            let r = server
                .request(method.clone(), &path, Some(&worker), body, &[])
                .await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(r.code(), "queue_forbidden");
        }
        let r = server
            .post(&shop, &format!("/queues/{q}/jobs"), json!({"payload": 1}))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.code(), "missing_scope");
        let r = server
            .post(&shop, &format!("/queues/{q}/lease"), json!({"max": 1}))
            .await;
        assert_eq!(r.code(), "missing_scope");
        // Only the worker's one job went in, and it is acked.
        let s = stats(&server, &admin, &q).await;
        assert_eq!(
            (s["enqueued"].as_i64(), s["acked"].as_i64()),
            (Some(1), Some(1)),
            "{s}"
        );
    }
}
