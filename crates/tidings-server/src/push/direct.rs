//! Live SSE streams on connections of their own, written without hyper's connection state.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB header buffer for the whole life of an HTTP/1
//! connection. A request is over in milliseconds, so that is fine for the API; an idle live
//! stream lives for hours, and those 16 KiB were most of what it cost. A connection whose
//! first bytes are `GET /api/v1/inbox/stream` is therefore served here instead: its request
//! head is read into a short-lived buffer, handed to the same router as every other request
//! (authentication, filters, errors, layers all unchanged), and the response is written with
//! HTTP/1.1 chunked framing, then the connection closes (`connection: close`). What stays for
//! the stream's life is the router's response body (the SSE stream) and this small future.
//!
//! Any other first request, or a stream request on a connection already used for others, goes
//! to hyper as before.

use crate::net::StallGuard;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use futures::{FutureExt, StreamExt};
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::io::Write as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request line a diverted connection starts with (then a space or a query).
const STREAM_REQUEST: &[u8] = b"GET /api/v1/inbox/stream";
/// Largest request head accepted (hyper's own default limit is about as large).
const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request head.
const MAX_HEADERS: usize = 64;
/// Most bytes gathered into one write when several events are ready at once.
const MAX_BATCH: usize = 64 * 1024;

/// Whether the connection opens with a live-stream request. Only peeks: nothing is consumed,
/// so a connection that does not is handed to hyper untouched.
pub async fn opens_with_stream(tcp: &TcpStream) -> io::Result<bool> {
    let mut seen = [0u8; STREAM_REQUEST.len() + 1];
    loop {
        let n = tcp.peek(&mut seen).await?;
        let got = seen.get(..n).unwrap_or(&[]);
        let common = n.min(STREAM_REQUEST.len());
        if n == 0 || got.get(..common) != STREAM_REQUEST.get(..common) {
            return Ok(false);
        }
        if let Some(&next) = seen.get(STREAM_REQUEST.len())
            && n > STREAM_REQUEST.len()
        {
            return Ok(next == b' ' || next == b'?');
        }
        // Only the start of the request line has arrived (rare: it is one small segment).
        // `peek` would return at once again, so give the rest a moment to come.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Serves the one live-stream request on `io` through `app`, then closes the connection.
/// A server shutdown (`stop` changing) while the head is still awaited drops the connection;
/// once the stream runs, the hub ends it with its `resume` event.
/// `head_timeout` bounds how long the client may take to send its request head (as hyper's
/// header read timeout does for other connections), so a slow sender cannot hold it open.
pub async fn serve(
    mut io: StallGuard<TcpStream>,
    app: axum::Router,
    peer: std::net::SocketAddr,
    head_timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    let head = tokio::select! {
        head = tokio::time::timeout(head_timeout, read_head(&mut io)) => head,
        _ = stop.changed() => return,
    };
    let mut request = match head {
        Ok(Ok(Ok(request))) => request,
        Ok(Ok(Err(status))) => {
            let _ = write_plain_error(&mut io, status).await;
            return;
        }
        // The client went away, failed, or was too slow: nothing to answer.
        Ok(Err(_)) | Err(_) => return,
    };
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let http10 = request.version() == Version::HTTP_10;
    // Boxed, so the router's (large) future is freed once it has answered instead of sizing
    // this future, which lives as long as the stream.
    let Ok(response) = Box::pin(TowerToHyperService::new(app).call(request)).await;
    if let Err(e) = write_response(&mut io, response, http10).await {
        tracing::trace!(error = %e, "live stream connection ended");
    }
    let _ = io.shutdown().await;
}

/// Reads and parses the request head. `Err(status)` is an answer to send (the head was not
/// acceptable); an IO error or an early end means the client is gone.
async fn read_head(
    io: &mut StallGuard<TcpStream>,
) -> io::Result<Result<Request<Body>, StatusCode>> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Ok(Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match parse_head(&buf) {
            Some(parsed) => return Ok(parsed),
            None => continue,
        }
    }
}

/// Parses a complete head into a request for the router; None while it is incomplete.
fn parse_head(buf: &[u8]) -> Option<Result<Request<Body>, StatusCode>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        Err(_) => return Some(Err(StatusCode::BAD_REQUEST)),
    }
    Some(build_request(&head))
}

fn build_request(head: &httparse::Request<'_, '_>) -> Result<Request<Body>, StatusCode> {
    let version = match head.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
    };
    let path = head.path.ok_or(StatusCode::BAD_REQUEST)?;
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(version)
        .body(Body::empty())
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    for h in head.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| StatusCode::BAD_REQUEST)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| StatusCode::BAD_REQUEST)?;
        request.headers_mut().append(name, value);
    }
    // A GET carries no body here: one announced would be read as the next request.
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body {
        return Err(StatusCode::BAD_REQUEST);
    }
    Ok(request)
}

/// Writes the router's response: a body of known length as is, a stream in chunks as its
/// events come (HTTP/1.0 clients get the raw stream, delimited by the close).
async fn write_response(
    io: &mut StallGuard<TcpStream>,
    response: Response<Body>,
    http10: bool,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let sized = parts.headers.contains_key(header::CONTENT_LENGTH);
    let chunked = !sized && !http10;
    let mut head = Vec::with_capacity(256);
    write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    )?;
    for (name, value) in &parts.headers {
        // This module owns the framing and the connection's fate.
        if name == header::CONNECTION || name == header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    // The response's header map would otherwise live as long as the stream.
    drop(parts);
    if sized {
        // An error or a short answer: whole, then close.
        let bytes = axum::body::to_bytes(body, MAX_BATCH)
            .await
            .map_err(io::Error::other)?;
        head.extend_from_slice(&bytes);
        return io.write_all(&head).await;
    }
    io.write_all(&head).await?;
    drop(head);
    let mut frames = body.into_data_stream();
    // Reading only tells when the client has gone (EOF or reset): a stream client sends
    // nothing more, and anything it does send is discarded.
    let mut probe = [0u8; 16];
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            read = io.read(&mut probe) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        let data = match frame {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => {
                if chunked {
                    io.write_all(b"0\r\n\r\n").await?;
                }
                return Ok(());
            }
        };
        // The common case, one frame and nothing else waiting: written from where it lies,
        // framed by two small slices, without copying it.
        let mut next = frames.next().now_or_never();
        if next.is_none() && chunked && !data.is_empty() {
            let mut size = [0u8; 18];
            let size = chunk_size_line(&mut size, data.len());
            write_all_vectored(io, &mut [size, &data, b"\r\n"]).await?;
            continue;
        }
        // Events already waiting (a backlog after a resume, or several routed at once) go
        // out in the same write.
        let mut out = Vec::with_capacity(data.len() + 16);
        let mut ended = false;
        push_chunk(&mut out, &data, chunked);
        // `next` was taken from the stream already: it goes out here whatever the size.
        while next.is_some() || out.len() < MAX_BATCH {
            let polled = next.take().or_else(|| frames.next().now_or_never());
            match polled {
                Some(Some(Ok(more))) => push_chunk(&mut out, &more, chunked),
                Some(Some(Err(e))) => return Err(io::Error::other(e)),
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        if ended && chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        io.write_all(&out).await?;
        if ended {
            return Ok(());
        }
    }
}

/// Writes `{len:x}\r\n` into `buf` and returns it.
fn chunk_size_line(buf: &mut [u8; 18], len: usize) -> &[u8] {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    // 16 hex digits and CRLF always fit in 18 bytes.
    let _ = write!(cursor, "{len:x}\r\n");
    let end = usize::try_from(cursor.position()).unwrap_or(0);
    buf.get(..end).unwrap_or_default()
}

/// Writes every slice (at most three) in order with as few system calls as the socket allows.
async fn write_all_vectored(io: &mut StallGuard<TcpStream>, parts: &mut [&[u8]]) -> io::Result<()> {
    let mut first = 0;
    while first < parts.len() {
        // At most three parts: no allocation for the slice list.
        let mut slices = [io::IoSlice::new(&[]); 3];
        for (slot, part) in slices
            .iter_mut()
            .zip(parts.get(first..).unwrap_or_default())
        {
            *slot = io::IoSlice::new(part);
        }
        let mut written = io.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while let Some(part) = parts.get_mut(first) {
            if written < part.len() {
                *part = part.get(written..).unwrap_or_default();
                break;
            }
            written -= part.len();
            first += 1;
        }
    }
    Ok(())
}

fn push_chunk(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        // An empty chunk would end a chunked body.
        return;
    }
    if chunked {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Answers a request head that could not be accepted.
async fn write_plain_error(io: &mut StallGuard<TcpStream>, status: StatusCode) -> io::Result<()> {
    let body = format!(
        "{{\"error\":{{\"code\":\"bad_request\",\"message\":\"{}\"}}}}",
        status.canonical_reason().unwrap_or("bad request")
    );
    let text = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    io.write_all(text.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_head_becomes_a_router_request() {
        let head = b"GET /api/v1/inbox/stream?tags=a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nLast-Event-ID: abc\r\n\r\n";
        let request = parse_head(head).expect("complete").expect("acceptable");
        assert_eq!(request.uri().path(), "/api/v1/inbox/stream");
        assert_eq!(request.uri().query(), Some("tags=a"));
        assert_eq!(request.headers()["authorization"], "Bearer t");
        assert_eq!(request.headers()["last-event-id"], "abc");
        assert!(parse_head(b"GET /api/v1/inbox/stream HTTP/1.1\r\nHost:").is_none());
        assert_eq!(
            parse_head(b"GET /api/v1/inbox/stream HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc")
                .map(|r| r.err()),
            Some(Some(StatusCode::BAD_REQUEST))
        );
    }

    #[test]
    fn chunks_are_framed_and_empty_frames_skipped() {
        let mut out = Vec::new();
        push_chunk(&mut out, b"event: x\n\n", true);
        push_chunk(&mut out, b"", true);
        assert_eq!(out, b"a\r\nevent: x\n\n\r\n");
    }
}
