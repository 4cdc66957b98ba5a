//! Members' gateways and the TLS certificates the federation CA issues for
//! them. Certificates are public: anyone may list them, so peers and
//! auditors can check a fingerprint. Issuing and revoking is for the
//! member's administrator or the federation's.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_ca::{CaError, GatewayCertificateRequest, KeySource};
use accord_domain::catalogue::{check_gateway_address, check_text, SHORT_TEXT_MAX};
use accord_domain::id::{validate_part, Part};
use accord_domain::{Gateway, GatewayCertificate, MemberId, Role};
use accord_store::NewCertificate;

use super::members::required;
use super::{Body, Checks, Params, QueryParams};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways))
        .routes(routes!(list_certificates, issue))
        .routes(routes!(get_certificate))
        .routes(routes!(revoke))
}

/// A certificate to issue for a member's gateway.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateInput {
    /// The member that runs the gateway, `INSTANCE/CLASS/CODE`.
    pub member: Option<String>,
    /// The gateway's name within the member, e.g. `gw1`.
    pub gateway: Option<String>,
    /// Where other gateways reach it: `https://host:port`.
    pub address: Option<String>,
    /// A PEM certificate signing request. Without one, the registry makes a
    /// key pair and returns its private key once.
    pub csr_pem: Option<String>,
    /// Days the certificate is valid, 1 to 3650 (default 365).
    pub validity_days: Option<u32>,
}

/// An issued certificate, and the private key when the registry made it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedCertificateResponse {
    pub certificate: GatewayCertificate,
    /// Only when no CSR was given: the gateway's private key, shown once and
    /// not kept by the registry.
    pub private_key_pem: Option<String>,
}

/// Why a certificate is revoked.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeInput {
    pub reason: Option<String>,
}

/// Optional member filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemberQuery {
    /// Only this member's (`INSTANCE/CLASS/CODE`).
    pub member: Option<String>,
}

/// A certificate's serial number.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SerialPath {
    /// Lower-case hexadecimal, 16 digits.
    pub serial: String,
}

impl MemberQuery {
    fn member(&self) -> ApiResult<Option<MemberId>> {
        self.member
            .as_deref()
            .map(|m| m.parse::<MemberId>())
            .transpose()
            .map_err(|e| ApiError::field("member", e.to_string()))
    }
}

fn ca_error(e: CaError) -> ApiError {
    match e {
        CaError::CsrPem(_)
        | CaError::CsrStructure(_)
        | CaError::CsrSignature
        | CaError::CsrKeyAlgorithm(_)
        | CaError::CsrSignatureAlgorithm(_) => ApiError::field("csr_pem", e.to_string()),
        CaError::InvalidHost { .. } => ApiError::field("address", e.to_string()),
        CaError::InvalidValidity { .. } => ApiError::field("validity_days", e.to_string()),
        CaError::InvalidName { .. } => ApiError::field("gateway", e.to_string()),
        other => ApiError::internal(other),
    }
}

/// Issues a gateway certificate (registering the gateway, or moving it to
/// the given address), in one transaction.
pub async fn issue_certificate(
    registry: &Registry,
    role: &Role,
    input: &CertificateInput,
) -> ApiResult<IssuedCertificateResponse> {
    let mut c = Checks::default();
    let member = c.take(
        "member",
        required(&input.member).and_then(|v| v.parse::<MemberId>().map_err(|e| e.to_string())),
    );
    let gateway = c.take(
        "gateway",
        required(&input.gateway).and_then(|v| {
            validate_part(Part::Subsystem, v)
                .map(|_| v.to_owned())
                .map_err(|e| e.to_string().replace("subsystem code", "gateway name"))
        }),
    );
    let address = c.take("address", required(&input.address).map(str::to_owned));
    let host = address
        .as_deref()
        .and_then(|a| c.take("address", check_gateway_address(a)));
    let validity_days = input.validity_days.unwrap_or(365);
    if !(1..=accord_ca::MAX_VALIDITY_DAYS).contains(&validity_days) {
        c.push(
            "validity_days",
            format!(
                "must be between 1 and {}, found {validity_days}",
                accord_ca::MAX_VALIDITY_DAYS
            ),
        );
    }
    if let Some(csr) = &input.csr_pem {
        if csr.len() > 64 * 1024 {
            c.push("csr_pem", "is larger than 64 KiB");
        }
    }
    c.finish()?;
    let (Some(member), Some(gateway), Some(address), Some(host)) = (member, gateway, address, host)
    else {
        return Err(ApiError::field("member", "is required"));
    };
    if !role.may_administer(&member) {
        return Err(ApiError::forbidden(format!(
            "{role} may not request certificates for {member}"
        )));
    }
    let request = GatewayCertificateRequest {
        member_id: member.to_string(),
        gateway_name: gateway.clone(),
        hosts: vec![host],
        key: match &input.csr_pem {
            Some(pem) => KeySource::Csr(pem.clone()),
            None => KeySource::Generate,
        },
        validity_days,
        // Random, positive, 63 bits: unpredictable serials are what RFC 5280's
        // guidance on certificate serials asks of a CA.
        serial: rand::thread_rng().gen_range(1..=i64::MAX as u64),
    };
    let mut tx = registry.store.begin().await?;
    if tx.member(&member).await?.is_none() {
        return Err(ApiError::field(
            "member",
            format!("member {member} does not exist"),
        ));
    }
    let issued = registry
        .keys()
        .issue_gateway_certificate(&request)
        .map_err(ca_error)?;
    let at = accord_store::now();
    let existing = tx.gateway(&member, &gateway).await?;
    tx.upsert_gateway(
        &Gateway {
            member: member.clone(),
            name: gateway.clone(),
            address,
            audit_key_pem: None,
            created_at: existing.map_or_else(|| at.clone(), |g| g.created_at),
        },
        &at,
    )
    .await?;
    tx.insert_certificate(
        &NewCertificate {
            serial: issued.serial_hex.clone(),
            member: member.clone(),
            gateway,
            subject: issued.subject.clone(),
            fingerprint_sha256: issued.fingerprint_sha256.clone(),
            not_before: accord_store::format_time(issued.not_before),
            not_after: accord_store::format_time(issued.not_after),
            certificate_pem: issued.certificate_pem.clone(),
        },
        &at,
    )
    .await?;
    let certificate = tx
        .certificate(&issued.serial_hex)
        .await?
        .ok_or_else(|| ApiError::internal("certificate vanished after insert"))?;
    tx.commit().await?;
    tracing::info!(serial = %certificate.serial, member = %member, "gateway certificate issued");
    Ok(IssuedCertificateResponse {
        certificate,
        private_key_pem: issued.private_key_pem,
    })
}

/// Revokes a certificate, in one transaction.
pub async fn revoke_certificate(
    registry: &Registry,
    role: &Role,
    serial: &str,
    input: &RevokeInput,
) -> ApiResult<GatewayCertificate> {
    let reason =
        check_text(input.reason.as_deref().unwrap_or(""), SHORT_TEXT_MAX).map_err(|e| {
            ApiError::field("reason", format!("{e}: say why the certificate is revoked"))
        })?;
    let mut tx = registry.store.begin().await?;
    let cert = tx
        .certificate(serial)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("certificate {serial} does not exist")))?;
    if !role.may_administer(&cert.member) {
        return Err(ApiError::forbidden(format!(
            "{role} may not revoke certificates of {}",
            cert.member
        )));
    }
    let at = accord_store::now();
    if !tx.revoke_certificate(serial, &reason, &at).await? {
        return Err(ApiError::conflict(format!(
            "certificate {serial} was already revoked at {}",
            cert.revoked_at.unwrap_or_default()
        )));
    }
    let cert = tx
        .certificate(serial)
        .await?
        .ok_or_else(|| ApiError::internal("certificate vanished after revocation"))?;
    tx.commit().await?;
    tracing::info!(serial, "gateway certificate revoked");
    Ok(cert)
}

/// The federation's gateways.
#[utoipa::path(
    get,
    path = "/api/v1/gateways",
    tag = "gateways",
    params(MemberQuery),
    responses(
        (status = 200, description = "Gateways, ordered by member and name", body = Vec<Gateway>),
        (status = 422, description = "The member filter is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_gateways(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<MemberQuery>,
) -> ApiResult<Json<Vec<Gateway>>> {
    let member = query.member()?;
    Ok(Json(registry.store.gateways(member.as_ref()).await?))
}

/// Certificates the federation CA issued to gateways, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/gateway-certificates",
    tag = "gateways",
    params(MemberQuery),
    responses(
        (status = 200, description = "Certificates, oldest first", body = Vec<GatewayCertificate>),
        (status = 422, description = "The member filter is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_certificates(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<MemberQuery>,
) -> ApiResult<Json<Vec<GatewayCertificate>>> {
    let member = query.member()?;
    Ok(Json(registry.store.certificates(member.as_ref()).await?))
}

/// Issue a certificate for a member's gateway (its administrator, or the federation's).
#[utoipa::path(
    post,
    path = "/api/v1/gateway-certificates",
    tag = "gateways",
    request_body = CertificateInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The certificate, and the key if the registry made it", body = IssuedCertificateResponse),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not act for this member", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn issue(
    State(registry): State<Registry>,
    auth: Authenticated,
    Body(input): Body<CertificateInput>,
) -> ApiResult<impl IntoResponse> {
    let issued = issue_certificate(&registry, &auth.role, &input).await?;
    let location = format!("/api/v1/gateway-certificates/{}", issued.certificate.serial);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(issued),
    ))
}

/// One certificate.
#[utoipa::path(
    get,
    path = "/api/v1/gateway-certificates/{serial}",
    tag = "gateways",
    params(SerialPath),
    responses(
        (status = 200, description = "The certificate", body = GatewayCertificate),
        (status = 404, description = "No such certificate", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_certificate(
    State(registry): State<Registry>,
    Params(path): Params<SerialPath>,
) -> ApiResult<Json<GatewayCertificate>> {
    registry
        .store
        .certificate(&path.serial)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("certificate {} does not exist", path.serial)))
}

/// Revoke a certificate (the member's administrator, or the federation's).
#[utoipa::path(
    post,
    path = "/api/v1/gateway-certificates/{serial}/revoke",
    tag = "gateways",
    params(SerialPath),
    request_body = RevokeInput,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The revoked certificate", body = GatewayCertificate),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not act for this member", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such certificate", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No reason given", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(registry): State<Registry>,
    Params(path): Params<SerialPath>,
    auth: Authenticated,
    Body(input): Body<RevokeInput>,
) -> ApiResult<Json<GatewayCertificate>> {
    Ok(Json(
        revoke_certificate(&registry, &auth.role, &path.serial, &input).await?,
    ))
}
