//! One audit entry: what a gateway records about one exchange, and the
//! exact bytes that the Merkle tree commits to.
//!
//! An entry records an exchange whatever its outcome: permitted and
//! answered, denied by the agreements, or failed (backend down, timeout,
//! malformed request), because a log of successes only cannot show what was
//! refused, and disputes are mostly about refusals. It holds identifiers,
//! the decision with the agreement and grant that allowed the call (or the
//! reason code of the refusal), sizes, timings and SHA-256 hashes of the
//! bodies, never the bodies themselves: the log proves *what* was
//! exchanged without becoming a second copy of the data.
//!
//! Ids are kept as the text that arrived (`client`, `service`), not as
//! parsed `accord-domain` ids: a refused request may carry an id that does
//! not parse, and it must still be recorded as it was.
//!
//! The data subject (e.g. a personal identification code) is never stored:
//! only [`pseudonymize`]'s keyed hash of it. Without the key the pseudonym
//! cannot be reversed by hashing every plausible code (national codes are
//! few enough to enumerate, so a plain hash would not protect them); with
//! the key, "who used my data" can be answered by computing the citizen's
//! pseudonym and searching for it.
//!
//! The tree commits to [`AuditEntry::canonical_bytes`]: the RFC 8785 (JCS)
//! serialization, as agreements use, so the bytes do not depend on field
//! order or whitespace and any tool can recompute them. Absent optional
//! fields are left out rather than written as `null`, so that adding an
//! optional field later does not change the bytes of older entries. The
//! gateway should store exactly these bytes; verification hashes what is
//! stored and never needs to re-serialize (see [`crate::verify`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::merkle::{hash_leaf, Hash};

/// Which gateway wrote the entry: the consumer's or the provider's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Consumer,
    Provider,
}

/// The agreement version that permitted the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementRef {
    pub id: String,
    pub version: u32,
}

/// The gateway's decision. A denial carries a stable reason code: the
/// agreements' codes (`no-agreement`, `purpose-not-covered`, ... as in
/// `accord_domain::agreement::decision::DenyReason::code`) or the gateway's
/// own (e.g. an unknown client certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum AuditDecision {
    Permit,
    Deny { reason: String },
}

/// One exchange, as recorded by one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The `X-Road-Id` of the exchange (the same on both gateways).
    pub exchange_id: String,
    /// The `X-Road-Request-Id` the client sent, if any, or the gateway's own.
    pub request_id: String,
    /// When the request arrived at this gateway.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub side: Side,
    /// The calling subsystem's id, as text (`INSTANCE/CLASS/CODE/SUBSYSTEM`).
    pub client: String,
    /// The called service's id, as text.
    pub service: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The path after the service id, without the query string.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<AgreementRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    pub decision: AuditDecision,
    /// The HTTP status the client was answered with.
    pub status: u16,
    /// The problem type of an error answer (RFC 9457 `type`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Lower-case hex SHA-256 of the request body (of the empty string if
    /// there was none).
    pub request_body_sha256: String,
    /// Lower-case hex SHA-256 of the response body sent to the client.
    pub response_body_sha256: String,
    pub request_size: u64,
    pub response_size: u64,
    /// From the request's arrival to the response's last byte, in µs.
    pub total_us: u64,
    /// Time spent waiting for the other gateway or the backend, in µs;
    /// absent when the request never went further (denied, malformed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_us: Option<u64>,
    /// [`pseudonymize`] of the data subject named by the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_subject_pseudonym: Option<String>,
}

/// Why an entry could not be canonicalized or read back.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("the audit entry cannot be canonicalized (RFC 8785): {0}")]
    Canonicalize(#[source] serde_json::Error),
    #[error("the stored audit entry is not valid JSON of an entry: {0}")]
    Parse(#[source] serde_json::Error),
    #[error("the stored audit entry is not in canonical form (RFC 8785)")]
    NotCanonical,
}

impl AuditEntry {
    /// The RFC 8785 canonical JSON of the entry: what the log stores and
    /// the tree commits to. Fails only for a time that RFC 3339 cannot
    /// express (a year outside 0000–9999).
    ///
    /// The bytes are those `serde_jcs` makes (the tests check it on
    /// arbitrary entries), computed by serializing a private mirror struct,
    /// whose fields are declared in RFC 8785's key order: for this schema
    /// (ASCII keys, strings, integers) JCS is exactly `serde_json`'s compact
    /// output with sorted keys, and that is about ten times faster than
    /// `serde_jcs`'s generic path, on a path every exchange takes. One
    /// difference: RFC 8785 writes numbers as IEEE doubles, so `serde_jcs`
    /// rounds integers above 2^53; these are written exactly. No size
    /// (9 PB) or duration (285 years) reaches that.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EntryError> {
        serde_json::to_vec(&CanonicalEntry::from(self)).map_err(EntryError::Canonicalize)
    }

    /// The entry's leaf hash: `SHA-256(0x00 || canonical bytes)`.
    pub fn leaf_hash(&self) -> Result<Hash, EntryError> {
        Ok(hash_leaf(&self.canonical_bytes()?))
    }

    /// Reads an entry back from its stored canonical bytes, and checks that
    /// they are canonical (so that they are the bytes a gateway writing
    /// this entry would have produced).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        let entry: AuditEntry = serde_json::from_slice(bytes).map_err(EntryError::Parse)?;
        if entry.canonical_bytes()? != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

/// [`AuditEntry`]'s fields by reference, declared in RFC 8785 key order
/// (UTF-16 code units, here plain ASCII byte order), with the same serde
/// attributes; nested objects (`agreement`, `decision`) already serialize
/// their keys in that order.
#[derive(Serialize)]
struct CanonicalEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement: &'a Option<AgreementRef>,
    #[serde(with = "time::serde::rfc3339")]
    at: &'a OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend_us: &'a Option<u64>,
    client: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_subject_pseudonym: &'a Option<String>,
    decision: &'a AuditDecision,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: &'a Option<String>,
    exchange_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    grant: &'a Option<String>,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: &'a Option<String>,
    request_body_sha256: &'a str,
    request_id: &'a str,
    request_size: u64,
    response_body_sha256: &'a str,
    response_size: u64,
    service: &'a str,
    side: Side,
    status: u16,
    total_us: u64,
}

impl<'a> From<&'a AuditEntry> for CanonicalEntry<'a> {
    fn from(entry: &'a AuditEntry) -> Self {
        // No `..`: a field added to `AuditEntry` must be added here too.
        let AuditEntry {
            exchange_id,
            request_id,
            at,
            side,
            client,
            service,
            method,
            path,
            purpose,
            agreement,
            grant,
            decision,
            status,
            error_type,
            request_body_sha256,
            response_body_sha256,
            request_size,
            response_size,
            total_us,
            backend_us,
            data_subject_pseudonym,
        } = entry;
        CanonicalEntry {
            agreement,
            at,
            backend_us,
            client,
            data_subject_pseudonym,
            decision,
            error_type,
            exchange_id,
            grant,
            method,
            path,
            purpose,
            request_body_sha256,
            request_id,
            request_size: *request_size,
            response_body_sha256,
            response_size: *response_size,
            service,
            side: *side,
            status: *status,
            total_us: *total_us,
        }
    }
}

/// The pseudonym of a data subject: lower-case hex HMAC-SHA-256 of the
/// identifier under the gateway's pseudonymization key.
///
/// The identifier is hashed as given: callers normalize it first (e.g.
/// `EE:38001085718`, upper-case country prefix), or the same person gets
/// several pseudonyms.
pub fn pseudonymize(key: &[u8; 32], subject: &str) -> String {
    crate::to_hex(&hmac_sha256(key, subject.as_bytes()))
}

/// HMAC-SHA-256 (RFC 2104 with SHA-256, as RFC 4231 tests it).
///
/// Written here rather than taken from the `hmac` crate because the
/// workspace does not depend on it (it is only in `Cargo.lock` through other
/// crates), and RFC 2104 is ten lines over `sha2`:
/// `H((K' ^ opad) || H((K' ^ ipad) || m))`, where `K'` is the key padded
/// with zeros to the 64-byte block (or, if longer, its hash padded so).
/// RFC 4231's test vectors check it below.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let inner_pad = block_key.map(|b| b ^ 0x36);
    let outer_pad = block_key.map(|b| b ^ 0x5c);
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    /// A permitted provider-side exchange with every field present.
    pub(crate) fn sample_entry(n: u64) -> AuditEntry {
        AuditEntry {
            exchange_id: format!("EE/GOV/70000740/xroad-{n:08}"),
            request_id: format!("req-{n}"),
            at: datetime!(2026-03-01 12:00:00.123456 UTC) + time::Duration::milliseconds(n as i64),
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
            request_body_sha256: hex::encode(Sha256::digest(b"")),
            response_body_sha256: hex::encode(Sha256::digest(n.to_be_bytes())),
            request_size: 0,
            response_size: 412 + n % 100,
            total_us: 1_800 + n % 500,
            backend_us: Some(1_200 + n % 300),
            data_subject_pseudonym: Some(pseudonymize(&[7; 32], &format!("EE:3800108{n:04}"))),
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 §4: test cases 1, 2, 3, 4, 6 and 7 (5 truncates the output).
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                (1..=25).collect(),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(hex::encode(hmac_sha256(&key, &data)), expected);
        }
    }

    #[test]
    fn pseudonyms_are_keyed_and_never_the_subject() {
        let subject = "EE:38001085718";
        let a = pseudonymize(&[1; 32], subject);
        assert_eq!(a.len(), 64);
        assert_eq!(a, pseudonymize(&[1; 32], subject));
        assert_ne!(a, pseudonymize(&[2; 32], subject));
        assert_ne!(a, pseudonymize(&[1; 32], "EE:38001085719"));
        assert_ne!(a, hex::encode(Sha256::digest(subject)));
        assert!(!a.contains("38001085718"));
    }

    #[test]
    fn canonical_bytes_are_rfc_8785_json_without_absent_fields() {
        let mut entry = sample_entry(1);
        entry.agreement = None;
        entry.grant = None;
        entry.purpose = None;
        entry.backend_us = None;
        entry.data_subject_pseudonym = None;
        entry.decision = AuditDecision::Deny {
            reason: "no-agreement".into(),
        };
        entry.status = 403;
        entry.error_type = Some("https://accord.example/problems/denied".into());
        let text = String::from_utf8(entry.canonical_bytes().unwrap()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"at":"2026-03-01T12:00:00.124456Z","client":"EE/GOV/70000562/social-benefits","#,
                r#""decision":{"outcome":"deny","reason":"no-agreement"},"#,
                r#""error_type":"https://accord.example/problems/denied","#,
                r#""exchange_id":"EE/GOV/70000740/xroad-00000001","method":"GET","#,
                r#""path":"/persons/1/residence","request_body_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","#,
                r#""request_id":"req-1","request_size":0,"#,
                r#""response_body_sha256":"cd2662154e6d76b2b2b92e70c0cac3ccf534f9b74eb5b89819ec509083d00a50","#,
                r#""response_size":413,"service":"EE/GOV/70000740/population-register/residence/v1","#,
                r#""side":"provider","status":403,"total_us":1801}"#
            )
        );
    }

    #[test]
    fn canonical_bytes_round_trip_and_hash_as_a_leaf() {
        let entry = sample_entry(42);
        let bytes = entry.canonical_bytes().unwrap();
        assert_eq!(AuditEntry::from_canonical_bytes(&bytes).unwrap(), entry);
        let mut prefixed = vec![0u8];
        prefixed.extend_from_slice(&bytes);
        assert_eq!(
            entry.leaf_hash().unwrap(),
            <[u8; 32]>::from(Sha256::digest(&prefixed))
        );
        // Key order and whitespace do not change what the entry is, but
        // they are not its canonical bytes.
        let pretty = serde_json::to_vec_pretty(&entry).unwrap();
        assert!(matches!(
            AuditEntry::from_canonical_bytes(&pretty),
            Err(EntryError::NotCanonical)
        ));
        assert!(matches!(
            AuditEntry::from_canonical_bytes(b"{}"),
            Err(EntryError::Parse(_))
        ));
    }

    fn text() -> impl Strategy<Value = String> {
        // ASCII, control characters, quotes, backslashes, non-ASCII and
        // characters outside the BMP: everything JSON escaping treats apart.
        prop::collection::vec(
            prop_oneof![
                any::<char>(),
                prop::sample::select(vec!['"', '\\', '\n', '\u{1}', '\u{7f}', '/', 'é', '😀']),
            ],
            0..12,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn arbitrary_entry() -> impl Strategy<Value = AuditEntry> {
        let strings = prop::collection::vec(text(), 12);
        let options = prop::collection::vec(prop::option::of(text()), 5);
        let numbers = prop::collection::vec(0u64..(1 << 53), 5);
        (
            strings,
            options,
            numbers,
            any::<bool>(),
            any::<u16>(),
            prop::option::of(0u64..(1 << 53)),
            any::<bool>(),
            // Years 0000 to 9999, any nanosecond: what RFC 3339 can write.
            (-62_167_219_200i64..253_402_300_800, 0u32..1_000_000_000),
        )
            .prop_map(|(s, o, n, provider, status, backend_us, permit, nanos)| {
                AuditEntry {
                    exchange_id: s[0].clone(),
                    request_id: s[1].clone(),
                    at: OffsetDateTime::from_unix_timestamp(nanos.0).unwrap()
                        + time::Duration::nanoseconds(i64::from(nanos.1)),
                    side: if provider {
                        Side::Provider
                    } else {
                        Side::Consumer
                    },
                    client: s[2].clone(),
                    service: s[3].clone(),
                    method: s[4].clone(),
                    path: s[5].clone(),
                    purpose: o[0].clone(),
                    agreement: o[1].clone().map(|id| AgreementRef {
                        id,
                        version: n[0] as u32,
                    }),
                    grant: o[2].clone(),
                    decision: if permit {
                        AuditDecision::Permit
                    } else {
                        AuditDecision::Deny {
                            reason: s[6].clone(),
                        }
                    },
                    status,
                    error_type: o[3].clone(),
                    request_body_sha256: s[7].clone(),
                    response_body_sha256: s[8].clone(),
                    request_size: n[1],
                    response_size: n[2],
                    total_us: n[3],
                    backend_us,
                    data_subject_pseudonym: o[4].clone(),
                }
            })
    }

    #[test]
    fn integers_beyond_2_53_are_written_exactly() {
        let mut entry = sample_entry(1);
        entry.total_us = (1 << 53) + 1;
        let bytes = entry.canonical_bytes().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""total_us":9007199254740993"#), "{text}");
        assert_eq!(AuditEntry::from_canonical_bytes(&bytes).unwrap(), entry);
    }

    proptest! {
        #[test]
        fn canonical_bytes_are_what_serde_jcs_makes(entry in arbitrary_entry()) {
            let fast = entry.canonical_bytes().unwrap();
            prop_assert_eq!(
                String::from_utf8(fast.clone()).unwrap(),
                String::from_utf8(serde_jcs::to_vec(&entry).unwrap()).unwrap()
            );
            prop_assert_eq!(AuditEntry::from_canonical_bytes(&fast).unwrap(), entry);
        }
    }

    #[test]
    fn every_field_changes_the_leaf_hash() {
        let base = sample_entry(5);
        let base_hash = base.leaf_hash().unwrap();
        let edits: &[fn(&mut AuditEntry)] = &[
            |e| e.exchange_id.push('x'),
            |e| e.request_id.push('x'),
            |e| e.at += time::Duration::microseconds(1),
            |e| e.side = Side::Consumer,
            |e| e.client.push('x'),
            |e| e.service.push('x'),
            |e| e.method = "POST".into(),
            |e| e.path.push('x'),
            |e| e.purpose = None,
            |e| {
                e.agreement = Some(AgreementRef {
                    id: "residence-for-benefits".into(),
                    version: 4,
                })
            },
            |e| e.grant = None,
            |e| {
                e.decision = AuditDecision::Deny {
                    reason: "quota-exhausted".into(),
                }
            },
            |e| e.status = 500,
            |e| e.error_type = Some("timeout".into()),
            |e| e.request_body_sha256 = "00".repeat(32),
            |e| e.response_body_sha256 = "00".repeat(32),
            |e| e.request_size += 1,
            |e| e.response_size += 1,
            |e| e.total_us += 1,
            |e| e.backend_us = None,
            |e| e.data_subject_pseudonym = None,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut changed = base.clone();
            edit(&mut changed);
            assert_ne!(changed.leaf_hash().unwrap(), base_hash, "edit {i}");
        }
    }
}
