//! Operational monitoring ingest: gateways send batches of records (no
//! bodies) signed with their audit key; the registry stores each record
//! once, whatever the number of retries, for the indicators of the
//! agreements and for citizens' view of who used their data.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::agreement::RuleViolation;
use accord_domain::monitoring::{check_record, OperationalRecord, RecordBatch, MAX_BATCH};
use accord_domain::FieldError;

use super::audit::{gateway_audit_key, parse_log_id};
use super::{Body, QueryParams};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new().routes(routes!(list_records, submit_records))
}

/// What happened to a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchReceipt {
    /// Records stored now.
    pub accepted: usize,
    /// Records the registry already had from this gateway.
    pub duplicates: usize,
}

/// A stored record and the gateway that reported it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StoredRecord {
    pub gateway: String,
    #[serde(flatten)]
    pub record: OperationalRecord,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// Only records of this agreement.
    pub agreement: Option<String>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<i64>,
}

/// Verifies and stores a batch, in one transaction.
pub async fn ingest(registry: &Registry, batch: &RecordBatch) -> ApiResult<BatchReceipt> {
    let (member, gateway) =
        parse_log_id(&batch.gateway).map_err(|e| ApiError::field("gateway", e))?;
    if batch.records.len() > MAX_BATCH {
        return Err(ApiError::field(
            "records",
            format!(
                "has {} records, the limit is {MAX_BATCH}",
                batch.records.len()
            ),
        ));
    }
    let errors: Vec<FieldError> = batch
        .records
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            check_record(r).into_iter().map(move |(field, reason)| {
                FieldError::new(format!("records[{i}].{field}"), reason)
            })
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let mut tx = registry.store.begin().await?;
    let key = gateway_audit_key(&mut tx, &member, &gateway).await?;
    batch.verify(&key).map_err(|e| {
        ApiError::violation(
            ProblemKind::InvalidInput,
            RuleViolation::new("batch-signature-invalid", e),
        )
    })?;
    let at = accord_store::now();
    let accepted = usize::try_from(
        tx.insert_operational_records(&batch.gateway, &batch.records, &at)
            .await?,
    )
    .unwrap_or(usize::MAX);
    tx.commit().await?;
    Ok(BatchReceipt {
        accepted,
        duplicates: batch.records.len() - accepted,
    })
}

/// Report a batch of operational records (self-authenticating: signed with the gateway's audit key; idempotent).
#[utoipa::path(post, path = "/api/v1/monitoring/records", tag = "monitoring", request_body = RecordBatch,
    responses((status = 200, description = "Stored; records already held are counted as duplicates", body = BatchReceipt),
              (status = 422, description = "Unknown gateway, bad signature or invalid records", body = Problem, content_type = "application/problem+json")))]
async fn submit_records(
    State(registry): State<Registry>,
    Body(batch): Body<RecordBatch>,
) -> ApiResult<Json<BatchReceipt>> {
    Ok(Json(ingest(&registry, &batch).await?))
}

/// Operational records, oldest first (federation administrator).
#[utoipa::path(get, path = "/api/v1/monitoring/records", tag = "monitoring", params(RecordQuery), security(("bearer" = [])),
    responses((status = 200, description = "Records", body = Vec<StoredRecord>),
              (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "Not the federation administrator", body = Problem, content_type = "application/problem+json")))]
async fn list_records(
    State(registry): State<Registry>,
    auth: Authenticated,
    QueryParams(query): QueryParams<RecordQuery>,
) -> ApiResult<Json<Vec<StoredRecord>>> {
    auth.require_federation_admin("read operational records")?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and 10000, found {limit}"),
        ));
    }
    let records = registry
        .store
        .operational_records(query.agreement.as_deref(), limit)
        .await?;
    Ok(Json(
        records
            .into_iter()
            .map(|(gateway, record)| StoredRecord { gateway, record })
            .collect(),
    ))
}
