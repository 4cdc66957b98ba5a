//! The registry's HTTP API: one module per resource, merged here, with the
//! OpenAPI document generated from the handlers themselves.
//!
//! Identifiers appear in paths part by part, as X-Road writes them
//! (`/api/v1/members/DEMO/GOV/70000001`), each part percent-encoded.

pub mod agreements;
pub mod audit;
pub mod decisions;
pub mod federation;
pub mod gateways;
pub mod keys;
pub mod members;
pub mod monitoring;
pub mod services;
pub mod tokens;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use accord_domain::{Country, FieldError, Level, MemberId, Sector};
use accord_store::{CatalogueFilter, Page};

use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::Registry;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Accord registry API",
        description = "The federation registry: members at every level of government, their \
                       subsystems and services, gateways and their certificates, and tokens. \
                       Reading the catalogue is public; every write needs a bearer token.",
        license(name = "EUPL-1.2")
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::error::Problem, FieldError))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A token from `accord token create`"))
                        .build(),
                ),
            );
        }
    }
}

fn api_router() -> OpenApiRouter<Registry> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(federation::router())
        .merge(members::router())
        .merge(services::router())
        .merge(gateways::router())
        .merge(tokens::router())
        .merge(keys::router())
        .merge(agreements::router())
        .merge(decisions::router())
        .merge(audit::router())
        .merge(monitoring::router())
}

/// The OpenAPI document of the API, as served at `/api/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().into_openapi()
}

pub(crate) fn router(registry: Registry) -> axum::Router {
    let (router, doc) = api_router().split_for_parts();
    let doc = std::sync::Arc::new(doc);
    router
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/healthz", get(health))
        .fallback(|| async {
            ApiError::not_found("no such route; the API is described at /api/openapi.json")
        })
        .with_state(registry)
}

async fn health(
    axum::extract::State(registry): axum::extract::State<Registry>,
) -> impl IntoResponse {
    match registry.store.ping().await {
        Ok(()) => Json(serde_json::json!({
            "status": "ok",
            "instance": registry.federation.instance,
            "database": registry.store.engine().name(),
        }))
        .into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// A JSON body whose rejections are problem+json.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(Body(value))
    }
}

/// Path parameters whose rejections are problem+json.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Params(value))
    }
}

/// Query parameters whose rejections are problem+json.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(QueryParams(value))
    }
}

/// A member's identifier as three path segments.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// X-Road instance, e.g. `DEMO`.
    pub instance: String,
    /// Member class, e.g. `GOV`.
    pub class: String,
    /// Member code, e.g. `70000001`.
    pub code: String,
}

impl MemberPath {
    pub fn id(&self) -> ApiResult<MemberId> {
        MemberId::new(&self.instance, &self.class, &self.code)
            .map_err(|e| ApiError::new(ProblemKind::NotFound, format!("no such member: {e}")))
    }
}

/// Filters and paging shared by the catalogue's searches.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogueQuery {
    /// Level of government: local, regional, national or supranational.
    pub level: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Sector: public, private or civil-society.
    pub sector: Option<String>,
    /// Text to look for in names, titles, descriptions and identifiers.
    pub q: Option<String>,
    /// Only entries of this member (`INSTANCE/CLASS/CODE`).
    pub member: Option<String>,
    /// Services only: whether they process personal data.
    pub personal_data: Option<bool>,
    /// Page number, from 1.
    pub page: Option<u32>,
    /// Entries per page, 1 to 200 (default 20).
    pub per_page: Option<u32>,
}

pub const MAX_PER_PAGE: u32 = 200;

impl CatalogueQuery {
    pub fn parse(&self) -> ApiResult<(CatalogueFilter, Page)> {
        let mut errors = Vec::new();
        let mut filter = CatalogueFilter {
            personal_data: self.personal_data,
            ..CatalogueFilter::default()
        };
        if let Some(level) = &self.level {
            match level.parse::<Level>() {
                Ok(l) => filter.level = Some(l),
                Err(e) => errors.push(FieldError::new("level", e)),
            }
        }
        if let Some(country) = &self.country {
            match country.parse::<Country>() {
                Ok(c) => filter.country = Some(c),
                Err(e) => errors.push(FieldError::new("country", e)),
            }
        }
        if let Some(sector) = &self.sector {
            match sector.parse::<Sector>() {
                Ok(s) => filter.sector = Some(s),
                Err(e) => errors.push(FieldError::new("sector", e)),
            }
        }
        if let Some(member) = &self.member {
            match member.parse::<MemberId>() {
                Ok(m) => filter.member = Some(m),
                Err(e) => errors.push(FieldError::new("member", e.to_string())),
            }
        }
        if let Some(q) = &self.q {
            let q = q.trim();
            if q.chars().count() > 200 {
                errors.push(FieldError::new("q", "is longer than 200 characters"));
            } else if !q.is_empty() {
                filter.text = Some(q.to_owned());
            }
        }
        let number = self.page.unwrap_or(1);
        if number == 0 {
            errors.push(FieldError::new("page", "pages are numbered from 1"));
        }
        let size = self.per_page.unwrap_or(20);
        if size == 0 || size > MAX_PER_PAGE {
            errors.push(FieldError::new(
                "per_page",
                format!("must be between 1 and {MAX_PER_PAGE}, found {size}"),
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        Ok((filter, Page { number, size }))
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Matching entries over all pages.
    pub total: i64,
    pub page: u32,
    pub per_page: u32,
}

impl<T> From<accord_store::Paged<T>> for Paged<T> {
    fn from(p: accord_store::Paged<T>) -> Self {
        Paged {
            items: p.items,
            total: p.total,
            page: p.page,
            per_page: p.per_page,
        }
    }
}

/// Collects field errors, failing with all of them at once.
#[derive(Default)]
pub(crate) struct Checks {
    errors: Vec<FieldError>,
}

impl Checks {
    /// Records the error of `result`, if any, under `field`.
    pub fn take<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(reason) => {
                self.errors.push(FieldError::new(field, reason));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError::new(field, reason));
    }

    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.errors))
        }
    }
}
