//! Audit anchoring: gateways send the registry signed checkpoints of their
//! audit logs, and the registry keeps them, so that a log rewritten after
//! the fact no longer matches what the registry holds.
//!
//! A checkpoint authenticates itself: it is signed with the gateway's audit
//! key, whose public half the member registered on its gateway record. So
//! sending one needs no token, and sending the same one twice is harmless.
//! The registry accepts a larger checkpoint only with a consistency proof
//! from the one it holds (RFC 9162), and refuses a different root for a
//! size it already holds: that is a forked log, and it says so.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_audit::checkpoint::SignedCheckpoint;
use accord_audit::merkle::Hash;
use accord_domain::agreement::RuleViolation;
use accord_domain::{Gateway, MemberId, Role};
use accord_store::CheckpointRecord;

use super::members::required;
use super::{Body, Params, QueryParams};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(set_audit_key))
        .routes(routes!(list_checkpoints, submit_checkpoint))
}

/// A gateway's audit key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditKeyInput {
    /// The Ed25519 public key (PEM) its checkpoints are signed with.
    pub public_key_pem: Option<String>,
}

/// A checkpoint to anchor, with the proof that it extends the last one held.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSubmission {
    /// `{log_id, size, root (hex), at, key_id, signature (base64)}`; the log
    /// id is the gateway's, `INSTANCE/CLASS/CODE/GATEWAY`.
    #[schema(value_type = Object)]
    pub checkpoint: SignedCheckpoint,
    /// Hex hashes of the RFC 9162 consistency proof from the largest
    /// checkpoint the registry holds for this log (empty for the first).
    #[serde(default)]
    pub consistency_proof: Vec<String>,
}

/// An anchored checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnchoredCheckpoint {
    pub log_id: String,
    pub size: i64,
    pub root: String,
    pub at: String,
    pub key_id: String,
    pub signature: String,
    pub received_at: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GatewayPath {
    pub instance: String,
    pub class: String,
    pub code: String,
    pub gateway: String,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The log, `INSTANCE/CLASS/CODE/GATEWAY`.
    pub log: Option<String>,
}

impl From<CheckpointRecord> for AnchoredCheckpoint {
    fn from(c: CheckpointRecord) -> Self {
        AnchoredCheckpoint {
            log_id: c.log_id,
            size: c.size,
            root: c.root,
            at: c.at,
            key_id: c.key_id,
            signature: c.signature,
            received_at: c.received_at,
        }
    }
}

/// Splits `INSTANCE/CLASS/CODE/GATEWAY` into the member and the gateway name.
pub(crate) fn parse_log_id(log_id: &str) -> Result<(MemberId, String), String> {
    let (member, gateway) = log_id.rsplit_once('/').ok_or_else(|| {
        format!("{log_id:?} is not a gateway log id (INSTANCE/CLASS/CODE/GATEWAY)")
    })?;
    let member: MemberId = member
        .parse()
        .map_err(|e: accord_domain::IdError| e.to_string())?;
    Ok((member, gateway.to_owned()))
}

fn violation(kind: ProblemKind, rule: &'static str, detail: String) -> ApiError {
    ApiError::violation(kind, RuleViolation::new(rule, detail))
}

/// The audit key registered for gateway `name` of `member`.
pub(crate) async fn gateway_audit_key(
    tx: &mut accord_store::Tx,
    member: &MemberId,
    name: &str,
) -> ApiResult<ed25519_dalek::VerifyingKey> {
    let log_id = format!("{member}/{name}");
    let record = tx.gateway(member, name).await?.ok_or_else(|| {
        violation(
            ProblemKind::InvalidInput,
            "unknown-log",
            format!("{log_id} is not a registered gateway"),
        )
    })?;
    let key_pem = record.audit_key_pem.ok_or_else(|| {
        violation(
            ProblemKind::InvalidInput,
            "no-audit-key",
            format!("gateway {log_id} has registered no audit key"),
        )
    })?;
    accord_ca::parse_public_key_pem(&key_pem).map_err(ApiError::internal)
}

/// Registers the key a gateway signs its audit checkpoints with.
pub async fn register_audit_key(
    registry: &Registry,
    role: &Role,
    member: &MemberId,
    gateway: &str,
    input: &AuditKeyInput,
) -> ApiResult<Gateway> {
    if !role.may_administer(member) {
        return Err(ApiError::forbidden(format!(
            "{role} may not change gateways of {member}"
        )));
    }
    let pem = required(&input.public_key_pem).map_err(|e| ApiError::field("public_key_pem", e))?;
    let key = accord_ca::parse_public_key_pem(pem)
        .map_err(|e| ApiError::field("public_key_pem", e.to_string()))?;
    let mut tx = registry.store.begin().await?;
    let normalized = accord_ca::public_key_pem(&key);
    if !tx
        .set_gateway_audit_key(member, gateway, &normalized, &accord_store::now())
        .await?
    {
        return Err(ApiError::not_found(format!(
            "{member} has no gateway {gateway}; issue it a certificate first"
        )));
    }
    let updated = tx
        .gateway(member, gateway)
        .await?
        .ok_or_else(|| ApiError::internal("gateway vanished after update"))?;
    tx.commit().await?;
    Ok(updated)
}

/// Verifies and keeps a checkpoint; returns it and whether it was new.
pub async fn anchor(
    registry: &Registry,
    submission: &CheckpointSubmission,
) -> ApiResult<(AnchoredCheckpoint, bool)> {
    let cp = &submission.checkpoint;
    let log_id = &cp.checkpoint.log_id;
    let (member, gateway) =
        parse_log_id(log_id).map_err(|e| ApiError::field("checkpoint.log_id", e))?;
    let mut proof: Vec<Hash> = Vec::with_capacity(submission.consistency_proof.len());
    for (i, h) in submission.consistency_proof.iter().enumerate() {
        let bytes = hex::decode(h).ok().and_then(|b| <Hash>::try_from(b).ok());
        match bytes {
            Some(hash) => proof.push(hash),
            None => {
                return Err(ApiError::field(
                    &format!("consistency_proof[{i}]"),
                    "is not a 32-byte hex hash",
                ))
            }
        }
    }
    let mut tx = registry.store.begin().await?;
    let key = gateway_audit_key(&mut tx, &member, &gateway).await?;
    cp.verify(&key).map_err(|e| {
        violation(
            ProblemKind::InvalidInput,
            "checkpoint-signature-invalid",
            e.to_string(),
        )
    })?;
    let size = i64::try_from(cp.checkpoint.size)
        .map_err(|_| ApiError::field("checkpoint.size", "is too large"))?;
    let root_hex = hex::encode(cp.checkpoint.root);
    // The signature covers the time to the nanosecond: keep it whole.
    let at = cp
        .checkpoint
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(ApiError::internal)?;
    if let Some(latest) = tx.latest_checkpoint(log_id).await? {
        if size == latest.size {
            if latest.root == root_hex {
                return Ok((latest.into(), false));
            }
            tracing::warn!(log = %log_id, size, "forked audit log: a different root for an anchored size");
            return Err(violation(
                ProblemKind::Conflict,
                "fork-detected",
                format!("the registry holds root {} for size {size} of {log_id}, this checkpoint says {root_hex}: the log forked", latest.root),
            ));
        }
        if size < latest.size {
            return Err(violation(
                ProblemKind::Conflict,
                "older-than-anchored",
                format!(
                    "the registry already holds size {} of {log_id}; a log never shrinks",
                    latest.size
                ),
            ));
        }
        let older = accord_audit::checkpoint::Checkpoint {
            log_id: log_id.clone(),
            size: u64::try_from(latest.size).unwrap_or_default(),
            root: hex::decode(&latest.root)
                .ok()
                .and_then(|b| <Hash>::try_from(b).ok())
                .ok_or_else(|| ApiError::internal("a stored checkpoint root is corrupt"))?,
            at: cp.checkpoint.at,
        };
        if !cp.checkpoint.verify_extends(&older, &proof) {
            tracing::warn!(log = %log_id, size, "audit checkpoint is not an extension of the anchored one");
            return Err(violation(
                ProblemKind::Conflict,
                "not-an-extension",
                format!("the consistency proof does not show size {size} extending the anchored size {} of {log_id}: the log was rewritten or forked", latest.size),
            ));
        }
    }
    let record = CheckpointRecord {
        log_id: log_id.clone(),
        size,
        root: root_hex,
        at,
        key_id: cp.key_id.clone(),
        signature: STANDARD.encode(cp.signature.to_bytes()),
        received_at: accord_store::now(),
    };
    tx.insert_checkpoint(&record).await?;
    tx.commit().await?;
    Ok((record.into(), true))
}

/// Register the Ed25519 key a gateway signs its audit checkpoints with (the member's administrator).
#[utoipa::path(put, path = "/api/v1/gateways/{instance}/{class}/{code}/{gateway}/audit-key", tag = "audit", params(GatewayPath), request_body = AuditKeyInput, security(("bearer" = [])),
    responses((status = 200, description = "The gateway", body = Gateway),
              (status = 403, description = "Not this member's token", body = Problem, content_type = "application/problem+json"),
              (status = 404, description = "No such gateway", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Not an Ed25519 public key", body = Problem, content_type = "application/problem+json")))]
async fn set_audit_key(
    State(registry): State<Registry>,
    Params(path): Params<GatewayPath>,
    auth: Authenticated,
    Body(input): Body<AuditKeyInput>,
) -> ApiResult<Json<Gateway>> {
    let member = MemberId::new(&path.instance, &path.class, &path.code)
        .map_err(|e| ApiError::not_found(format!("no such member: {e}")))?;
    Ok(Json(
        register_audit_key(&registry, &auth.role, &member, &path.gateway, &input).await?,
    ))
}

/// Anchor a signed audit checkpoint (self-authenticating: signed with the gateway's audit key).
#[utoipa::path(post, path = "/api/v1/audit/checkpoints", tag = "audit", request_body = CheckpointSubmission,
    responses((status = 201, description = "Anchored", body = AnchoredCheckpoint),
              (status = 200, description = "Already anchored", body = AnchoredCheckpoint),
              (status = 409, description = "Forked, older than anchored, or not an extension", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Unknown log, no key, or a bad signature", body = Problem, content_type = "application/problem+json")))]
async fn submit_checkpoint(
    State(registry): State<Registry>,
    Body(input): Body<CheckpointSubmission>,
) -> ApiResult<impl IntoResponse> {
    let (anchored, new) = anchor(&registry, &input).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(anchored)))
}

/// The checkpoints the registry holds for a gateway's log, smallest first.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints", tag = "audit", params(LogQuery),
    responses((status = 200, description = "Checkpoints", body = Vec<AnchoredCheckpoint>),
              (status = 422, description = "No valid log id", body = Problem, content_type = "application/problem+json")))]
async fn list_checkpoints(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<LogQuery>,
) -> ApiResult<Json<Vec<AnchoredCheckpoint>>> {
    let log = required(&query.log).map_err(|e| ApiError::field("log", e))?;
    parse_log_id(log).map_err(|e| ApiError::field("log", e))?;
    let checkpoints = registry.store.checkpoints(log).await?;
    Ok(Json(
        checkpoints
            .into_iter()
            .map(AnchoredCheckpoint::from)
            .collect(),
    ))
}
