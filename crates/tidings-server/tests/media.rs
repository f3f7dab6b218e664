//! HTTP tests of media (decision 0026): uploads (raw and multipart) come back processed with
//! two derived sizes and a blurhash; bad uploads (truncated, wrong type, oversized, a pixel
//! bomb) are clear 4xx errors that store nothing; EXIF and GPS data never leave the server
//! and orientation is applied; a media object is readable exactly by who may read the
//! activities attaching it; ETag/304 and caching headers; avatars; the S3 blob store against
//! a local S3 server (moto). Run on PostgreSQL with `TIDINGS_TEST_STORE` (docs/testing.md).

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Cursor;
use tidings_server::config::ServerConfig;
use tidings_store::StoreConfig;

/// A JPEG of `width` × `height` with a colour gradient (so sizes and hashes differ).
fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&image)
        .expect("encode jpeg");
    out
}

/// A PNG with transparency.
fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 128])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

/// Something that must never be served back: in the EXIF description and near the GPS tags.
const SECRET: &[u8] = b"SECRET-HOME-48.8584N-2.2945E";

/// A TIFF (EXIF) block: orientation 6 (rotate 90° clockwise to display), a description
/// holding [`SECRET`], and a GPS IFD with a latitude.
fn exif_block() -> Vec<u8> {
    let mut t: Vec<u8> = Vec::new();
    t.extend_from_slice(b"II*\0");
    t.extend_from_slice(&8u32.to_le_bytes());
    // IFD0 at 8: three entries (2 + 36 + 4 bytes) → GPS IFD at 50.
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32| {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&value.to_le_bytes());
    };
    let description_at = 104u32;
    t.extend_from_slice(&3u16.to_le_bytes());
    entry(&mut t, 0x010E, 2, SECRET.len() as u32 + 1, description_at);
    entry(&mut t, 0x0112, 3, 1, 6);
    entry(&mut t, 0x8825, 4, 1, 50);
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 50);
    // GPS IFD at 50: latitude ref "N" (inline) and latitude (3 rationals at 80).
    t.extend_from_slice(&2u16.to_le_bytes());
    entry(&mut t, 0x0001, 2, 2, u32::from_le_bytes([b'N', 0, 0, 0]));
    entry(&mut t, 0x0002, 5, 3, 80);
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len(), 80);
    for (num, den) in [(48u32, 1u32), (51, 1), (3024, 100)] {
        t.extend_from_slice(&num.to_le_bytes());
        t.extend_from_slice(&den.to_le_bytes());
    }
    assert_eq!(t.len(), description_at as usize);
    t.extend_from_slice(SECRET);
    t.push(0);
    t
}

/// A 60 × 40 JPEG carrying an EXIF APP1 segment (orientation 6, GPS, the secret).
fn jpeg_with_gps() -> Vec<u8> {
    let plain = jpeg(60, 40);
    let tiff = exif_block();
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG of a few hundred bytes whose header declares 100,000 × 100,000 pixels (40 GB of
/// RGBA once decoded): a decompression bomb.
fn png_bomb() -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// Sends raw bytes; `token` None sends none.
async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, format!("{}{path}", s.base))
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body").to_vec();
    (status, headers, bytes)
}

/// Uploads raw bytes; returns status and JSON body.
async fn upload(s: &TestServer, token: &str, bytes: Vec<u8>, query: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(
        s,
        Method::POST,
        &format!("/api/v1/media{query}"),
        Some(token),
        bytes,
        &[("content-type", "application/octet-stream")],
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Uploads and expects a 201.
async fn uploaded(s: &TestServer, token: &str, bytes: Vec<u8>, alt: &str) -> Value {
    let (status, body) = upload(s, token, bytes, &format!("?alt={alt}")).await;
    assert_eq!(status, StatusCode::CREATED, "upload: {body:?}");
    body
}

/// GETs a path with an optional token.
async fn fetch(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    send(s, Method::GET, path, token, Vec::new(), headers).await
}

/// Files under a directory, recursively.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { files_under(&path) } else { 1 }
        })
        .sum()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_upload_comes_back_processed_with_two_sizes_and_a_blurhash() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let body = uploaded(&s, &ana, jpeg(2000, 1500), "a%20gradient").await;
    assert_eq!(body["type"], "Image");
    assert_eq!(body["mediaType"], "image/jpeg");
    assert_eq!(body["state"], "ready");
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(2000), Some(1500))
    );
    assert_eq!(body["alt"], "a gradient");
    assert_eq!(body["owner"], "ana");
    let blurhash = body["blurhash"].as_str().expect("blurhash");
    assert!(blurhash.len() >= 6, "{blurhash}");
    let sizes: Vec<(String, u64, u64)> = body["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or("").to_owned(),
                v["width"].as_u64().unwrap_or(0),
                v["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        vec![
            ("original".into(), 2000, 1500),
            ("medium".into(), 1280, 960),
            ("small".into(), 400, 300)
        ]
    );
    assert_eq!(body["attachment"]["url"], body["url"]);
    assert_eq!(body["attachment"]["name"], "a gradient");
    // Every size is served as the image it says it is.
    for v in body["variants"].as_array().expect("variants") {
        let (status, headers, bytes) =
            fetch(&s, v["url"].as_str().expect("url"), Some(&ana), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "image/jpeg");
        let decoded = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!(
            (u64::from(decoded.width()), u64::from(decoded.height())),
            (
                v["width"].as_u64().unwrap_or(0),
                v["height"].as_u64().unwrap_or(0)
            )
        );
    }
    // Transparency survives as PNG; a small image is not scaled up, its sizes share a blob.
    let body = uploaded(&s, &ana, png(120, 80), "").await;
    assert_eq!(body["mediaType"], "image/png");
    assert!(body["alt"].is_null());
    let urls: Vec<&str> = body["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["url"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(urls.len(), 3);
    let (_, first, _) = fetch(&s, urls[0], Some(&ana), &[]).await;
    let (_, last, _) = fetch(&s, urls[2], Some(&ana), &[]).await;
    assert_eq!(first["etag"], last["etag"]);
    // The description route answers the same object.
    let id = body["id"].as_str().expect("id");
    let r = s.get(&ana, &format!("/media/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["blurhash"], body["blurhash"]);
}

#[tokio::test]
async fn multipart_uploads_carry_the_file_and_alt_text() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let boundary = "XtidingsX";
    let mut form = Vec::new();
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"alt\"\r\n\r\nthe harbour at dusk\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"harbour.png\"\r\nContent-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    // Named .png and declared image/png, but the bytes are a JPEG: the bytes win.
    form.extend_from_slice(&jpeg(300, 200));
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, _, body) = send(
        &s,
        Method::POST,
        "/api/v1/media",
        Some(&ana),
        form,
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
    )
    .await;
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, StatusCode::CREATED, "{body:?}");
    assert_eq!(body["alt"], "the harbour at dusk");
    assert_eq!(body["mediaType"], "image/jpeg");
    // A form without a file.
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"alt\"\r\n\r\nno file\r\n--{boundary}--\r\n"
    );
    let (status, _, body) = send(
        &s,
        Method::POST,
        "/api/v1/media",
        Some(&ana),
        form.into_bytes(),
        &[(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn bad_uploads_are_clear_4xx_errors_and_store_nothing() {
    let config = ServerConfig {
        media: tidings_server::media::MediaConfig {
            max_bytes: 64 * 1024,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let ana = s.user("ana").await;
    let whole = jpeg(400, 300);
    assert!(whole.len() < 64 * 1024);
    let big = jpeg(1600, 1600);
    assert!(big.len() > 64 * 1024, "{}", big.len());
    let mut truncated_png = png(200, 200);
    truncated_png.truncate(truncated_png.len() / 2);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "empty",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_upload",
        ),
        (
            "truncated jpeg",
            whole[..whole.len() / 2].to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable_image",
        ),
        (
            "truncated png",
            truncated_png,
            StatusCode::UNPROCESSABLE_ENTITY,
            "undecodable_image",
        ),
        (
            "text",
            b"hello, this is not an image".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "oversized",
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "media_too_large",
        ),
        (
            "pixel bomb",
            png_bomb(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_pixels",
        ),
    ];
    for (what, bytes, status, code) in cases {
        let (got, body) = upload(&s, &ana, bytes, "").await;
        assert_eq!(got, status, "{what}: {body:?}");
        assert_eq!(body["error"]["code"], code, "{what}: {body:?}");
    }
    let (got, body) = upload(
        &s,
        &ana,
        whole.clone(),
        &format!("?alt={}", "x".repeat(1501)),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{body:?}");
    assert_eq!(body["error"]["code"], "alt_too_long");
    // Not signed in.
    let (got, _, _) = send(&s, Method::POST, "/api/v1/media", None, whole, &[]).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    assert_eq!(
        files_under(&s.data_dir().join("media")),
        0,
        "a refused upload left blobs behind"
    );
}

#[tokio::test]
async fn exif_and_gps_never_leave_the_server_and_orientation_is_applied() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let input = jpeg_with_gps();
    assert!(contains(&input, SECRET) && contains(&input, b"Exif"));
    let body = uploaded(&s, &ana, input, "").await;
    // Orientation 6: a 60 × 40 picture is shown 40 wide and 60 high.
    assert_eq!(
        (body["width"].as_u64(), body["height"].as_u64()),
        (Some(40), Some(60))
    );
    for v in body["variants"].as_array().expect("variants") {
        let (status, _, bytes) = fetch(&s, v["url"].as_str().expect("url"), Some(&ana), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            !contains(&bytes, SECRET),
            "{} leaks the EXIF text",
            v["name"]
        );
        assert!(
            !contains(&bytes, b"Exif"),
            "{} carries an EXIF block",
            v["name"]
        );
        let decoded = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!((decoded.width(), decoded.height()), (40, 60));
    }
    // Nor are they kept anywhere on disk.
    assert!(!common::files_contain(&s.data_dir().join("media"), SECRET));
}

#[tokio::test]
async fn media_follow_the_visibility_of_the_activities_that_attach_them() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    let cara = s.user("cara").await;
    s.circle(&ana, "family", "private", "invite").await;
    let r = s
        .request(
            Method::PUT,
            "/circles/family/members/cara",
            Some(&ana),
            None,
            &[],
        )
        .await;
    assert!(r.status.is_success(), "invite: {:?}", r.body);
    let r = s.put(&cara, "/circles/family/members/cara").await;
    assert!(r.status.is_success(), "accept: {:?}", r.body);

    let private = uploaded(&s, &ana, jpeg(300, 200), "the%20kids").await;
    let unattached = uploaded(&s, &ana, jpeg(310, 200), "").await;
    let public = uploaded(&s, &ana, jpeg(320, 200), "").await;
    let post = s
        .publish(
            &ana,
            json!({"type": "Create", "to": ["circle:family"],
                   "object": {"type": "Note", "content": "our day", "attachment": [private["attachment"].clone()]}}),
        )
        .await;
    s.publish(
        &ana,
        json!({"type": "Create", "to": ["public"],
               "object": {"type": "Note", "content": "sunset", "attachment": [public["attachment"].clone()]}}),
    )
    .await;

    let url =
        |m: &Value, size: &str| format!("/api/v1/media/{}/{size}", m["id"].as_str().unwrap_or(""));
    let can = |status: StatusCode| status == StatusCode::OK;
    for (who, token) in [
        ("ana", Some(ana.as_str())),
        ("cara", Some(cara.as_str())),
        ("bob", Some(bob.as_str())),
        ("anonymous", None),
    ] {
        let insider = who == "ana" || who == "cara";
        for size in ["original", "small"] {
            let (status, headers, _) = fetch(&s, &url(&private, size), token, &[]).await;
            assert_eq!(can(status), insider, "{who} private {size}: {status}");
            if insider {
                assert_eq!(headers["cache-control"], "private, no-cache");
            } else {
                assert_eq!(status, StatusCode::NOT_FOUND);
            }
        }
        let (status, _, _) = fetch(&s, &url(&unattached, "original"), token, &[]).await;
        assert_eq!(can(status), who == "ana", "{who} unattached: {status}");
        let (status, headers, _) = fetch(&s, &url(&public, "medium"), token, &[]).await;
        assert_eq!(status, StatusCode::OK, "{who} public");
        assert_eq!(
            headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let (status, _, _) = fetch(
            &s,
            &format!("/api/v1/media/{}", private["id"].as_str().unwrap_or("")),
            token,
            &[],
        )
        .await;
        assert_eq!(can(status), insider, "{who} private description: {status}");
    }
    // A bad token is refused, not treated as anonymous.
    let (status, _, _) = fetch(&s, &url(&public, "small"), Some("not-a-token"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Bob cannot widen the audience of Ana's image by attaching it himself.
    let r = s
        .post(
            &bob,
            "/outbox",
            json!({"type": "Create", "to": ["public"],
                   "object": {"type": "Note", "content": "look", "attachment": [private["attachment"].clone()]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.code(), "unknown_media");
    let (status, _, _) = fetch(&s, &url(&private, "original"), Some(&bob), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A retraction takes the attachment away from the circle's members.
    let id = post["id"].as_str().expect("id");
    let r = s
        .post(&ana, &format!("/activities/{id}/retract"), json!({}))
        .await;
    assert!(r.status.is_success(), "retract: {:?}", r.body);
    let (status, _, _) = fetch(&s, &url(&private, "original"), Some(&cara), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(&s, &url(&private, "original"), Some(&ana), &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn etags_answer_304_and_unknown_sizes_and_ids_are_404() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let m = uploaded(&s, &ana, jpeg(500, 400), "").await;
    let path = format!("/api/v1/media/{}/small", m["id"].as_str().unwrap_or(""));
    let (status, headers, bytes) = fetch(&s, &path, Some(&ana), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!bytes.is_empty());
    let etag = headers["etag"].to_str().expect("etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, headers, bytes) = fetch(&s, &path, Some(&ana), &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(bytes.is_empty());
    assert_eq!(headers["etag"].to_str().expect("etag"), etag);
    let (status, _, _) = fetch(&s, &path, Some(&ana), &[("if-none-match", "\"other\"")]).await;
    assert_eq!(status, StatusCode::OK);
    // An ETag does not let an outsider learn anything: the visibility check comes first.
    let bob = s.user("bob").await;
    let (status, _, _) = fetch(&s, &path, Some(&bob), &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for bad in [
        format!("/api/v1/media/{}/huge", m["id"].as_str().unwrap_or("")),
        "/api/v1/media/0192f0a4-7c1e-7d3a-9b2f-0a1b2c3d4e5f/small".to_owned(),
        "/api/v1/media/not-an-id/small".to_owned(),
        "/api/v1/media/not-an-id".to_owned(),
    ] {
        let (status, _, _) = fetch(&s, &bad, Some(&ana), &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
}

#[tokio::test]
async fn avatars_of_people_and_circles_are_public_and_only_their_keepers_set_them() {
    let s = TestServer::start().await;
    let ana = s.user("ana").await;
    let bob = s.user("bob").await;
    s.circle(&ana, "hikers", "private", "invite").await;
    let face = uploaded(&s, &ana, jpeg(800, 800), "ana").await;
    let (status, _, _) = fetch(&s, "/api/v1/users/ana/avatar", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = s
        .request(
            Method::PUT,
            "/me/avatar",
            Some(&ana),
            Some(json!({"media": face["id"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["avatar"]["id"], face["id"]);
    let (status, headers, bytes) = fetch(&s, "/api/v1/users/ana/avatar", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&bytes).expect("decodes");
    assert_eq!(decoded.width(), 400, "the small size by default");
    // An avatar is public: the media object itself is now readable by anyone.
    let (status, _, _) = fetch(
        &s,
        &format!("/api/v1/media/{}", face["id"].as_str().unwrap_or("")),
        None,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Bob can use neither Ana's media nor her circle.
    let r = s
        .request(
            Method::PUT,
            "/me/avatar",
            Some(&bob),
            Some(json!({"media": face["id"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let own = uploaded(&s, &bob, jpeg(100, 100), "").await;
    let r = s
        .request(
            Method::PUT,
            "/circles/hikers/avatar",
            Some(&bob),
            Some(json!({"media": own["id"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let logo = uploaded(&s, &ana, png(64, 64), "").await;
    let r = s
        .request(
            Method::PUT,
            "/circles/hikers/avatar",
            Some(&ana),
            Some(json!({"media": logo["id"]})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let (status, headers, _) =
        fetch(&s, "/api/v1/circles/hikers/avatar?size=original", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    // Removing it.
    let r = s
        .request(
            Method::PUT,
            "/me/avatar",
            Some(&ana),
            Some(json!({"media": null})),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["avatar"].is_null());
    let (status, _, _) = fetch(&s, "/api/v1/users/ana/avatar", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = fetch(&s, "/api/v1/users/nobody/avatar", None, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A moto S3 server on a free port, stopped when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` if it is installed. Under CI (`TIDINGS_REQUIRE_POSTGRES=1`, as
/// `.ci/run` sets) its absence fails the test instead of skipping it.
async fn moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var("TIDINGS_REQUIRE_POSTGRES").is_err(),
                "moto_server is required under CI (python3 -m pip install 'moto[server]'): {e}"
            );
            eprintln!("skipping: moto_server is not installed ({e})");
            return None;
        }
    };
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client.get(&moto.endpoint).send().await.is_ok() {
            return Some(moto);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start on {}", moto.endpoint);
}

#[tokio::test]
async fn blobs_go_to_an_s3_bucket_in_cluster_mode() {
    let Some(moto) = moto().await else {
        return;
    };
    let client = reqwest::Client::new();
    let r = client
        .put(format!("{}/tidings-media", moto.endpoint))
        .send()
        .await
        .expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    let settings = [
        ("aws_endpoint", moto.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = ServerConfig {
        media: tidings_server::media::MediaConfig {
            store: Some("s3://tidings-media".into()),
            s3_settings: settings,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(config, StoreConfig::default()).await;
    let ana = s.user("ana").await;
    let input = jpeg(900, 600);
    let m = uploaded(&s, &ana, input.clone(), "s3").await;
    // The same bytes again: content-addressed keys, so the blobs are shared, not rewritten.
    let again = uploaded(&s, &ana, input, "s3 again").await;
    assert_eq!(m["variants"][0]["bytes"], again["variants"][0]["bytes"]);
    for v in m["variants"].as_array().expect("variants") {
        let (status, headers, bytes) =
            fetch(&s, v["url"].as_str().expect("url"), Some(&ana), &[]).await;
        assert_eq!(status, StatusCode::OK, "{}", v["name"]);
        assert_eq!(headers["content-type"], "image/jpeg");
        assert_eq!(bytes.len() as u64, v["bytes"].as_u64().unwrap_or(0));
    }
    // The bucket holds the blobs (the original, which is also the medium size at 900 px, and
    // the small one), the data dir none.
    let listing = client
        .get(format!("{}/tidings-media?list-type=2", moto.endpoint))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("listing");
    assert_eq!(listing.matches("<Key>sha256/").count(), 2, "{listing}");
    assert_eq!(files_under(&s.data_dir().join("media")), 0);
}
