//! The provider gateway's signature over an exchange, and its check by the
//! consumer gateway.
//!
//! The provider must sign "a digest binding request and response" so that
//! neither side can later deny the exchange. Signing each response with
//! Ed25519 would cost tens of microseconds of CPU per message on each side.
//! Instead the provider's audit log already commits to everything that
//! matters (ids, client, service, method, path, purpose, agreement and
//! grant, decision, status, SHA-256 of both bodies, time), and each group
//! commit signs one tree head: the provider answers with its audit entry,
//! the signed checkpoint of the commit that made it durable, and the
//! entry's RFC 9162 inclusion proof. One signature covers a whole batch
//! (X-Road's batch signatures work the same way), and the consumer checks
//! it once per batch: a cache remembers checkpoints already verified.
//!
//! The consumer checks that the entry describes *its* exchange (same
//! X-Road-Id, client, service, method, path, purpose, request body hash and
//! the response body and status it received), that the proof places the
//! entry in the checkpoint's tree, and that the checkpoint is signed by the
//! audit key the federation configuration registers for the gateway whose
//! TLS certificate answered. Anything else is a bad signature: the response
//! is not passed on.
//!
//! Wire form (base64url without padding):
//! - `X-Accord-Receipt`, a response header: the entry's RFC 8785 canonical
//!   JSON, the exact bytes that were hashed into the log;
//! - `X-Accord-Receipt-Proof`: JSON `{index, checkpoint, proof}` with the
//!   checkpoint as in the registry's API and the proof as hex hashes.
//!
//! The proof exists only once the provider's group commit is durable. A
//! consumer gateway asks for it after the body (`X-Accord-Proof:
//! after-body`): the provider then sends the head and body as soon as the
//! backend has answered, says so with the same header in its answer, and
//! appends the proof to the body's stream when its commit is done, so the
//! consumer checks the entry and starts its own commit meanwhile, and the
//! two gateways' durable writes overlap instead of following each other.
//! The body's own length is the entry's `response_size`; what follows it
//! is one line, `x-accord-receipt-proof: VALUE`, or, if the provider's log
//! could not take the entry, `x-accord-receipt-error: WHY` (see
//! [`Tail`]). An HTTP/1.1 trailer would say the same, but hyper reads a
//! trailer a byte at a time: a proof of about two kilobytes then took a
//! quarter of a loaded consumer gateway's CPU. Data after the body is read
//! in bulk. Without the request header, for answers that cannot have a
//! body, and whenever the provider's audit log is busy (under load the
//! overlap saves no time and the second write costs CPU on both sides, see
//! [`crate::server`]'s provider side) the proof is a response header, sent
//! after the commit; the answer's `X-Accord-Proof` says which it is.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use accord_audit::{
    hash_leaf, verify_inclusion, AuditEntry, Checkpoint, Hash, Side, SignedCheckpoint,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::audit_store::Receipt;

pub const X_ACCORD_RECEIPT: HeaderName = HeaderName::from_static("x-accord-receipt");
pub const X_ACCORD_RECEIPT_PROOF: HeaderName = HeaderName::from_static("x-accord-receipt-proof");
/// What a streaming provider sends after the body instead of the proof
/// when its audit log could not record the exchange.
pub const X_ACCORD_RECEIPT_ERROR: HeaderName = HeaderName::from_static("x-accord-receipt-error");
/// Asks for (in a request) and announces (in an answer) the proof after the
/// body; its one value is [`AFTER_BODY`].
pub const X_ACCORD_PROOF: HeaderName = HeaderName::from_static("x-accord-proof");
pub const AFTER_BODY: &str = "after-body";

/// The largest tail a consumer reads after the body: a proof holds one
/// hash per level of the provider's tree, so a few kilobytes at most.
pub const MAX_TAIL: usize = 64 * 1024;

/// The most of a provider's reason that is passed on.
const MAX_ERROR_CHARS: usize = 300;

/// What follows the body of an answer sent with [`X_ACCORD_PROOF`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The `X-Accord-Receipt-Proof` value.
    Proof(HeaderValue),
    /// Why the provider's log could not record the exchange.
    Error(String),
}

impl Tail {
    /// The bytes sent after the body: one `name: value` line.
    pub fn encode(&self) -> bytes::Bytes {
        let (name, value) = match self {
            Tail::Proof(v) => (&X_ACCORD_RECEIPT_PROOF, v.as_bytes()),
            Tail::Error(why) => (&X_ACCORD_RECEIPT_ERROR, why.as_bytes()),
        };
        let mut out = Vec::with_capacity(name.as_str().len() + 2 + value.len());
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        bytes::Bytes::from(out)
    }

    /// Reads what followed the body; the error says what is wrong with it.
    pub fn parse(tail: &[u8]) -> Result<Tail, String> {
        if tail.is_empty() {
            return Err("the provider gateway's answer ended without its proof".into());
        }
        let text = std::str::from_utf8(tail)
            .map_err(|_| "what follows the answer's body is not text".to_owned())?;
        let (name, value) = text
            .split_once(": ")
            .ok_or("what follows the answer's body is not a `name: value` line")?;
        let error = name.eq_ignore_ascii_case(X_ACCORD_RECEIPT_ERROR.as_str());
        if !error && !name.eq_ignore_ascii_case(X_ACCORD_RECEIPT_PROOF.as_str()) {
            return Err(format!(
                "what follows the answer's body is {name:?}, not the receipt's proof"
            ));
        }
        // Either value is passed on (the proof as a header, the reason in
        // the client's error message): one line, as a header value is.
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the {name} after the body is not a header value"))?;
        if error {
            let why = value.to_str().unwrap_or_default();
            Ok(Tail::Error(why.chars().take(MAX_ERROR_CHARS).collect()))
        } else {
            Ok(Tail::Proof(value))
        }
    }
}

/// Whether `headers` carry `X-Accord-Proof: after-body`.
pub fn proof_after_body(headers: &HeaderMap) -> bool {
    headers
        .get(X_ACCORD_PROOF)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(AFTER_BODY.as_bytes()))
}

#[derive(Serialize, Deserialize)]
struct ProofWire {
    index: u64,
    checkpoint: SignedCheckpoint,
    proof: Vec<HexHash>,
}

/// A hash of the proof, written and read as 64 hex digits without a string
/// of its own (a proof has one per level of the tree).
#[derive(Serialize, Deserialize)]
struct HexHash(#[serde(with = "accord_audit::serde_bytes::hex32")] Hash);

/// Adds the receipt headers for `entry_bytes` (the canonical bytes that
/// were appended) and its `receipt`.
pub fn add_headers(headers: &mut HeaderMap, entry_bytes: &[u8], receipt: &Receipt) {
    if let Some(v) = entry_value(entry_bytes) {
        headers.insert(X_ACCORD_RECEIPT, v);
    }
    if let Some(v) = proof_value(receipt) {
        headers.insert(X_ACCORD_RECEIPT_PROOF, v);
    }
}

/// The `X-Accord-Receipt` value for an entry's canonical bytes.
pub fn entry_value(entry_bytes: &[u8]) -> Option<HeaderValue> {
    // Base64url is always a valid header value.
    HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(entry_bytes)).ok()
}

/// The `X-Accord-Receipt-Proof` value for a receipt.
pub fn proof_value(receipt: &Receipt) -> Option<HeaderValue> {
    let wire = ProofWire {
        index: receipt.index,
        checkpoint: receipt.checkpoint.clone(),
        proof: receipt
            .inclusion_proof
            .iter()
            .copied()
            .map(HexHash)
            .collect(),
    };
    let proof = serde_json::to_vec(&wire).ok()?;
    HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(proof)).ok()
}

/// What the consumer knows about its exchange, to hold the receipt against.
#[derive(Debug)]
pub struct Expected<'a> {
    pub exchange_id: &'a str,
    pub client: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub purpose: Option<&'a str>,
    pub request_body_sha256: &'a str,
    pub response_body_sha256: &'a str,
    pub status: u16,
    /// The provider gateway's log id (`MEMBER/NAME`, from its TLS identity).
    pub log_id: &'a str,
}

/// A receipt that passed every check: the provider's entry.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entry: AuditEntry,
    pub index: u64,
    pub checkpoint_size: u64,
}

/// Remembers checkpoints whose signature was already checked, so that a
/// batch of responses costs one signature verification. Keyed by the
/// signature, and a hit must match the key and the checkpoint exactly: a
/// valid signature copied onto another checkpoint is no hit.
#[derive(Debug, Default)]
pub struct CheckpointCache {
    inner: Mutex<Remembered>,
}

const CACHE_SIZE: usize = 1024;

/// Verified checkpoints by signature, and their insertion order for
/// eviction.
#[derive(Debug, Default)]
struct Remembered {
    by_signature: HashMap<[u8; 64], ([u8; 32], Checkpoint)>,
    order: VecDeque<[u8; 64]>,
}

impl CheckpointCache {
    fn verified(&self, checkpoint: &SignedCheckpoint, key: &VerifyingKey) -> bool {
        let signature = checkpoint.signature.to_bytes();
        if let Ok(inner) = self.inner.lock() {
            if inner
                .by_signature
                .get(&signature)
                .is_some_and(|(k, c)| k == key.as_bytes() && *c == checkpoint.checkpoint)
            {
                return true;
            }
        }
        if checkpoint.verify(key).is_err() {
            return false;
        }
        if let Ok(mut inner) = self.inner.lock() {
            let value = (*key.as_bytes(), checkpoint.checkpoint.clone());
            if inner.by_signature.insert(signature, value).is_none() {
                inner.order.push_back(signature);
                if inner.order.len() > CACHE_SIZE {
                    if let Some(old) = inner.order.pop_front() {
                        inner.by_signature.remove(&old);
                    }
                }
            }
        }
        true
    }
}

/// Checks the receipt headers of a provider's response. The error says
/// what did not hold, for the consumer's error message and audit entry.
pub fn verify(
    headers: &HeaderMap,
    expected: &Expected<'_>,
    key: &VerifyingKey,
    cache: &CheckpointCache,
) -> Result<Verified, String> {
    let entry = ReceiptEntry::read(headers)?;
    let proof = headers
        .get(X_ACCORD_RECEIPT_PROOF)
        .ok_or("the provider gateway's answer carries no X-Accord-Receipt-Proof")?;
    entry.check(expected)?;
    entry.prove(proof, expected.log_id, key, cache)
}

/// The provider's entry as its answer's headers carry it, before the proof
/// that it is in the provider's log. A provider that streams its answer
/// sends the entry with the headers and the proof after the body, once its
/// group commit is durable; the consumer checks the entry against its
/// exchange first and the proof when it comes.
#[derive(Debug, Clone)]
pub struct ReceiptEntry {
    bytes: Vec<u8>,
    pub entry: AuditEntry,
}

impl ReceiptEntry {
    /// Decodes `X-Accord-Receipt`.
    pub fn read(headers: &HeaderMap) -> Result<ReceiptEntry, String> {
        let entry_b64 = headers
            .get(X_ACCORD_RECEIPT)
            .ok_or("the provider gateway's answer carries no X-Accord-Receipt")?;
        let bytes = URL_SAFE_NO_PAD
            .decode(entry_b64.as_bytes())
            .map_err(|_| "X-Accord-Receipt is not base64url")?;
        let entry = AuditEntry::from_canonical_bytes(&bytes)
            .map_err(|e| format!("X-Accord-Receipt is not an audit entry: {e}"))?;
        Ok(ReceiptEntry { bytes, entry })
    }

    /// Whether the entry describes this exchange.
    pub fn check(&self, expected: &Expected<'_>) -> Result<(), String> {
        let entry = &self.entry;
        let mismatch = |what: &str, found: &str, wanted: &str| {
            Err(format!(
                "the provider's receipt names {what} {found:?}, this exchange has {wanted:?}"
            ))
        };
        if entry.side != Side::Provider {
            return Err("the receipt is not a provider gateway's entry".into());
        }
        if entry.exchange_id != expected.exchange_id {
            return mismatch("X-Road-Id", &entry.exchange_id, expected.exchange_id);
        }
        if entry.client != expected.client {
            return mismatch("client", &entry.client, expected.client);
        }
        if entry.service != expected.service {
            return mismatch("service", &entry.service, expected.service);
        }
        if entry.method != expected.method {
            return mismatch("method", &entry.method, expected.method);
        }
        if entry.path != expected.path {
            return mismatch("path", &entry.path, expected.path);
        }
        if entry.purpose.as_deref() != expected.purpose {
            return mismatch(
                "purpose",
                entry.purpose.as_deref().unwrap_or("none"),
                expected.purpose.unwrap_or("none"),
            );
        }
        if entry.request_body_sha256 != expected.request_body_sha256 {
            return Err("the provider's receipt is for another request body".into());
        }
        if entry.response_body_sha256 != expected.response_body_sha256 {
            return Err("the response body is not the one the provider signed".into());
        }
        if entry.status != expected.status {
            return mismatch(
                "status",
                &entry.status.to_string(),
                &expected.status.to_string(),
            );
        }
        Ok(())
    }

    /// Checks `X-Accord-Receipt-Proof` (`proof_header`) for this entry: the
    /// checkpoint is `log_id`'s, signed with `key`, and the inclusion proof
    /// places the entry in its tree.
    pub fn prove(
        self,
        proof_header: &HeaderValue,
        log_id: &str,
        key: &VerifyingKey,
        cache: &CheckpointCache,
    ) -> Result<Verified, String> {
        let proof_bytes = URL_SAFE_NO_PAD
            .decode(proof_header.as_bytes())
            .map_err(|_| "X-Accord-Receipt-Proof is not base64url")?;
        let wire: ProofWire = serde_json::from_slice(&proof_bytes)
            .map_err(|e| format!("X-Accord-Receipt-Proof is malformed: {e}"))?;
        let proof: Vec<Hash> = wire.proof.iter().map(|h| h.0).collect();
        let cp = &wire.checkpoint.checkpoint;
        if cp.log_id != log_id {
            return Err(format!(
                "the provider's receipt names log {:?}, this exchange has {log_id:?}",
                cp.log_id
            ));
        }
        let leaf = hash_leaf(&self.bytes);
        if !verify_inclusion(&leaf, wire.index, cp.size, &proof, &cp.root) {
            return Err(format!(
                "the inclusion proof does not place the entry at {} in the provider's log of size {}",
                wire.index, cp.size
            ));
        }
        if !cache.verified(&wire.checkpoint, key) {
            return Err(format!(
                "the signature of the provider's checkpoint (log {}, size {}) does not verify with its registered audit key",
                cp.log_id, cp.size
            ));
        }
        Ok(Verified {
            entry: self.entry,
            index: wire.index,
            checkpoint_size: cp.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accord_audit::{AuditDecision, Batch, Checkpoint, CompactRange};
    use ed25519_dalek::SigningKey;

    const LOG: &str = "TEST/GOV/2000/gw1";

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            exchange_id: format!("x-{n}"),
            request_id: format!("r-{n}"),
            at: time::macros::datetime!(2026-03-01 12:00:00 UTC),
            side: Side::Provider,
            client: "TEST/GOV/1000/benefits".into(),
            service: "TEST/GOV/2000/register/people/v1".into(),
            method: "GET".into(),
            path: "/people/{subject}".into(),
            purpose: Some("tax-assessment".into()),
            agreement: None,
            grant: None,
            decision: AuditDecision::Permit,
            status: 200,
            error_type: None,
            request_body_sha256: "aa".repeat(32),
            response_body_sha256: "bb".repeat(32),
            request_size: 0,
            response_size: 3,
            total_us: 10,
            backend_us: None,
            data_subject_pseudonym: None,
        }
    }

    /// The headers a provider sends for entry 1 of a three-entry log.
    fn headers(key: &SigningKey) -> HeaderMap {
        let entries: Vec<AuditEntry> = (0..3).map(entry).collect();
        let bytes: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| e.canonical_bytes().unwrap())
            .collect();
        let leaves: Vec<Hash> = bytes.iter().map(|b| hash_leaf(b)).collect();
        let empty = CompactRange::new();
        let batch = Batch::new(&empty, &leaves);
        let checkpoint = Checkpoint {
            log_id: LOG.into(),
            size: 3,
            root: batch.root(),
            at: time::macros::datetime!(2026-03-01 12:00:01 UTC),
        }
        .sign(key);
        let receipt = Receipt {
            index: 1,
            leaf_hash: leaves[1],
            checkpoint,
            inclusion_proof: batch.inclusion_proof(1).unwrap(),
        };
        let mut headers = HeaderMap::new();
        add_headers(&mut headers, &bytes[1], &receipt);
        headers
    }

    fn expected<'a>(request: &'a str, response: &'a str) -> Expected<'a> {
        Expected {
            exchange_id: "x-1",
            client: "TEST/GOV/1000/benefits",
            service: "TEST/GOV/2000/register/people/v1",
            method: "GET",
            path: "/people/{subject}",
            purpose: Some("tax-assessment"),
            request_body_sha256: request,
            response_body_sha256: response,
            status: 200,
            log_id: LOG,
        }
    }

    #[test]
    fn a_receipt_verifies_only_for_its_own_exchange_and_signer() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let headers = headers(&key);
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let cache = CheckpointCache::default();
        let ok = verify(&headers, &expected(&a, &b), &key.verifying_key(), &cache).unwrap();
        assert_eq!((ok.index, ok.checkpoint_size), (1, 3));

        let wrong = |e: Expected<'_>, says: &str| {
            let error = verify(
                &headers,
                &e,
                &key.verifying_key(),
                &CheckpointCache::default(),
            )
            .unwrap_err();
            assert!(error.contains(says), "{says:?} not in {error:?}");
        };
        wrong(
            Expected {
                exchange_id: "x-2",
                ..expected(&a, &b)
            },
            "X-Road-Id",
        );
        wrong(
            Expected {
                client: "TEST/GOV/3000/x",
                ..expected(&a, &b)
            },
            "client",
        );
        wrong(
            Expected {
                path: "/people/1",
                ..expected(&a, &b)
            },
            "path",
        );
        wrong(
            Expected {
                purpose: None,
                ..expected(&a, &b)
            },
            "purpose",
        );
        wrong(
            Expected {
                status: 500,
                ..expected(&a, &b)
            },
            "status",
        );
        wrong(expected(&"cc".repeat(32), &b), "another request body");
        wrong(
            expected(&a, &"cc".repeat(32)),
            "not the one the provider signed",
        );
        wrong(
            Expected {
                log_id: "TEST/GOV/2000/gw2",
                ..expected(&a, &b)
            },
            "log",
        );
        let error =
            verify(&headers, &expected(&a, &b), &other.verifying_key(), &cache).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");

        // A proof for another position does not place the entry.
        let mut moved = headers.clone();
        let proof = URL_SAFE_NO_PAD
            .decode(moved[X_ACCORD_RECEIPT_PROOF].as_bytes())
            .unwrap();
        let mut wire: ProofWire = serde_json::from_slice(&proof).unwrap();
        wire.index = 2;
        let text = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap());
        moved.insert(
            X_ACCORD_RECEIPT_PROOF,
            HeaderValue::from_str(&text).unwrap(),
        );
        let error = verify(&moved, &expected(&a, &b), &key.verifying_key(), &cache).unwrap_err();
        assert!(error.contains("inclusion proof"), "{error}");

        let mut missing = headers.clone();
        missing.remove(X_ACCORD_RECEIPT);
        let error = verify(&missing, &expected(&a, &b), &key.verifying_key(), &cache).unwrap_err();
        assert!(error.contains("no X-Accord-Receipt"), "{error}");
    }

    #[test]
    fn a_remembered_signature_vouches_only_for_its_own_checkpoint() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let headers = headers(&key);
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let cache = CheckpointCache::default();
        verify(&headers, &expected(&a, &b), &key.verifying_key(), &cache).unwrap();

        // The checkpoint's signature, now remembered, copied onto a
        // checkpoint with another time: the proof still places the entry
        // (size and root are unchanged), the signature must not pass.
        let proof = URL_SAFE_NO_PAD
            .decode(headers[X_ACCORD_RECEIPT_PROOF].as_bytes())
            .unwrap();
        let mut wire: ProofWire = serde_json::from_slice(&proof).unwrap();
        wire.checkpoint.checkpoint.at = time::macros::datetime!(2030-01-01 00:00:00 UTC);
        let mut forged = headers.clone();
        forged.insert(
            X_ACCORD_RECEIPT_PROOF,
            HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap()))
                .unwrap(),
        );
        let error = verify(&forged, &expected(&a, &b), &key.verifying_key(), &cache).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");
        // And the genuine one is still a hit.
        verify(&headers, &expected(&a, &b), &key.verifying_key(), &cache).unwrap();
    }

    #[test]
    fn a_malformed_hash_in_a_proof_says_so() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut headers = headers(&key);
        let proof = URL_SAFE_NO_PAD
            .decode(headers[X_ACCORD_RECEIPT_PROOF].as_bytes())
            .unwrap();
        let mut wire: serde_json::Value = serde_json::from_slice(&proof).unwrap();
        wire["proof"][0] = "zz".into();
        headers.insert(
            X_ACCORD_RECEIPT_PROOF,
            HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).unwrap()))
                .unwrap(),
        );
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let error = verify(
            &headers,
            &expected(&a, &b),
            &key.verifying_key(),
            &CheckpointCache::default(),
        )
        .unwrap_err();
        assert!(
            error.contains("X-Accord-Receipt-Proof is malformed")
                && error.contains("64 hex digits"),
            "{error}"
        );
    }

    #[test]
    fn what_follows_the_body_is_a_proof_or_the_reason_there_is_none() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let proof = headers(&key)[X_ACCORD_RECEIPT_PROOF].clone();
        for tail in [
            Tail::Proof(proof.clone()),
            Tail::Error("the audit log could not record the exchange".into()),
        ] {
            assert_eq!(Tail::parse(&tail.encode()).unwrap(), tail);
        }
        let wire = Tail::Proof(proof).encode();
        assert!(wire.starts_with(b"x-accord-receipt-proof: "));
        // A provider's reason is passed on, but not at any length.
        let long = Tail::Error("x".repeat(10_000)).encode();
        match Tail::parse(&long).unwrap() {
            Tail::Error(why) => assert_eq!(why.len(), MAX_ERROR_CHARS),
            other => panic!("{other:?}"),
        }

        for (tail, says) in [
            (&b""[..], "ended without its proof"),
            (b"\xff\xfe", "not text"),
            (b"x-accord-receipt-proof", "not a `name: value` line"),
            (b"x-other: 1", "\"x-other\""),
            (b"x-accord-receipt-proof: a\nb", "not a header value"),
            (b"x-accord-receipt-error: a\nb", "not a header value"),
        ] {
            let error = Tail::parse(tail).unwrap_err();
            assert!(error.contains(says), "{says:?} not in {error:?}");
        }
    }

    #[test]
    fn only_after_body_asks_for_the_proof_after_the_body() {
        let mut headers = HeaderMap::new();
        assert!(!proof_after_body(&headers));
        headers.insert(X_ACCORD_PROOF, HeaderValue::from_static("After-Body"));
        assert!(proof_after_body(&headers));
        headers.insert(X_ACCORD_PROOF, HeaderValue::from_static("trailers"));
        assert!(!proof_after_body(&headers));
    }
}
