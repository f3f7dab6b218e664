//! A minimal SSE client for the live inbox channel (`/api/v1/inbox/stream`).

use super::TestServer;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// A minimal SSE client over reqwest.
pub struct SseClient {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
}

impl SseClient {
    pub async fn open(
        server: &TestServer,
        query: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> SseClient {
        let response = Self::request(server, query, Some(token), last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK, "stream refused");
        assert_eq!(
            response.headers()["content-type"]
                .to_str()
                .expect("content type"),
            "text/event-stream"
        );
        SseClient {
            response,
            buffer: String::new(),
            ended: false,
        }
    }

    /// A client over an already opened stream (any SSE route).
    pub fn from_response(response: reqwest::Response) -> SseClient {
        assert_eq!(response.status(), StatusCode::OK, "stream refused");
        SseClient {
            response,
            buffer: String::new(),
            ended: false,
        }
    }

    pub async fn request(
        server: &TestServer,
        query: &str,
        token: Option<&str>,
        last_event_id: Option<&str>,
    ) -> reqwest::Response {
        let mut req =
            reqwest::Client::new().get(format!("{}/api/v1/inbox/stream?{query}", server.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.expect("stream request")
    }

    /// The next event (keep-alive comments skipped), or None when the stream ended or nothing
    /// came within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        event.id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data.push_str(v);
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
                Err(_) => return None,
            }
        }
    }

    /// The next event, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> SseEvent {
        let event = self
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no {kind} event"));
        assert_eq!(event.event, kind, "{event:?}");
        event
    }

    /// Entries until `n` arrived.
    pub async fn entries(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            out.push(self.expect("entry").await);
        }
        out
    }

    /// Asserts that nothing more arrives for a while.
    pub async fn assert_quiet(&mut self) {
        if let Some(e) = self.next(Duration::from_millis(300)).await {
            panic!("unexpected event {e:?}");
        }
    }
}
