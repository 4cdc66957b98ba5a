//! Members: agencies, municipalities, companies and organisations at every
//! level of government. Adding one is the federation administrator's act.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::catalogue::{check_email, check_text, NAME_MAX, SHORT_TEXT_MAX};
use accord_domain::{Gateway, Member, MemberId, Role, Subsystem};
use accord_store::NewMember;

use super::{Body, CatalogueQuery, Checks, MemberPath, Paged, Params, QueryParams};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(list_members, create_member))
        .routes(routes!(get_member))
}

/// A member to add. Every field is checked and all problems are reported.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    /// `INSTANCE/CLASS/CODE`, with this federation's instance.
    #[schema(example = "DEMO/GOV/70000001")]
    pub id: Option<String>,
    pub name: Option<String>,
    /// local, regional, national or supranational.
    pub level: Option<String>,
    /// ISO 3166-1 alpha-2 code.
    pub country: Option<String>,
    /// public, private or civil-society.
    pub sector: Option<String>,
    /// The parent body's member id, which must already be a member.
    pub parent: Option<String>,
    pub contact: Option<ContactInput>,
}

/// Who to contact at a member.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A member with what it runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberDetail {
    #[serde(flatten)]
    pub member: Member,
    pub subsystems: Vec<Subsystem>,
    pub gateways: Vec<Gateway>,
}

pub(crate) fn required(value: &Option<String>) -> Result<&str, String> {
    value.as_deref().ok_or_else(|| "is required".to_owned())
}

/// Validates a member and adds it, in one transaction.
pub async fn add_member(
    registry: &Registry,
    role: &Role,
    input: &MemberInput,
) -> ApiResult<Member> {
    if !role.is_federation_admin() {
        return Err(ApiError::forbidden(format!(
            "only the federation administrator may add members; this token is {role}"
        )));
    }
    let federation = &registry.federation;
    let mut c = Checks::default();
    let id = c.take(
        "id",
        required(&input.id).and_then(|v| v.parse::<MemberId>().map_err(|e| e.to_string())),
    );
    if let Some(id) = &id {
        if id.instance() != federation.instance {
            c.push(
                "id",
                format!(
                    "instance {:?} is not this federation's instance {:?}",
                    id.instance(),
                    federation.instance
                ),
            );
        }
        if !federation.member_classes.iter().any(|k| k == id.class()) {
            c.push(
                "id",
                format!(
                    "member class {:?} is not one of this federation's: {}",
                    id.class(),
                    federation.member_classes.join(", ")
                ),
            );
        }
    }
    let name = c.take(
        "name",
        required(&input.name).and_then(|v| check_text(v, NAME_MAX)),
    );
    let level = c.take("level", required(&input.level).and_then(|v| v.parse()));
    let country = c.take("country", required(&input.country).and_then(|v| v.parse()));
    let sector = c.take("sector", required(&input.sector).and_then(|v| v.parse()));
    let parent = match &input.parent {
        Some(p) => c.take("parent", p.parse::<MemberId>().map_err(|e| e.to_string())),
        None => None,
    };
    let (mut contact_name, mut contact_email) = (None, None);
    if let Some(contact) = &input.contact {
        if let Some(n) = &contact.name {
            contact_name = c.take("contact.name", check_text(n, SHORT_TEXT_MAX));
        }
        if let Some(e) = &contact.email {
            contact_email = c.take("contact.email", check_email(e));
        }
    }
    c.finish()?;
    let (Some(id), Some(name), Some(level), Some(country), Some(sector)) =
        (id, name, level, country, sector)
    else {
        return Err(ApiError::field("id", "is required"));
    };
    if parent.as_ref() == Some(&id) {
        return Err(ApiError::field(
            "parent",
            "a member cannot be its own parent",
        ));
    }
    let new = NewMember {
        id,
        name,
        level,
        country,
        sector,
        parent,
        contact_name,
        contact_email,
    };
    let mut tx = registry.store.begin().await?;
    if tx.member(&new.id).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "member {} already exists",
            new.id
        )));
    }
    if let Some(parent) = &new.parent {
        if tx.member(parent).await?.is_none() {
            return Err(ApiError::field(
                "parent",
                format!("member {parent} does not exist; add the parent body first"),
            ));
        }
    }
    let at = accord_store::now();
    tx.insert_member(&new, &at).await?;
    let member = tx
        .member(&new.id)
        .await?
        .ok_or_else(|| ApiError::internal("member vanished after insert"))?;
    tx.commit().await?;
    tracing::info!(member = %member.id, "member added");
    Ok(member)
}

/// Search the federation's members.
#[utoipa::path(
    get,
    path = "/api/v1/members",
    tag = "catalogue",
    params(CatalogueQuery),
    responses(
        (status = 200, description = "One page of members, ordered by id", body = Paged<Member>),
        (status = 422, description = "A filter is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_members(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<CatalogueQuery>,
) -> ApiResult<Json<Paged<Member>>> {
    let (filter, page) = query.parse()?;
    Ok(Json(
        registry.store.search_members(&filter, page).await?.into(),
    ))
}

/// Add a member (federation administrator).
#[utoipa::path(
    post,
    path = "/api/v1/members",
    tag = "catalogue",
    request_body = MemberInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The member was added", body = Member),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token is not the federation administrator's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The member exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_member(
    State(registry): State<Registry>,
    auth: Authenticated,
    Body(input): Body<MemberInput>,
) -> ApiResult<impl IntoResponse> {
    let member = add_member(&registry, &auth.role, &input).await?;
    let location = format!("/api/v1/members/{}", member.id.to_encoded());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(member),
    ))
}

/// One member, with its subsystems and gateways.
#[utoipa::path(
    get,
    path = "/api/v1/members/{instance}/{class}/{code}",
    tag = "catalogue",
    params(MemberPath),
    responses(
        (status = 200, description = "The member", body = MemberDetail),
        (status = 404, description = "No such member", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_member(
    State(registry): State<Registry>,
    Params(path): Params<MemberPath>,
) -> ApiResult<Json<MemberDetail>> {
    let id = path.id()?;
    let member = registry
        .store
        .member(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("member {id} does not exist")))?;
    Ok(Json(MemberDetail {
        subsystems: registry.store.subsystems_of(&id).await?,
        gateways: registry.store.gateways(Some(&id)).await?,
        member,
    }))
}
