//! The canonical form of an agreement version and the signatures on it.
//!
//! The canonical form is the RFC 8785 (JCS) serialization of the version's
//! identity (federation, agreement id, version, the version it supersedes)
//! and its terms; its SHA-256 digest is what every party signs. JCS makes
//! the bytes independent of key order, whitespace and number spelling, so
//! two parties that hold the same terms compute the same digest, and any
//! change to the terms changes it. A signature is Ed25519 over a
//! domain-separated message naming the digest, so a signature made for an
//! agreement can never be replayed as a signature over anything else.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{AgreementId, AgreementTerms, RuleViolation};

#[derive(Serialize)]
struct CanonicalVersion<'a> {
    federation: &'a str,
    agreement: &'a AgreementId,
    version: u32,
    supersedes: Option<u32>,
    terms: &'a AgreementTerms,
}

/// The canonical bytes of an agreement version.
pub fn canonical_bytes(
    federation: &str,
    agreement: &AgreementId,
    version: u32,
    supersedes: Option<u32>,
    terms: &AgreementTerms,
) -> Result<Vec<u8>, RuleViolation> {
    serde_jcs::to_vec(&CanonicalVersion {
        federation,
        agreement,
        version,
        supersedes,
        terms,
    })
    .map_err(|e| {
        RuleViolation::new(
            "not-canonicalizable",
            format!("the terms cannot be canonicalized (RFC 8785): {e}"),
        )
    })
}

/// The lower-case hex SHA-256 digest of the canonical form.
pub fn digest(
    federation: &str,
    agreement: &AgreementId,
    version: u32,
    supersedes: Option<u32>,
    terms: &AgreementTerms,
) -> Result<String, RuleViolation> {
    let bytes = canonical_bytes(federation, agreement, version, supersedes, terms)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// What a party's key signs for a digest.
pub fn signing_message(digest_hex: &str) -> Vec<u8> {
    format!("accord agreement signature v1\n{digest_hex}").into_bytes()
}

/// Signs a digest; returns the signature in base64.
pub fn sign(key: &SigningKey, digest_hex: &str) -> String {
    STANDARD.encode(key.sign(&signing_message(digest_hex)).to_bytes())
}

/// Checks a base64 signature over a digest.
pub fn verify(
    key: &VerifyingKey,
    digest_hex: &str,
    signature_b64: &str,
) -> Result<(), RuleViolation> {
    let bytes = STANDARD.decode(signature_b64.trim()).map_err(|_| {
        RuleViolation::at(
            "malformed-signature",
            "signature",
            "the signature is not base64",
        )
    })?;
    let signature = Signature::from_slice(&bytes).map_err(|_| {
        RuleViolation::at(
            "malformed-signature",
            "signature",
            format!(
                "an Ed25519 signature has 64 bytes, this one has {}",
                bytes.len()
            ),
        )
    })?;
    key.verify(&signing_message(digest_hex), &signature)
        .map_err(|_| {
            RuleViolation::at(
                "signature-invalid",
                "signature",
                format!("the signature does not verify over digest {digest_hex} with this key"),
            )
        })
}

/// A key's id: the first 16 hex digits of the SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::terms::*;
    use proptest::prelude::*;

    pub(crate) fn sample_terms() -> AgreementTerms {
        serde_json::from_value(serde_json::json!({
            "title": "Residence data for social benefits",
            "description": "Tallinn reads residence from the population register",
            "parties": [
                {"member": "DEMO/GOV/70000002", "roles": ["provider"]},
                {"member": "DEMO/MUN/75000001", "roles": ["consumer", "funder"]}
            ],
            "grants": [{
                "id": "residence",
                "services": {"services": ["DEMO/GOV/70000002/population-register/residence/v1"]},
                "consumers": ["DEMO/MUN/75000001/social-benefits"],
                "purposes": ["social-benefit-eligibility"],
                "operations": [{"methods": ["GET"], "path": "/persons/*/residence"}],
                "quotas": [{"limit": 1000, "per": "day"}],
                "data_subject_required": true
            }],
            "commitments": [{
                "party": "DEMO/MUN/75000001",
                "contribution": {"type": "budget", "amount": 25000.0, "currency": "EUR"},
                "period": {"from": "2026-01-01", "until": "2026-12-31"}
            }],
            "validity": {"start": "2026-01-01T00:00:00Z", "end": "2028-12-31T23:59:59Z"}
        }))
        .unwrap()
    }

    fn id() -> AgreementId {
        "tallinn-residence".parse().unwrap()
    }

    #[test]
    fn canonical_form_is_independent_of_key_order_whitespace_and_number_spelling() {
        let terms = sample_terms();
        let reference = digest("DEMO", &id(), 1, None, &terms).unwrap();
        // The same terms written by someone else: keys in another order,
        // other whitespace, and the amount spelled 2.5E4.
        let rewritten = r#"{
            "validity": {"end": "2028-12-31T23:59:59Z", "start": "2026-01-01T00:00:00Z"},
            "commitments": [{"period": {"until": "2026-12-31", "from": "2026-01-01"},
                "contribution": {"currency": "EUR", "amount": 2.5E4, "type": "budget"},
                "party": "DEMO/MUN/75000001"}],
            "grants": [{"data_subject_required": true, "quotas": [{"per": "day", "limit": 1000}],
                "operations": [{"path": "/persons/*/residence", "methods": ["GET"]}],
                "purposes": ["social-benefit-eligibility"],
                "consumers": ["DEMO/MUN/75000001/social-benefits"],
                "services": {"services": ["DEMO/GOV/70000002/population-register/residence/v1"]},
                "id": "residence"}],
            "parties": [{"roles": ["provider"], "member": "DEMO/GOV/70000002"},
                        {"roles": ["consumer", "funder"], "member": "DEMO/MUN/75000001"}],
            "description": "Tallinn reads residence from the population register",
            "title": "Residence data for social benefits"
        }"#;
        let reparsed: AgreementTerms = serde_json::from_str(rewritten).unwrap();
        assert_eq!(
            digest("DEMO", &id(), 1, None, &reparsed).unwrap(),
            reference
        );
        let text =
            String::from_utf8(canonical_bytes("DEMO", &id(), 1, None, &terms).unwrap()).unwrap();
        assert!(
            text.contains("\"amount\":25000,"),
            "numbers in ECMAScript form: {text}"
        );
        assert!(
            text.starts_with("{\"agreement\":\"tallinn-residence\",\"federation\":"),
            "keys sorted: {text}"
        );
        assert!(
            !text.contains(": ") && !text.contains('\n'),
            "no insignificant whitespace"
        );
    }

    #[test]
    fn signatures_bind_the_digest_and_the_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let d = digest("DEMO", &id(), 1, None, &sample_terms()).unwrap();
        let sig = sign(&key, &d);
        verify(&key.verifying_key(), &d, &sig).unwrap();
        assert_eq!(
            verify(&other.verifying_key(), &d, &sig).unwrap_err().rule,
            "signature-invalid"
        );
        let d2 = digest("DEMO", &id(), 2, Some(1), &sample_terms()).unwrap();
        assert_eq!(
            verify(&key.verifying_key(), &d2, &sig).unwrap_err().rule,
            "signature-invalid"
        );
        assert_eq!(
            verify(&key.verifying_key(), &d, "!!").unwrap_err().rule,
            "malformed-signature"
        );
        assert_eq!(key_id(&key.verifying_key()).len(), 16);
    }

    fn mutate(terms: &mut AgreementTerms, which: u8, n: i64) {
        match which % 6 {
            0 => terms.title.push('x'),
            1 => terms.grants[0].purposes.push(format!("purpose-{n}")),
            2 => terms.grants[0].quotas[0].limit += n.max(1),
            3 => terms.grants[0].data_subject_required = !terms.grants[0].data_subject_required,
            4 => terms.grants[0].operations[0].path.push_str("/x"),
            _ => terms.parties[1].roles.push(PartyRole::Observer),
        }
    }

    proptest! {
        #[test]
        fn any_change_to_signed_terms_invalidates_the_signatures(which in 0u8..6, n in 1i64..1000) {
            let key = SigningKey::from_bytes(&[9u8; 32]);
            let terms = sample_terms();
            let d = digest("DEMO", &id(), 1, None, &terms).unwrap();
            let sig = sign(&key, &d);
            let mut changed = terms.clone();
            mutate(&mut changed, which, n);
            let d2 = digest("DEMO", &id(), 1, None, &changed).unwrap();
            prop_assert_ne!(&d, &d2);
            prop_assert!(verify(&key.verifying_key(), &d2, &sig).is_err());
        }

        #[test]
        fn canonical_bytes_survive_any_json_round_trip(indent in 0usize..4, amount in 0u32..1_000_000) {
            let mut terms = sample_terms();
            terms.commitments[0].contribution = Contribution::Budget { amount: f64::from(amount), currency: "EUR".into() };
            let reference = canonical_bytes("DEMO", &id(), 1, None, &terms).unwrap();
            let value = serde_json::to_value(&terms).unwrap();
            let text = if indent == 0 { value.to_string() } else { serde_json::to_string_pretty(&value).unwrap() };
            let back: AgreementTerms = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(canonical_bytes("DEMO", &id(), 1, None, &back).unwrap(), reference);
        }
    }
}
