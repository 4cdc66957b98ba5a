//! Checkpoints: a log's size and root at a moment, signed by the gateway.
//!
//! A root alone proves nothing: whoever can rewrite the log can recompute
//! it. A checkpoint is the gateway's signed statement "my log `log_id` had
//! `size` entries with this root at `at`", and it serves twice:
//!
//! - After every group commit the gateway signs one (a *signed tree head*)
//!   and answers each exchange of the batch with it and the entry's
//!   inclusion proof: one Ed25519 signature per batch instead of one per
//!   message, and each party holds a receipt it can check on its own.
//! - Periodically the gateway sends its latest checkpoint to the registry,
//!   with a consistency proof from the previous one it sent
//!   ([`Checkpoint::verify_extends`]); the registry keeps them. A log
//!   rewritten later, even by someone holding the gateway's key, no longer
//!   matches what the registry holds.
//!
//! The signature covers a domain-separated text message
//! ([`Checkpoint::signing_message`]), so a checkpoint signature cannot be
//! replayed as an agreement signature or anything else the same key signs,
//! nor the other way round. The time is signed as unix nanoseconds, which is
//! exact and cannot fail to format; the JSON form carries it as RFC 3339.
//! The signature names its key by [`key_id`] (as agreement signatures do),
//! so a verifier holding several keys of a gateway (rotation) picks the
//! right one.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::merkle::{verify_consistency, Hash};

/// A log's size and root at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Which log: the gateway's identity, e.g. `EE/GOV/70000740/gw1`.
    pub log_id: String,
    /// The number of entries.
    pub size: u64,
    /// The Merkle tree root over those entries, as lower-case hex in JSON.
    #[serde(with = "crate::serde_bytes::hex32")]
    pub root: Hash,
    /// When the checkpoint was made.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A checkpoint with the gateway's Ed25519 signature over its
/// [`signing_message`](Checkpoint::signing_message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SignedCheckpointFields")]
pub struct SignedCheckpoint {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// The [`key_id`] of the signing key.
    pub key_id: String,
    /// The signature, as standard base64 in JSON.
    #[serde(with = "crate::serde_bytes::signature_b64")]
    pub signature: Signature,
}

/// The flat JSON form of a [`SignedCheckpoint`], as it is read: serde's
/// `flatten` would first buffer every field into an intermediate map, and a
/// consumer gateway reads a checkpoint with every exchange's receipt.
#[derive(Deserialize)]
struct SignedCheckpointFields {
    log_id: String,
    size: u64,
    #[serde(with = "crate::serde_bytes::hex32")]
    root: Hash,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    key_id: String,
    #[serde(with = "crate::serde_bytes::signature_b64")]
    signature: Signature,
}

impl From<SignedCheckpointFields> for SignedCheckpoint {
    fn from(f: SignedCheckpointFields) -> SignedCheckpoint {
        SignedCheckpoint {
            checkpoint: Checkpoint {
                log_id: f.log_id,
                size: f.size,
                root: f.root,
                at: f.at,
            },
            key_id: f.key_id,
            signature: f.signature,
        }
    }
}

/// Why a signed checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint is signed by key {key_id}, expected key {expected}")]
    WrongKey { key_id: String, expected: String },
    #[error(
        "the signature does not verify over checkpoint {log_id} size {size} with key {key_id}"
    )]
    BadSignature {
        log_id: String,
        size: u64,
        key_id: String,
    },
}

impl Checkpoint {
    /// The bytes the gateway signs:
    ///
    /// ```text
    /// accord audit checkpoint v1
    /// log <log_id>
    /// size <decimal>
    /// root <lower-case hex>
    /// at <unix nanoseconds>
    /// ```
    ///
    /// `log_id` is the only free text; it comes first and every later line
    /// has a fixed shape, so two different checkpoints never share a message.
    pub fn signing_message(&self) -> Vec<u8> {
        format!(
            "accord audit checkpoint v1\nlog {}\nsize {}\nroot {}\nat {}",
            self.log_id,
            self.size,
            crate::to_hex(&self.root),
            self.at.unix_timestamp_nanos()
        )
        .into_bytes()
    }

    /// Signs the checkpoint.
    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let signature = key.sign(&self.signing_message());
        SignedCheckpoint {
            key_id: key_id(&key.verifying_key()),
            checkpoint: self,
            signature,
        }
    }

    /// Whether this checkpoint extends `older`: the same log, not smaller,
    /// and `proof` (RFC 9162 consistency proof from `older.size`) shows
    /// that `older`'s tree is a prefix of this one. What the registry checks
    /// before it stores a new checkpoint from a gateway.
    pub fn verify_extends(&self, older: &Checkpoint, proof: &[Hash]) -> bool {
        self.log_id == older.log_id
            && verify_consistency(older.size, self.size, &older.root, &self.root, proof)
    }
}

impl SignedCheckpoint {
    /// Checks the signature with the gateway's public key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CheckpointError> {
        let expected = key_id(key);
        if self.key_id != expected {
            return Err(CheckpointError::WrongKey {
                key_id: self.key_id.clone(),
                expected,
            });
        }
        key.verify(&self.checkpoint.signing_message(), &self.signature)
            .map_err(|_| CheckpointError::BadSignature {
                log_id: self.checkpoint.log_id.clone(),
                size: self.checkpoint.size,
                key_id: self.key_id.clone(),
            })
    }
}

/// A key's id: the first 16 hex digits of the SHA-256 of its 32 bytes (the
/// same formula as `accord_domain::agreement::canonical::key_id`).
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, hash_leaf, root};
    use time::macros::datetime;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            log_id: "EE/GOV/70000740/gw1".into(),
            size: 1234,
            root: [0x5a; 32],
            at: datetime!(2026-03-01 12:00:00.5 UTC),
        }
    }

    #[test]
    fn signing_message_is_domain_separated_text() {
        assert_eq!(
            String::from_utf8(checkpoint().signing_message()).unwrap(),
            format!(
                "accord audit checkpoint v1\nlog EE/GOV/70000740/gw1\nsize 1234\nroot {}\nat 1772366400500000000",
                "5a".repeat(32)
            )
        );
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_survives_json() {
        let signed = checkpoint().sign(&key(1));
        assert_eq!(signed.verify(&key(1).verifying_key()), Ok(()));
        let json = serde_json::to_string(&signed).unwrap();
        assert!(json.contains(r#""log_id":"EE/GOV/70000740/gw1""#), "{json}");
        assert!(json.contains(r#""at":"2026-03-01T12:00:00.5Z""#), "{json}");
        assert!(
            json.contains(&format!(r#""root":"{}""#, "5a".repeat(32))),
            "{json}"
        );
        let back: SignedCheckpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.verify(&key(1).verifying_key()), Ok(()));
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let signed = checkpoint().sign(&key(1));
        let public = key(1).verifying_key();
        let edits: [fn(&mut Checkpoint); 4] = [
            |c| c.log_id.push('x'),
            |c| c.size += 1,
            |c| c.root[31] ^= 1,
            |c| c.at += time::Duration::nanoseconds(1),
        ];
        for edit in edits {
            let mut changed = signed.clone();
            edit(&mut changed.checkpoint);
            assert!(matches!(
                changed.verify(&public),
                Err(CheckpointError::BadSignature { .. })
            ));
        }
        let mut flipped = signed.clone();
        let mut bytes = flipped.signature.to_bytes();
        bytes[0] ^= 1;
        flipped.signature = Signature::from_bytes(&bytes);
        assert!(flipped.verify(&public).is_err());
    }

    #[test]
    fn another_key_is_refused_by_id_and_by_signature() {
        let signed = checkpoint().sign(&key(1));
        assert_eq!(
            signed.verify(&key(2).verifying_key()),
            Err(CheckpointError::WrongKey {
                key_id: key_id(&key(1).verifying_key()),
                expected: key_id(&key(2).verifying_key()),
            })
        );
        // Claiming the other key's id does not help.
        let mut relabelled = signed.clone();
        relabelled.key_id = key_id(&key(2).verifying_key());
        assert!(matches!(
            relabelled.verify(&key(2).verifying_key()),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn malformed_json_is_refused_when_read() {
        let signed = checkpoint().sign(&key(1));
        let mut value = serde_json::to_value(&signed).unwrap();
        value["root"] = "abc".into();
        let error = serde_json::from_value::<SignedCheckpoint>(value.clone()).unwrap_err();
        assert!(error.to_string().contains("64 hex digits"), "{error}");
        // Read from text too (the receipts' path), where no string is
        // allocated for the hex.
        let text = serde_json::to_string(&value).unwrap();
        let error = serde_json::from_str::<SignedCheckpoint>(&text).unwrap_err();
        assert!(error.to_string().contains(r#"found "abc""#), "{error}");
        let mut missing = serde_json::to_value(&signed).unwrap();
        missing.as_object_mut().unwrap().remove("key_id");
        let error = serde_json::from_value::<SignedCheckpoint>(missing).unwrap_err();
        assert!(error.to_string().contains("key_id"), "{error}");
        value["root"] = "5a".repeat(32).into();
        value["signature"] = "AAAA".into();
        let error = serde_json::from_value::<SignedCheckpoint>(value).unwrap_err();
        assert!(error.to_string().contains("64 bytes"), "{error}");
    }

    #[test]
    fn a_checkpoint_extends_an_older_one_only_with_a_valid_proof() {
        let leaves: Vec<Hash> = (0u32..20).map(|i| hash_leaf(&i.to_be_bytes())).collect();
        let at = datetime!(2026-03-01 12:00 UTC);
        let cp = |size: u64| Checkpoint {
            log_id: "gw".into(),
            size,
            root: root(&leaves[..size as usize]),
            at,
        };
        let proof = consistency_proof(&leaves, 7, 20).unwrap();
        assert!(cp(20).verify_extends(&cp(7), &proof));
        assert!(!cp(20).verify_extends(&cp(8), &proof));
        let mut other_log = cp(7);
        other_log.log_id = "gw2".into();
        assert!(!cp(20).verify_extends(&other_log, &proof));
        let mut forked = cp(20);
        forked.root[0] ^= 1;
        assert!(!forked.verify_extends(&cp(7), &proof));
    }
}
