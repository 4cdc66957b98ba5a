//! Accord's audit log, as values and rules: what one entry records, the
//! Merkle tree that makes the log tamper-evident, the checkpoints a gateway
//! signs over it, and the offline verification of a whole log.
//!
//! Every exchange between agencies is recorded on both gateways, and the
//! record has to survive a dispute: an operator (or an intruder with write
//! access to the database) must not be able to change, drop, reorder or
//! rewrite entries without it showing. The log is therefore an RFC 9162
//! (Certificate Transparency 2.0) Merkle tree over the entries' canonical
//! forms, the gateway signs its head (size and root) after every group
//! commit, and the registry keeps copies of those heads; a history that was
//! rewritten no longer hashes to what was signed and anchored.
//!
//! This crate does no I/O, like `accord-domain`: the gateway owns storage and
//! group commit, the `accord audit verify` command owns reading a log and
//! drawing the progress bar. Both drive the functions here, so the same
//! rules hold when an entry is written and when it is audited years later.
//!
//! - [`entry`]: [`AuditEntry`], its RFC 8785 canonical bytes and leaf hash,
//!   and [`pseudonymize`] for data subjects.
//! - [`merkle`]: RFC 9162 §2.1 tree hash, inclusion and consistency proofs,
//!   the O(log n) [`CompactRange`] a gateway keeps in memory, and [`Batch`]
//!   for the proofs of one group commit.
//! - [`checkpoint`]: [`Checkpoint`] (log id, size, root, time) and its
//!   Ed25519 signature.
//! - [`verify`]: [`LogVerifier`], streaming verification of
//!   a stored log against the gateway's and the registry's checkpoints,
//!   naming the first problem and where it is.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod checkpoint;
pub mod entry;
pub mod merkle;
pub mod verify;

pub mod serde_bytes;

pub use checkpoint::{key_id, Checkpoint, CheckpointError, SignedCheckpoint};
pub use entry::{pseudonymize, AgreementRef, AuditDecision, AuditEntry, EntryError, Side};
pub use merkle::{
    consistency_proof, hash_children, hash_leaf, inclusion_proof, root, verify_consistency,
    verify_inclusion, Batch, CompactRange, Hash, ProofError, EMPTY_ROOT,
};
pub use verify::{CheckpointFault, CheckpointSource, LogVerifier, Problem, Report, StoredEntry};

/// Lower-case hex, as every hash in Accord's JSON and tables is written.
/// `hex::encode` builds its string a `char` at a time through an iterator;
/// this one fills a buffer from a table, which matters where a gateway
/// writes several hashes per exchange.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, so this cannot fail, and hex
    // digits are ASCII.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(super::to_hex(&[0x00, 0x0a, 0xab, 0xff]), "000aabff");
        assert_eq!(super::to_hex(&[]), "");
        let hash = super::hash_leaf(b"entry");
        assert_eq!(super::to_hex(&hash), hex::encode(hash));
    }
}
