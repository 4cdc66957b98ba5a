//! The federation itself: who runs it, what it holds, and its trust anchors
//! (the CA certificate and the configuration-signing public key), which
//! gateways and auditors fetch to check what the federation signs.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(federation))
        .routes(routes!(ca_certificate))
        .routes(routes!(signing_key))
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
