//! The gateway's durable audit log: every exchange (permitted, denied or
//! failed) is appended here, and the exchange is answered only once its
//! entry is durable.
//!
//! [`accord_audit`] holds the rules (canonical entries, the RFC 9162 tree,
//! signed checkpoints, offline verification) and does no I/O; this module
//! is the storage and the *group commit* around them.
//!
//! # Group commit
//!
//! A durable write costs an fsync (a few hundred µs on the target disk),
//! and every exchange needs one; doing one per exchange would cap a gateway
//! at a few thousand exchanges per second with every request waiting for
//! its own flush. So [`AuditLog::append`] does the CPU work on the caller's
//! task (canonical bytes and leaf hash: parallel across cores), then hands
//! the entry to a single committer over a channel and waits. The
//! committer takes everything queued (up to `max_batch`) and, for the whole
//! batch:
//!
//! 1. hashes it onto the in-memory [`CompactRange`] with [`Batch`]
//!    (O(batch + log n), never the whole log),
//! 2. signs **one** [`Checkpoint`] for the new size and root (one Ed25519
//!    signature per batch, not per message),
//! 3. writes every entry row, the checkpoint row and the new head (the
//!    compact range) in **one transaction**, and commits,
//! 4. only then advances the range and answers every waiter with a
//!    [`Receipt`]: its index, the batch's signed checkpoint and its
//!    inclusion proof against that checkpoint.
//!
//! While one batch is being flushed the next one queues, so the batch size
//! follows the load: idle, an entry is committed at once on its own; under
//! load one flush serves dozens to hundreds of exchanges. Under load (the
//! last commit carried more than one entry) the committer holds a batch
//! open up to about a millisecond for more company, two once batches reach
//! four entries, four once they reach eight; on SQLite it stops waiting as
//! soon as the gateway's runtime falls idle, since then no entry is about
//! to come. `max_wait` can make the wait longer.
//!
//! The committer is a task on PostgreSQL. On SQLite it is a thread of its
//! own with its own connection (rusqlite, on the file the sqlx pool opened):
//! a group commit there is CPU and an fsync, and doing it in place keeps it
//! off the runtime that serves the exchanges and out of sqlx's per-statement
//! hand-offs to its connection thread (see `SqliteWriter`).
//!
//! If the transaction fails, every waiter of the batch gets the error (the
//! exchange must then fail: it was not recorded), the range does not
//! advance, and before the next batch the committer reloads the head from
//! the database (a commit reported as failed may in fact have landed).
//!
//! # Durability, and why a SIGKILL leaves a log that verifies
//!
//! - An append is answered `Ok` only after `COMMIT` of the transaction
//!   holding its row has returned. On PostgreSQL, with the default
//!   `synchronous_commit = on`, that means the WAL record is flushed (if the
//!   server is configured with `off`, the log turns it back on for its own
//!   transactions). On SQLite the database runs in WAL mode with
//!   `synchronous = FULL`: the WAL is fsynced at every commit. `NORMAL`,
//!   which the registry uses, only fsyncs at WAL checkpoints; a commit then
//!   survives the process being killed (the pages are in the OS cache) but
//!   not a power cut or kernel crash, and "answered ⇒ recorded" must hold
//!   for those too. The price is one fsync per group commit, shared by the
//!   batch.
//! - Entries, their checkpoint and the head are one transaction, and both
//!   engines commit a transaction atomically across crashes. Whenever the
//!   process dies (SIGKILL between any two instructions, power loss), the
//!   database holds whole batches only: no entry without the checkpoint
//!   that signs it, no checkpoint without its entries, and a head equal to
//!   the last checkpoint. A batch cut short was never answered; it is
//!   either entirely in the log or entirely absent, both consistent.
//! - On restart [`AuditLog::open`] reads the head, checks that its compact
//!   range folds to the last checkpoint's root, that the checkpoint's
//!   signature holds, and that the entries end exactly at its size, then
//!   continues the same tree. So every answered exchange is in the log, the
//!   log verifies ([`LogReader::verify`]), and new checkpoints extend the
//!   ones already sent to the registry.
//! - On PostgreSQL, a `COMMIT` sent just before the kill may be completed
//!   by the server after the restarted gateway has read the head. The
//!   first batch then fails on the entries' primary key or the head's
//!   conditional update (its exchanges fail; nothing forks), and the
//!   committer reloads the head before the next batch.
//!
//! The tests simulate the crash in-process ([`AuditLog::abort_committer`]
//! while appends are in flight); the SIGKILL test runs with the gateway
//! process.
//!
//! # Storage
//!
//! Portable SQL through sqlx's `Any` driver, as `accord-store` does
//! (`migrations/0001_audit.sql`): entries as `(leaf_index BIGINT, entry
//! TEXT, leaf_hash TEXT)`, one checkpoint row per group commit, one head
//! row. The entry is stored as the exact canonical JSON text that was
//! hashed, never as JSONB, so verification hashes what is stored and never
//! re-serializes. The database is the gateway's own: its migration table
//! would clash with the registry's. On SQLite a second migration
//! (`migrations/sqlite/0002_rowid_tables.sql`) rebuilds the tables with
//! their keys as rowids: three pages per group commit instead of five, and
//! about 0.1 ms less per commit on the target disk.
//!
//! On SQLite the committer writes every group commit on one connection of
//! its own (so its page cache stays valid; rusqlite, the only write path
//! that is not sqlx, for the reason above), and copies the write-ahead log
//! back into the database file in the background about once a second, so
//! that no commit waits for a checkpoint. The leaf hashes of recent
//! commits stay in memory (bounded) for anchoring, which would otherwise
//! read back what was just written.
//!
//! Opening reads O(1) rows whatever the size of the log; verifying the
//! whole log is [`LogReader::verify`]'s job (or `accord audit verify`'s,
//! from [`LogReader::open`] without the gateway's key), streaming a page
//! at a time.
//!
//! # Measured
//!
//! One ad-hoc run, not a benchmark: release build, 2 cores, ext4 on the
//! development VM's disk, `max_batch` 256, `max_wait` 0, each appender
//! awaiting its receipt before its next append (canonicalization included):
//!
//! | appenders | SQLite appends/s | p50 / p99 | PostgreSQL appends/s | p50 / p99 |
//! |---:|---:|---|---:|---|
//! | 1 | 5,100 | 0.19 / 0.32 ms | 3,900 | 0.25 / 0.36 ms |
//! | 8 | 17,500 | 0.44 / 1.4 ms | 13,200 | 0.57 / 0.89 ms |
//! | 64 | 74,000 | 0.79 / 3.5 ms | 58,000 | 1.1 / 1.5 ms |
//! | 256 | 94,000 | 2.4 / 7.3 ms | 84,000 | 3.0 / 4.3 ms |
//!
//! Idle, an append costs one durable commit (one fsync per group commit,
//! counted with strace); under load batches of 30 to 100 form by
//! themselves, and the disk stops being the limit.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_audit::{
    hash_leaf, verify_inclusion, AuditEntry, Batch, Checkpoint, CheckpointSource, CompactRange,
    EntryError, Hash, LogVerifier, ProofError, Report, SignedCheckpoint, StoredEntry,
};
use anyhow::Context;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How to open a gateway's audit log.
#[derive(Debug, Clone)]
pub struct AuditLogSettings {
    /// `sqlite://path` (created if missing) or `postgres://...`: the
    /// gateway's own database.
    pub database_url: String,
    /// The log's identity, signed into every checkpoint, e.g.
    /// `DEMO/GOV/70000002/gw1`.
    pub log_id: String,
    /// The most entries one group commit takes (e.g. 256).
    pub max_batch: usize,
    /// How long the committer waits at least for a batch to fill after its
    /// first entry. 0 (recommended): idle, commit at once; under load the
    /// committer holds a batch open about a millisecond of its own accord.
    pub max_wait: Duration,
}

/// What an appended entry gets back once it is durable: enough for anyone
/// holding the gateway's public key to check that the entry is in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's position in the log (0-based).
    pub index: u64,
    /// `SHA-256(0x00 || canonical bytes)` of the entry.
    pub leaf_hash: Hash,
    /// The signed tree head of the group commit that wrote the entry.
    pub checkpoint: SignedCheckpoint,
    /// The entry's RFC 9162 inclusion proof against `checkpoint`.
    pub inclusion_proof: Vec<Hash>,
}

/// An entry handed to the committer, not yet known to be durable.
#[derive(Debug)]
pub struct Appending {
    answer: oneshot::Receiver<Result<Receipt, AuditError>>,
}

impl Appending {
    /// Waits until the entry's group commit is durable, and returns the
    /// entry's receipt (or why it could not be written).
    pub async fn durable(self) -> Result<Receipt, AuditError> {
        self.answer.await.map_err(|_| AuditError::Closed)?
    }
}

impl Receipt {
    /// Whether the checkpoint is signed by `key` and the proof places the
    /// leaf at `index` in the tree it signs.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        self.checkpoint.verify(key).is_ok()
            && verify_inclusion(
                &self.leaf_hash,
                self.index,
                self.checkpoint.checkpoint.size,
                &self.inclusion_proof,
                &self.checkpoint.checkpoint.root,
            )
    }
}

/// Why an audit operation failed. For [`AuditLog::append`], any error means
/// the entry may not be durable, and the exchange must fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit entry cannot be written in canonical form: {0}")]
    Entry(Arc<EntryError>),
    #[error("the audit log is closed")]
    Closed,
    /// From sqlx, or from rusqlite on the SQLite committer's connection.
    #[error("audit log database error: {0}")]
    Database(Arc<dyn std::error::Error + Send + Sync>),
    #[error("the stored audit log is inconsistent: {0}")]
    Corrupt(String),
    #[error("database URL {url:?} is not supported: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl { url: String },
    #[error("log id {0:?} is not valid: it must be non-empty and without control characters")]
    InvalidLogId(String),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Database(Arc::new(e))
    }
}

impl From<EntryError> for AuditError {
    fn from(e: EntryError) -> Self {
        AuditError::Entry(Arc::new(e))
    }
}

/// A gateway's audit log, open for appending. Cheap to clone: every clone
/// appends to the same log through the same committer.
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

struct Shared {
    queue: mpsc::Sender<Message>,
    head: watch::Receiver<Head>,
    reader: LogReader,
    log_id: String,
    verifying_key: VerifyingKey,
    committer: Mutex<Option<CommitterHandle>>,
    counters: Arc<Counters>,
    recent: Arc<Mutex<RecentLeaves>>,
}

/// The most leaf hashes kept in memory for [`AuditLog::leaf_hashes`]
/// (32 bytes each: 4 MiB).
const RECENT_LEAVES: usize = 131_072;

/// The leaf hashes of the latest group commits, `start..start + len`, so
/// that anchoring a checkpoint (which needs the leaves added since the
/// last one) does not read back from the database what was just written:
/// those reads, a few tens of thousands of rows every interval, were a
/// twentieth of a busy gateway's CPU. Bounded: the oldest are forgotten
/// first, and whatever is not here is read from the database.
#[derive(Debug, Default)]
struct RecentLeaves {
    start: u64,
    hashes: VecDeque<Hash>,
}

impl RecentLeaves {
    fn push(&mut self, first: u64, leaves: &[Hash]) {
        if first != self.start + self.hashes.len() as u64 {
            // Not contiguous (the log was reloaded): start again here.
            self.hashes.clear();
            self.start = first;
        }
        self.hashes.extend(leaves.iter().copied());
        self.trim(RECENT_LEAVES);
    }

    fn trim(&mut self, keep: usize) {
        let end = self.start + self.hashes.len() as u64;
        self.forget_before(end.saturating_sub(keep as u64));
    }

    fn forget_before(&mut self, index: u64) {
        while self.start < index && self.hashes.pop_front().is_some() {
            self.start += 1;
        }
    }

    fn get(&self, from: u64, to: u64) -> Option<Vec<Hash>> {
        let end = self.start + self.hashes.len() as u64;
        if from < self.start || to > end || from > to {
            return None;
        }
        let skip = usize::try_from(from - self.start).ok()?;
        let take = usize::try_from(to - from).ok()?;
        Some(self.hashes.iter().skip(skip).take(take).copied().collect())
    }
}

/// What the committer publishes after each group commit.
#[derive(Debug, Clone)]
struct Head {
    size: u64,
    checkpoint: Option<SignedCheckpoint>,
}

enum Message {
    Append(Pending),
    Close,
}

/// One entry waiting for its group commit.
struct Pending {
    text: String,
    leaf_hash: Hash,
    reply: oneshot::Sender<Result<Receipt, AuditError>>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("log_id", &self.shared.log_id)
            .field("size", &self.shared.head.borrow().size)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log (creating the database and migrating the schema if
    /// needed), recovers the tree from the head stored with the last
    /// checkpoint, and starts the committer.
    ///
    /// Refused if the stored log is not consistent: the head does not fold
    /// to the last checkpoint's root, that checkpoint is of another log or
    /// its signature fails under `signing_key`, or the entries do not end
    /// exactly at its size (rows added or removed behind the gateway's
    /// back). A checkpoint signed by another key (after a key rotation) is
    /// accepted on its root alone, with a warning.
    pub async fn open(settings: AuditLogSettings, signing_key: SigningKey) -> anyhow::Result<Self> {
        check_log_id(&settings.log_id)?;
        let url = &settings.database_url;
        if url.starts_with("sqlite:") && (url.contains(":memory:") || url.contains("mode=memory")) {
            // Each connection would have a database of its own.
            anyhow::bail!("audit log {}: {IN_MEMORY_REFUSED}", settings.log_id);
        }
        let (pool, engine) = connect(&settings.database_url, true)
            .await
            .with_context(|| format!("opening the audit log database of {}", settings.log_id))?;
        migrator(engine)
            .run(&pool)
            .await
            .context("migrating the audit log schema")?;
        let verifying_key = signing_key.verifying_key();
        let (range, checkpoint) = load_head(&pool, &settings.log_id, &verifying_key)
            .await
            .with_context(|| format!("recovering audit log {}", settings.log_id))?;
        let force_synchronous_commit = match engine {
            Engine::Postgres => {
                let setting: String = sqlx::query("SELECT current_setting('synchronous_commit')")
                    .fetch_one(&pool)
                    .await?
                    .try_get(0)?;
                if setting == "off" {
                    tracing::warn!(
                        "PostgreSQL runs with synchronous_commit = off; the audit log turns it on \
                         for its own transactions, since exchanges are answered only once recorded"
                    );
                }
                setting == "off"
            }
            Engine::Sqlite => false,
        };
        tracing::info!(
            log_id = %settings.log_id,
            size = range.size(),
            "audit log opened"
        );
        let sqlite =
            match engine {
                Engine::Sqlite => Some(SqliteWriter::open(&pool).await.with_context(|| {
                    format!("opening audit log {} for writing", settings.log_id)
                })?),
                Engine::Postgres => None,
            };
        let max_batch = settings.max_batch.max(1);
        let (head_tx, head_rx) = watch::channel(Head {
            size: range.size(),
            checkpoint,
        });
        let (queue, incoming) = mpsc::channel(max_batch.saturating_mul(8).max(1024));
        let counters = Arc::new(Counters::default());
        let recent = Arc::new(Mutex::new(RecentLeaves {
            start: range.size(),
            hashes: VecDeque::new(),
        }));
        let committer = Committer {
            counters: counters.clone(),
            pool: pool.clone(),
            engine,
            force_synchronous_commit,
            log_id: settings.log_id.clone(),
            key: signing_key,
            range,
            stale: false,
            head: head_tx,
            max_batch,
            max_wait: settings.max_wait,
            insert_sql: insert_statements(),
            sqlite,
            runtime: tokio::runtime::Handle::current(),
            aborted: Arc::new(AtomicBool::new(false)),
            wal_checkpoint_at: std::time::Instant::now(),
            wal_checkpointing: Arc::new(AtomicBool::new(false)),
            wal_catch_up: false,
            recent: recent.clone(),
        };
        let handle = match engine {
            Engine::Sqlite => {
                let aborted = committer.aborted.clone();
                let (finished, done) = oneshot::channel();
                std::thread::Builder::new()
                    .name("audit-committer".into())
                    .spawn(move || {
                        committer.run_on_thread(incoming);
                        let _ = finished.send(());
                    })
                    .context("starting the audit log committer thread")?;
                CommitterHandle::Thread { done, aborted }
            }
            Engine::Postgres => CommitterHandle::Task(tokio::spawn(committer.run(incoming))),
        };
        Ok(AuditLog {
            shared: Arc::new(Shared {
                queue,
                head: head_rx,
                reader: LogReader { pool },
                log_id: settings.log_id,
                verifying_key,
                committer: Mutex::new(Some(handle)),
                counters,
                recent,
            }),
        })
    }

    /// What the committer did since the log was opened.
    pub fn commit_stats(&self) -> CommitStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.shared.counters;
        CommitStats {
            commits: c.commits.load(Relaxed),
            entries: c.entries.load(Relaxed),
            commit_micros: c.commit_micros.load(Relaxed),
        }
    }

    /// Whether the log is under load: its latest group commit carried more
    /// than one entry, so entries come faster than one commit's time and
    /// the committer holds each batch open for company (see
    /// [`fill_wait`]). A gateway with one exchange at a time commits every
    /// entry on its own, at once.
    pub fn busy(&self) -> bool {
        self.shared.counters.last_batch.load(Ordering::Relaxed) > 1
    }

    /// Appends one entry and returns once it is durable, with its receipt.
    /// Any error means the entry may not be recorded: fail the exchange.
    ///
    /// If the caller stops waiting (drops the future) once the entry is
    /// queued, the entry is still written with its batch.
    pub async fn append(&self, entry: &AuditEntry) -> Result<Receipt, AuditError> {
        let bytes = entry.canonical_bytes()?;
        // serde_json writes UTF-8; hashing the stored text keeps the row
        // self-consistent whatever happens.
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.enqueue_canonical(text).await?.durable().await
    }

    /// Hands an entry in canonical form to the committer and returns at
    /// once: the entry goes into the next group commit while the caller
    /// does other work (the provider sends its answer's body, the consumer
    /// waits for the provider's proof), and [`Appending::durable`] waits
    /// for that commit. Entries are logged in the order they are enqueued.
    pub async fn enqueue_canonical(&self, canonical: String) -> Result<Appending, AuditError> {
        let leaf_hash = hash_leaf(canonical.as_bytes());
        let (reply, answer) = oneshot::channel();
        self.shared
            .queue
            .send(Message::Append(Pending {
                text: canonical,
                leaf_hash,
                reply,
            }))
            .await
            .map_err(|_| AuditError::Closed)?;
        Ok(Appending { answer })
    }

    /// The number of durable entries.
    pub async fn size(&self) -> u64 {
        self.shared.head.borrow().size
    }

    /// The signed head of the last group commit (none for an empty log).
    pub async fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.shared.head.borrow().checkpoint.clone()
    }

    /// The log's identity, as signed in its checkpoints.
    pub fn log_id(&self) -> &str {
        &self.shared.log_id
    }

    /// The public key its checkpoints are signed with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.shared.verifying_key
    }

    /// Leaf hashes `[from, to)`: from memory when the latest group commits
    /// hold them, else from the database.
    pub async fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>, AuditError> {
        let cached = self
            .shared
            .recent
            .lock()
            .ok()
            .and_then(|recent| recent.get(from, to));
        match cached {
            Some(hashes) => Ok(hashes),
            None => self.shared.reader.leaf_hashes(from, to).await,
        }
    }

    /// Leaf hashes below `index` will not be asked for again (they are
    /// anchored): memory for them can go.
    pub fn forget_leaves_before(&self, index: u64) {
        if let Ok(mut recent) = self.shared.recent.lock() {
            recent.forget_before(index);
        }
    }

    /// Reading the stored log (on the same connections).
    pub fn reader(&self) -> &LogReader {
        &self.shared.reader
    }

    /// The stored entries from index `from`, in index order, a page at a
    /// time.
    pub fn entries(&self, from: u64) -> EntryCursor {
        self.shared.reader.entries(from)
    }

    /// Every stored checkpoint, in order of size. One per group commit, so
    /// for a large log prefer [`LogReader::checkpoints_from`].
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, AuditError> {
        self.shared.reader.checkpoints().await
    }

    /// Verifies the whole stored log against its own checkpoints, signed by
    /// this gateway's key, and `registry` (the copies the registry holds).
    pub async fn verify(
        &self,
        registry: impl IntoIterator<Item = SignedCheckpoint>,
    ) -> Result<Report, AuditError> {
        self.shared
            .reader
            .verify(&self.shared.log_id, [self.shared.verifying_key], registry)
            .await
    }

    /// Commits everything queued, stops the committer and closes the
    /// database connections. Appends through other clones fail with
    /// [`AuditError::Closed`] from then on.
    pub async fn close(self) {
        // Queued behind every append sent so far; the committer stops
        // taking new ones when it sees it.
        let _ = self.shared.queue.send(Message::Close).await;
        let handle = self.shared.committer.lock().ok().and_then(|mut h| h.take());
        match handle {
            Some(CommitterHandle::Task(handle)) => {
                if let Err(e) = handle.await {
                    if e.is_panic() {
                        tracing::error!("the audit log committer panicked: {e}");
                    }
                }
            }
            Some(CommitterHandle::Thread { done, .. }) => {
                done.await
                    .unwrap_or_else(|_| tracing::error!("the audit log committer thread panicked"));
            }
            None => {}
        }
        self.shared.reader.pool.close().await;
    }

    /// Stops the committer at once, as if the process were killed, for
    /// crash tests: the batch being written commits whole or not at all,
    /// and every waiting append fails with [`AuditError::Closed`]. Returns
    /// once the database connections are closed, i.e. once whatever the
    /// "dead" process had already handed to the database is done (in
    /// process, SQLite's connection thread would otherwise outlive the
    /// task and could finish a `COMMIT` after a reopen has read the head).
    #[doc(hidden)]
    pub async fn abort_committer(&self) {
        let handle = self.shared.committer.lock().ok().and_then(|mut h| h.take());
        match handle {
            Some(CommitterHandle::Task(handle)) => {
                handle.abort();
                let _ = handle.await;
            }
            Some(CommitterHandle::Thread { done, aborted }) => {
                // The thread finishes the commit it is in (whole, as a
                // killed process's last transaction either landed or not)
                // and drops everything queued; the message only wakes it.
                aborted.store(true, Ordering::Release);
                let _ = self.shared.queue.try_send(Message::Close);
                let _ = done.await;
            }
            None => {}
        }
        self.shared.reader.pool.close().await;
    }
}

// ---------------------------------------------------------------------------
// The committer

/// The most rows one INSERT statement carries on PostgreSQL. Batches are
/// written in power-of-two chunks up to this, so a connection prepares at
/// most six distinct INSERT statements (and its statement cache keeps
/// them), each a single round trip. (SQLite's writer inserts row by row
/// with one cached statement: in process, a row costs no round trip.)
const MAX_ROWS_PER_INSERT: usize = 32;

/// How often the committer starts a background WAL checkpoint (SQLite).
const WAL_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a loaded committer (the last group commit carried more than
/// one entry) holds a batch open for more company. Both come to about a
/// millisecond: the SQLite thread sleeps exactly this long, while tokio's
/// timer (the PostgreSQL task) rounds 0.5 ms up to its next millisecond
/// tick. Measured with `accord bench exchange` on the SQLite thread: 0.5 ms
/// made batches of about 2 at 64 KiB and cost a tenth of the throughput in
/// extra commits (an fsync costs CPU too on a VM); 1 ms gave most of it
/// back, 2 ms all of it but adds to every exchange at moderate load.
const LOADED_WAIT_THREAD: Duration = Duration::from_millis(1);
const LOADED_WAIT_TASK: Duration = Duration::from_micros(500);

/// A group commit of at least this many entries means the committer is
/// busy, twice as many that it is saturated (see [`fill_wait`]). Measured
/// with `accord bench exchange` on the development VM: with one connection
/// every batch is one entry; at saturation (64 connections) batches were 7
/// to 9 entries with the 1 ms wait and 9 to 11 with 2 ms, and the
/// committer's CPU per exchange fell accordingly. Holding a saturated
/// committer's batches 4 ms instead of 2 cut the gateways' CPU per exchange
/// by about a tenth again at 1 KiB (four alternating pairs: 240 to 306 µs
/// against 305 to 330), with the load's p99 unchanged.
const BUSY_BATCH: usize = 4;

/// How often the SQLite committer looks again while it holds a batch open
/// (see [`Committer::fill`]). Measured with `accord bench exchange` (64
/// connections, alternating runs on the development VM on a day it had
/// spare CPU), against sleeping through the whole wait: at 1 KiB, 500 µs
/// slices that stop once the runtime is idle carried 8,192/8,659/8,672
/// exchanges/s against 7,541/7,132/7,362, with about the same CPU per
/// exchange; at 64 KiB 2,403/2,252/2,154 against 2,468/2,244/2,346, within
/// the noise (large bodies keep the machine busier, so waits run longer);
/// with a busy loop taking one core, 6,017/5,662/5,719 against
/// 6,463/5,391/5,350 at 1 KiB. 250 µs slices did less well at 1 KiB, as
/// each slice is a wake-up. Stopping only when the runtime was seen idle
/// twice in a row gained half as much at 1 KiB.
const FILL_SLICE: Duration = Duration::from_micros(500);

const IN_MEMORY_REFUSED: &str =
    "the audit log must be a SQLite file (sqlite://PATH), not an in-memory database";

/// How the log stops its committer.
enum CommitterHandle {
    /// PostgreSQL: a task on the gateway's runtime.
    Task(JoinHandle<()>),
    /// SQLite: a thread of its own, which says when it has finished (and
    /// closed its connection) on `done`.
    Thread {
        done: oneshot::Receiver<()>,
        aborted: Arc<AtomicBool>,
    },
}

/// The SQLite committer's own connection, opened with rusqlite on the
/// database file the pool uses (one SQLite library, so the two share its
/// locks). A group commit is a handful of statements executed in place on
/// the committer's thread; through sqlx every statement, even inside one
/// script, is a hand-off to sqlx's connection thread and back, and each
/// hand-off back waits for the gateway's busy runtime to poll the
/// committer again (strace: five round trips per commit, most of a loaded
/// commit's time).
struct SqliteWriter {
    path: std::path::PathBuf,
    conn: Option<rusqlite::Connection>,
}

impl SqliteWriter {
    /// The file behind `pool` (its `main` database), opened for writing.
    async fn open(pool: &AnyPool) -> anyhow::Result<SqliteWriter> {
        let file: String = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        if file.is_empty() {
            anyhow::bail!(IN_MEMORY_REFUSED);
        }
        let mut writer = SqliteWriter {
            path: file.into(),
            conn: None,
        };
        writer.connection()?;
        Ok(writer)
    }

    /// The connection, reopened if the last one was given up.
    fn connection(&mut self) -> Result<&mut rusqlite::Connection, rusqlite::Error> {
        use rusqlite::OpenFlags;
        if self.conn.is_none() {
            let conn = rusqlite::Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            // As the pool's connections (see `connect`): WAL, fsynced at
            // every commit, the background checkpoint's safety net.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 16384;",
            )?;
            conn.set_prepared_statement_cache_capacity(8);
            self.conn = Some(conn);
        }
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(rusqlite::Error::InvalidQuery),
        }
    }
}

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        AuditError::Database(Arc::new(e))
    }
}

/// Counters of the committer, for health and metrics.
#[derive(Debug, Default)]
struct Counters {
    commits: std::sync::atomic::AtomicU64,
    entries: std::sync::atomic::AtomicU64,
    commit_micros: std::sync::atomic::AtomicU64,
    /// Entries in the latest group commit (see [`AuditLog::busy`]).
    last_batch: std::sync::atomic::AtomicUsize,
}

/// What the committer did since the log was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Group commits written.
    pub commits: u64,
    /// Entries they carried.
    pub entries: u64,
    /// Time spent writing them (rows, checkpoint, head, commit), in µs.
    pub commit_micros: u64,
}

struct Committer {
    counters: Arc<Counters>,
    pool: AnyPool,
    engine: Engine,
    force_synchronous_commit: bool,
    log_id: String,
    key: SigningKey,
    /// The tree as committed: advanced only after a successful commit.
    range: CompactRange,
    /// A commit failed: reload the head from the database before the next.
    stale: bool,
    head: watch::Sender<Head>,
    max_batch: usize,
    max_wait: Duration,
    /// `insert_sql[k]` inserts `2^k` entry rows.
    insert_sql: Vec<String>,
    /// SQLite: the one connection group commits are written on (see
    /// [`Committer::write_sqlite`]); `None` on PostgreSQL.
    sqlite: Option<SqliteWriter>,
    /// The gateway's runtime, for the SQLite committer thread's async work
    /// (reloading the head, background WAL checkpoints).
    runtime: tokio::runtime::Handle,
    /// Set by [`AuditLog::abort_committer`].
    aborted: Arc<AtomicBool>,
    /// SQLite: when the last background WAL checkpoint was started, and
    /// whether one is running.
    wal_checkpoint_at: std::time::Instant,
    wal_checkpointing: Arc<AtomicBool>,
    /// SQLite: a background checkpoint was started and its catch-up (see
    /// [`Committer::checkpoint_wal`]) has not run yet.
    wal_catch_up: bool,
    recent: Arc<Mutex<RecentLeaves>>,
}

impl Committer {
    async fn run(mut self, mut incoming: mpsc::Receiver<Message>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.max_batch);
        let mut closing = false;
        while let Some(first) = incoming.recv().await {
            take(first, &mut batch, &mut incoming, &mut closing);
            take_queued(&mut incoming, &mut batch, self.max_batch, &mut closing);
            let wait = fill_wait(self.last_batch(), self.max_wait, LOADED_WAIT_TASK);
            if !wait.is_zero() && !closing && !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + wait;
                while batch.len() < self.max_batch && !closing {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(message)) => take(message, &mut batch, &mut incoming, &mut closing),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            if !batch.is_empty() {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(self.max_batch));
                self.commit(full).await;
                self.checkpoint_wal();
            }
        }
        tracing::debug!(log_id = %self.log_id, size = self.range.size(), "audit log committer stopped");
    }

    /// [`Committer::run`] for SQLite, on a thread of its own: the group
    /// commit runs here, synchronously, without waiting for the gateway's
    /// runtime (busy with the exchanges) to poll it, and the batch-fill wait
    /// is a sleep of its own, to the microsecond rather than on tokio's
    /// millisecond timer.
    fn run_on_thread(mut self, mut incoming: mpsc::Receiver<Message>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.max_batch);
        let mut closing = false;
        while let Some(first) = incoming.blocking_recv() {
            take(first, &mut batch, &mut incoming, &mut closing);
            take_queued(&mut incoming, &mut batch, self.max_batch, &mut closing);
            let wait = fill_wait(self.last_batch(), self.max_wait, LOADED_WAIT_THREAD);
            if !wait.is_zero() && !closing && batch.len() < self.max_batch {
                self.fill(&mut incoming, &mut batch, &mut closing, wait);
            }
            if self.aborted.load(Ordering::Acquire) {
                // As if killed: nothing queued is written or answered
                // (dropping the batch fails its waiters with `Closed`).
                break;
            }
            if !batch.is_empty() {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(self.max_batch));
                let runtime = self.runtime.clone();
                runtime.block_on(self.commit(full));
                self.checkpoint_wal();
            }
        }
        tracing::debug!(log_id = %self.log_id, size = self.range.size(), "audit log committer stopped");
    }

    /// Holds a batch open for up to `wait`, taking what comes in slices of
    /// [`FILL_SLICE`] rather than waking for every entry as it arrives
    /// (each wake-up is a context switch, and under load there are
    /// hundreds), and stops early once the gateway's runtime has nothing
    /// to do ([`runtime_idle`]): then no exchange is being worked on that
    /// could add an entry soon, and waiting longer would only leave the
    /// cores idle while the exchanges already queued wait for their
    /// commit. So the wait lasts only as long as it buys company: a
    /// gateway whose cores are saturated holds its batches open the whole
    /// `wait` (fewer commits, each an fsync, a signature here and a
    /// signature check at every consumer gateway), one with spare CPU
    /// commits as soon as its runtime falls idle. A configured `max_wait`
    /// is always waited in full.
    fn fill(
        &self,
        incoming: &mut mpsc::Receiver<Message>,
        batch: &mut Vec<Pending>,
        closing: &mut bool,
        wait: Duration,
    ) {
        let started = std::time::Instant::now();
        while keep_filling(started.elapsed(), wait, self.max_wait, || {
            runtime_idle(&self.runtime)
        }) {
            std::thread::sleep(wait.saturating_sub(started.elapsed()).min(FILL_SLICE));
            take_queued(incoming, batch, self.max_batch, closing);
            if batch.len() >= self.max_batch || *closing {
                break;
            }
        }
    }

    /// SQLite: copies the WAL back into the database file in the background,
    /// about once a second, on a connection of its own. A `PASSIVE`
    /// checkpoint never blocks the writer, so group commits do not pay for
    /// it (left to SQLite, the commit that crosses `wal_autocheckpoint`
    /// copies up to that many pages and fsyncs the file before it returns:
    /// a stall of milliseconds several times a second under load). The
    /// automatic checkpoint stays on, at a larger threshold, in case these
    /// fall behind.
    ///
    /// Once a background checkpoint has finished, the committer catches up
    /// on its own connection: a second `PASSIVE` checkpoint copies the few
    /// frames committed while the first ran, so that the WAL is wholly in
    /// the database file and the next commit writes the WAL from its start
    /// again. Without it, under steady load a checkpoint never found the
    /// WAL wholly copied, SQLite never restarted it, and every commit
    /// appended to a growing file (measured with `accord bench exchange`:
    /// 9 MB/s, to the 64 MiB safety net), so that every fsync also wrote
    /// the file's new size and blocks: on this machine's disk an fsync
    /// that extends a file takes about 310 µs and 130 µs of CPU, one that
    /// overwrites about 180 µs and 75 µs.
    fn checkpoint_wal(&mut self) {
        if self.engine != Engine::Sqlite {
            return;
        }
        if self.wal_catch_up && !self.wal_checkpointing.load(Ordering::Acquire) {
            self.wal_catch_up = false;
            if let Some(writer) = self.sqlite.as_mut() {
                let caught_up = writer.connection().and_then(|conn| {
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                });
                if let Err(e) = caught_up {
                    tracing::warn!("catching up on the audit log's write-ahead log: {e}");
                }
            }
        }
        if self.wal_checkpoint_at.elapsed() < WAL_CHECKPOINT_INTERVAL
            || self.wal_checkpointing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.wal_checkpoint_at = std::time::Instant::now();
        self.wal_catch_up = true;
        let pool = self.pool.clone();
        let running = self.wal_checkpointing.clone();
        self.runtime.spawn(async move {
            match pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
                // Closed while the log shuts down: the next start
                // checkpoints.
                Ok(_) | Err(sqlx::Error::PoolClosed) => {}
                Err(e) => tracing::warn!("checkpointing the audit log's write-ahead log: {e}"),
            }
            running.store(false, Ordering::Release);
        });
    }

    /// [`Committer::write`] on SQLite, on the committer's own connection
    /// and thread: the rows, the checkpoint and the head in one
    /// `BEGIN IMMEDIATE` transaction of cached prepared statements. A second
    /// writer is caught by the primary keys and by the head check (the head
    /// must still be at `start`). On any error the transaction is rolled
    /// back (rusqlite does so when it is dropped uncommitted); a connection
    /// that cannot say it is clean again is closed and reopened for the next
    /// commit.
    ///
    /// Every commit uses the same connection: SQLite keeps a connection's
    /// page cache only while no other connection writes, so a commit on a
    /// connection taken from the pool in turn re-read the tree's pages
    /// (dozens of reads per commit) that its own last commit had written.
    fn write_sqlite(
        &mut self,
        start: u64,
        batch: &[Pending],
        checkpoint: &SignedCheckpoint,
        after: &CompactRange,
    ) -> Result<(), AuditError> {
        let Some(writer) = self.sqlite.as_mut() else {
            return Err(AuditError::Closed);
        };
        let result =
            write_sqlite_transaction(writer.connection()?, start, batch, checkpoint, after);
        if result.is_err() && writer.conn.as_ref().is_some_and(|c| !c.is_autocommit()) {
            // Still inside a transaction after the rollback: not clean.
            writer.conn = None;
        }
        result
    }

    /// Entries in the previous group commit (see [`fill_wait`] and
    /// [`AuditLog::busy`]).
    fn last_batch(&self) -> usize {
        self.counters
            .last_batch
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes one group commit and answers its waiters.
    async fn commit(&mut self, batch: Vec<Pending>) {
        self.counters
            .last_batch
            .store(batch.len(), std::sync::atomic::Ordering::Relaxed);
        if self.stale {
            match load_head(&self.pool, &self.log_id, &self.key.verifying_key()).await {
                Ok((range, checkpoint)) => {
                    if range.size() != self.range.size() {
                        tracing::warn!(
                            expected = self.range.size(),
                            found = range.size(),
                            "a group commit reported as failed was in fact committed"
                        );
                    }
                    self.range = range;
                    self.stale = false;
                    self.head.send_replace(Head {
                        size: self.range.size(),
                        checkpoint,
                    });
                }
                Err(e) => {
                    tracing::error!("the audit log cannot be written: {e}");
                    fail(batch, &e);
                    return;
                }
            }
        }

        let start = self.range.size();
        let leaves: Vec<Hash> = batch.iter().map(|p| p.leaf_hash).collect();
        let tree = Batch::new(&self.range, &leaves);
        let checkpoint = Checkpoint {
            log_id: self.log_id.clone(),
            size: tree.new_size(),
            root: tree.root(),
            at: OffsetDateTime::now_utc(),
        }
        .sign(&self.key);
        let after = tree.after();
        let proofs: Vec<Result<Vec<Hash>, ProofError>> = (start..tree.new_size())
            .map(|index| tree.inclusion_proof(index))
            .collect();

        let writing = std::time::Instant::now();
        let written = self.write(start, &batch, &checkpoint, &after).await;
        {
            use std::sync::atomic::Ordering::Relaxed;
            let micros = u64::try_from(writing.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.counters.commit_micros.fetch_add(micros, Relaxed);
            if written.is_ok() {
                self.counters.commits.fetch_add(1, Relaxed);
                self.counters.entries.fetch_add(batch.len() as u64, Relaxed);
            }
        }
        if let Err(e) = written {
            tracing::error!(
                entries = batch.len(),
                "writing a group commit of the audit log failed: {e}"
            );
            self.stale = true;
            fail(batch, &e);
            return;
        }

        if let Ok(mut recent) = self.recent.lock() {
            recent.push(start, &leaves);
        }
        self.range = after;
        self.head.send_replace(Head {
            size: self.range.size(),
            checkpoint: Some(checkpoint.clone()),
        });
        for ((pending, proof), index) in batch.into_iter().zip(proofs).zip(start..) {
            let receipt = proof
                .map(|inclusion_proof| Receipt {
                    index,
                    leaf_hash: pending.leaf_hash,
                    checkpoint: checkpoint.clone(),
                    inclusion_proof,
                })
                .map_err(|e| AuditError::Corrupt(format!("no inclusion proof: {e}")));
            // A waiter that gave up is no reason to stop.
            let _ = pending.reply.send(receipt);
        }
    }

    /// The batch's rows, its checkpoint and the new head, in one transaction
    /// (on PostgreSQL through the pool; SQLite has its own writer).
    async fn write(
        &mut self,
        start: u64,
        batch: &[Pending],
        checkpoint: &SignedCheckpoint,
        after: &CompactRange,
    ) -> Result<(), AuditError> {
        if self.engine == Engine::Sqlite {
            return self.write_sqlite(start, batch, checkpoint, after);
        }
        let mut tx = self.pool.begin().await?;
        if self.force_synchronous_commit {
            (&mut *tx)
                .execute("SET LOCAL synchronous_commit = on")
                .await?;
        }
        let mut offset = 0;
        while offset < batch.len() {
            let remaining = (batch.len() - offset).min(MAX_ROWS_PER_INSERT);
            let exponent = remaining.ilog2() as usize;
            let rows = 1usize << exponent;
            let mut query = sqlx::query(&self.insert_sql[exponent]);
            for (i, pending) in batch[offset..offset + rows].iter().enumerate() {
                query = query
                    .bind(to_i64(start + (offset + i) as u64)?)
                    .bind(pending.text.as_str())
                    .bind(accord_audit::to_hex(&pending.leaf_hash));
            }
            query.execute(&mut *tx).await?;
            offset += rows;
        }
        let c = &checkpoint.checkpoint;
        sqlx::query(
            "INSERT INTO audit_checkpoints (size, log_id, root, at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(to_i64(c.size)?)
        .bind(c.log_id.as_str())
        .bind(hex::encode(c.root))
        .bind(format_at(c.at))
        .bind(checkpoint.key_id.as_str())
        .bind(hex::encode(checkpoint.signature.to_bytes()))
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE audit_head SET size = $1, peaks = $2 WHERE singleton = 1 AND size = $3",
        )
        .bind(to_i64(after.size())?)
        .bind(encode_peaks(after.peaks()))
        .bind(to_i64(start)?)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(head_moved(start));
        }
        tx.commit().await?;
        Ok(())
    }
}

/// How long at most to hold a batch open for more company (see
/// [`Committer::fill`] for when it stops earlier), after a group commit
/// of `last_batch` entries: under load (the last commit carried several
/// entries) fewer, larger commits cost far less CPU and disk than many
/// small ones; idle, commit at once. A busy committer (the last batch
/// carried [`BUSY_BATCH`] or more) holds it twice as long, a saturated one
/// (twice that many) four times: at saturation the exchanges already wait
/// in line for the CPU, so the longer wait costs them little, while each
/// commit saved is an fsync, a signature here and a signature check at
/// every consumer gateway. `max_wait` is the least.
fn fill_wait(last_batch: usize, max_wait: Duration, loaded: Duration) -> Duration {
    let wait = match last_batch {
        0 | 1 => Duration::ZERO,
        n if n < BUSY_BATCH => loaded,
        n if n < 2 * BUSY_BATCH => loaded * 2,
        _ => loaded * 4,
    };
    max_wait.max(wait)
}

/// Whether a batch held open for `elapsed` so far stays open: for at most
/// `wait`, at least `max_wait`, and in between only while the runtime is
/// not `idle` (see [`Committer::fill`]).
fn keep_filling(
    elapsed: Duration,
    wait: Duration,
    max_wait: Duration,
    idle: impl FnOnce() -> bool,
) -> bool {
    elapsed < wait && (elapsed < max_wait || !idle())
}

/// Whether every worker of `runtime` is parked: it has no task to run,
/// so nothing on it is about to append (an exchange in progress appends
/// from a task that is running or about to run; one waiting on the
/// network or for its commit does not append until it is woken).
fn runtime_idle(runtime: &tokio::runtime::Handle) -> bool {
    let metrics = runtime.metrics();
    // An odd count of parks and unparks means parked (tokio's docs).
    (0..metrics.num_workers()).all(|worker| metrics.worker_park_unpark_count(worker) % 2 == 1)
}

/// Adds a message to the batch being gathered; `Close` stops new appends
/// (those already queued are still taken).
fn take(
    message: Message,
    batch: &mut Vec<Pending>,
    incoming: &mut mpsc::Receiver<Message>,
    closing: &mut bool,
) {
    match message {
        Message::Append(pending) => batch.push(pending),
        Message::Close => {
            incoming.close();
            *closing = true;
        }
    }
}

/// Takes what is already queued, up to `max_batch` in all, without waiting.
fn take_queued(
    incoming: &mut mpsc::Receiver<Message>,
    batch: &mut Vec<Pending>,
    max_batch: usize,
    closing: &mut bool,
) {
    while batch.len() < max_batch {
        match incoming.try_recv() {
            Ok(message) => take(message, batch, incoming, closing),
            Err(_) => break,
        }
    }
}

fn fail(batch: Vec<Pending>, error: &AuditError) {
    for pending in batch {
        let _ = pending.reply.send(Err(error.clone()));
    }
}

/// A commit found the stored head no longer where this committer left it.
fn head_moved(start: u64) -> AuditError {
    AuditError::Corrupt(format!(
        "the stored head is no longer at size {start}: another process writes this log"
    ))
}

/// The statements of one SQLite group commit (see
/// [`Committer::write_sqlite`]).
fn write_sqlite_transaction(
    conn: &mut rusqlite::Connection,
    start: u64,
    batch: &[Pending],
    checkpoint: &SignedCheckpoint,
    after: &CompactRange,
) -> Result<(), AuditError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit_entries (leaf_index, entry, leaf_hash) VALUES (?1, ?2, ?3)",
        )?;
        for (pending, index) in batch.iter().zip(start..) {
            insert.execute(rusqlite::params![
                to_i64(index)?,
                pending.text.as_str(),
                accord_audit::to_hex(&pending.leaf_hash)
            ])?;
        }
    }
    let c = &checkpoint.checkpoint;
    tx.prepare_cached(
        "INSERT INTO audit_checkpoints (size, log_id, root, at, key_id, signature) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        to_i64(c.size)?,
        c.log_id.as_str(),
        hex::encode(c.root),
        format_at(c.at),
        checkpoint.key_id.as_str(),
        hex::encode(checkpoint.signature.to_bytes()),
    ])?;
    let moved = tx
        .prepare_cached(
            "UPDATE audit_head SET size = ?1, peaks = ?2 WHERE singleton = 1 AND size = ?3",
        )?
        .execute(rusqlite::params![
            to_i64(after.size())?,
            encode_peaks(after.peaks()),
            to_i64(start)?
        ])?;
    if moved != 1 {
        return Err(head_moved(start));
    }
    tx.commit()?;
    Ok(())
}

fn insert_statements() -> Vec<String> {
    (0..=MAX_ROWS_PER_INSERT.ilog2())
        .map(|exponent| {
            let rows = 1usize << exponent;
            let values: Vec<String> = (0..rows)
                .map(|r| format!("(${}, ${}, ${})", 3 * r + 1, 3 * r + 2, 3 * r + 3))
                .collect();
            format!(
                "INSERT INTO audit_entries (leaf_index, entry, leaf_hash) VALUES {}",
                values.join(", ")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Opening and recovery

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

/// The schema: `0001` on both engines, then, on SQLite only, `0002`, which
/// rebuilds the tables around their keys as rowids (fewer pages written per
/// group commit; the file says why).
fn migrator(engine: Engine) -> Migrator {
    let mut migrations = vec![Migration::new(
        1,
        Cow::Borrowed("audit"),
        MigrationType::Simple,
        Cow::Borrowed(include_str!("../migrations/0001_audit.sql")),
        false,
    )];
    if engine == Engine::Sqlite {
        migrations.push(Migration::new(
            2,
            Cow::Borrowed("rowid tables"),
            MigrationType::Simple,
            Cow::Borrowed(include_str!("../migrations/sqlite/0002_rowid_tables.sql")),
            false,
        ));
    }
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

fn check_log_id(log_id: &str) -> Result<(), AuditError> {
    if log_id.is_empty() || log_id.chars().any(char::is_control) {
        return Err(AuditError::InvalidLogId(log_id.to_owned()));
    }
    Ok(())
}

/// A pool on `url`; `create` makes a missing SQLite file.
async fn connect(url: &str, create: bool) -> Result<(AnyPool, Engine), AuditError> {
    sqlx::any::install_default_drivers();
    let engine = if url.starts_with("sqlite:") {
        Engine::Sqlite
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Engine::Postgres
    } else {
        return Err(AuditError::UnsupportedUrl {
            url: redact_url(url),
        });
    };
    let url = match engine {
        Engine::Sqlite if create && !url.contains("mode=") => {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        }
        _ => url.to_owned(),
    };
    let options = AnyConnectOptions::from_str(&url)?;
    let mut pool = AnyPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10));
    if engine == Engine::Sqlite {
        pool = pool.after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL: readers (verification) beside the writer. FULL: the
                // WAL is fsynced at every commit, so a commit that returned
                // survives a power cut, not only a killed process.
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = FULL").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                // The committer checkpoints in the background (see
                // `Committer::checkpoint_wal`); this is the safety net.
                conn.execute("PRAGMA wal_autocheckpoint = 16384").await?;
                Ok(())
            })
        });
    }
    Ok((pool.connect_with(options).await?, engine))
}

/// The committed tree and its last checkpoint, checked against each other
/// and against the entries' end. O(1) rows, in one read transaction.
async fn load_head(
    pool: &AnyPool,
    log_id: &str,
    key: &VerifyingKey,
) -> Result<(CompactRange, Option<SignedCheckpoint>), AuditError> {
    let mut tx = pool.begin().await?;
    let head = sqlx::query("SELECT size, peaks FROM audit_head WHERE singleton = 1")
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| AuditError::Corrupt("the head row is missing".into()))?;
    let size = get_u64(&head, "size")?;
    let peaks_text: String = head.try_get("peaks")?;
    let last = sqlx::query(
        "SELECT size, log_id, root, at, key_id, signature FROM audit_checkpoints \
         ORDER BY size DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?
    .map(|row| checkpoint_from_row(&row))
    .transpose()?;
    let last_index: Option<i64> = sqlx::query("SELECT MAX(leaf_index) FROM audit_entries")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    tx.commit().await?;

    let range = CompactRange::from_peaks(size, decode_peaks(&peaks_text)?)
        .map_err(|e| AuditError::Corrupt(format!("the stored head: {e}")))?;
    match &last {
        None if size > 0 => {
            return Err(AuditError::Corrupt(format!(
                "the head is at size {size} but there is no checkpoint"
            )))
        }
        None => {}
        Some(signed) => {
            let c = &signed.checkpoint;
            if c.size != size {
                return Err(AuditError::Corrupt(format!(
                    "the head is at size {size}, the last checkpoint at size {}",
                    c.size
                )));
            }
            if c.log_id != log_id {
                return Err(AuditError::Corrupt(format!(
                    "this database holds log {:?}, not {log_id:?}",
                    c.log_id
                )));
            }
            if range.root() != c.root {
                return Err(AuditError::Corrupt(format!(
                    "the stored head does not hash to the root of the checkpoint of size {size}"
                )));
            }
            if signed.key_id == accord_audit::key_id(key) {
                signed.verify(key).map_err(|e| {
                    AuditError::Corrupt(format!("the checkpoint of size {size}: {e}"))
                })?;
            } else {
                tracing::warn!(
                    key_id = %signed.key_id,
                    "the last audit checkpoint is signed by another key (rotated?); \
                     continuing from its root"
                );
            }
        }
    }
    let entries_end = match last_index {
        None => 0,
        Some(index) => u64::try_from(index)
            .ok()
            .and_then(|i| i.checked_add(1))
            .ok_or_else(|| AuditError::Corrupt(format!("entry index {index} is not valid")))?,
    };
    if entries_end != size {
        return Err(AuditError::Corrupt(format!(
            "the last checkpoint is of size {size} but the stored entries end at {entries_end}: \
             entries were {} behind the gateway's back",
            if entries_end > size {
                "added"
            } else {
                "removed"
            }
        )));
    }
    Ok((range, last))
}

// ---------------------------------------------------------------------------
// Reading

/// How many rows a page of [`EntryCursor`] or [`CheckpointCursor`] holds.
const PAGE: i64 = 1000;

/// Reads a stored log: its entries and checkpoints, and verification. Does
/// not need the gateway's key; [`LogReader::open`] reads a log offline.
#[derive(Debug, Clone)]
pub struct LogReader {
    pool: AnyPool,
}

impl LogReader {
    /// Opens an existing log's database for reading (nothing is created or
    /// migrated).
    pub async fn open(database_url: &str) -> Result<LogReader, AuditError> {
        let (pool, _) = connect(database_url, false).await?;
        Ok(LogReader { pool })
    }

    /// The stored entries from index `from`, in index order.
    pub fn entries(&self, from: u64) -> EntryCursor {
        EntryCursor {
            pool: self.pool.clone(),
            next: from,
            buffer: VecDeque::new(),
            done: false,
        }
    }

    /// The stored checkpoints of size `from_size` and larger, in order of
    /// size.
    pub fn checkpoints_from(&self, from_size: u64) -> CheckpointCursor {
        CheckpointCursor {
            pool: self.pool.clone(),
            next: from_size,
            buffer: VecDeque::new(),
            done: false,
        }
    }

    /// Every stored checkpoint, in order of size.
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, AuditError> {
        let mut cursor = self.checkpoints_from(0);
        let mut all = Vec::new();
        while let Some(checkpoint) = cursor.next().await? {
            all.push(checkpoint);
        }
        Ok(all)
    }

    /// Verifies the stored log with [`LogVerifier`], streaming entries and
    /// the gateway's checkpoints a page at a time: against `keys` (the
    /// gateway's current and former keys) and `registry` (the checkpoints
    /// the registry holds, any order). A storage error (including a row
    /// that cannot even be read as an entry) ends it with that error.
    pub async fn verify(
        &self,
        log_id: &str,
        keys: impl IntoIterator<Item = VerifyingKey>,
        registry: impl IntoIterator<Item = SignedCheckpoint>,
    ) -> Result<Report, AuditError> {
        self.verify_with_progress(log_id, keys, registry, |_| {})
            .await
    }

    /// The leaf hashes of entries `[from, to)`, read without the entries
    /// themselves (what a consistency proof needs).
    pub async fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>, AuditError> {
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
        let mut next = from;
        while next < to {
            let rows = sqlx::query(
                "SELECT leaf_index, leaf_hash FROM audit_entries \
                 WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index LIMIT $3",
            )
            .bind(to_i64(next)?)
            .bind(to_i64(to)?)
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                return Err(AuditError::Corrupt(format!(
                    "the log has no entry {next}, below its checkpoint size {to}"
                )));
            }
            for row in rows {
                let index = get_u64(&row, "leaf_index")?;
                if index != next {
                    return Err(AuditError::Corrupt(format!(
                        "the log has no entry {next} (the next is {index})"
                    )));
                }
                let hash: String = row.try_get("leaf_hash")?;
                out.push(
                    parse_hash(&hash)
                        .ok_or_else(|| corrupt_field("the leaf hash of entry", index))?,
                );
                next += 1;
            }
        }
        Ok(out)
    }

    /// The number of stored entries (the next index).
    pub async fn size(&self) -> Result<u64, AuditError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_entries")
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    /// [`LogReader::verify`], calling `progress` with the number of entries
    /// read so far (for a progress bar).
    pub async fn verify_with_progress(
        &self,
        log_id: &str,
        keys: impl IntoIterator<Item = VerifyingKey>,
        registry: impl IntoIterator<Item = SignedCheckpoint>,
        mut progress: impl FnMut(u64),
    ) -> Result<Report, AuditError> {
        let mut verifier = LogVerifier::new(log_id, keys);
        for checkpoint in registry {
            if verifier
                .add_checkpoint(CheckpointSource::Registry, checkpoint)
                .is_err()
            {
                return Ok(verifier.finish());
            }
        }
        let mut checkpoints = self.checkpoints_from(0);
        let mut next_checkpoint = checkpoints.next().await?;
        let mut entries = self.entries(0);
        // Before each entry, the checkpoints up to the size it brings the
        // log to, as `LogVerifier::run` does (so that at one size the
        // gateway's are checked before the registry's).
        let mut up_to = 1;
        loop {
            while let Some(checkpoint) = next_checkpoint.take_if(|c| c.checkpoint.size <= up_to) {
                if verifier
                    .add_checkpoint(CheckpointSource::Gateway, checkpoint)
                    .is_err()
                {
                    return Ok(verifier.finish());
                }
                next_checkpoint = checkpoints.next().await?;
            }
            if up_to == u64::MAX {
                break;
            }
            match entries.next().await? {
                Some(stored) => {
                    if verifier.push(&stored).is_err() {
                        return Ok(verifier.finish());
                    }
                    up_to = verifier.size() + 1;
                    if verifier.size() % 1024 == 0 {
                        progress(verifier.size());
                    }
                }
                None => up_to = u64::MAX,
            }
        }
        Ok(verifier.finish())
    }
}

/// Stored entries in index order, fetched a page at a time.
#[derive(Debug)]
pub struct EntryCursor {
    pool: AnyPool,
    next: u64,
    buffer: VecDeque<StoredEntry>,
    done: bool,
}

impl EntryCursor {
    /// The next entry, or `None` at the end of the log.
    pub async fn next(&mut self) -> Result<Option<StoredEntry>, AuditError> {
        if self.buffer.is_empty() && !self.done {
            self.fetch().await?;
        }
        Ok(self.buffer.pop_front())
    }

    /// The next page of entries; empty at the end of the log.
    pub async fn next_page(&mut self) -> Result<Vec<StoredEntry>, AuditError> {
        if self.buffer.is_empty() && !self.done {
            self.fetch().await?;
        }
        Ok(self.buffer.drain(..).collect())
    }

    async fn fetch(&mut self) -> Result<(), AuditError> {
        let rows = sqlx::query(
            "SELECT leaf_index, entry, leaf_hash FROM audit_entries \
             WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2",
        )
        .bind(to_i64(self.next)?)
        .bind(PAGE)
        .fetch_all(&self.pool)
        .await?;
        self.done = (rows.len() as i64) < PAGE;
        for row in rows {
            let index = get_u64(&row, "leaf_index")?;
            let entry: String = row.try_get("entry")?;
            let leaf_hash: String = row.try_get("leaf_hash")?;
            self.buffer.push_back(StoredEntry {
                index,
                entry: entry.into_bytes(),
                leaf_hash: parse_hash(&leaf_hash)
                    .ok_or_else(|| corrupt_field("the leaf hash of entry", index))?,
            });
            self.next = index + 1;
        }
        Ok(())
    }
}

/// Stored checkpoints in order of size, fetched a page at a time.
#[derive(Debug)]
pub struct CheckpointCursor {
    pool: AnyPool,
    next: u64,
    buffer: VecDeque<SignedCheckpoint>,
    done: bool,
}

impl CheckpointCursor {
    /// The next checkpoint, or `None` after the last.
    pub async fn next(&mut self) -> Result<Option<SignedCheckpoint>, AuditError> {
        if self.buffer.is_empty() && !self.done {
            let rows = sqlx::query(
                "SELECT size, log_id, root, at, key_id, signature FROM audit_checkpoints \
                 WHERE size >= $1 ORDER BY size LIMIT $2",
            )
            .bind(to_i64(self.next)?)
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await?;
            self.done = (rows.len() as i64) < PAGE;
            for row in rows {
                let checkpoint = checkpoint_from_row(&row)?;
                self.next = checkpoint.checkpoint.size + 1;
                self.buffer.push_back(checkpoint);
            }
        }
        Ok(self.buffer.pop_front())
    }
}

// ---------------------------------------------------------------------------
// Row encoding

fn checkpoint_from_row(row: &AnyRow) -> Result<SignedCheckpoint, AuditError> {
    let size = get_u64(row, "size")?;
    let root: String = row.try_get("root")?;
    let at: String = row.try_get("at")?;
    let signature: String = row.try_get("signature")?;
    let mut signature_bytes = [0u8; 64];
    hex::decode_to_slice(&signature, &mut signature_bytes)
        .map_err(|_| corrupt_field("the signature of the checkpoint of size", size))?;
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            log_id: row.try_get("log_id")?,
            size,
            root: parse_hash(&root)
                .ok_or_else(|| corrupt_field("the root of the checkpoint of size", size))?,
            at: OffsetDateTime::parse(&at, &Rfc3339)
                .map_err(|_| corrupt_field("the time of the checkpoint of size", size))?,
        },
        key_id: row.try_get("key_id")?,
        signature: Signature::from_bytes(&signature_bytes),
    })
}

fn corrupt_field(what: &str, at: u64) -> AuditError {
    AuditError::Corrupt(format!("{what} {at} cannot be read"))
}

fn get_u64(row: &AnyRow, column: &str) -> Result<u64, AuditError> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| AuditError::Corrupt(format!("{column} {value} is negative")))
}

fn to_i64(value: u64) -> Result<i64, AuditError> {
    i64::try_from(value).map_err(|_| AuditError::Corrupt(format!("{value} exceeds BIGINT")))
}

fn parse_hash(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

fn encode_peaks(peaks: &[Hash]) -> String {
    peaks.iter().map(hex::encode).collect()
}

fn decode_peaks(text: &str) -> Result<Vec<Hash>, AuditError> {
    if text.len() % 64 != 0 {
        return Err(AuditError::Corrupt("the stored head cannot be read".into()));
    }
    (0..text.len() / 64)
        .map(|i| {
            text.get(64 * i..64 * (i + 1))
                .and_then(parse_hash)
                .ok_or_else(|| AuditError::Corrupt("the stored head cannot be read".into()))
        })
        .collect()
}

/// RFC 3339 UTC with nanoseconds, fixed width: the signature covers the
/// exact nanosecond, so nothing may be rounded.
fn format_at(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond()
    )
}

/// A database URL with its password replaced, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Polls `condition` for up to five seconds (workers park and unpark
    /// on their own schedule).
    fn eventually(condition: impl Fn() -> bool) -> bool {
        (0..5000).any(|_| {
            let held = condition();
            if !held {
                std::thread::sleep(Duration::from_millis(1));
            }
            held
        })
    }

    #[test]
    fn a_runtime_is_idle_only_while_every_worker_is_parked() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        assert!(
            eventually(|| runtime_idle(&handle)),
            "a runtime with nothing to do parks its workers"
        );

        // One worker busy with a task (as with an exchange in progress):
        // not idle, though the other worker is parked.
        let started = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let task = handle.spawn({
            let (started, stop) = (started.clone(), stop.clone());
            async move {
                started.store(true, Ordering::Release);
                while !stop.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
            }
        });
        assert!(eventually(|| started.load(Ordering::Acquire)));
        assert!(!runtime_idle(&handle), "a worker is running a task");
        stop.store(true, Ordering::Release);
        runtime.block_on(task).unwrap();
        assert!(
            eventually(|| runtime_idle(&handle)),
            "the workers park again once the task is done"
        );
    }

    #[test]
    fn a_batch_is_held_open_only_while_the_runtime_has_work() {
        let ms = Duration::from_millis;
        let (busy, idle) = (|| false, || true);
        assert!(keep_filling(ms(0), ms(4), ms(0), busy));
        assert!(keep_filling(ms(3), ms(4), ms(0), busy));
        assert!(
            !keep_filling(ms(0), ms(4), ms(0), idle),
            "nothing is about to append: commit now"
        );
        assert!(
            !keep_filling(ms(4), ms(4), ms(0), busy),
            "the wait is the most"
        );
        assert!(
            keep_filling(ms(1), ms(5), ms(5), idle),
            "a configured max_wait is waited in full"
        );
        assert!(!keep_filling(ms(5), ms(5), ms(5), idle));
    }

    #[test]
    fn a_busy_committer_holds_its_batches_open_longer() {
        let ms = Duration::from_millis;
        // Idle: at once, or after max_wait.
        assert_eq!(fill_wait(0, Duration::ZERO, ms(1)), Duration::ZERO);
        assert_eq!(fill_wait(1, Duration::ZERO, ms(1)), Duration::ZERO);
        assert_eq!(fill_wait(1, ms(5), ms(1)), ms(5));
        // Loaded, then busy.
        assert_eq!(fill_wait(2, Duration::ZERO, ms(1)), ms(1));
        assert_eq!(fill_wait(BUSY_BATCH - 1, Duration::ZERO, ms(1)), ms(1));
        assert_eq!(fill_wait(BUSY_BATCH, Duration::ZERO, ms(1)), ms(2));
        assert_eq!(fill_wait(2 * BUSY_BATCH - 1, Duration::ZERO, ms(1)), ms(2));
        // Saturated.
        assert_eq!(fill_wait(2 * BUSY_BATCH, Duration::ZERO, ms(1)), ms(4));
        assert_eq!(fill_wait(256, Duration::ZERO, ms(1)), ms(4));
        // A longer max_wait still wins.
        assert_eq!(fill_wait(256, ms(5), ms(1)), ms(5));
    }

    #[test]
    fn times_keep_every_nanosecond_at_fixed_width() {
        let at = datetime!(2026-03-01 14:00:00.000000007 +02:00);
        let text = format_at(at);
        assert_eq!(text, "2026-03-01T12:00:00.000000007Z");
        assert_eq!(OffsetDateTime::parse(&text, &Rfc3339).unwrap(), at);
    }

    #[test]
    fn recent_leaves_answer_only_what_they_hold() {
        let leaf = |n: u8| [n; 32];
        let mut recent = RecentLeaves {
            start: 10,
            hashes: VecDeque::new(),
        };
        recent.push(10, &[leaf(10), leaf(11), leaf(12)]);
        recent.push(13, &[leaf(13)]);
        assert_eq!(recent.get(11, 14), Some(vec![leaf(11), leaf(12), leaf(13)]));
        assert_eq!(recent.get(12, 12), Some(vec![]));
        assert_eq!(recent.get(9, 12), None, "below what is held");
        assert_eq!(recent.get(12, 15), None, "beyond the last commit");
        recent.forget_before(12);
        assert_eq!(recent.get(11, 13), None);
        assert_eq!(recent.get(12, 14), Some(vec![leaf(12), leaf(13)]));
        recent.trim(1);
        assert_eq!(recent.get(13, 14), Some(vec![leaf(13)]));
        assert_eq!(recent.get(12, 14), None);
        // After a reload the next commit may not follow on: start afresh.
        recent.push(20, &[leaf(20)]);
        assert_eq!(recent.get(13, 14), None);
        assert_eq!(recent.get(20, 21), Some(vec![leaf(20)]));
    }

    #[test]
    fn peaks_round_trip() {
        let range = CompactRange::from_leaves(&[[1; 32], [2; 32], [3; 32]]);
        let text = encode_peaks(range.peaks());
        assert_eq!(text.len(), 128);
        assert_eq!(decode_peaks(&text).unwrap(), range.peaks());
        assert!(decode_peaks(&text[1..]).is_err());
        assert!(decode_peaks(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn inserts_come_in_power_of_two_shapes() {
        let sql = insert_statements();
        assert_eq!(sql.len(), 6);
        assert!(sql[0].ends_with("VALUES ($1, $2, $3)"));
        assert!(sql[5].ends_with("($94, $95, $96)"));
    }

    #[test]
    fn log_ids_are_one_line() {
        assert!(check_log_id("DEMO/GOV/70000002/gw1").is_ok());
        assert!(check_log_id("").is_err());
        assert!(check_log_id("gw\nsize 1").is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://gw:s3cret@db.example/audit"),
            "postgres://gw:***@db.example/audit"
        );
    }
}
