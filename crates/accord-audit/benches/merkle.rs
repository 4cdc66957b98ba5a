//! What the audit log costs a gateway per exchange and per group commit,
//! and how fast a whole log verifies offline.
//!
//! - `append/*`: one entry onto the in-memory compact range, from the
//!   entry value (RFC 8785 canonicalization + leaf hash + append) and from
//!   its canonical bytes (leaf hash + append).
//! - `root/compact_1m`: the root of a million-entry log from its compact range.
//! - `group_commit/*`: one group commit on a log of a million entries: hash
//!   the batch onto the tree (new root) and produce every entry's inclusion
//!   proof and the consistency proof; with and without the one Ed25519
//!   signature of its checkpoint, to show what the signature costs when it
//!   is amortized over the batch.
//! - `checkpoint/*`: signing and verifying one checkpoint.
//! - A plain pass afterwards verifies a 200,000-entry log (a checkpoint per
//!   64 entries, anchored every 10,000) and prints entries per second.
//!
//! Run: `cargo bench -p accord-audit --bench merkle`

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use accord_audit::{
    hash_leaf, pseudonymize, AgreementRef, AuditDecision, AuditEntry, Batch, Checkpoint,
    CompactRange, Hash, LogVerifier, Side, SignedCheckpoint, StoredEntry,
};
use criterion::{BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use time::macros::datetime;

fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        exchange_id: format!("EE/GOV/70000740/xroad-{n:012}"),
        request_id: format!("0f3c9a2e-{n:012}"),
        at: datetime!(2026-03-01 12:00:00 UTC) + Duration::from_micros(n * 137),
        side: Side::Provider,
        client: "EE/GOV/70000562/social-benefits".into(),
        service: "EE/GOV/70000740/population-register/residence/v1".into(),
        method: "GET".into(),
        path: format!("/persons/{n}/residence"),
        purpose: Some("social-benefit-eligibility".into()),
        agreement: Some(AgreementRef {
            id: "residence-for-benefits".into(),
            version: 3,
        }),
        grant: Some("residence-read".into()),
        decision: AuditDecision::Permit,
        status: 200,
        error_type: None,
        request_body_sha256: hex::encode(hash_leaf(b"")),
        response_body_sha256: hex::encode(hash_leaf(&n.to_be_bytes())),
        request_size: 0,
        response_size: 412 + n % 100,
        total_us: 1_800 + n % 500,
        backend_us: Some(1_200 + n % 300),
        data_subject_pseudonym: Some(pseudonymize(&[7; 32], &format!("EE:3800108{n:04}"))),
    }
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| hash_leaf(&i.to_be_bytes())).collect()
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // criterion only checks that each benchmark runs, and so do we.
    let quick = !std::env::args().any(|a| a == "--bench");
    let log_size: u64 = if quick { 10_000 } else { 1_000_000 };
    let key = SigningKey::from_bytes(&[42; 32]);

    let entries: Vec<AuditEntry> = (0..1024).map(entry).collect();
    let canonical: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.canonical_bytes().unwrap())
        .collect();
    let mean_len = canonical.iter().map(Vec::len).sum::<usize>() / canonical.len();
    println!("canonical entry: {mean_len} bytes on average");

    let t = Instant::now();
    let big = CompactRange::from_leaves(&leaves(log_size));
    println!(
        "built a compact range of {log_size} leaves in {:?} ({} subtree hashes)",
        t.elapsed(),
        big.peaks().len()
    );

    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("append");
        group.throughput(Throughput::Elements(entries.len() as u64));
        group.bench_function("entry_canonicalize_hash_append", |b| {
            b.iter_batched(
                || big.clone(),
                |mut range| {
                    for e in &entries {
                        range.append(e.leaf_hash().unwrap());
                    }
                    black_box(range.root())
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("canonical_bytes_hash_append", |b| {
            b.iter_batched(
                || big.clone(),
                |mut range| {
                    for bytes in &canonical {
                        range.append(hash_leaf(bytes));
                    }
                    black_box(range.root())
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
    c.bench_function("root/compact_1m", |b| b.iter(|| black_box(&big).root()));
    for batch_len in [1usize, 16, 64, 256] {
        let batch_leaves: Vec<Hash> = canonical[..batch_len]
            .iter()
            .map(|b| hash_leaf(b))
            .collect();
        let mut group = c.benchmark_group(format!("group_commit/{batch_len}"));
        group.throughput(Throughput::Elements(batch_len as u64));
        group.bench_function("root_and_all_proofs", |b| {
            b.iter(|| {
                let batch = Batch::new(black_box(&big), black_box(&batch_leaves));
                let proofs: Vec<Vec<Hash>> = (batch.old_size()..batch.new_size())
                    .map(|i| batch.inclusion_proof(i).unwrap())
                    .collect();
                let consistency = batch.consistency_proof().unwrap();
                black_box((batch.root(), proofs, consistency))
            })
        });
        group.bench_function("root_all_proofs_and_signed_checkpoint", |b| {
            b.iter(|| {
                let batch = Batch::new(black_box(&big), black_box(&batch_leaves));
                let proofs: Vec<Vec<Hash>> = (batch.old_size()..batch.new_size())
                    .map(|i| batch.inclusion_proof(i).unwrap())
                    .collect();
                let signed = Checkpoint {
                    log_id: "EE/GOV/70000740/gw1".into(),
                    size: batch.new_size(),
                    root: batch.root(),
                    at: datetime!(2026-03-01 12:00 UTC),
                }
                .sign(&key);
                black_box((signed, proofs))
            })
        });
        group.finish();
    }
    {
        let checkpoint = Checkpoint {
            log_id: "EE/GOV/70000740/gw1".into(),
            size: log_size,
            root: big.root(),
            at: datetime!(2026-03-01 12:00 UTC),
        };
        let signed = checkpoint.clone().sign(&key);
        let public = key.verifying_key();
        c.bench_function("checkpoint/sign", |b| {
            b.iter(|| black_box(checkpoint.clone()).sign(&key))
        });
        c.bench_function("checkpoint/verify", |b| {
            b.iter(|| black_box(&signed).verify(&public))
        });
    }
    c.final_summary();

    // A whole log verified offline, as `accord audit verify` will.
    let entries_in_log: u64 = if quick { 5_000 } else { 200_000 };
    let (rows, gateway, registry) = write_log(entries_in_log, &canonical, &key);
    let t = Instant::now();
    let report = LogVerifier::new("EE/GOV/70000740/gw1", [key.verifying_key()])
        .run(
            rows.into_iter().map(Ok::<_, Infallible>),
            gateway.iter().cloned().map(Ok),
            registry.iter().cloned(),
            entries_in_log,
            |_, _| {},
        )
        .unwrap();
    let elapsed = t.elapsed();
    assert!(report.is_intact(), "{:?}", report.problem);
    println!(
        "\nverified {} entries ({} gateway + {} registry checkpoints) in {:.0} ms: {:.0} entries/s",
        report.size,
        gateway.len(),
        registry.len(),
        elapsed.as_secs_f64() * 1e3,
        report.size as f64 / elapsed.as_secs_f64()
    );
}

/// Stored rows, the gateway's checkpoints, the registry's copies.
type Written = (
    Vec<StoredEntry>,
    Vec<SignedCheckpoint>,
    Vec<SignedCheckpoint>,
);

/// A log of `n` entries (cycling through `canonical`) written in group
/// commits of 64, anchored every 10,000 entries.
fn write_log(n: u64, canonical: &[Vec<u8>], key: &SigningKey) -> Written {
    let mut range = CompactRange::new();
    let (mut rows, mut gateway, mut registry) = (Vec::new(), Vec::new(), Vec::new());
    for start in (0..n).step_by(64) {
        let end = (start + 64).min(n);
        let batch_rows: Vec<StoredEntry> = (start..end)
            .map(|i| {
                let entry = canonical[(i % canonical.len() as u64) as usize].clone();
                StoredEntry {
                    index: i,
                    leaf_hash: hash_leaf(&entry),
                    entry,
                }
            })
            .collect();
        for r in &batch_rows {
            range.append(r.leaf_hash);
        }
        let signed = Checkpoint {
            log_id: "EE/GOV/70000740/gw1".into(),
            size: range.size(),
            root: range.root(),
            at: datetime!(2026-03-01 12:00 UTC),
        }
        .sign(key);
        if start / 10_000 != end / 10_000 || end == n {
            registry.push(signed.clone());
        }
        gateway.push(signed);
        rows.extend(batch_rows);
    }
    (rows, gateway, registry)
}
