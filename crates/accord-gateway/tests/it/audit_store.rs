//! The durable audit log, on SQLite and on PostgreSQL: concurrent appends
//! are grouped and each gets a receipt that verifies; a reopened log
//! continues the same tree; a crash mid-load loses no answered entry and
//! leaves a log that verifies; a failed commit fails its exchanges and the
//! log recovers; tampering with the database is found where it happened;
//! on SQLite, commits reach the database file by background checkpoints
//! and a steadily written log reuses its write-ahead log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_audit::{
    consistency_proof, hash_leaf, verify_inclusion, AgreementRef, AuditDecision, AuditEntry, Hash,
    Problem, Side, StoredEntry,
};
use accord_gateway::audit_store::{AuditError, AuditLog, AuditLogSettings, LogReader, Receipt};
use ed25519_dalek::SigningKey;

use crate::support::on_both_engines;
use crate::support::{Engine, TestDb};

const LOG: &str = "TEST/GOV/70000002/gw1";

on_both_engines!(
    concurrent_appends_are_grouped_and_every_receipt_verifies,
    a_reopened_log_continues_the_same_tree,
    a_crash_keeps_every_answered_entry_and_the_log_verifies,
    a_failed_commit_fails_its_exchanges_and_the_log_recovers,
    tampering_is_found_where_it_happened,
    quotes_backslashes_and_unicode_are_stored_exactly,
    a_log_is_busy_while_its_group_commits_carry_more_than_one_entry,
);

/// Entries in the SQLite database file itself, ignoring its write-ahead
/// log (`immutable`: no WAL, no locks), or 0 if the file has no table yet.
async fn entries_in_the_database_file(url: &str) -> i64 {
    use sqlx::Connection;
    use std::str::FromStr;
    let options =
        sqlx::sqlite::SqliteConnectOptions::from_str(&format!("{url}?mode=ro&immutable=true"))
            .unwrap();
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let count = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_entries")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(0);
    conn.close().await.ok();
    count
}

/// SQLite: the committer copies the write-ahead log into the database file
/// in the background, long before SQLite's own automatic checkpoint would
/// (thousands of pages away), and without closing the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_reach_the_database_file_in_the_background() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let log = AuditLog::open(settings(&db, 16), key()).await.unwrap();
    for n in 0..20 {
        log.append(&entry(n)).await.unwrap();
    }
    assert_eq!(
        entries_in_the_database_file(&db.url).await,
        0,
        "fresh commits are in the write-ahead log only"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 20;
    loop {
        // A commit after the interval starts a checkpoint.
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.append(&entry(n)).await.unwrap();
        n += 1;
        if entries_in_the_database_file(&db.url).await >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no background checkpoint copied the entries into the database file"
        );
    }
    log.close().await;
}

/// SQLite: under steady load the write-ahead log is written from its start
/// again after each background checkpoint instead of growing for as long as
/// the load lasts (an fsync that extends a file writes its size and blocks
/// too, and costs about twice one that overwrites).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_steadily_written_log_reuses_its_write_ahead_log() {
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let wal = format!("{}-wal", db.url.trim_start_matches("sqlite://"));
    let log = AuditLog::open(settings(&db, 16), key()).await.unwrap();
    // The WAL header's checkpoint sequence number (bytes 12..16, big
    // endian) counts the times SQLite started the WAL again from its start.
    let restarts = || {
        let header = std::fs::read(&wal).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    };
    log.append(&entry(0)).await.unwrap();
    let first = restarts();
    // Appenders that never pause, so that commits follow each other through
    // several background checkpoint intervals (one second each).
    let until = Instant::now() + Duration::from_millis(4500);
    let handles: Vec<_> = (1..=8u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut n = t * 1_000_000;
                while Instant::now() < until && n < (t + 1) * 1_000_000 {
                    log.append(&entry(n)).await.unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let commits = log.commit_stats().commits;
    let restarted = restarts() - first;
    log.close().await;
    assert!(commits > 50, "only {commits} commits in 4.5 s");
    assert!(
        restarted >= 2,
        "the write-ahead log was started again {restarted} times in 4.5 s of steady \
         commits ({commits}): it kept growing instead"
    );
}

/// SQLite: the committer writes through a connection of its own to the
/// pool's file, so an in-memory database (one per connection) cannot hold
/// the log; opening one says so instead of losing entries.
#[tokio::test]
async fn an_in_memory_sqlite_log_is_refused_with_the_reason() {
    let settings = AuditLogSettings {
        database_url: "sqlite::memory:".into(),
        log_id: LOG.into(),
        max_batch: 16,
        max_wait: Duration::ZERO,
    };
    let error = AuditLog::open(settings, key()).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("in-memory database"), "{message}");
    assert!(message.contains(LOG), "{message}");
}

/// The SQLite indexes SQLite adds for keys that are not the rowid.
async fn key_indexes(conn: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_autoindex_audit_%'",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A gateway of an earlier release left its SQLite log in 0001's tables
/// (each with a separate index on its key); opening it rebuilds them
/// around their keys, and the log is the same log.
#[tokio::test]
async fn an_sqlite_log_in_the_first_schema_is_upgraded_in_place() {
    use sqlx::Connection;
    let db = TestDb::new(Engine::Sqlite).await.unwrap();
    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    let written = append_concurrently(&log, 0, 4, 9).await;
    let checkpoint = log.latest_checkpoint().await.unwrap();
    log.close().await;

    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    assert_eq!(key_indexes(&mut conn).await, 0);
    // Back to 0001's tables, rows unchanged, as the earlier release had them.
    let mut downgrade = String::from("DELETE FROM _sqlx_migrations WHERE version = 2;");
    for (table, columns) in [
        ("audit_entries", "leaf_index BIGINT PRIMARY KEY, entry TEXT NOT NULL, leaf_hash TEXT NOT NULL"),
        ("audit_checkpoints", "size BIGINT PRIMARY KEY, log_id TEXT NOT NULL, root TEXT NOT NULL, at TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL"),
        ("audit_head", "singleton BIGINT PRIMARY KEY CHECK (singleton = 1), size BIGINT NOT NULL, peaks TEXT NOT NULL"),
    ] {
        downgrade.push_str(&format!(
            "ALTER TABLE {table} RENAME TO old; CREATE TABLE {table} ({columns}); \
             INSERT INTO {table} SELECT * FROM old; DROP TABLE old;"
        ));
    }
    sqlx::raw_sql(&downgrade).execute(&mut conn).await.unwrap();
    assert_eq!(key_indexes(&mut conn).await, 3);
    conn.close().await.unwrap();

    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    assert_eq!(key_indexes(&mut conn).await, 0, "not rebuilt");
    conn.close().await.unwrap();
    assert_eq!(log.size().await, written.len() as u64);
    assert_eq!(log.latest_checkpoint().await, Some(checkpoint));
    let stored = stored_entries(&log).await;
    for ((entry, receipt), row) in written.iter().zip(&stored) {
        assert_eq!(row.index, receipt.index);
        assert_eq!(row.entry, entry.canonical_bytes().unwrap());
    }
    let next = log.append(&entry(1000)).await.unwrap();
    assert_eq!(next.index, written.len() as u64);
    assert_receipt(&entry(1000), &next);
    let report = log.verify([]).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.size, written.len() as u64 + 1);
    log.close().await;
}

fn settings(db: &TestDb, max_batch: usize) -> AuditLogSettings {
    AuditLogSettings {
        database_url: db.url.clone(),
        log_id: LOG.into(),
        max_batch,
        max_wait: Duration::ZERO,
    }
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// Exchange `n`: permitted and answered, denied, or failed at the backend,
/// in turn (the log records all three).
fn entry(n: u64) -> AuditEntry {
    let (decision, status, error_type, backend_us) = match n % 3 {
        0 => (AuditDecision::Permit, 200, None, Some(900 + n % 100)),
        1 => (
            AuditDecision::Deny {
                reason: "no-agreement".into(),
            },
            403,
            Some("https://accord.example/problems/denied".into()),
            None,
        ),
        _ => (
            AuditDecision::Permit,
            502,
            Some("https://accord.example/problems/backend-unavailable".into()),
            Some(30_000),
        ),
    };
    AuditEntry {
        exchange_id: format!("TEST/GOV/70000002/gw1-{n:08}"),
        request_id: format!("req-{n}"),
        at: time::macros::datetime!(2026-03-01 12:00:00.123456 UTC)
            + time::Duration::microseconds(n as i64),
        side: Side::Provider,
        client: "TEST/GOV/70000001/benefits".into(),
        service: "TEST/GOV/70000002/register/residence/v1".into(),
        method: "GET".into(),
        path: format!("/persons/{n}/residence"),
        purpose: Some("benefit-eligibility".into()),
        agreement: (status != 403).then(|| AgreementRef {
            id: "residence-for-benefits".into(),
            version: 2,
        }),
        grant: None,
        decision,
        status,
        error_type,
        request_body_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .into(),
        response_body_sha256: format!("{n:064x}"),
        request_size: 0,
        response_size: 100 + n % 50,
        total_us: 1_500 + n % 700,
        backend_us,
        data_subject_pseudonym: None,
    }
}

/// `tasks` tasks appending `per_task` entries each, all at once; the
/// entries and receipts in index order.
async fn append_concurrently(
    log: &AuditLog,
    first: u64,
    tasks: u64,
    per_task: u64,
) -> Vec<(AuditEntry, Receipt)> {
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..per_task {
                    let entry = entry(first + t * per_task + i);
                    let receipt = log.append(&entry).await.unwrap();
                    out.push((entry, receipt));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all.sort_by_key(|(_, r)| r.index);
    all
}

async fn stored_entries(log: &AuditLog) -> Vec<StoredEntry> {
    let mut cursor = log.entries(0);
    let mut all = Vec::new();
    loop {
        let page = cursor.next_page().await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The receipt is what a client checks on its own: the entry's leaf, its
/// inclusion proof, the gateway's signature on the head.
fn assert_receipt(entry: &AuditEntry, receipt: &Receipt) {
    let leaf = entry.leaf_hash().unwrap();
    assert_eq!(receipt.leaf_hash, leaf);
    let head = &receipt.checkpoint.checkpoint;
    assert_eq!(head.log_id, LOG);
    assert!(receipt.index < head.size);
    assert!(
        verify_inclusion(
            &leaf,
            receipt.index,
            head.size,
            &receipt.inclusion_proof,
            &head.root
        ),
        "inclusion proof of entry {}",
        receipt.index
    );
    receipt.checkpoint.verify(&key().verifying_key()).unwrap();
    assert!(receipt.verify(&key().verifying_key()));
}

/// A provider gateway answers whole instead of streaming its proof while
/// its log is busy (see `AuditLog::busy`): busy means the latest group
/// commit carried more than one entry, and a lone entry's commit makes the
/// log idle again.
async fn a_log_is_busy_while_its_group_commits_carry_more_than_one_entry(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    // A configured wait holds every batch open in full, so that entries
    // appended together are committed together.
    let settings = AuditLogSettings {
        max_wait: Duration::from_millis(300),
        ..settings(&db, 16)
    };
    let log = AuditLog::open(settings, key()).await.unwrap();
    assert!(!log.busy(), "a log that has committed nothing is idle");

    log.append(&entry(0)).await.unwrap();
    assert_eq!(log.commit_stats().entries, 1);
    assert!(!log.busy(), "a commit of one entry");

    let appended = append_concurrently(&log, 1, 2, 1).await;
    let sizes: std::collections::BTreeSet<u64> = appended
        .iter()
        .map(|(_, r)| r.checkpoint.checkpoint.size)
        .collect();
    assert_eq!(
        sizes.len(),
        1,
        "two entries appended together share one commit"
    );
    assert!(log.busy(), "the latest commit carried two entries");

    log.append(&entry(3)).await.unwrap();
    assert!(!log.busy(), "the latest commit carried one entry");
    log.close().await;
}

async fn concurrent_appends_are_grouped_and_every_receipt_verifies(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let log = AuditLog::open(settings(&db, 16), key()).await.unwrap();
    assert_eq!(log.size().await, 0);
    assert_eq!(log.latest_checkpoint().await, None);

    let appended = append_concurrently(&log, 0, 50, 10).await;

    // Indices are unique and dense.
    let indices: Vec<u64> = appended.iter().map(|(_, r)| r.index).collect();
    assert_eq!(indices, (0..500).collect::<Vec<_>>());
    for (entry, receipt) in &appended {
        assert_receipt(entry, receipt);
    }

    // One checkpoint per group commit: fewer than entries under
    // concurrency, none over max_batch apart, and each receipt carries one.
    let checkpoints = log.checkpoints().await.unwrap();
    assert!(
        checkpoints.len() < 500,
        "{} checkpoints for 500 concurrent appends: no grouping",
        checkpoints.len()
    );
    let mut previous = 0;
    for c in &checkpoints {
        assert!(c.checkpoint.size > previous && c.checkpoint.size - previous <= 16);
        previous = c.checkpoint.size;
    }
    assert_eq!(previous, 500);
    let by_size: HashMap<u64, _> = checkpoints
        .iter()
        .map(|c| (c.checkpoint.size, c.clone()))
        .collect();
    for (_, receipt) in &appended {
        assert_eq!(
            by_size.get(&receipt.checkpoint.checkpoint.size),
            Some(&receipt.checkpoint)
        );
    }
    assert_eq!(log.size().await, 500);
    assert_eq!(log.latest_checkpoint().await.as_ref(), checkpoints.last());

    // The stored text is exactly the canonical bytes that were hashed.
    let stored = stored_entries(&log).await;
    assert_eq!(stored.len(), 500);
    for ((entry, receipt), row) in appended.iter().zip(&stored) {
        assert_eq!(row.index, receipt.index);
        assert_eq!(row.entry, entry.canonical_bytes().unwrap());
        assert_eq!(row.leaf_hash, receipt.leaf_hash);
    }

    let report = log.verify([]).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.size, 500);
    assert_eq!(report.signed_size, 500);
    assert_eq!(report.checkpoints_checked, checkpoints.len() as u64);
    log.close().await;
}

async fn a_reopened_log_continues_the_same_tree(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    append_concurrently(&log, 0, 5, 7).await;
    let mut last = log.append(&entry(35)).await.unwrap();
    assert_eq!(last.index, 35);
    last = log.append(&entry(36)).await.unwrap();
    let before = log.latest_checkpoint().await.unwrap();
    assert_eq!(before, last.checkpoint);
    assert_eq!(before.checkpoint.size, 37);
    log.close().await;

    // Another log's database is refused.
    let mut other = settings(&db, 8);
    other.log_id = "TEST/GOV/70000002/gw2".into();
    let error = AuditLog::open(other, key()).await.unwrap_err();
    assert!(format!("{error:#}").contains("holds log"), "{error:#}");

    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    assert_eq!(log.size().await, 37);
    assert_eq!(log.latest_checkpoint().await.as_ref(), Some(&before));
    let more = append_concurrently(&log, 37, 4, 5).await;
    assert_eq!(
        more.iter().map(|(_, r)| r.index).collect::<Vec<_>>(),
        (37..57).collect::<Vec<_>>()
    );
    for (entry, receipt) in &more {
        assert_receipt(entry, receipt);
    }
    let after = log.latest_checkpoint().await.unwrap();
    assert_eq!(after.checkpoint.size, 57);

    // The new head extends the one signed before the restart, as the
    // registry will check.
    let leaves: Vec<Hash> = stored_entries(&log)
        .await
        .iter()
        .map(|e| e.leaf_hash)
        .collect();
    let proof = consistency_proof(&leaves, 37, 57).unwrap();
    assert!(after.checkpoint.verify_extends(&before.checkpoint, &proof));

    // The whole log verifies, with the pre-restart head anchored at the
    // registry; also read offline, without the gateway's key.
    let report = log.verify([before.clone()]).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(
        (report.size, report.signed_size, report.anchored_size),
        (57, 57, 37)
    );
    assert_eq!(report.root, after.checkpoint.root);
    log.close().await;

    let reader = LogReader::open(&db.url).await.unwrap();
    let offline = reader
        .verify(LOG, [key().verifying_key()], [before])
        .await
        .unwrap();
    assert_eq!(offline, report);
    assert_eq!(reader.checkpoints().await.unwrap().last(), Some(&after));
}

async fn a_crash_keeps_every_answered_entry_and_the_log_verifies(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let log = AuditLog::open(settings(&db, 32), key()).await.unwrap();
    let answered: Arc<Mutex<Vec<(AuditEntry, Receipt)>>> = Arc::default();
    let appenders: Vec<_> = (0..50u64)
        .map(|t| {
            let log = log.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                for n in 0.. {
                    let entry = entry(t * 1_000_000 + n);
                    match log.append(&entry).await {
                        Ok(receipt) => answered.lock().unwrap().push((entry, receipt)),
                        Err(AuditError::Closed) => return,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            })
        })
        .collect();

    // Kill the committer while every appender has an entry in flight.
    let started = Instant::now();
    while log.size().await < 300 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "appends stalled"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    log.abort_committer().await;
    for appender in appenders {
        appender.await.unwrap();
    }
    drop(log);
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    assert!(answered.len() >= 300);

    let log = AuditLog::open(settings(&db, 32), key()).await.unwrap();
    let size = log.size().await;
    let stored = stored_entries(&log).await;
    assert_eq!(stored.len() as u64, size);
    for (entry, receipt) in &answered {
        assert_receipt(entry, receipt);
        let row = &stored[receipt.index as usize];
        assert_eq!(row.index, receipt.index);
        assert_eq!(
            row.entry,
            entry.canonical_bytes().unwrap(),
            "answered entry {} is not in the log",
            receipt.index
        );
    }
    let report = log.verify([]).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!((report.size, report.signed_size), (size, size));

    // And it goes on from there.
    let next = log.append(&entry(999_999_999)).await.unwrap();
    assert_eq!(next.index, size);
    assert_eq!(log.verify([]).await.unwrap().problem, None);
    log.close().await;
}

async fn a_failed_commit_fails_its_exchanges_and_the_log_recovers(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    for n in 0..5 {
        log.append(&entry(n)).await.unwrap();
    }
    let head = log.latest_checkpoint().await;

    // A row written behind the gateway's back takes the next index: the
    // batch's transaction fails, and so does the exchange.
    db.execute(&format!(
        "INSERT INTO audit_entries (leaf_index, entry, leaf_hash) VALUES (5, '{{}}', '{}')",
        "00".repeat(32)
    ))
    .await;
    let error = log.append(&entry(5)).await.unwrap_err();
    assert!(matches!(error, AuditError::Database(_)), "{error:?}");
    assert_eq!(log.size().await, 5);
    assert_eq!(log.latest_checkpoint().await, head);
    // Reloading the head finds the stray row: still refused.
    let error = log.append(&entry(5)).await.unwrap_err();
    assert!(
        matches!(&error, AuditError::Corrupt(m) if m.contains("added")),
        "{error:?}"
    );

    db.execute("DELETE FROM audit_entries WHERE leaf_index = 5")
        .await;
    let receipt = log.append(&entry(5)).await.unwrap();
    assert_eq!(receipt.index, 5);
    assert_receipt(&entry(5), &receipt);
    let report = log.verify([]).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.size, 6);
    log.close().await;
}

async fn tampering_is_found_where_it_happened(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    append_concurrently(&log, 0, 4, 10).await;
    assert_eq!(log.verify([]).await.unwrap().problem, None);

    // An entry's content edited, its leaf hash left: named exactly.
    db.execute(
        r#"UPDATE audit_entries SET entry = REPLACE(entry, '"status":', '"status":9') WHERE leaf_index = 17"#,
    )
    .await;
    assert_eq!(
        log.verify([]).await.unwrap().problem,
        Some(Problem::Altered { index: 17 })
    );
    db.execute(
        r#"UPDATE audit_entries SET entry = REPLACE(entry, '"status":9', '"status":') WHERE leaf_index = 17"#,
    )
    .await;
    assert_eq!(log.verify([]).await.unwrap().problem, None);

    // Content and leaf hash rewritten together: only the signed roots
    // show it, down to the group commit that held the entry.
    let original = String::from_utf8(stored_entries(&log).await[30].entry.clone()).unwrap();
    let forged = original.replace(r#""status":"#, r#""status":9"#);
    db.execute(&format!(
        r#"UPDATE audit_entries SET entry = REPLACE(entry, '"status":', '"status":9'), leaf_hash = '{}' WHERE leaf_index = 30"#,
        hex::encode(hash_leaf(forged.as_bytes()))
    ))
    .await;
    match log.verify([]).await.unwrap().problem {
        Some(Problem::AlteredWithin { first, last, .. }) => {
            assert!(first <= 30 && 30 <= last, "{first}..={last}")
        }
        other => panic!("expected AlteredWithin, got {other:?}"),
    }
    db.execute(&format!(
        r#"UPDATE audit_entries SET entry = REPLACE(entry, '"status":9', '"status":'), leaf_hash = '{}' WHERE leaf_index = 30"#,
        hex::encode(hash_leaf(original.as_bytes()))
    ))
    .await;
    assert_eq!(log.verify([]).await.unwrap().problem, None);

    // A row deleted: the gap is named.
    db.execute("DELETE FROM audit_entries WHERE leaf_index = 23")
        .await;
    assert_eq!(
        log.verify([]).await.unwrap().problem,
        Some(Problem::Missing {
            index: 23,
            next_index: 24
        })
    );
    log.close().await;

    // The last row deleted: the gateway refuses to continue the log.
    db.execute("DELETE FROM audit_entries WHERE leaf_index = 39")
        .await;
    let error = AuditLog::open(settings(&db, 8), key()).await.unwrap_err();
    assert!(format!("{error:#}").contains("removed"), "{error:#}");
}

/// X-Road identifiers may hold `'`, paths any text: what is stored is
/// exactly the canonical bytes that were hashed.
async fn quotes_backslashes_and_unicode_are_stored_exactly(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let log = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    let mut tricky = entry(0);
    tricky.client = "TEST/GOV/O'Brien/it's".into();
    tricky.path = "/a'b''c\\d\"e/'; DROP TABLE audit_entries; --/õ€😀\u{7}".into();
    let receipt = log.append(&tricky).await.unwrap();
    assert_receipt(&tricky, &receipt);
    let plain = log.append(&entry(1)).await.unwrap();
    assert_eq!(plain.index, 1);
    log.close().await;
    let reopened = AuditLog::open(settings(&db, 8), key()).await.unwrap();
    let stored = stored_entries(&reopened).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].entry, tricky.canonical_bytes().unwrap());
    assert_eq!(
        AuditEntry::from_canonical_bytes(&stored[0].entry).unwrap(),
        tricky
    );
    let report = reopened.verify(Vec::new()).await.unwrap();
    assert!(report.problem.is_none(), "{report:?}");
}
