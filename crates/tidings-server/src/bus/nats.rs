//! The NATS doorbell: `tidings.<cluster>.changes` carries "the change log reached N".
//!
//! Core NATS (at most once, no server state) is enough: the message holds no data, PostgreSQL
//! holds the log, and a node that misses a message finds the change at its next poll. JetStream
//! would persist messages nobody needs to replay.

use std::time::Duration;
use tidings_store::Store;
use tokio::sync::mpsc;

/// Doorbells queued for publishing before new ones are dropped (a later one covers them).
const PENDING: usize = 1024;

/// Why the bus could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL is not a NATS URL.
    #[error("the bus URL must start with nats:// (got {0:?})")]
    BadUrl(String),
    /// The store could not say which cluster it is.
    #[error("cannot read the cluster id: {0}")]
    Store(#[from] tidings_store::StoreError),
    /// NATS refused the connection options or the subscription.
    #[error("NATS: {0}")]
    Nats(String),
}

/// Connects to NATS at `url` and rings / listens to the doorbell of `store`'s cluster. Keeps
/// reconnecting in the background while NATS is away (the store polls meanwhile). Returns
/// at once even when NATS is down at start-up.
pub async fn attach(url: &str, store: &Store) -> Result<(), BusError> {
    if !url.starts_with("nats://") {
        return Err(BusError::BadUrl(url.to_owned()));
    }
    let Some(cluster) = store.cluster_id().await? else {
        // The embedded store is one process: nothing to ring.
        tracing::info!("--bus ignored: the embedded store has no other nodes");
        return Ok(());
    };
    let subject = format!("tidings.{cluster}.changes");
    let client = async_nats::ConnectOptions::new()
        .name("tidings")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            tracing::info!(%event, "NATS connection event");
        })
        .connect(url)
        .await
        .map_err(|e| BusError::Nats(e.to_string()))?;
    let mut doorbell = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| BusError::Nats(e.to_string()))?;
    let listener = store.clone();
    tokio::spawn(async move {
        use futures::StreamExt;
        while doorbell.next().await.is_some() {
            listener.wake();
        }
    });
    let (ring, mut rung) = mpsc::channel::<i64>(PENDING);
    store.on_commit(move |position| {
        // Full means many rings are queued already; the next one covers this one.
        let _ = ring.try_send(position);
    });
    tokio::spawn(async move {
        while let Some(mut position) = rung.recv().await {
            // Rings queued meanwhile are covered by the newest one: send one message for all.
            while let Ok(newer) = rung.try_recv() {
                position = position.max(newer);
            }
            let sent = client
                .publish(subject.clone(), position.to_string().into())
                .await;
            // The client buffers publishes until its flusher runs; a doorbell is worth
            // something only if it rings now.
            let flushed = match sent {
                Ok(()) => client.flush().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = flushed {
                tracing::debug!(error = %e, "doorbell not sent (NATS away); nodes poll");
            }
        }
    });
    tracing::info!(%url, "ringing the cluster's doorbell on NATS");
    Ok(())
}
