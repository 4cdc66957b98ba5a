//! The federation itself: who runs it, what it holds, and its trust anchors
//! (the CA certificate and the configuration-signing public key), which
//! gateways and auditors fetch to check what the federation signs.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::configuration::SignedConfiguration;

use super::QueryParams;
use crate::error::ApiResult;
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(federation))
        .routes(routes!(ca_certificate))
        .routes(routes!(signing_key))
        .routes(routes!(configuration))
}

/// Long polling for the configuration.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigurationQuery {
    /// With `If-None-Match`: wait up to this many seconds (at most 60) for
    /// a configuration other than the one named, then answer 304.
    pub wait: Option<u64>,
}

/// Longest a long poll may wait.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// The signed federation configuration gateways run on (conditional requests and long polling).
#[utoipa::path(
    get,
    path = "/api/v1/federation/configuration",
    tag = "federation",
    params(ConfigurationQuery, ("If-None-Match" = Option<String>, Header, description = "The ETag (digest) of the configuration held")),
    responses(
        (status = 200, description = "The configuration, signed with the federation's key; its digest is the ETag", body = SignedConfiguration),
        (status = 304, description = "Unchanged since the ETag given"),
    )
)]
async fn configuration(
    State(registry): State<Registry>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<ConfigurationQuery>,
) -> ApiResult<Response> {
    let held = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        });
    let wait = std::time::Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = crate::configuration::current(&registry).await?;
        let etag = format!("\"{}\"", current.signed.digest);
        if held.as_deref() != Some(current.signed.digest.as_str()) {
            return Ok((
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (header::ETAG, etag),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                current.json.clone(),
            )
                .into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The federation and a summary of its catalogue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FederationInfo {
    pub instance: String,
    pub name: String,
    pub member_classes: Vec<String>,
    /// SHA-256 of the CA certificate's DER, lower-case hex.
    pub ca_fingerprint_sha256: String,
    pub created_at: String,
    pub members: i64,
    pub subsystems: i64,
    pub services: i64,
}

/// The federation.
#[utoipa::path(
    get,
    path = "/api/v1/federation",
    tag = "federation",
    responses((status = 200, description = "The federation", body = FederationInfo))
)]
async fn federation(State(registry): State<Registry>) -> ApiResult<Json<FederationInfo>> {
    let (members, subsystems, services) = registry.store.counts().await?;
    let f = &registry.federation;
    Ok(Json(FederationInfo {
        instance: f.instance.clone(),
        name: f.name.clone(),
        member_classes: f.member_classes.clone(),
        ca_fingerprint_sha256: f.ca_fingerprint_sha256.clone(),
        created_at: f.created_at.clone(),
        members,
        subsystems,
        services,
    }))
}

/// The federation CA's certificate (PEM).
#[utoipa::path(
    get,
    path = "/api/v1/federation/ca.pem",
    tag = "federation",
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file", body = String))
)]
async fn ca_certificate(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        registry.federation.ca_certificate_pem.clone(),
    )
}

/// The federation's Ed25519 signing public key (PEM), the anchor gateways verify configuration with.
#[utoipa::path(
    get,
    path = "/api/v1/federation/signing-key.pem",
    tag = "federation",
    responses((status = 200, description = "PEM public key", content_type = "application/x-pem-file", body = String))
)]
async fn signing_key(State(registry): State<Registry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        registry.federation.signing_public_key_pem.clone(),
    )
}
