//! What a gateway reports to the registry, off the request path.
//!
//! - **Checkpoints.** Every `checkpoint_interval` the latest signed tree
//!   head of the audit log is sent to the registry with the RFC 9162
//!   consistency proof from the largest checkpoint the registry already
//!   holds. The registry keeps only consistent extensions, so a gateway that
//!   later rewrote or truncated its log could not hide it. The proof needs
//!   the tree's shape at the anchored size (its compact range) and the
//!   leaves since; the range is rebuilt once at start from the stored leaf
//!   hashes, then carried forward.
//! - **Operational records.** Each exchange's record (no bodies) waits in a
//!   bounded in-memory queue; every `records_interval` a batch signed with
//!   the audit key is posted. The registry stores each record id once, so a
//!   batch retried after a lost answer is harmless. If the registry stays
//!   away long enough for the queue to fill, the oldest records are dropped
//!   and counted: the audit log, which is durable, still holds every
//!   exchange; the records are its operational summary.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_audit::{Batch, CompactRange, Hash};
use accord_domain::monitoring::{OperationalRecord, RecordBatch};
use ed25519_dalek::SigningKey;
use serde::Deserialize;
use tokio::sync::watch;

use super::Shared;
use crate::metrics::Metrics;

/// Records kept while the registry is unreachable.
pub(crate) const QUEUE_CAPACITY: usize = 100_000;
/// Records per batch.
const BATCH: usize = 250;

#[derive(Default)]
struct Inner {
    queue: VecDeque<(u64, OperationalRecord)>,
    next_seq: u64,
    sent: u64,
    dropped: u64,
    last_error: Option<String>,
    anchored_size: Option<u64>,
    anchor_error: Option<String>,
}

pub(crate) struct RecordQueue {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl RecordQueue {
    pub fn new(capacity: usize) -> RecordQueue {
        RecordQueue {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn push(&self, record: OperationalRecord, metrics: &Metrics) {
        if let Ok(mut inner) = self.inner.lock() {
            if inner.queue.len() >= self.capacity {
                inner.queue.pop_front();
                inner.dropped += 1;
                metrics.records_dropped.inc();
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            inner.queue.push_back((seq, record));
            metrics
                .records_queued
                .set(i64::try_from(inner.queue.len()).unwrap_or(i64::MAX));
        }
    }

    /// The oldest records (up to `max`), left in the queue until confirmed.
    fn peek(&self, max: usize) -> Vec<(u64, OperationalRecord)> {
        self.inner
            .lock()
            .map(|i| i.queue.iter().take(max).cloned().collect())
            .unwrap_or_default()
    }

    /// Removes records up to and including `last_seq`.
    fn confirm(&self, last_seq: u64, sent: usize, metrics: &Metrics) {
        if let Ok(mut inner) = self.inner.lock() {
            while inner.queue.front().is_some_and(|(seq, _)| *seq <= last_seq) {
                inner.queue.pop_front();
            }
            inner.sent += sent as u64;
            inner.last_error = None;
            metrics
                .records_queued
                .set(i64::try_from(inner.queue.len()).unwrap_or(i64::MAX));
        }
    }

    fn failed(&self, error: String) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.last_error = Some(error);
        }
    }

    /// (queued, sent, dropped, last error)
    pub fn status(&self) -> (usize, u64, u64, Option<String>) {
        self.inner
            .lock()
            .map(|i| (i.queue.len(), i.sent, i.dropped, i.last_error.clone()))
            .unwrap_or_default()
    }

    fn anchored(&self, size: Option<u64>, error: Option<String>) {
        if let Ok(mut inner) = self.inner.lock() {
            if size.is_some() {
                inner.anchored_size = size;
            }
            inner.anchor_error = error;
        }
    }

    /// (largest anchored size, last anchoring error)
    pub fn anchor_status(&self) -> (Option<u64>, Option<String>) {
        self.inner
            .lock()
            .map(|i| (i.anchored_size, i.anchor_error.clone()))
            .unwrap_or_default()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The `detail` of a registry problem, or the status.
async fn problem(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let detail = v.get("detail")?.as_str()?.to_owned();
            Some(match v.get("rule").and_then(|r| r.as_str()) {
                Some(rule) => format!("{detail} ({rule})"),
                None => detail,
            })
        })
        .unwrap_or(text);
    format!("the registry answered {status}: {detail}")
}

/// Sends operational records until `stopped`, then makes a last attempt.
pub(crate) async fn send_records(
    shared: Arc<Shared>,
    key: SigningKey,
    mut stopped: watch::Receiver<bool>,
) {
    let client = http_client();
    let url = format!("{}/api/v1/monitoring/records", shared.config.registry);
    let mut delay = shared.config.records_interval;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = stopped.changed() => true,
        };
        loop {
            let batch = shared.records.peek(BATCH);
            let Some(last_seq) = batch.last().map(|(seq, _)| *seq) else {
                break;
            };
            let n = batch.len();
            let records: Vec<OperationalRecord> = batch.into_iter().map(|(_, r)| r).collect();
            let signed = match RecordBatch::sign(&shared.log_id, records, &key) {
                Ok(b) => b,
                Err(e) => {
                    shared
                        .records
                        .failed(format!("cannot sign a record batch: {e}"));
                    break;
                }
            };
            match client.post(&url).json(&signed).send().await {
                Ok(r) if r.status().is_success() => {
                    shared.records.confirm(last_seq, n, &shared.metrics);
                    shared.metrics.records_sent.inc_by(n as u64);
                    delay = shared.config.records_interval;
                }
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    // The registry will never take this batch: keep the
                    // queue moving, and say so loudly.
                    let why = problem(r).await;
                    tracing::error!(error = %why, records = n, "the registry refused a batch of operational records; dropping it");
                    shared.records.confirm(last_seq, 0, &shared.metrics);
                    shared.metrics.records_dropped.inc_by(n as u64);
                    shared.records.failed(why);
                }
                Ok(r) => {
                    let why = problem(r).await;
                    shared.records.failed(why);
                    delay = (delay * 2).min(Duration::from_secs(60));
                    break;
                }
                Err(e) => {
                    shared
                        .records
                        .failed(format!("cannot reach the registry: {e}"));
                    delay = (delay * 2).min(Duration::from_secs(60));
                    break;
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[derive(Deserialize)]
struct Anchored {
    size: i64,
}

/// The tree's state at the size the registry has anchored.
struct AnchorState {
    range: CompactRange,
}

/// Leaf hashes `[from, to)` from the log.
async fn leaves(shared: &Shared, from: u64, to: u64) -> Result<Vec<Hash>, String> {
    shared
        .audit
        .leaf_hashes(from, to)
        .await
        .map_err(|e| e.to_string())
}

async fn anchored_size(shared: &Shared, client: &reqwest::Client) -> Result<u64, String> {
    let url = format!("{}/api/v1/audit/checkpoints", shared.config.registry);
    let response = client
        .get(&url)
        .query(&[("log", shared.log_id.as_str())])
        .send()
        .await
        .map_err(|e| format!("cannot reach the registry: {e}"))?;
    if !response.status().is_success() {
        return Err(problem(response).await);
    }
    let held: Vec<Anchored> = response
        .json()
        .await
        .map_err(|e| format!("the registry's checkpoint list is unreadable: {e}"))?;
    Ok(held
        .iter()
        .map(|c| u64::try_from(c.size).unwrap_or(0))
        .max()
        .unwrap_or(0))
}

async fn anchor_once(
    shared: &Shared,
    client: &reqwest::Client,
    state: &mut Option<AnchorState>,
) -> Result<(), String> {
    let Some(latest) = shared.audit.latest_checkpoint().await else {
        return Ok(());
    };
    let new_size = latest.checkpoint.size;
    if state.is_none() {
        let size = anchored_size(shared, client).await?;
        if size > new_size {
            return Err(format!(
                "the registry holds a checkpoint of size {size} for this log, which has only {new_size} entries: the log was truncated or replaced"
            ));
        }
        let range = CompactRange::from_leaves(&leaves(shared, 0, size).await?);
        shared.records.anchored(Some(size), None);
        *state = Some(AnchorState { range });
    }
    let Some(mut current) = state.take() else {
        return Ok(());
    };
    let old_size = current.range.size();
    if new_size <= old_size {
        *state = Some(current);
        return Ok(());
    }
    let new_leaves = leaves(shared, old_size, new_size).await?;
    let batch = Batch::new(&current.range, &new_leaves);
    if batch.root() != latest.checkpoint.root {
        return Err(format!(
            "the log's entries up to {new_size} do not give the root its checkpoint signs"
        ));
    }
    let proof: Vec<String> = if old_size == 0 {
        Vec::new()
    } else {
        batch
            .consistency_proof()
            .map_err(|e| format!("cannot prove consistency: {e}"))?
            .iter()
            .map(hex::encode)
            .collect()
    };
    let body = serde_json::json!({ "checkpoint": latest, "consistency_proof": proof });
    let url = format!("{}/api/v1/audit/checkpoints", shared.config.registry);
    let response = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("cannot reach the registry: {e}"))?;
    if !response.status().is_success() {
        // Perhaps an earlier run anchored more: the state is left empty, so
        // the next attempt starts again from what the registry holds.
        return Err(problem(response).await);
    }
    current.range = batch.after();
    *state = Some(current);
    shared.audit.forget_leaves_before(new_size);
    shared.metrics.checkpoints_anchored.inc();
    shared.records.anchored(Some(new_size), None);
    Ok(())
}

/// Anchors checkpoints until `stopped`, then makes a last attempt.
pub(crate) async fn anchor_checkpoints(
    shared: Arc<Shared>,
    _key: SigningKey,
    mut stopped: watch::Receiver<bool>,
) {
    let client = http_client();
    let mut state: Option<AnchorState> = None;
    let mut delay = Duration::from_millis(200);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = stopped.changed() => true,
        };
        match anchor_once(&shared, &client, &mut state).await {
            Ok(()) => delay = shared.config.checkpoint_interval,
            Err(why) => {
                tracing::warn!(error = %why, "anchoring the audit checkpoint at the registry");
                shared.metrics.anchor_failures.inc();
                shared.records.anchored(None, Some(why));
                delay = (delay * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
            }
        }
        if stopping {
            return;
        }
    }
}
