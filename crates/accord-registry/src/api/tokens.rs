//! Tokens: created and revoked by the federation administrator. The secret
//! is in the creation response only; listings show ids, roles and labels.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::catalogue::{check_text, SHORT_TEXT_MAX};
use accord_domain::{MemberId, Role};
use accord_store::{NewToken, TokenRecord};

use super::members::required;
use super::{Body, Checks, Params};
use crate::auth::{issue_token, Authenticated};
use crate::error::{ApiError, ApiResult, Problem};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// A token to create.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    /// `federation-admin` or `member-admin`.
    pub role: Option<String>,
    /// For a member administrator: the member, `INSTANCE/CLASS/CODE`.
    pub member: Option<String>,
    /// What the token is for, e.g. "Tax board CI pipeline".
    pub label: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    /// `federation-admin` or `member-admin`.
    pub role: String,
    pub member: Option<String>,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A new token: the only time its secret is shown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer token to send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// A token's id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    pub id: String,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> Self {
        TokenInfo {
            id: t.id,
            role: t.role.kind().to_owned(),
            member: t.role.member().map(|m| m.to_string()),
            label: t.label,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Creates a token, in one transaction.
pub async fn create_token(
    registry: &Registry,
    role: &Role,
    input: &TokenInput,
) -> ApiResult<CreatedToken> {
    if !role.is_federation_admin() {
        return Err(ApiError::forbidden(format!(
            "only the federation administrator may create tokens; this token is {role}"
        )));
    }
    let mut c = Checks::default();
    let member = match &input.member {
        Some(m) => c.take("member", m.parse::<MemberId>().map_err(|e| e.to_string())),
        None => None,
    };
    let kind = c.take("role", required(&input.role).map(str::to_owned));
    let label = c.take(
        "label",
        check_text(input.label.as_deref().unwrap_or("unnamed"), SHORT_TEXT_MAX),
    );
    c.finish()?;
    let (Some(kind), Some(label)) = (kind, label) else {
        return Err(ApiError::field("role", "is required"));
    };
    let new_role = Role::from_parts(&kind, member).map_err(|e| ApiError::field("role", e))?;
    let issued = issue_token();
    let at = accord_store::now();
    let mut tx = registry.store.begin().await?;
    if let Some(m) = new_role.member() {
        if tx.member(m).await?.is_none() {
            return Err(ApiError::field(
                "member",
                format!("member {m} does not exist"),
            ));
        }
    }
    tx.insert_token(
        &NewToken {
            id: issued.id.clone(),
            secret_sha256: issued.secret_sha256.clone(),
            role: new_role,
            label,
        },
        &at,
    )
    .await?;
    let record = tx
        .token(&issued.id)
        .await?
        .ok_or_else(|| ApiError::internal("token vanished after insert"))?;
    tx.commit().await?;
    tracing::info!(token = %record.id, role = %record.role, "token created");
    Ok(CreatedToken {
        info: record.into(),
        token: issued.token,
    })
}

/// Revokes a token, in one transaction.
pub async fn revoke_token(registry: &Registry, role: &Role, id: &str) -> ApiResult<TokenInfo> {
    if !role.is_federation_admin() {
        return Err(ApiError::forbidden(format!(
            "only the federation administrator may revoke tokens; this token is {role}"
        )));
    }
    let mut tx = registry.store.begin().await?;
    let record = tx
        .token(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("token {id} does not exist")))?;
    if !tx.revoke_token(id, &accord_store::now()).await? {
        return Err(ApiError::conflict(format!(
            "token {id} was already revoked at {}",
            record.revoked_at.unwrap_or_default()
        )));
    }
    let record = tx
        .token(id)
        .await?
        .ok_or_else(|| ApiError::internal("token vanished after revocation"))?;
    tx.commit().await?;
    tracing::info!(token = %id, "token revoked");
    Ok(record.into())
}

/// All tokens, without secrets (federation administrator).
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tokens, oldest first", body = Vec<TokenInfo>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the federation administrator", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(registry): State<Registry>,
    auth: Authenticated,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    auth.require_federation_admin("list tokens")?;
    let tokens = registry.store.tokens().await?;
    Ok(Json(tokens.into_iter().map(TokenInfo::from).collect()))
}

/// Create a token (federation administrator).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = TokenInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The token, with its secret shown this once", body = CreatedToken),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the federation administrator", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create(
    State(registry): State<Registry>,
    auth: Authenticated,
    Body(input): Body<TokenInput>,
) -> ApiResult<impl IntoResponse> {
    let created = create_token(&registry, &auth.role, &input).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke a token (federation administrator).
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(TokenPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The revoked token", body = TokenInfo),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the federation administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already revoked", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn revoke(
    State(registry): State<Registry>,
    Params(path): Params<TokenPath>,
    auth: Authenticated,
) -> ApiResult<Json<TokenInfo>> {
    Ok(Json(revoke_token(&registry, &auth.role, &path.id).await?))
}
