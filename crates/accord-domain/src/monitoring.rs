//! Operational monitoring records: what flowed, without the bodies.
//!
//! Each gateway reports one record per exchange it handled, with the
//! fields of X-Road's operational monitoring (the four leg timestamps,
//! client, service, method, path, sizes, status, success, error) plus what
//! Accord adds: purpose, the agreement and grant that allowed it or the
//! reason it was denied, and the data subject as a keyed pseudonym. The
//! registry computes agreements' indicators from them and shows citizens
//! who used their data. Gateways send them in batches signed with their
//! audit key, so a batch authenticates itself; a record's id makes sending
//! it twice harmless.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// Most records in one batch.
pub const MAX_BATCH: usize = 10_000;

/// One exchange, as one gateway saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationalRecord {
    /// Unique within the gateway: the `X-Road-Id` and the side.
    pub record_id: String,
    /// `consumer` or `provider`.
    pub side: String,
    pub client: String,
    pub service: String,
    pub method: String,
    pub path: String,
    pub purpose: Option<String>,
    pub agreement: Option<String>,
    pub agreement_version: Option<u32>,
    pub grant: Option<String>,
    /// The deny reason code, for refused exchanges.
    pub deny_reason: Option<String>,
    pub status: u16,
    pub success: bool,
    pub error_type: Option<String>,
    /// Unix milliseconds: request in, request out, response in, response out.
    pub request_in_ms: i64,
    pub request_out_ms: Option<i64>,
    pub response_in_ms: Option<i64>,
    pub response_out_ms: i64,
    pub request_size: u64,
    pub response_size: u64,
    /// The data subject, only as the federation's keyed pseudonym.
    pub data_subject_pseudonym: Option<String>,
}

/// Records from one gateway, signed with its audit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBatch {
    /// The gateway, `INSTANCE/CLASS/CODE/GATEWAY`.
    pub gateway: String,
    pub records: Vec<OperationalRecord>,
    /// Base64 Ed25519 signature over [`batch_signing_message`].
    pub signature: String,
}

/// [`OperationalRecord`] by reference with its fields declared in RFC 8785
/// key order. For this schema (ASCII keys; strings, booleans, integers
/// below 2^53) RFC 8785 is exactly `serde_json`'s compact output with
/// sorted keys, which this gives without `serde_jcs`'s generic path (a
/// value tree and a sort per object): gateways sign, and the registry
/// verifies, thousands of records a second. The tests hold it to
/// `serde_jcs`.
#[derive(Serialize)]
struct CanonicalRecord<'a> {
    agreement: &'a Option<String>,
    agreement_version: &'a Option<u32>,
    client: &'a str,
    data_subject_pseudonym: &'a Option<String>,
    deny_reason: &'a Option<String>,
    error_type: &'a Option<String>,
    grant: &'a Option<String>,
    method: &'a str,
    path: &'a str,
    purpose: &'a Option<String>,
    record_id: &'a str,
    request_in_ms: i64,
    request_out_ms: Option<i64>,
    request_size: u64,
    response_in_ms: Option<i64>,
    response_out_ms: i64,
    response_size: u64,
    service: &'a str,
    side: &'a str,
    status: u16,
    success: bool,
}

impl<'a> From<&'a OperationalRecord> for CanonicalRecord<'a> {
    fn from(r: &'a OperationalRecord) -> Self {
        CanonicalRecord {
            agreement: &r.agreement,
            agreement_version: &r.agreement_version,
            client: &r.client,
            data_subject_pseudonym: &r.data_subject_pseudonym,
            deny_reason: &r.deny_reason,
            error_type: &r.error_type,
            grant: &r.grant,
            method: &r.method,
            path: &r.path,
            purpose: &r.purpose,
            record_id: &r.record_id,
            request_in_ms: r.request_in_ms,
            request_out_ms: r.request_out_ms,
            request_size: r.request_size,
            response_in_ms: r.response_in_ms,
            response_out_ms: r.response_out_ms,
            response_size: r.response_size,
            service: &r.service,
            side: &r.side,
            status: r.status,
            success: r.success,
        }
    }
}

/// What a gateway's audit key signs for a batch: the gateway and the
/// SHA-256 of the records' canonical form (RFC 8785).
pub fn batch_signing_message(
    gateway: &str,
    records: &[OperationalRecord],
) -> Result<Vec<u8>, String> {
    let mirrored: Vec<CanonicalRecord<'_>> = records.iter().map(CanonicalRecord::from).collect();
    let canonical = serde_json::to_vec(&mirrored).map_err(|e| e.to_string())?;
    let digest = hex::encode(Sha256::digest(&canonical));
    Ok(format!("accord operational records v1\n{gateway}\n{digest}").into_bytes())
}

impl RecordBatch {
    /// Signs `records` as `gateway`.
    pub fn sign(
        gateway: &str,
        records: Vec<OperationalRecord>,
        key: &SigningKey,
    ) -> Result<RecordBatch, String> {
        let message = batch_signing_message(gateway, &records)?;
        Ok(RecordBatch {
            gateway: gateway.to_owned(),
            signature: STANDARD.encode(key.sign(&message).to_bytes()),
            records,
        })
    }

    /// Checks the signature with the gateway's audit key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        let message = batch_signing_message(&self.gateway, &self.records)?;
        let bytes = STANDARD
            .decode(&self.signature)
            .map_err(|_| "the batch signature is not base64".to_owned())?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|_| "the batch signature is not an Ed25519 signature".to_owned())?;
        key.verify(&message, &signature).map_err(|_| {
            format!(
                "the batch signature does not verify with the audit key of {}",
                self.gateway
            )
        })
    }
}

/// Checks one record's fields; the problems name the field.
pub fn check_record(r: &OperationalRecord) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut bad = |field: &str, reason: String| out.push((field.to_owned(), reason));
    if r.record_id.is_empty() || r.record_id.len() > 200 {
        bad("record_id", "must be 1 to 200 characters".into());
    }
    if r.side != "consumer" && r.side != "provider" {
        bad(
            "side",
            format!("{:?} is neither consumer nor provider", r.side),
        );
    }
    for (field, value) in [
        ("client", &r.client),
        ("service", &r.service),
        ("path", &r.path),
    ] {
        if value.len() > 2000 {
            bad(field, "is longer than 2000 characters".into());
        }
    }
    if r.method.is_empty()
        || r.method.len() > 16
        || !r.method.bytes().all(|b| b.is_ascii_uppercase())
    {
        bad("method", format!("{:?} is not an HTTP method", r.method));
    }
    if !(100..=599).contains(&r.status) {
        bad("status", format!("{} is not an HTTP status", r.status));
    }
    if r.response_out_ms < r.request_in_ms {
        bad(
            "response_out_ms",
            "the response left before the request arrived".into(),
        );
    }
    if r.deny_reason.is_some() && r.success {
        bad("success", "a denied exchange cannot have succeeded".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_canonical_form_is_rfc_8785() {
        let mut records: Vec<OperationalRecord> = (0..5).map(record).collect();
        records[1].purpose = Some("tax-assessment".into());
        records[1].agreement = Some("a".into());
        records[1].agreement_version = Some(3);
        records[2].path = "/p\u{1f}\"\\/é€😀\n\t".into();
        records[2].error_type = Some("Server.X".into());
        records[3].data_subject_pseudonym = Some("ab".repeat(32));
        records[3].request_out_ms = Some(1_700_000_000_123);
        records[3].response_in_ms = Some(1_700_000_000_456);
        records[4].deny_reason = Some("no-agreement".into());
        records[4].success = false;
        records[4].request_size = 9_007_199_254_740_991;
        let mirrored: Vec<CanonicalRecord<'_>> =
            records.iter().map(CanonicalRecord::from).collect();
        assert_eq!(
            serde_json::to_vec(&mirrored).unwrap(),
            serde_jcs::to_vec(&records).unwrap()
        );
    }

    pub(crate) fn record(n: u32) -> OperationalRecord {
        OperationalRecord {
            record_id: format!("id-{n}/provider"),
            side: "provider".into(),
            client: "DEMO/MUN/1/benefits".into(),
            service: "DEMO/GOV/2/pop/residence/v1".into(),
            method: "GET".into(),
            path: format!("/persons/{n}/residence"),
            purpose: Some("social-benefit-eligibility".into()),
            agreement: Some("town-residence".into()),
            agreement_version: Some(1),
            grant: Some("residence".into()),
            deny_reason: None,
            status: 200,
            success: true,
            error_type: None,
            request_in_ms: 1_000,
            request_out_ms: Some(1_001),
            response_in_ms: Some(1_010),
            response_out_ms: 1_011,
            request_size: 0,
            response_size: 120,
            data_subject_pseudonym: Some("ab".repeat(32)),
        }
    }

    #[test]
    fn batches_are_signed_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let batch = RecordBatch::sign("DEMO/GOV/2/gw1", vec![record(1), record(2)], &key).unwrap();
        batch.verify(&key.verifying_key()).unwrap();
        let mut changed = batch.clone();
        changed.records[1].status = 500;
        assert!(changed.verify(&key.verifying_key()).is_err());
        let mut moved = batch.clone();
        moved.gateway = "DEMO/GOV/2/gw2".into();
        assert!(moved.verify(&key.verifying_key()).is_err());
        let other = SigningKey::from_bytes(&[2; 32]);
        assert!(batch.verify(&other.verifying_key()).is_err());
    }

    #[test]
    fn records_are_checked_field_by_field() {
        assert!(check_record(&record(1)).is_empty());
        let mut r = record(1);
        r.side = "both".into();
        r.status = 42;
        r.method = "get".into();
        r.deny_reason = Some("no-agreement".into());
        let fields: Vec<String> = check_record(&r).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["side", "method", "status", "success"]);
    }
}
