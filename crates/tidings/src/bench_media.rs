//! `tidings bench media`: uploads of 12-megapixel JPEGs (4000 × 3000, a photo-like gradient
//! with noise, ~2–4 MB), each answered only once its medium and small sizes and blurhash exist
//! (decision 0026), closed loop with `--workers` uploaders (2 by default) for `--duration`.
//! Reports uploads per second, latency percentiles and, with `--server-pid`, the server's CPU
//! seconds per image (user + system, from /proc).
//!
//! Each upload differs from the last by a comment segment, so the server decodes every one;
//! the re-encoded sizes are then equal and their blob writes are the "already there" case.

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};

/// The test photo: 4000 × 3000, gradients plus noise (a flat image would compress to nothing
/// and decode unrealistically fast).
fn photo() -> anyhow::Result<Vec<u8>> {
    let mut seed: u32 = 0x1234_5678;
    let image = image::RgbImage::from_fn(4000, 3000, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = (seed % 24) as u8;
        image::Rgb([
            ((x / 16) % 256) as u8 ^ noise,
            ((y / 12) % 256) as u8 ^ noise,
            (((x + y) / 28) % 256) as u8 ^ noise,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 88)
        .encode_image(&image)
        .context("encoding the test photo")?;
    Ok(out)
}

/// `bytes` with a JPEG comment segment carrying `n` right after the start-of-image marker.
fn numbered(bytes: &[u8], n: u64) -> Vec<u8> {
    let text = format!("tidings bench {n}");
    let mut out = Vec::with_capacity(bytes.len() + text.len() + 4);
    out.extend_from_slice(bytes.get(..2).unwrap_or_default());
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(
        &u16::try_from(text.len() + 2)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(bytes.get(2..).unwrap_or_default());
    out
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) are space separated; utime and
    // stime are the 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on every Linux this runs on (sysconf(_SC_CLK_TCK)).
    Some((utime + stime) / 100.0)
}

pub async fn run(args: &crate::bench::BenchArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.tokens).with_context(|| {
        format!(
            "reading {} (run `tidings seed` first)",
            args.tokens.display()
        )
    })?;
    let Some(token) = text
        .lines()
        .find_map(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
    else {
        bail!("{} holds no tokens", args.tokens.display());
    };
    let original = tokio::task::spawn_blocking(photo).await??;
    let workers = args.workers.unwrap_or(2).max(1);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = format!("{}/api/v1/media", args.target);
    // One upload first: checks the path works and warms the server.
    let first = client
        .post(&url)
        .bearer_auth(&token)
        .body(numbered(&original, 0))
        .send()
        .await?;
    if first.status().as_u16() != 201 {
        bail!(
            "upload answered {}: {}",
            first.status(),
            first.text().await?
        );
    }
    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let original = std::sync::Arc::new(original);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, url, token, original) =
            (client.clone(), url.clone(), token.clone(), original.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0u64;
            let mut n = (w as u64 + 1) << 32;
            while Instant::now() < deadline {
                n += 1;
                let sent = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .body(numbered(&original, n))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().as_u16() == 201 => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    Ok(_) | Err(_) => refused += 1,
                }
            }
            (latencies, refused)
        }));
    }
    let mut latencies = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (l, r) = task.await?;
        latencies.extend(l);
        refused += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (cpu_before, args.server_pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut histogram = Histogram::<u64>::new(3)?;
    for l in &latencies {
        histogram.record(u64::try_from(l.as_micros()).unwrap_or(u64::MAX))?;
    }
    let done = latencies.len() as f64;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "scenario media: 4000x3000 JPEG ({:.1} MB), {workers} uploaders, {:.1} s",
        original.len() as f64 / 1e6,
        elapsed
    );
    println!(
        "{} uploads ({:.2}/s), {refused} refused or failed; latency p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        done / elapsed,
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );
    if let Some(cpu) = cpu {
        println!(
            "server CPU: {cpu:.2} s, {:.0} ms per image",
            if done > 0.0 { cpu / done * 1000.0 } else { 0.0 }
        );
    }
    Ok(())
}
