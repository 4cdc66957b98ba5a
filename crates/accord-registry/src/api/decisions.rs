//! `explain`: what the agreements in force decide for a request, and why.
//!
//! The registry compiles the versions in force into the same index the
//! gateways use and asks it, so an official can check a call before any
//! system makes it. Quota counters live on the gateways; the registry
//! decides as if none were used yet, and says so.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::agreement::decision::{Decision, DecisionRequest, DenyReason, NoQuotaUsed};
use accord_domain::agreement::index::{Index, IndexedAgreement};
use accord_domain::{ServiceId, SubsystemId};

use super::members::required;
use super::{Body, Checks};
use crate::error::{ApiError, ApiResult, Problem};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new().routes(routes!(explain))
}

/// A request to decide.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    /// The calling subsystem, as in `X-Road-Client`.
    #[schema(example = "DEMO/MUN/75000001/social-benefits")]
    pub client: Option<String>,
    /// The service called.
    #[schema(example = "DEMO/GOV/70000002/population-register/residence/v1")]
    pub service: Option<String>,
    #[schema(example = "GET")]
    pub method: Option<String>,
    /// Path after the service id.
    #[schema(example = "/persons/38001010000/residence")]
    pub path: Option<String>,
    pub purpose: Option<String>,
    /// Whether the request names a data subject.
    #[serde(default)]
    pub data_subject: bool,
    /// When; now if absent (RFC 3339).
    pub at: Option<String>,
}

/// What the agreements decide.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    /// `permit` or `deny`.
    pub decision: String,
    pub agreement: Option<String>,
    pub version: Option<u32>,
    pub grant: Option<String>,
    pub reason: Option<DenyReason>,
    pub explanation: String,
    pub at: String,
    /// Versions in force that were considered.
    pub agreements_in_force: usize,
    pub note: String,
}

/// Decides a request against every agreement in force.
pub async fn decide(registry: &Registry, input: &DecisionInput) -> ApiResult<DecisionView> {
    let mut c = Checks::default();
    let client = c.take(
        "client",
        required(&input.client).and_then(|v| v.parse::<SubsystemId>().map_err(|e| e.to_string())),
    );
    let service = c.take(
        "service",
        required(&input.service).and_then(|v| v.parse::<ServiceId>().map_err(|e| e.to_string())),
    );
    let method = c.take(
        "method",
        required(&input.method).map(|m| m.to_ascii_uppercase()),
    );
    let path = c.take(
        "path",
        input.path.clone().map_or(Ok("/".to_owned()), |p| {
            if p.starts_with('/') {
                Ok(p)
            } else {
                Err(format!("{p:?} must start with \"/\""))
            }
        }),
    );
    let at = match &input.at {
        None => Some(OffsetDateTime::now_utc()),
        Some(text) => c.take(
            "at",
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}")),
        ),
    };
    c.finish()?;
    let (Some(client), Some(service), Some(method), Some(path), Some(at)) =
        (client, service, method, path, at)
    else {
        return Err(ApiError::field("client", "is required"));
    };
    super::agreements::expire_due(registry).await?;
    let in_force = registry.store.versions_in_force().await?;
    let count = in_force.len();
    let index = Index::compile(in_force.into_iter().map(|v| IndexedAgreement {
        id: v.id,
        version: v.version,
        state: v.state,
        terms: v.terms,
    }));
    let request = DecisionRequest {
        consumer: &client,
        service: &service,
        method: &method,
        path: &path,
        purpose: input.purpose.as_deref(),
        data_subject: input.data_subject,
        at: at.unix_timestamp(),
    };
    let decision = index.decide(&request, &NoQuotaUsed);
    let explanation = decision.explain();
    let (verdict, agreement, version, grant, reason) = match &decision {
        Decision::Permit(p) => (
            "permit",
            Some(p.agreement.to_string()),
            Some(p.version),
            Some(p.grant.to_owned()),
            None,
        ),
        Decision::Deny(d) => (
            "deny",
            d.agreement.as_ref().map(|a| a.agreement.to_string()),
            d.agreement.as_ref().map(|a| a.version),
            d.agreement.as_ref().and_then(|a| a.grant.clone()),
            Some(d.reason),
        ),
    };
    Ok(DecisionView {
        decision: verdict.to_owned(),
        agreement,
        version,
        grant,
        reason,
        explanation,
        at: accord_store::format_time(at),
        agreements_in_force: count,
        note: "quotas are counted on the gateways; this decision assumes none were used".into(),
    })
}

/// Explain what the agreements in force decide for a request.
#[utoipa::path(post, path = "/api/v1/decisions", tag = "agreements", request_body = DecisionInput,
    responses((status = 200, description = "The decision and why", body = DecisionView),
              (status = 422, description = "The request is not valid", body = Problem, content_type = "application/problem+json")))]
async fn explain(
    State(registry): State<Registry>,
    Body(input): Body<DecisionInput>,
) -> ApiResult<Json<DecisionView>> {
    Ok(Json(decide(&registry, &input).await?))
}
