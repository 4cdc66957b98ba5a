//! Subsystems and the services they offer, with each service's OpenAPI
//! document stored whole and served back. A member administrator may change
//! only its own member's subsystems and services.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use accord_domain::catalogue::{
    check_data_category, check_openapi, check_text, DATA_CATEGORIES_MAX, DESCRIPTION_MAX, NAME_MAX,
};
use accord_domain::id::{validate_part, Part};
use accord_domain::{MemberId, Role, Service, ServiceId, Subsystem, SubsystemId};
use accord_store::{NewService, NewSubsystem};

use super::members::required;
use super::{Body, CatalogueQuery, Checks, MemberPath, Paged, Params, QueryParams};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, Problem, ProblemKind};
use crate::Registry;

pub(super) fn router() -> OpenApiRouter<Registry> {
    OpenApiRouter::new()
        .routes(routes!(create_subsystem))
        .routes(routes!(create_service))
        .routes(routes!(list_services))
        .routes(routes!(get_service))
        .routes(routes!(get_versioned_service))
        .routes(routes!(get_openapi))
        .routes(routes!(get_versioned_openapi))
}

/// A subsystem to add to a member.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubsystemInput {
    #[schema(example = "population")]
    pub code: Option<String>,
    pub name: Option<String>,
}

/// A service to add to a subsystem.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceInput {
    #[schema(example = "residence")]
    pub code: Option<String>,
    #[schema(example = "v1")]
    pub version: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Whether the service processes personal data.
    pub personal_data: Option<bool>,
    #[serde(default)]
    pub data_categories: Vec<String>,
    /// The service's OpenAPI 3 document: a JSON object, or a string holding one.
    #[schema(value_type = Object)]
    pub openapi: Option<serde_json::Value>,
}

/// A service, with where to fetch its OpenAPI document.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceDetail {
    #[serde(flatten)]
    pub service: Service,
    /// Path of the service's OpenAPI document on this registry.
    pub openapi_url: String,
}

/// Path of a subsystem.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubsystemPath {
    pub instance: String,
    pub class: String,
    pub code: String,
    pub subsystem: String,
}

/// Path of a service without a version.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServicePath {
    pub instance: String,
    pub class: String,
    pub code: String,
    pub subsystem: String,
    pub service: String,
}

/// Path of a versioned service.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct VersionedServicePath {
    pub instance: String,
    pub class: String,
    pub code: String,
    pub subsystem: String,
    pub service: String,
    pub version: String,
}

fn not_found(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ProblemKind::NotFound, format!("no such service: {e}"))
}

impl SubsystemPath {
    fn id(&self) -> ApiResult<SubsystemId> {
        MemberId::new(&self.instance, &self.class, &self.code)
            .and_then(|m| m.subsystem(&self.subsystem))
            .map_err(|e| ApiError::not_found(format!("no such subsystem: {e}")))
    }
}

impl ServicePath {
    fn id(&self) -> ApiResult<ServiceId> {
        MemberId::new(&self.instance, &self.class, &self.code)
            .and_then(|m| m.subsystem(&self.subsystem))
            .and_then(|s| s.service(&self.service, None))
            .map_err(not_found)
    }
}

impl VersionedServicePath {
    fn id(&self) -> ApiResult<ServiceId> {
        MemberId::new(&self.instance, &self.class, &self.code)
            .and_then(|m| m.subsystem(&self.subsystem))
            .and_then(|s| s.service(&self.service, Some(&self.version)))
            .map_err(not_found)
    }
}

/// Validates a subsystem and adds it to `member`, in one transaction.
pub async fn add_subsystem(
    registry: &Registry,
    role: &Role,
    member: &MemberId,
    input: &SubsystemInput,
) -> ApiResult<Subsystem> {
    if !role.may_administer(member) {
        return Err(ApiError::forbidden(format!(
            "{role} may not change member {member}"
        )));
    }
    let mut c = Checks::default();
    let code = c.take(
        "code",
        required(&input.code).and_then(|v| {
            validate_part(Part::Subsystem, v)
                .map(|_| v)
                .map_err(|e| e.to_string())
        }),
    );
    let name = c.take(
        "name",
        required(&input.name).and_then(|v| check_text(v, NAME_MAX)),
    );
    c.finish()?;
    let (Some(code), Some(name)) = (code, name) else {
        return Err(ApiError::field("code", "is required"));
    };
    let id = member
        .subsystem(code)
        .map_err(|e| ApiError::field("code", e.to_string()))?;
    let mut tx = registry.store.begin().await?;
    if tx.member(member).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "member {member} does not exist"
        )));
    }
    if tx.subsystem(&id).await?.is_some() {
        return Err(ApiError::conflict(format!("subsystem {id} already exists")));
    }
    let at = accord_store::now();
    tx.insert_subsystem(
        &NewSubsystem {
            id: id.clone(),
            name,
        },
        &at,
    )
    .await?;
    let subsystem = tx
        .subsystem(&id)
        .await?
        .ok_or_else(|| ApiError::internal("subsystem vanished after insert"))?;
    tx.commit().await?;
    tracing::info!(subsystem = %subsystem.id, "subsystem added");
    Ok(subsystem)
}

/// Validates a service and adds it to `subsystem`, in one transaction.
pub async fn add_service(
    registry: &Registry,
    role: &Role,
    subsystem: &SubsystemId,
    input: &ServiceInput,
) -> ApiResult<Service> {
    if !role.may_administer(subsystem.member()) {
        return Err(ApiError::forbidden(format!(
            "{role} may not change member {}",
            subsystem.member()
        )));
    }
    let mut c = Checks::default();
    let code = c.take(
        "code",
        required(&input.code).and_then(|v| {
            validate_part(Part::Service, v)
                .map(|_| v)
                .map_err(|e| e.to_string())
        }),
    );
    if let Some(version) = &input.version {
        c.take(
            "version",
            validate_part(Part::Version, version).map_err(|e| e.to_string()),
        );
    }
    let title = c.take(
        "title",
        required(&input.title).and_then(|v| check_text(v, NAME_MAX)),
    );
    let description = c.take(
        "description",
        required(&input.description).and_then(|v| check_text(v, DESCRIPTION_MAX)),
    );
    let personal_data = c.take(
        "personal_data",
        input
            .personal_data
            .ok_or_else(|| "is required (true or false)".to_owned()),
    );
    if input.data_categories.len() > DATA_CATEGORIES_MAX {
        c.push(
            "data_categories",
            format!(
                "has {} entries, the limit is {DATA_CATEGORIES_MAX}",
                input.data_categories.len()
            ),
        );
    }
    let mut categories = Vec::new();
    for (i, category) in input.data_categories.iter().enumerate() {
        if let Some(ok) = c.take(
            &format!("data_categories[{i}]"),
            check_data_category(category),
        ) {
            if !categories.contains(&ok) {
                categories.push(ok);
            }
        }
    }
    let document = match &input.openapi {
        None => c.take(
            "openapi",
            Err("is required: the service's OpenAPI 3 document".into()),
        ),
        Some(serde_json::Value::String(text)) => Some(text.clone()),
        Some(value) => Some(value.to_string()),
    };
    let summary = match &document {
        Some(doc) => c.take("openapi", check_openapi(doc)),
        None => None,
    };
    c.finish()?;
    let (
        Some(code),
        Some(title),
        Some(description),
        Some(personal_data),
        Some(document),
        Some(summary),
    ) = (code, title, description, personal_data, document, summary)
    else {
        return Err(ApiError::field("code", "is required"));
    };
    let id = subsystem
        .service(code, input.version.as_deref())
        .map_err(|e| ApiError::field("code", e.to_string()))?;
    let mut tx = registry.store.begin().await?;
    if tx.subsystem(subsystem).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "subsystem {subsystem} does not exist; add it first"
        )));
    }
    if tx.service(&id).await?.is_some() {
        return Err(ApiError::conflict(format!("service {id} already exists")));
    }
    let at = accord_store::now();
    let new = NewService {
        id: id.clone(),
        title,
        description,
        personal_data,
        data_categories: categories,
        openapi_version: summary.version,
        openapi_document: document,
    };
    tx.insert_service(&new, &at).await?;
    let service = tx
        .service(&id)
        .await?
        .ok_or_else(|| ApiError::internal("service vanished after insert"))?;
    tx.commit().await?;
    tracing::info!(service = %service.id, "service added");
    Ok(service)
}

fn openapi_url(id: &ServiceId) -> String {
    format!("/api/v1/openapi/{}", id.to_encoded())
}

fn detail(service: Service) -> ServiceDetail {
    ServiceDetail {
        openapi_url: openapi_url(&service.id),
        service,
    }
}

/// Add a subsystem to a member (that member's administrator, or the federation's).
#[utoipa::path(
    post,
    path = "/api/v1/members/{instance}/{class}/{code}/subsystems",
    tag = "catalogue",
    params(MemberPath),
    request_body = SubsystemInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The subsystem was added", body = Subsystem),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not change this member", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The subsystem exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_subsystem(
    State(registry): State<Registry>,
    Params(path): Params<MemberPath>,
    auth: Authenticated,
    Body(input): Body<SubsystemInput>,
) -> ApiResult<impl IntoResponse> {
    let member = path.id()?;
    let subsystem = add_subsystem(&registry, &auth.role, &member, &input).await?;
    let location = format!("/api/v1/members/{}", member.to_encoded());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(subsystem),
    ))
}

/// Add a service to a subsystem (the member's administrator, or the federation's).
#[utoipa::path(
    post,
    path = "/api/v1/members/{instance}/{class}/{code}/subsystems/{subsystem}/services",
    tag = "catalogue",
    params(SubsystemPath),
    request_body = ServiceInput,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The service was added", body = ServiceDetail),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not change this member", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subsystem", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The service exists", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_service(
    State(registry): State<Registry>,
    Params(path): Params<SubsystemPath>,
    auth: Authenticated,
    Body(input): Body<ServiceInput>,
) -> ApiResult<impl IntoResponse> {
    let subsystem = path.id()?;
    let service = add_service(&registry, &auth.role, &subsystem, &input).await?;
    let location = format!("/api/v1/services/{}", service.id.to_encoded());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(detail(service)),
    ))
}

/// Search the catalogue's services; level, country and sector are the providing member's.
#[utoipa::path(
    get,
    path = "/api/v1/services",
    tag = "catalogue",
    params(CatalogueQuery),
    responses(
        (status = 200, description = "One page of services, ordered by id", body = Paged<Service>),
        (status = 422, description = "A filter is not valid", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_services(
    State(registry): State<Registry>,
    QueryParams(query): QueryParams<CatalogueQuery>,
) -> ApiResult<Json<Paged<Service>>> {
    let (filter, page) = query.parse()?;
    Ok(Json(
        registry.store.search_services(&filter, page).await?.into(),
    ))
}

async fn find_service(registry: &Registry, id: &ServiceId) -> ApiResult<Json<ServiceDetail>> {
    let service = registry
        .store
        .service(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("service {id} does not exist")))?;
    Ok(Json(detail(service)))
}

async fn find_document(registry: &Registry, id: &ServiceId) -> ApiResult<impl IntoResponse> {
    let doc = registry
        .store
        .service_document(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("service {id} does not exist")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], doc.document))
}

/// One service without a version.
#[utoipa::path(
    get,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}",
    tag = "catalogue",
    params(ServicePath),
    responses(
        (status = 200, description = "The service", body = ServiceDetail),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_service(
    State(registry): State<Registry>,
    Params(path): Params<ServicePath>,
) -> ApiResult<Json<ServiceDetail>> {
    find_service(&registry, &path.id()?).await
}

/// One versioned service.
#[utoipa::path(
    get,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "catalogue",
    params(VersionedServicePath),
    responses(
        (status = 200, description = "The service", body = ServiceDetail),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_versioned_service(
    State(registry): State<Registry>,
    Params(path): Params<VersionedServicePath>,
) -> ApiResult<Json<ServiceDetail>> {
    find_service(&registry, &path.id()?).await
}

/// The OpenAPI document of a service without a version.
#[utoipa::path(
    get,
    path = "/api/v1/openapi/{instance}/{class}/{code}/{subsystem}/{service}",
    tag = "catalogue",
    params(ServicePath),
    responses(
        (status = 200, description = "The document, as the provider registered it", content_type = "application/json", body = Object),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_openapi(
    State(registry): State<Registry>,
    Params(path): Params<ServicePath>,
) -> ApiResult<impl IntoResponse> {
    find_document(&registry, &path.id()?).await
}

/// The OpenAPI document of a versioned service.
#[utoipa::path(
    get,
    path = "/api/v1/openapi/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "catalogue",
    params(VersionedServicePath),
    responses(
        (status = 200, description = "The document, as the provider registered it", content_type = "application/json", body = Object),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_versioned_openapi(
    State(registry): State<Registry>,
    Params(path): Params<VersionedServicePath>,
) -> ApiResult<impl IntoResponse> {
    find_document(&registry, &path.id()?).await
}
