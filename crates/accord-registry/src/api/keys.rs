//! The purpose vocabulary and members' signing keys: the two things an
//! agreement refers to besides the catalogue. Purposes are the federation
//! administrator's; a member registers (and revokes) the public halves of
//! its own signing keys — the private halves never reach the registry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::agreement::canonical::key_id;
use accord_domain::catalogue::{check_text, DESCRIPTION_MAX};
use accord_domain::{MemberId, Role};
use accord_store::{PurposeRecord, SigningKeyRecord};

use super::members::required;
use super::{Body, MemberPath, Params};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(list_purposes, create_purpose))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurposeInput {
    #[schema(example = "school-enrolment")]
    pub code: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Purpose {
    pub code: String,
    pub description: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyInput {
    /// The Ed25519 public key, PEM (SubjectPublicKeyInfo).
    pub public_key_pem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigningKey {
    pub key_id: String,
    pub member: MemberId,
    pub public_key_pem: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    pub key_id: String,
}

impl From<SigningKeyRecord> for SigningKey {
    fn from(k: SigningKeyRecord) -> Self {
        SigningKey {
            key_id: k.key_id,
            member: k.member,
            public_key_pem: k.public_key_pem,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

impl From<PurposeRecord> for Purpose {
    fn from(p: PurposeRecord) -> Self {
        Purpose {
            code: p.code,
            description: p.description,
            created_at: p.created_at,
        }
    }
}

/// Adds a purpose to the vocabulary (federation administrator).
pub async fn add_purpose(
    registry: &Registry,
    role: &Role,
    input: &PurposeInput,
) -> ApiResult<Purpose> {
    if !role.is_federation_admin() {
        return Err(ApiError::forbidden(format!(
            "only the federation administrator may add purposes; this token is {role}"
        )));
    }
    let code = required(&input.code).map_err(|e| ApiError::field("code", e))?;
    let code_ok = (3..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !code_ok {
        return Err(ApiError::field(
            "code",
            format!(
                "{code:?} is not a purpose code (3 to 64 lower-case letters, digits and hyphens)"
            ),
        ));
    }
    let description = check_text(input.description.as_deref().unwrap_or(""), DESCRIPTION_MAX)
        .map_err(|e| ApiError::field("description", e))?;
    let at = accord_store::now();
    let mut tx = registry.store.begin().await?;
    if tx.purpose_codes().await?.iter().any(|c| c == code) {
        return Err(ApiError::conflict(format!("purpose {code} already exists")));
    }
    tx.insert_purpose(code, &description, &at).await?;
    tx.commit().await?;
    Ok(Purpose {
        code: code.to_owned(),
        description,
        created_at: at,
    })
}

/// Registers a member's signing public key (that member's administrator).
pub async fn register_key(
    registry: &Registry,
    role: &Role,
    member: &MemberId,
    input: &SigningKeyInput,
) -> ApiResult<SigningKey> {
    if !role.may_administer(member) {
        return Err(ApiError::forbidden(format!(
            "{role} may not register keys for {member}"
        )));
    }
    let pem = required(&input.public_key_pem).map_err(|e| ApiError::field("public_key_pem", e))?;
    let public = accord_ca::parse_public_key_pem(pem)
        .map_err(|e| ApiError::field("public_key_pem", e.to_string()))?;
    let record = SigningKeyRecord {
        key_id: key_id(&public),
        member: member.clone(),
        public_key_pem: accord_ca::public_key_pem(&public),
        created_at: accord_store::now(),
        revoked_at: None,
    };
    let mut tx = registry.store.begin().await?;
    if tx.member(member).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "member {member} does not exist"
        )));
    }
    if let Some(existing) = tx.signing_key(&record.key_id).await? {
        return Err(ApiError::conflict(format!(
            "key {} is already registered (for {})",
            existing.key_id, existing.member
        )));
    }
    tx.insert_signing_key(&record).await?;
    tx.commit().await?;
    tracing::info!(member = %member, key = %record.key_id, "signing key registered");
    Ok(record.into())
}

/// The federation's purposes: what agreements may allow data to be used for.
#[utoipa::path(get, path = "/api/v1/purposes", tag = "agreements",
    responses((status = 200, description = "The vocabulary", body = Vec<Purpose>)))]
async fn list_purposes(State(registry): State<Registry>) -> ApiResult<Json<Vec<Purpose>>> {
    let purposes = registry.store.purposes().await?;
    Ok(Json(purposes.into_iter().map(Purpose::from).collect()))
}

/// Add a purpose (federation administrator).
#[utoipa::path(post, path = "/api/v1/purposes", tag = "agreements", request_body = PurposeInput, security(("bearer" = [])),
    responses((status = 201, description = "Added", body = Purpose),
              (status = 403, description = "Not the federation administrator", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Exists", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Not valid", body = Problem, content_type = "application/problem+json")))]
async fn create_purpose(
    State(registry): State<Registry>,
    auth: Authenticated,
    Body(input): Body<PurposeInput>,
) -> ApiResult<impl IntoResponse> {
    let purpose = add_purpose(&registry, &auth.role, &input).await?;
    Ok((StatusCode::CREATED, Json(purpose)))
}

/// A member's signing keys, revoked ones included.
#[utoipa::path(get, path = "/api/v1/members/{instance}/{class}/{code}/signing-keys", tag = "agreements", params(MemberPath),
    responses((status = 200, description = "Keys, oldest first", body = Vec<SigningKey>)))]
async fn list_keys(
    State(registry): State<Registry>,
    Params(path): Params<MemberPath>,
) -> ApiResult<Json<Vec<SigningKey>>> {
    let member = path.id()?;
    let keys = registry.store.signing_keys_of(&member).await?;
    Ok(Json(keys.into_iter().map(SigningKey::from).collect()))
}

/// Register a signing public key (the member's administrator).
#[utoipa::path(post, path = "/api/v1/members/{instance}/{class}/{code}/signing-keys", tag = "agreements", params(MemberPath), request_body = SigningKeyInput, security(("bearer" = [])),
    responses((status = 201, description = "Registered", body = SigningKey),
              (status = 403, description = "Not this member's token", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Already registered", body = Problem, content_type = "application/problem+json"),
              (status = 422, description = "Not an Ed25519 public key", body = Problem, content_type = "application/problem+json")))]
async fn create_key(
    State(registry): State<Registry>,
    Params(path): Params<MemberPath>,
    auth: Authenticated,
    Body(input): Body<SigningKeyInput>,
) -> ApiResult<impl IntoResponse> {
    let member = path.id()?;
    let key = register_key(&registry, &auth.role, &member, &input).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Revoke a signing key (its member's administrator): signatures made with it no longer count.
#[utoipa::path(post, path = "/api/v1/signing-keys/{key_id}/revoke", tag = "agreements", params(KeyPath), security(("bearer" = [])),
    responses((status = 200, description = "Revoked", body = SigningKey),
              (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json")))]
async fn revoke_key(
    State(registry): State<Registry>,
    Params(path): Params<KeyPath>,
    auth: Authenticated,
) -> ApiResult<Json<SigningKey>> {
    let mut tx = registry.store.begin().await?;
    let key = tx.signing_key(&path.key_id).await?.ok_or_else(|| {
        ApiError::not_found(format!("signing key {} does not exist", path.key_id))
    })?;
    auth.require_member(&key.member)?;
    if !tx
        .revoke_signing_key(&key.key_id, &accord_store::now())
        .await?
    {
        return Err(ApiError::conflict(format!(
            "signing key {} is already revoked",
            key.key_id
        )));
    }
    let key = tx
        .signing_key(&path.key_id)
        .await?
        .ok_or_else(|| ApiError::internal("key vanished after revocation"))?;
    tx.commit().await?;
    Ok(Json(key.into()))
}
