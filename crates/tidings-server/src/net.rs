//! The listening socket and the HTTP/1 connections on it.
//!
//! Every connection gets one guard: a client that stops reading for too long is disconnected.
//! A stalled live stream would otherwise hold its connection (and its socket buffers) forever;
//! with the guard it is cut and, on reconnecting, resumes from its cursor.
//!
//! [`serve`] drives each connection with hyper's HTTP/1 server directly rather than through
//! `axum::serve`, whose auto builder first sniffs for an HTTP/2 preface: the sniffed bytes are
//! handed back to hyper as a short first read, which makes hyper grow its read buffer to
//! 16 KiB, and a live stream keeps that buffer for its whole life. Plain HTTP/1 (browsers do
//! not speak cleartext HTTP/2) keeps it at hyper's 8 KiB.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// How long a write may stay blocked before the connection is dropped, unless configured.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets each
/// connection finish its response in flight (live streams end once the hub has closed them)
/// and returns when every connection is gone, or once `grace` has passed (a client that holds
/// its request open must not hold the process: what is still open then is cut).
pub async fn serve(
    mut listener: GuardedListener,
    app: axum::Router,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    use axum::serve::Listener as _;
    use hyper::service::Service as _;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let head_timeout = listener.head_timeout;
    let mut http = hyper::server::conn::http1::Builder::new();
    // The timer lets hyper enforce its header read timeout against slow senders (slowloris).
    // hyper starts that clock whenever it waits for a request head, so it is the keep-alive
    // idle timeout as well.
    http.timer(TokioTimer::new());
    http.header_read_timeout(head_timeout);
    // Dropping the sender tells every connection to shut down gracefully; each one holds a
    // receiver, so `closed()` on the other channel resolves when the last one is gone.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // A built `Router` clones as an `Arc`.
        let app = app.clone();
        let http = http.clone();
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            // Live streams that open a connection are served without hyper (`push::direct`).
            let opening = tokio::time::timeout(
                head_timeout,
                crate::push::direct::opens_with_stream(io.get_ref()),
            );
            let direct = tokio::select! {
                opened = opening => match opened {
                    Ok(Ok(direct)) => direct,
                    // Gone, broken, or silent for too long.
                    Ok(Err(_)) | Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            if direct {
                crate::push::direct::serve(io, app, addr, head_timeout, stop).await;
                drop(done);
                return;
            }
            // hyper takes the request bodies as they are. A Socket.IO websocket keeps nothing
            // of its upgrade request (`push::engineio`), so hyper's buffers go with the
            // connection's HTTP part.
            // Handlers may ask who is calling (`ConnectInfo`): sign-in records the address.
            let app =
                tower_http::add_extension::AddExtension::new(app, axum::extract::ConnectInfo(addr));
            let service = TowerToHyperService::new(app);
            // The peer's address, for per-IP limits (`limits::ClientIp`).
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(addr));
                    service.call(request)
                },
            );
            let conn = http
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            // Boxed: a task is as large as its largest state, and hyper's connection state
            // would otherwise make every live stream's task (`push::direct`) that large.
            let mut conn = Box::pin(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    if let Err(e) = conn.await {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                }
            }
            drop(done);
        });
    }
    drop(listener);
    drop(stop_rx);
    drop(stop_tx);
    drop(done_rx);
    if tokio::time::timeout(grace, done_tx.closed()).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "connections still open after the shutdown grace; cutting them"
        );
    }
    Ok(())
}

/// A TCP listener whose connections drop clients that stop reading.
#[derive(Debug)]
pub struct GuardedListener {
    inner: TcpListener,
    stall_timeout: Duration,
    /// How long a client may take to send a request head (and stay idle between requests).
    head_timeout: Duration,
}

impl GuardedListener {
    /// Wraps a bound listener.
    pub fn new(inner: TcpListener, stall_timeout: Duration) -> Self {
        GuardedListener {
            inner,
            stall_timeout,
            head_timeout: crate::config::DEFAULT_HEADER_READ_TIMEOUT,
        }
    }

    /// Sets the request head deadline (the default is 30 s).
    pub fn with_head_timeout(mut self, head_timeout: Duration) -> Self {
        self.head_timeout = head_timeout;
        self
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = StallGuard<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        // Small writes (events) should leave at once rather than wait for more.
        let _ = io.set_nodelay(true);
        (StallGuard::new(io, self.stall_timeout), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An IO whose writes fail with `TimedOut` once they have been blocked (the peer's receive
/// window closed) for longer than the limit.
#[derive(Debug)]
pub struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Set while a write is blocked: when it fires, the connection is given up.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    /// Wraps an IO.
    pub fn new(inner: T, limit: Duration) -> Self {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The wrapped IO.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Turns a blocked write into an error once the limit has passed.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_is_cut_and_one_that_reads_is_not() {
        let (client, server) = tokio::io::duplex(1024);
        let mut guarded = StallGuard::new(server, Duration::from_millis(200));
        let mut client = client;
        // The client reads: a write much larger than the pipe completes.
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            while total < 64 * 1024 {
                let n = client.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                total += n;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (client, total)
        });
        let chunk = vec![7u8; 64 * 1024];
        guarded
            .write_all(&chunk)
            .await
            .expect("a reading client is served");
        let (client, total) = reader.await.expect("reader task");
        assert_eq!(total, 64 * 1024);
        // Now it stops reading: the write fails with TimedOut after the limit.
        let started = std::time::Instant::now();
        let err = guarded
            .write_all(&chunk)
            .await
            .expect_err("a stalled client is given up");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(client);
    }
}
