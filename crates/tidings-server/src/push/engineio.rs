//! Engine.IO v4 and Socket.IO v5, the protocols the stock `socket.io-client` speaks, served for
//! the live inbox ([`super::socketio`] holds what the channel does; this module only carries it).
//!
//! Why our own: a socketioxide socket costs about 27 KiB of server memory while idle (a
//! 32-slot packet channel block of 5.4 KiB, four tasks of 1.3–2.7 KiB each, and their
//! channels), measured with heaptrack; see `docs/decisions/0012-own-socketio-server.md`. Here
//! a websocket session is one task (the transport), one [`Session`] (a small packet queue and
//! a wake-up) and the channel's own sender task; heartbeats and timeouts are driven by one
//! shared sweeper for all sessions instead of a timer per session.
//!
//! What is spoken: the handshake over polling or websocket, long-polling (GET/POST with
//! `\x1e`-separated packets), the polling → websocket upgrade (`2probe`/`3probe`/`5`, a noop to
//! release the pending poll), server pings answered by client pongs, the `/` namespace
//! (others are refused with `connect_error`), `CONNECT` with an `auth` object answered by
//! `CONNECT` or `CONNECT_ERROR`, events in both directions, acknowledgements of client events,
//! and `DISCONNECT` both ways. Binary packets are not used by the channel and end the session.

use super::Listener;
use super::socketio;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// How often the server pings; the hub's keep-alive period, so SSE and Socket.IO tick alike.
const PING_INTERVAL: Duration = super::KEEP_ALIVE;
/// How long a client waits for a ping beyond the interval before it gives the server up.
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest packet (websocket message or polling POST body) a client may send.
const MAX_PAYLOAD: usize = 64 * 1024;
/// A session must send its Socket.IO `CONNECT` within this time after the handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A probing websocket must finish the upgrade within this time.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// A long-poll is answered (with a noop if nothing came) after at most this long.
const POLL_HOLD: Duration = Duration::from_secs(25);
/// A polling client that has not polled for this long is gone.
const POLL_SILENCE: Duration = Duration::from_secs(45);
/// Bytes a websocket reads at a time. Client packets are tiny (pongs, filter changes), and
/// this buffer lives as long as the connection.
const WS_READ_BUFFER: usize = 512;
/// Packets a session may have waiting in all: events are bounded by the channel (64), so more
/// than this means a client that keeps asking (pings, acknowledged events) without reading.
const MAX_QUEUED: usize = 256;
/// Engine.IO packet separator in a polling payload.
const SEPARATOR: char = '\x1e';

/// The routes: `/socket.io/` for every transport.
pub fn router<S: Clone + Send + Sync + 'static>(state: AppState) -> axum::Router<S> {
    let engine = Engine {
        inner: Arc::new(EngineInner {
            state,
            sessions: Mutex::new(HashMap::new()),
            sweeping: AtomicBool::new(false),
        }),
    };
    axum::Router::new()
        .route("/socket.io/", any(handle))
        .route("/socket.io", any(handle))
        .with_state(engine)
}

#[derive(Clone)]
struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    state: AppState,
    /// Every open session, by engine sid: polling requests find theirs here, and the sweeper
    /// pings and times them out.
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    sweeping: AtomicBool,
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The client is behind: its queue holds as many events as it may.
    #[error("the client's send buffer is full")]
    Full,
    /// The session has ended.
    #[error("the session is closed")]
    Closed,
}

/// How a session currently reaches its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    /// A websocket has answered the probe; polls are released with a noop meanwhile.
    Upgrading,
    Websocket,
}

/// One Engine.IO session with its Socket.IO connection on `/`.
pub struct Session {
    sid: Arc<str>,
    opened: Instant,
    /// Packets were queued or the session closed: the transport should look.
    out: Notify,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Encoded Engine.IO packets waiting for the transport.
    queue: VecDeque<String>,
    /// How many of `queue` are events (bounded); protocol packets are not counted.
    events: usize,
    transport: Transport,
    /// No more packets are accepted; the transport delivers what is queued and ends.
    closed: bool,
    /// A long-poll is waiting (only one may).
    polling: bool,
    last_seen: Instant,
    /// A ping went out and no pong has come back yet.
    ping_unanswered: bool,
    /// The live channel, once the Socket.IO `CONNECT` was accepted.
    listener: Option<Arc<Listener>>,
    connect_done: bool,
}

impl Session {
    fn new(sid: Arc<str>, transport: Transport) -> Session {
        let now = Instant::now();
        Session {
            sid,
            opened: now,
            out: Notify::new(),
            inner: Mutex::new(Inner {
                queue: VecDeque::new(),
                events: 0,
                transport,
                closed: false,
                polling: false,
                last_seen: now,
                ping_unanswered: false,
                listener: None,
                connect_done: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a protocol packet; a session whose queue overflows is closed instead (the
    /// client asks without reading).
    fn push(&self, packet: String) {
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            if inner.queue.len() >= MAX_QUEUED {
                tracing::debug!(sid = %self.sid, "Socket.IO client does not read its answers");
                inner.closed = true;
            } else {
                inner.queue.push_back(packet);
            }
        }
        self.out.notify_one();
    }

    /// Stops accepting packets; the transport sends what is queued and ends.
    fn shut(&self) {
        self.lock().closed = true;
        self.out.notify_one();
    }

    /// Everything queued, and whether the session is closed.
    fn take(&self) -> (VecDeque<String>, bool) {
        let mut inner = self.lock();
        inner.events = 0;
        (std::mem::take(&mut inner.queue), inner.closed)
    }

    fn listener(&self) -> Option<Arc<Listener>> {
        self.lock().listener.clone()
    }
}

/// The Socket.IO side of a session, for the channel's sender.
#[derive(Clone)]
pub struct SioSocket {
    session: Arc<Session>,
}

impl SioSocket {
    /// Queues an event for the client, unless `max_events` are already waiting.
    pub fn emit<T: serde::Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
        max_events: usize,
    ) -> Result<(), EmitError> {
        let body = serde_json::to_string(&(event, data)).map_err(|_| EmitError::Closed)?;
        {
            let mut inner = self.session.lock();
            if inner.closed {
                return Err(EmitError::Closed);
            }
            if inner.events >= max_events {
                return Err(EmitError::Full);
            }
            inner.events += 1;
            inner.queue.push_back(format!("42{body}"));
        }
        self.session.out.notify_one();
        Ok(())
    }

    /// Queues an event that is not counted against the client's buffer (a last word).
    pub fn emit_final<T: serde::Serialize + ?Sized>(&self, event: &str, data: &T) {
        if let Ok(body) = serde_json::to_string(&(event, data)) {
            self.session.push(format!("42{body}"));
        }
    }

    /// Ends the connection: the client sees a server disconnect ("io server disconnect").
    pub fn disconnect(&self) {
        self.session.push("41".to_owned());
        self.session.shut();
    }
}

#[derive(Debug, Deserialize)]
struct EngineQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

/// Engine.IO's error answer.
fn refuse(code: u8, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"code": code, "message": message}).to_string(),
    )
        .into_response()
}

async fn handle(
    State(engine): State<Engine>,
    Query(query): Query<EngineQuery>,
    request: Request,
) -> Response {
    if query.eio.as_deref() != Some("4") {
        return refuse(5, "Unsupported protocol version");
    }
    let sid = query.sid.as_deref();
    match (query.transport.as_deref(), request.method(), sid) {
        (Some("polling"), &Method::GET, None) => engine.open_polling(),
        (Some("polling"), &Method::GET, Some(sid)) => match engine.session(sid) {
            Some(session) => engine.poll(session).await,
            None => refuse(1, "Session ID unknown"),
        },
        (Some("polling"), &Method::POST, Some(sid)) => match engine.session(sid) {
            Some(session) => engine.post(session, request.into_body()).await,
            None => refuse(1, "Session ID unknown"),
        },
        (Some("websocket"), &Method::GET, sid) => {
            let upgrading = match sid {
                Some(sid) => match engine.session(sid) {
                    Some(session) if session.lock().transport == Transport::Polling => {
                        Some(session)
                    }
                    Some(_) => return refuse(3, "Bad request"),
                    None => return refuse(1, "Session ID unknown"),
                },
                None => None,
            };
            engine.upgrade(request, upgrading)
        }
        (Some("polling" | "websocket"), _, _) => refuse(2, "Bad handshake method"),
        _ => refuse(0, "Transport unknown"),
    }
}

/// A random id, hex-encoded.
fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn open_packet(sid: &str, upgrades: &[&str]) -> String {
    let open = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": PING_INTERVAL.as_millis(),
        "pingTimeout": PING_TIMEOUT.as_millis(),
        "maxPayload": MAX_PAYLOAD,
    });
    format!("0{open}")
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

impl Engine {
    fn session(&self, sid: &str) -> Option<Arc<Session>> {
        self.sessions().get(sid).cloned()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn create(&self, transport: Transport) -> Arc<Session> {
        self.start_sweeper();
        let sid: Arc<str> = Arc::from(new_id());
        let session = Arc::new(Session::new(sid.clone(), transport));
        self.sessions().insert(sid, session.clone());
        session
    }

    /// Forgets a session and ends its channel. Idempotent.
    fn finish(&self, session: &Session) {
        self.sessions().remove(&session.sid);
        let listener = {
            let mut inner = session.lock();
            inner.closed = true;
            inner.listener.take()
        };
        session.out.notify_one();
        if let Some(listener) = listener {
            listener.close(super::CloseReason::Disconnected);
        }
    }

    fn open_polling(&self) -> Response {
        let session = self.create(Transport::Polling);
        text(open_packet(&session.sid, &["websocket"]))
    }

    /// A long-poll: answers with what is queued, waiting for something if nothing is.
    async fn poll(&self, session: Arc<Session>) -> Response {
        {
            let mut inner = session.lock();
            if inner.polling {
                drop(inner);
                // Two polls at once break the protocol: the session ends.
                self.finish(&session);
                return refuse(3, "Bad request");
            }
            if inner.transport == Transport::Websocket {
                return refuse(3, "Bad request");
            }
            inner.polling = true;
            inner.last_seen = Instant::now();
        }
        let deadline = Instant::now() + POLL_HOLD;
        let (packets, closed) = loop {
            let notified = session.out.notified();
            let ready = {
                let inner = session.lock();
                !inner.queue.is_empty() || inner.closed || inner.transport != Transport::Polling
            };
            if ready {
                break session.take();
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => break session.take(),
            }
        };
        {
            let mut inner = session.lock();
            inner.polling = false;
            inner.last_seen = Instant::now();
        }
        if closed {
            self.finish(&session);
        }
        let mut body = String::new();
        for packet in &packets {
            if !body.is_empty() {
                body.push(SEPARATOR);
            }
            body.push_str(packet);
        }
        if body.is_empty() {
            // Nothing to say: a close for an ended session, a noop otherwise (it releases
            // the poll during an upgrade).
            body.push(if closed { '1' } else { '6' });
        }
        text(body)
    }

    /// Packets sent by a polling client.
    async fn post(&self, session: Arc<Session>, body: Body) -> Response {
        let Ok(bytes) = axum::body::to_bytes(body, MAX_PAYLOAD).await else {
            self.finish(&session);
            return refuse(3, "Bad request");
        };
        let Ok(payload) = std::str::from_utf8(&bytes) else {
            self.finish(&session);
            return refuse(3, "Bad request");
        };
        session.lock().last_seen = Instant::now();
        for packet in payload.split(SEPARATOR) {
            self.on_packet(&session, packet).await;
        }
        ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
    }

    /// Answers a websocket request (a new session, or an upgrade of `upgrading`) and serves
    /// the socket once hyper hands it over.
    fn upgrade(&self, mut request: Request, upgrading: Option<Arc<Session>>) -> Response {
        let Some(key) = websocket_key(request.headers()) else {
            return refuse(3, "Bad request");
        };
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut request);
        // Nothing of the request is kept for the connection's life.
        drop(request);
        let engine = self.clone();
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(WS_READ_BUFFER)
                .max_message_size(Some(MAX_PAYLOAD))
                .max_frame_size(Some(MAX_PAYLOAD))
                // Frames go out as they are fed; the flush after a batch sends the rest.
                .write_buffer_size(0);
            let mut ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            let session = match upgrading {
                Some(session) => {
                    let probed = tokio::time::timeout(
                        UPGRADE_TIMEOUT,
                        Box::pin(engine.probe(&session, &mut ws)),
                    )
                    .await;
                    if !matches!(probed, Ok(true)) {
                        // The session goes on over polling.
                        let mut inner = session.lock();
                        if inner.transport == Transport::Upgrading {
                            inner.transport = Transport::Polling;
                        }
                        return;
                    }
                    session
                }
                None => {
                    let session = engine.create(Transport::Websocket);
                    let open = open_packet(&session.sid, &[]);
                    if ws.send(Message::text(open)).await.is_err() {
                        engine.finish(&session);
                        return;
                    }
                    session
                }
            };
            engine.serve_websocket(&session, ws).await;
            engine.finish(&session);
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }

    /// The upgrade handshake on a probing websocket; true once the session is moved to it.
    async fn probe<S>(&self, session: &Session, ws: &mut WebSocketStream<S>) -> bool
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2probe" => {}
            _ => return false,
        }
        if ws.send(Message::text("3probe")).await.is_err() {
            return false;
        }
        {
            let mut inner = session.lock();
            if inner.closed || inner.transport != Transport::Polling {
                return false;
            }
            inner.transport = Transport::Upgrading;
        }
        // Releases the pending poll (with a noop if nothing is queued).
        session.out.notify_one();
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "5" => {}
            _ => return false,
        }
        let mut inner = session.lock();
        inner.transport = Transport::Websocket;
        inner.last_seen = Instant::now();
        true
    }

    /// Writes queued packets and reads client packets until either side ends.
    async fn serve_websocket<S>(&self, session: &Arc<Session>, mut ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        loop {
            let (packets, closed) = session.take();
            if !packets.is_empty() {
                for packet in packets {
                    if ws.feed(Message::text(packet)).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            if closed {
                let _ = ws.close(None).await;
                return;
            }
            tokio::select! {
                biased;
                () = session.out.notified() => {}
                message = ws.next() => match message {
                    Some(Ok(Message::Text(t))) => {
                        // Boxed: the (rare) handshake's future would otherwise size this
                        // task, which lives as long as the connection.
                        Box::pin(self.on_packet(session, t.as_str())).await;
                    }
                    // tungstenite answers websocket pings itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Binary(_))) => {
                        tracing::debug!("binary Socket.IO packet refused");
                        return;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                },
            }
        }
    }

    /// One Engine.IO packet from the client.
    async fn on_packet(&self, session: &Arc<Session>, packet: &str) {
        let mut chars = packet.chars();
        match chars.next() {
            // close
            Some('1') => self.finish(session),
            // ping (protocol v3 clients): answer it
            Some('2') => session.push(format!("3{}", chars.as_str())),
            // pong
            Some('3') => session.lock().ping_unanswered = false,
            Some('4') => self.on_socketio(session, chars.as_str()).await,
            // upgrade or noop outside a probe: nothing to do
            Some('5' | '6') => {}
            _ => {
                tracing::debug!("malformed Engine.IO packet");
                self.finish(session);
            }
        }
    }

    /// One Socket.IO packet (the payload of an Engine.IO message).
    async fn on_socketio(&self, session: &Arc<Session>, packet: &str) {
        let mut chars = packet.chars();
        let kind = chars.next();
        let rest = chars.as_str();
        // A namespace other than `/` comes first, up to a comma.
        let (nsp, rest) = match rest.strip_prefix('/') {
            Some(_) => match rest.split_once(',') {
                Some((nsp, rest)) => (nsp, rest),
                None => (rest, ""),
            },
            None => ("/", rest),
        };
        match kind {
            Some('0') => self.on_connect(session, nsp, rest).await,
            Some('1') => self.finish(session),
            Some('2') if nsp == "/" => self.on_event(session, rest),
            // Acknowledgements of server events (none are asked for), or other namespaces.
            Some('2' | '3') => {}
            _ => {
                tracing::debug!("unsupported Socket.IO packet");
                self.finish(session);
            }
        }
    }

    async fn on_connect(&self, session: &Arc<Session>, nsp: &str, auth: &str) {
        if nsp != "/" {
            let error = serde_json::json!({"message": "Invalid namespace"});
            session.push(format!("44{nsp},{error}"));
            return;
        }
        {
            let mut inner = session.lock();
            if inner.connect_done {
                return;
            }
            inner.connect_done = true;
        }
        let state = &self.inner.state;
        let auth = Some(auth).filter(|a| !a.trim().is_empty());
        match socketio::authorize(state, auth).await {
            Ok(pending) => {
                let connected = serde_json::json!({"sid": new_id()});
                session.push(format!("40{connected}"));
                let socket = SioSocket {
                    session: session.clone(),
                };
                if let Some(listener) = socketio::on_connect(socket, state, pending) {
                    let mut inner = session.lock();
                    if inner.closed {
                        // The client left during the handshake.
                        listener.close(super::CloseReason::Disconnected);
                    } else {
                        inner.listener = Some(listener);
                    }
                }
            }
            Err(refused) => {
                // `data` reaches the client as `err.data`: the code, and a 429's wait.
                let error =
                    serde_json::json!({"message": refused.to_string(), "data": refused.data()});
                session.push(format!("44{error}"));
            }
        }
    }

    /// `2[ackid]["name", args…]`: hands the event to the channel, acknowledging if asked.
    fn on_event(&self, session: &Session, packet: &str) {
        let digits = packet.bytes().take_while(u8::is_ascii_digit).count();
        let (ack, body) = packet.split_at(digits);
        let Ok(mut args) = serde_json::from_str::<Vec<serde_json::Value>>(body) else {
            tracing::debug!("malformed Socket.IO event");
            return;
        };
        if args.is_empty() {
            return;
        }
        let serde_json::Value::String(name) = args.remove(0) else {
            return;
        };
        let Some(listener) = session.listener() else {
            return;
        };
        let reply = socketio::on_event(&listener, &name, args);
        if let Some(reply) = reply
            && !ack.is_empty()
        {
            session.push(format!("43{ack}[{reply}]"));
        }
    }

    /// Starts the one task that pings every session and ends the silent ones (once).
    fn start_sweeper(&self) {
        if self.inner.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let engine = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PING_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                Engine { inner }.sweep();
            }
        });
    }

    /// Pings every session; ends those that did not answer the last ping, never connected,
    /// or stopped polling.
    fn sweep(&self) {
        let now = Instant::now();
        let sessions: Vec<Arc<Session>> = self.sessions().values().cloned().collect();
        for session in sessions {
            let gone = {
                let mut inner = session.lock();
                let silent = inner.transport == Transport::Polling
                    && !inner.polling
                    && now.duration_since(inner.last_seen) > POLL_SILENCE;
                let unconnected = inner.listener.is_none()
                    && now.duration_since(session.opened) > CONNECT_TIMEOUT;
                let gone = inner.ping_unanswered || silent || unconnected || inner.closed;
                if !gone {
                    inner.ping_unanswered = true;
                    inner.queue.push_back("2".to_owned());
                }
                gone
            };
            if gone {
                self.finish(&session);
            } else {
                session.out.notify_one();
            }
        }
    }
}

/// The `Sec-WebSocket-Key` of a well-formed websocket upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<&str> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION)?.as_bytes() != b"13" {
        return None;
    }
    headers.get(header::SEC_WEBSOCKET_KEY)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded_but_protocol_packets_are_not() {
        let session = Arc::new(Session::new(Arc::from("s"), Transport::Websocket));
        let socket = SioSocket {
            session: session.clone(),
        };
        assert_eq!(socket.emit("entry", &1, 2), Ok(()));
        assert_eq!(socket.emit("entry", &2, 2), Ok(()));
        assert_eq!(socket.emit("entry", &3, 2), Err(EmitError::Full));
        socket.emit_final("resume", &serde_json::json!({"cursor": "c"}));
        socket.disconnect();
        assert_eq!(socket.emit("entry", &4, 2), Err(EmitError::Closed));
        let (packets, closed) = session.take();
        assert!(closed);
        assert_eq!(
            packets,
            [
                r#"42["entry",1]"#,
                r#"42["entry",2]"#,
                r#"42["resume",{"cursor":"c"}]"#,
                "41"
            ]
        );
    }

    #[test]
    fn a_client_that_asks_without_reading_is_closed() {
        let session = Session::new(Arc::from("s"), Transport::Websocket);
        for _ in 0..MAX_QUEUED {
            session.push("3".to_owned());
        }
        assert!(!session.lock().closed);
        session.push("3".to_owned());
        let (packets, closed) = session.take();
        assert!(closed);
        assert_eq!(packets.len(), MAX_QUEUED);
    }

    #[test]
    fn the_open_packet_announces_the_heartbeat() {
        let open = open_packet("abc", &["websocket"]);
        let json: serde_json::Value =
            serde_json::from_str(open.strip_prefix('0').unwrap_or_default()).unwrap_or_default();
        assert_eq!(json["sid"], "abc");
        assert_eq!(json["upgrades"][0], "websocket");
        assert_eq!(json["pingInterval"], 15000);
        assert_eq!(json["pingTimeout"], 20000);
    }
}
