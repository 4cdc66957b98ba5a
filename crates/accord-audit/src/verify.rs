//! Offline verification of a whole stored log against the checkpoints the
//! gateway signed and the copies the registry keeps.
//!
//! What an auditor wants to know is not only *whether* a log was tampered
//! with but *where*, and what kind of tampering it was; so verification
//! stops at the first problem and names its position. How precisely it can
//! name it depends on what the tamperer could also rewrite, which is why
//! the stored form of each entry is `(index, canonical entry bytes, leaf
//! hash)` ([`StoredEntry`]) and each group commit leaves a signed
//! checkpoint:
//!
//! | tampering | found as |
//! |---|---|
//! | an entry's content edited, its stored leaf hash left | [`Problem::Altered`] at that index |
//! | two entries' contents swapped (reordered) | [`Problem::Altered`] at the first of them |
//! | an entry deleted (a gap in the indices) | [`Problem::Missing`] at that index |
//! | an index repeated or going back | [`Problem::OutOfOrder`] |
//! | content *and* leaf hashes rewritten, renumbered, rows swapped whole, without the gateway's key | [`Problem::AlteredWithin`]: the first checkpoint it no longer matches, and the entries since the last one it did match (one group commit) |
//! | the log rewritten and its checkpoints re-signed with the gateway's key | [`Problem::Forked`]: the first registry checkpoint whose root differs, and the entries since the last one that matched |
//! | entries removed from the end | [`Problem::Truncated`]: the log is shorter than a checkpoint |
//! | a checkpoint forged, altered, of another log or key | [`Problem::BadCheckpoint`] |
//!
//! A leaf hash can be recomputed by anyone, so once a tamperer rewrites it
//! too, only signed roots remain, and a root covers a range of entries, not
//! one: the precision is then the group commit (or, against a holder of the
//! key, the registry's anchoring interval). Entries after the last
//! checkpoint are covered by nothing yet; the [`Report`] says how many.
//!
//! Roots are recomputed from the stored leaves at each checkpoint's size,
//! rather than checking consistency proofs between checkpoints: recomputing
//! proves the same (every checkpoint is a prefix of the stored log, hence of
//! each other) and also ties the entries themselves to the roots.
//!
//! Verification streams: it keeps one [`CompactRange`] (at most 64 hashes)
//! and the checkpoints not yet reached, so a log of millions of entries
//! needs no more memory than a small one. [`LogVerifier`] is push-based
//! (the caller feeds entries and checkpoints in order of size, e.g. from an
//! async database stream); [`LogVerifier::run`] drives it from iterators and
//! reports progress for a progress bar.

use std::collections::BTreeMap;
use std::fmt;

use ed25519_dalek::VerifyingKey;

use crate::checkpoint::{key_id, CheckpointError, SignedCheckpoint};
use crate::merkle::{hash_leaf, CompactRange, Hash};

/// One stored entry, as the gateway writes it: its position, the exact
/// canonical bytes that were hashed, and the leaf hash computed then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub index: u64,
    /// [`AuditEntry::canonical_bytes`](crate::AuditEntry::canonical_bytes).
    pub entry: Vec<u8>,
    /// `SHA-256(0x00 || entry)`, as computed at append time.
    pub leaf_hash: Hash,
}

/// Who holds a checkpoint: the gateway itself (one per group commit), or
/// the registry (the copies the gateway sent it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckpointSource {
    Gateway,
    Registry,
}

impl fmt::Display for CheckpointSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckpointSource::Gateway => "gateway",
            CheckpointSource::Registry => "registry",
        })
    }
}

/// What is wrong with a checkpoint itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointFault {
    #[error("it is a checkpoint of log {found}")]
    WrongLog { found: String },
    #[error("it is signed by key {key_id}, which is not one of the gateway's keys")]
    UnknownKey { key_id: String },
    #[error("{0}")]
    Signature(CheckpointError),
    #[error("it was given after the log had passed its size ({log_size}); checkpoints must be given in order of size")]
    TooLate { log_size: u64 },
}

/// The first problem found in a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the {origin}'s checkpoint of size {size} is not valid: {fault}")]
    BadCheckpoint {
        origin: CheckpointSource,
        size: u64,
        fault: CheckpointFault,
    },
    #[error(
        "entry {index} was altered: its content no longer hashes to the leaf hash stored with it"
    )]
    Altered { index: u64 },
    #[error("entry {index} is missing: the next entry stored is {next_index}")]
    Missing { index: u64, next_index: u64 },
    #[error("entry {found} is out of order: expected entry {expected}")]
    OutOfOrder { expected: u64, found: u64 },
    #[error("entries {first} to {last} were altered after the gateway signed its checkpoint of size {checkpoint_size} (their leaf hashes were rewritten too, so no single entry can be named)")]
    AlteredWithin {
        first: u64,
        last: u64,
        checkpoint_size: u64,
    },
    #[error(
        "the log forked: at size {checkpoint_size} its root is {}, the registry holds {} signed by the gateway; the histories part in entries {first} to {last}",
        hex::encode(.log_root),
        hex::encode(.registry_root)
    )]
    Forked {
        first: u64,
        last: u64,
        checkpoint_size: u64,
        log_root: Hash,
        registry_root: Hash,
    },
    #[error("the log was truncated: it has {log_size} entries, the {origin} holds a checkpoint of size {checkpoint_size}")]
    Truncated {
        log_size: u64,
        checkpoint_size: u64,
        origin: CheckpointSource,
    },
}

/// The outcome of verifying a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries read (with a problem: up to where it was found).
    pub size: u64,
    /// The root over those entries.
    pub root: Hash,
    /// The largest size at which a gateway checkpoint matched the log.
    pub signed_size: u64,
    /// The largest size at which a registry checkpoint matched the log.
    pub anchored_size: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints_checked: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// No problem found.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }

    /// Entries after the last matching checkpoint of either kind: intact as
    /// far as anyone can tell, but not yet committed to by a signature.
    pub fn unsigned_entries(&self) -> u64 {
        self.size - self.signed_size.max(self.anchored_size).min(self.size)
    }
}

/// Push-based, streaming verification of one log.
///
/// Feed checkpoints ([`add_checkpoint`](Self::add_checkpoint)) no later
/// than the entry that brings the log to their size, and entries
/// ([`push`](Self::push)) in index order; then [`finish`](Self::finish).
/// A checkpoint is checked (signature, then root) when the log reaches its
/// size; at one size the gateway's are checked before the registry's, so an
/// alteration the gateway's own checkpoint shows is reported as such rather
/// than as a fork.
#[derive(Debug)]
pub struct LogVerifier {
    log_id: String,
    keys: Vec<(String, VerifyingKey)>,
    range: CompactRange,
    pending: BTreeMap<u64, Vec<(CheckpointSource, SignedCheckpoint)>>,
    signed_size: u64,
    anchored_size: u64,
    checkpoints_checked: u64,
    problem: Option<Problem>,
}

/// How often [`LogVerifier::run`] reports progress, in entries.
const PROGRESS_EVERY: u64 = 4096;

impl LogVerifier {
    /// A verifier for log `log_id`, whose checkpoints must be signed by one
    /// of `keys` (the gateway's current and former keys).
    pub fn new(log_id: impl Into<String>, keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        Self {
            log_id: log_id.into(),
            keys: keys.into_iter().map(|k| (key_id(&k), k)).collect(),
            range: CompactRange::new(),
            pending: BTreeMap::new(),
            signed_size: 0,
            anchored_size: 0,
            checkpoints_checked: 0,
            problem: None,
        }
    }

    /// Entries accepted so far.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The first problem found so far.
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// Adds a checkpoint. One of the current size is checked at once, a
    /// larger one when the log reaches its size; one of a smaller size
    /// comes too late to be checked and is reported as a problem.
    pub fn add_checkpoint(
        &mut self,
        origin: CheckpointSource,
        checkpoint: SignedCheckpoint,
    ) -> Result<(), Problem> {
        self.stopped()?;
        let size = checkpoint.checkpoint.size;
        if size < self.size() {
            return Err(self.fail(Problem::BadCheckpoint {
                origin,
                size,
                fault: CheckpointFault::TooLate {
                    log_size: self.size(),
                },
            }));
        }
        self.pending
            .entry(size)
            .or_default()
            .push((origin, checkpoint));
        if size == self.size() {
            self.check_reached()?;
        }
        Ok(())
    }

    /// Adds the next stored entry.
    pub fn push(&mut self, stored: &StoredEntry) -> Result<(), Problem> {
        self.stopped()?;
        let expected = self.size();
        if stored.index > expected {
            return Err(self.fail(Problem::Missing {
                index: expected,
                next_index: stored.index,
            }));
        }
        if stored.index < expected {
            return Err(self.fail(Problem::OutOfOrder {
                expected,
                found: stored.index,
            }));
        }
        if hash_leaf(&stored.entry) != stored.leaf_hash {
            return Err(self.fail(Problem::Altered {
                index: stored.index,
            }));
        }
        self.range.append(stored.leaf_hash);
        self.check_reached()
    }

    /// Ends verification: checkpoints beyond the end of the log mean it was
    /// truncated (if their signatures hold).
    pub fn finish(mut self) -> Report {
        if self.problem.is_none() {
            let pending = std::mem::take(&mut self.pending);
            let mut largest = None;
            'beyond: for (size, mut checkpoints) in pending {
                checkpoints.sort_by_key(|(origin, _)| *origin);
                for (origin, checkpoint) in checkpoints {
                    if let Err(problem) = self.authenticate(origin, &checkpoint) {
                        self.problem = Some(problem);
                        break 'beyond;
                    }
                    largest = Some((size, origin));
                }
            }
            if let (None, Some((checkpoint_size, origin))) = (&self.problem, largest) {
                self.problem = Some(Problem::Truncated {
                    log_size: self.size(),
                    checkpoint_size,
                    origin,
                });
            }
        }
        Report {
            size: self.size(),
            root: self.range.root(),
            signed_size: self.signed_size,
            anchored_size: self.anchored_size,
            checkpoints_checked: self.checkpoints_checked,
            problem: self.problem,
        }
    }

    /// Verifies a whole log from iterators: `entries` in index order,
    /// `gateway_checkpoints` in order of size (both may fail, e.g. on a
    /// storage error, which ends verification with that error), and the
    /// registry's copies in any order. `progress(done, total)` is called
    /// every few thousand entries and at the end; `total` is the caller's
    /// estimate of the log's size (raised if more entries turn up).
    pub fn run<E>(
        mut self,
        entries: impl IntoIterator<Item = Result<StoredEntry, E>>,
        gateway_checkpoints: impl IntoIterator<Item = Result<SignedCheckpoint, E>>,
        registry_checkpoints: impl IntoIterator<Item = SignedCheckpoint>,
        total: u64,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Report, E> {
        let mut registry: Vec<SignedCheckpoint> = registry_checkpoints.into_iter().collect();
        registry.sort_by_key(|c| c.checkpoint.size);
        let mut feed = Feed {
            registry: registry.into_iter().peekable(),
            gateway: gateway_checkpoints.into_iter().peekable(),
        };
        let mut done = 0u64;
        let mut intact = feed.up_to(&mut self, 0)?;
        if intact {
            for stored in entries {
                let stored = stored?;
                // Checkpoints up to the size this entry brings the log to.
                let next_size = self.size() + 1;
                if !feed.up_to(&mut self, next_size)? || self.push(&stored).is_err() {
                    intact = false;
                    break;
                }
                done += 1;
                if done % PROGRESS_EVERY == 0 {
                    progress(done, total.max(done));
                }
            }
        }
        if intact {
            feed.up_to(&mut self, u64::MAX)?;
        }
        progress(done, total.max(done));
        Ok(self.finish())
    }

    /// Checks the checkpoints of exactly the current size.
    fn check_reached(&mut self) -> Result<(), Problem> {
        let size = self.size();
        let Some(mut checkpoints) = self.pending.remove(&size) else {
            return Ok(());
        };
        checkpoints.sort_by_key(|(origin, _)| *origin);
        let log_root = self.range.root();
        for (origin, checkpoint) in checkpoints {
            if let Err(problem) = self.authenticate(origin, &checkpoint) {
                return Err(self.fail(problem));
            }
            self.checkpoints_checked += 1;
            let committed = checkpoint.checkpoint.root;
            if committed != log_root {
                let last = size.saturating_sub(1);
                let problem = match origin {
                    CheckpointSource::Gateway => Problem::AlteredWithin {
                        first: self.signed_size.max(self.anchored_size),
                        last,
                        checkpoint_size: size,
                    },
                    CheckpointSource::Registry => Problem::Forked {
                        first: self.anchored_size,
                        last,
                        checkpoint_size: size,
                        log_root,
                        registry_root: committed,
                    },
                };
                return Err(self.fail(problem));
            }
            match origin {
                CheckpointSource::Gateway => self.signed_size = size,
                CheckpointSource::Registry => self.anchored_size = size,
            }
        }
        Ok(())
    }

    /// Checks that a checkpoint is of this log and signed by one of its keys.
    fn authenticate(
        &self,
        origin: CheckpointSource,
        signed: &SignedCheckpoint,
    ) -> Result<(), Problem> {
        let size = signed.checkpoint.size;
        let fault = |fault| Problem::BadCheckpoint {
            origin,
            size,
            fault,
        };
        if signed.checkpoint.log_id != self.log_id {
            return Err(fault(CheckpointFault::WrongLog {
                found: signed.checkpoint.log_id.clone(),
            }));
        }
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == signed.key_id) else {
            return Err(fault(CheckpointFault::UnknownKey {
                key_id: signed.key_id.clone(),
            }));
        };
        signed
            .verify(key)
            .map_err(|e| fault(CheckpointFault::Signature(e)))
    }

    fn stopped(&self) -> Result<(), Problem> {
        match &self.problem {
            Some(problem) => Err(problem.clone()),
            None => Ok(()),
        }
    }

    fn fail(&mut self, problem: Problem) -> Problem {
        self.problem = Some(problem.clone());
        problem
    }
}

/// The two checkpoint streams of [`LogVerifier::run`], merged into the
/// verifier just ahead of the entries.
struct Feed<R: Iterator<Item = SignedCheckpoint>, G: Iterator> {
    registry: std::iter::Peekable<R>,
    gateway: std::iter::Peekable<G>,
}

impl<R, G, E> Feed<R, G>
where
    R: Iterator<Item = SignedCheckpoint>,
    G: Iterator<Item = Result<SignedCheckpoint, E>>,
{
    /// Adds every checkpoint of size up to `size`; `Ok(false)` once the
    /// verifier has found a problem.
    fn up_to(&mut self, verifier: &mut LogVerifier, size: u64) -> Result<bool, E> {
        while let Some(checkpoint) = self.registry.next_if(|c| c.checkpoint.size <= size) {
            if verifier
                .add_checkpoint(CheckpointSource::Registry, checkpoint)
                .is_err()
            {
                return Ok(false);
            }
        }
        loop {
            match self.gateway.peek() {
                Some(Ok(c)) if c.checkpoint.size <= size => {}
                Some(Err(_)) => {}
                _ => return Ok(true),
            }
            match self.gateway.next() {
                Some(Ok(checkpoint)) => {
                    if verifier
                        .add_checkpoint(CheckpointSource::Gateway, checkpoint)
                        .is_err()
                    {
                        return Ok(false);
                    }
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::entry::tests::sample_entry;
    use crate::merkle::{root, verify_inclusion, Batch};
    use ed25519_dalek::SigningKey;
    use std::convert::Infallible;
    use time::macros::datetime;

    const LOG: &str = "EE/GOV/70000740/gw1";
    const ENTRIES: u64 = 1000;
    /// Group commit sizes, cycled: as under uneven load.
    const BATCHES: [u64; 8] = [1, 3, 7, 16, 2, 11, 5, 30];

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[42; 32])
    }

    /// A gateway's log: stored rows, the checkpoint signed after each group
    /// commit, and the registry's copies (the first checkpoint past every
    /// hundred entries, as if anchored periodically).
    struct Log {
        rows: Vec<StoredEntry>,
        gateway: Vec<SignedCheckpoint>,
        registry: Vec<SignedCheckpoint>,
    }

    fn row(index: u64, entry: Vec<u8>) -> StoredEntry {
        StoredEntry {
            index,
            leaf_hash: hash_leaf(&entry),
            entry,
        }
    }

    /// Writes `entries` as the gateway would: per group commit, hash the
    /// batch onto the compact range, sign one checkpoint, hand every entry
    /// its inclusion proof (checked here as a client would).
    fn write_log(entries: Vec<Vec<u8>>, key: &SigningKey) -> Log {
        let mut range = CompactRange::new();
        let mut rows = Vec::new();
        let mut gateway = Vec::new();
        let mut registry = Vec::new();
        let mut batches = BATCHES.iter().cycle();
        let mut next = 0u64;
        let total = entries.len() as u64;
        let mut entries = entries.into_iter();
        while next < total {
            let len = (*batches.next().unwrap()).min(total - next);
            let batch_rows: Vec<StoredEntry> = (next..next + len)
                .map(|i| row(i, entries.next().unwrap()))
                .collect();
            let leaves: Vec<Hash> = batch_rows.iter().map(|r| r.leaf_hash).collect();
            let batch = Batch::new(&range, &leaves);
            let checkpoint = Checkpoint {
                log_id: LOG.into(),
                size: batch.new_size(),
                root: batch.root(),
                at: datetime!(2026-03-01 12:00 UTC) + time::Duration::milliseconds(next as i64),
            }
            .sign(key);
            for r in &batch_rows {
                let proof = batch.inclusion_proof(r.index).unwrap();
                assert!(verify_inclusion(
                    &r.leaf_hash,
                    r.index,
                    checkpoint.checkpoint.size,
                    &proof,
                    &checkpoint.checkpoint.root
                ));
            }
            range = batch.after();
            if next / 100 != (next + len) / 100 {
                registry.push(checkpoint.clone());
            }
            gateway.push(checkpoint);
            rows.extend(batch_rows);
            next += len;
        }
        Log {
            rows,
            gateway,
            registry,
        }
    }

    fn entries() -> Vec<Vec<u8>> {
        (0..ENTRIES)
            .map(|n| sample_entry(n).canonical_bytes().unwrap())
            .collect()
    }

    fn original() -> Log {
        write_log(entries(), &key())
    }

    fn verify(log: &Log) -> Report {
        verify_parts(&log.rows, &log.gateway, &log.registry)
    }

    fn verify_parts(
        rows: &[StoredEntry],
        gateway: &[SignedCheckpoint],
        registry: &[SignedCheckpoint],
    ) -> Report {
        LogVerifier::new(LOG, [key().verifying_key()])
            .run(
                rows.iter().cloned().map(Ok::<_, Infallible>),
                gateway.iter().cloned().map(Ok),
                registry.iter().cloned(),
                rows.len() as u64,
                |_, _| {},
            )
            .unwrap()
    }

    /// The group commit containing entry `index`: (first index, size after).
    fn batch_of(log: &Log, index: u64) -> (u64, u64) {
        let mut start = 0;
        for c in &log.gateway {
            let end = c.checkpoint.size;
            if index < end {
                return (start, end);
            }
            start = end;
        }
        unreachable!()
    }

    fn rehash(row: &mut StoredEntry) {
        row.leaf_hash = hash_leaf(&row.entry);
    }

    fn edit(row: &mut StoredEntry) {
        let mut entry: crate::AuditEntry = serde_json::from_slice(&row.entry).unwrap();
        entry.status = 500;
        row.entry = entry.canonical_bytes().unwrap();
    }

    #[test]
    fn an_intact_log_verifies_and_reports_progress() {
        let log = original();
        let mut calls = Vec::new();
        let report = LogVerifier::new(LOG, [key().verifying_key()])
            .run(
                log.rows.iter().cloned().map(Ok::<_, Infallible>),
                log.gateway.iter().cloned().map(Ok),
                log.registry.iter().cloned(),
                ENTRIES,
                |done, total| calls.push((done, total)),
            )
            .unwrap();
        let leaves: Vec<Hash> = log.rows.iter().map(|r| r.leaf_hash).collect();
        assert_eq!(report.problem, None);
        assert!(report.is_intact());
        assert_eq!(report.size, ENTRIES);
        assert_eq!(report.root, root(&leaves));
        assert_eq!(report.signed_size, ENTRIES);
        assert_eq!(
            report.anchored_size,
            log.registry.last().unwrap().checkpoint.size
        );
        assert_eq!(report.unsigned_entries(), 0);
        assert_eq!(
            report.checkpoints_checked,
            (log.gateway.len() + log.registry.len()) as u64
        );
        assert_eq!(calls.last(), Some(&(ENTRIES, ENTRIES)));
        assert!(log.registry.len() >= 9, "{}", log.registry.len());
    }

    #[test]
    fn an_edited_entry_is_found_at_its_index() {
        let mut log = original();
        edit(&mut log.rows[437]);
        let report = verify(&log);
        assert_eq!(report.problem, Some(Problem::Altered { index: 437 }));
        assert_eq!(report.size, 437);
    }

    #[test]
    fn an_edited_entry_with_a_rewritten_leaf_hash_is_found_in_its_group_commit() {
        let mut log = original();
        edit(&mut log.rows[437]);
        rehash(&mut log.rows[437]);
        let (first, end) = batch_of(&log, 437);
        assert!(end - first <= 30);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::AlteredWithin {
                first,
                last: end - 1,
                checkpoint_size: end
            })
        );
    }

    #[test]
    fn an_entry_edited_in_a_group_commit_of_one_is_named_even_with_its_hash_rewritten() {
        let mut log = original();
        // The first group commit of each cycle holds one entry.
        let index = BATCHES.iter().sum::<u64>() * 3;
        assert_eq!(batch_of(&log, index), (index, index + 1));
        edit(&mut log.rows[index as usize]);
        rehash(&mut log.rows[index as usize]);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::AlteredWithin {
                first: index,
                last: index,
                checkpoint_size: index + 1
            })
        );
    }

    #[test]
    fn a_deleted_entry_is_found_at_its_index() {
        let mut log = original();
        log.rows.remove(437);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::Missing {
                index: 437,
                next_index: 438
            })
        );
    }

    #[test]
    fn a_deleted_entry_with_the_rest_renumbered_is_found_in_its_group_commit() {
        let mut log = original();
        log.rows.remove(437);
        for (i, row) in log.rows.iter_mut().enumerate() {
            row.index = i as u64;
        }
        let (first, end) = batch_of(&log, 437);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::AlteredWithin {
                first,
                last: end - 1,
                checkpoint_size: end
            })
        );
    }

    #[test]
    fn reordered_entries_are_found_at_the_first_of_them() {
        let mut log = original();
        let (a, b) = (log.rows[300].entry.clone(), log.rows[700].entry.clone());
        log.rows[300].entry = b;
        log.rows[700].entry = a;
        assert_eq!(verify(&log).problem, Some(Problem::Altered { index: 300 }));
    }

    #[test]
    fn rows_swapped_whole_are_found_in_the_first_ones_group_commit() {
        let mut log = original();
        log.rows.swap(300, 700);
        log.rows[300].index = 300;
        log.rows[700].index = 700;
        let (first, end) = batch_of(&log, 300);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::AlteredWithin {
                first,
                last: end - 1,
                checkpoint_size: end
            })
        );
    }

    #[test]
    fn a_repeated_entry_is_out_of_order() {
        let mut log = original();
        let copy = log.rows[10].clone();
        log.rows.insert(11, copy);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::OutOfOrder {
                expected: 11,
                found: 10
            })
        );
    }

    #[test]
    fn a_truncated_log_is_shorter_than_the_registrys_checkpoint() {
        let mut log = original();
        log.rows.truncate(800);
        // The tamperer removes the gateway's own later checkpoints too.
        log.gateway.retain(|c| c.checkpoint.size <= 800);
        let registry_last = log.registry.last().unwrap().checkpoint.size;
        assert!(registry_last > 900);
        let report = verify(&log);
        assert_eq!(
            report.problem,
            Some(Problem::Truncated {
                log_size: 800,
                checkpoint_size: registry_last,
                origin: CheckpointSource::Registry
            })
        );
        assert_eq!(report.size, 800);
    }

    #[test]
    fn a_truncated_log_is_shorter_than_the_gateways_own_checkpoint() {
        let mut log = original();
        log.rows.truncate(800);
        log.registry.clear();
        assert_eq!(
            verify(&log).problem,
            Some(Problem::Truncated {
                log_size: 800,
                checkpoint_size: ENTRIES,
                origin: CheckpointSource::Gateway
            })
        );
    }

    #[test]
    fn a_log_rewritten_and_re_signed_with_the_gateways_key_is_a_fork() {
        let honest = original();
        let mut forged = entries();
        let mut entry = sample_entry(500);
        entry.decision = crate::AuditDecision::Deny {
            reason: "no-agreement".into(),
        };
        forged[500] = entry.canonical_bytes().unwrap();
        // The tamperer holds the key: every gateway checkpoint is re-signed.
        let fork = write_log(forged, &key());
        let last_anchor = honest
            .registry
            .iter()
            .map(|c| c.checkpoint.size)
            .filter(|&s| s <= 500)
            .max()
            .unwrap();
        let diverging = honest
            .registry
            .iter()
            .find(|c| c.checkpoint.size > 500)
            .unwrap();
        let size = diverging.checkpoint.size;
        let fork_root = root(
            &fork.rows[..size as usize]
                .iter()
                .map(|r| r.leaf_hash)
                .collect::<Vec<_>>(),
        );
        let report = verify_parts(&fork.rows, &fork.gateway, &honest.registry);
        assert_eq!(
            report.problem,
            Some(Problem::Forked {
                first: last_anchor,
                last: size - 1,
                checkpoint_size: size,
                log_root: fork_root,
                registry_root: diverging.checkpoint.root,
            })
        );
        assert_eq!(report.anchored_size, last_anchor);
        assert!(report.signed_size >= 500);
        let message = report.problem.unwrap().to_string();
        assert!(
            message.contains(&format!("entries {last_anchor} to {}", size - 1)),
            "{message}"
        );
    }

    #[test]
    fn a_checkpoint_with_a_bad_signature_is_reported() {
        let mut log = original();
        let k = log.gateway.len() / 2;
        let size = log.gateway[k].checkpoint.size;
        let mut bytes = log.gateway[k].signature.to_bytes();
        bytes[10] ^= 0x40;
        log.gateway[k].signature = ed25519_dalek::Signature::from_bytes(&bytes);
        let report = verify(&log);
        assert!(
            matches!(
                &report.problem,
                Some(Problem::BadCheckpoint {
                    origin: CheckpointSource::Gateway,
                    size: s,
                    fault: CheckpointFault::Signature(CheckpointError::BadSignature { .. }),
                }) if *s == size
            ),
            "{:?}",
            report.problem
        );
        assert_eq!(report.size, size);
    }

    #[test]
    fn a_checkpoint_rewritten_to_cover_an_edit_no_longer_verifies() {
        let mut log = original();
        edit(&mut log.rows[437]);
        rehash(&mut log.rows[437]);
        let (_, end) = batch_of(&log, 437);
        let leaves: Vec<Hash> = log.rows.iter().map(|r| r.leaf_hash).collect();
        for c in log.gateway.iter_mut().chain(log.registry.iter_mut()) {
            if c.checkpoint.size >= end {
                c.checkpoint.root = root(&leaves[..c.checkpoint.size as usize]);
            }
        }
        assert!(matches!(
            verify(&log).problem,
            Some(Problem::BadCheckpoint {
                origin: CheckpointSource::Gateway,
                size,
                fault: CheckpointFault::Signature(_),
            }) if size == end
        ));
    }

    #[test]
    fn checkpoints_of_another_log_or_key_are_reported() {
        let mut log = original();
        let size = log.registry[2].checkpoint.size;
        let mut other = log.registry[2].checkpoint.clone();
        other.log_id = "EE/GOV/70000740/gw2".into();
        log.registry[2] = other.sign(&key());
        assert_eq!(
            verify(&log).problem,
            Some(Problem::BadCheckpoint {
                origin: CheckpointSource::Registry,
                size,
                fault: CheckpointFault::WrongLog {
                    found: "EE/GOV/70000740/gw2".into()
                }
            })
        );

        let mut log = original();
        let stranger = SigningKey::from_bytes(&[9; 32]);
        log.gateway[3] = log.gateway[3].checkpoint.clone().sign(&stranger);
        assert_eq!(
            verify(&log).problem,
            Some(Problem::BadCheckpoint {
                origin: CheckpointSource::Gateway,
                size: log.gateway[3].checkpoint.size,
                fault: CheckpointFault::UnknownKey {
                    key_id: key_id(&stranger.verifying_key())
                }
            })
        );
    }

    #[test]
    fn a_forged_checkpoint_beyond_the_end_is_bad_not_a_truncation() {
        let mut log = original();
        let mut forged = log.gateway.last().unwrap().clone();
        forged.checkpoint.size = ENTRIES + 50;
        log.gateway.push(forged);
        assert!(matches!(
            verify(&log).problem,
            Some(Problem::BadCheckpoint {
                size,
                fault: CheckpointFault::Signature(_),
                ..
            }) if size == ENTRIES + 50
        ));
    }

    #[test]
    fn entries_after_the_last_checkpoint_are_intact_but_unsigned() {
        let mut log = original();
        for n in ENTRIES..ENTRIES + 5 {
            log.rows
                .push(row(n, sample_entry(n).canonical_bytes().unwrap()));
        }
        let report = verify(&log);
        assert_eq!(report.problem, None);
        assert_eq!(report.size, ENTRIES + 5);
        assert_eq!(report.unsigned_entries(), 5);
    }

    #[test]
    fn gateway_checkpoints_out_of_order_are_reported() {
        let mut log = original();
        log.gateway.swap(5, 6);
        assert!(matches!(
            verify(&log).problem,
            Some(Problem::BadCheckpoint {
                origin: CheckpointSource::Gateway,
                fault: CheckpointFault::TooLate { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_storage_error_ends_verification_with_that_error() {
        let log = original();
        let rows = log.rows.iter().cloned().enumerate().map(|(i, r)| {
            if i == 10 {
                Err("disk on fire")
            } else {
                Ok(r)
            }
        });
        let result = LogVerifier::new(LOG, [key().verifying_key()]).run(
            rows,
            log.gateway.iter().cloned().map(Ok),
            log.registry.iter().cloned(),
            ENTRIES,
            |_, _| {},
        );
        assert_eq!(result, Err("disk on fire"));
    }

    #[test]
    fn an_empty_log_is_intact() {
        let report = verify_parts(&[], &[], &[]);
        assert_eq!(report.problem, None);
        assert_eq!(report.size, 0);
        assert_eq!(report.root, crate::EMPTY_ROOT);
    }

    #[test]
    fn the_push_api_checks_a_checkpoint_of_the_current_size_at_once() {
        let log = original();
        let mut verifier = LogVerifier::new(LOG, [key().verifying_key()]);
        let first = log.gateway[0].checkpoint.size;
        for r in &log.rows[..first as usize] {
            verifier.push(r).unwrap();
        }
        verifier
            .add_checkpoint(CheckpointSource::Registry, log.gateway[0].clone())
            .unwrap();
        let mut wrong = log.gateway[1].clone();
        wrong.checkpoint.size = first;
        assert!(matches!(
            verifier.add_checkpoint(CheckpointSource::Gateway, wrong),
            Err(Problem::BadCheckpoint { .. })
        ));
        // Once a problem is found, it is the answer to everything after.
        assert!(verifier.push(&log.rows[first as usize]).is_err());
        assert!(verifier.finish().problem.is_some());
    }
}
