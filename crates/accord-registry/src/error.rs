//! The one HTTP error type: every failure leaves the registry as an RFC 9457
//! `application/problem+json` body with a type, a title, and a detail a
//! person can act on. Server faults are logged in full and answered with a
//! generic detail, so no internal state (or secret) reaches a client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use accord_domain::agreement::RuleViolation;
use accord_domain::FieldError;
use accord_store::StoreError;

/// The problem types the API answers with; each has a stable URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    MalformedRequest,
    InvalidInput,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
}

impl ProblemKind {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ProblemKind::MalformedRequest => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "The request could not be read",
            ),
            ProblemKind::InvalidInput => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "The request's content is not valid",
            ),
            ProblemKind::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "A valid bearer token is required",
            ),
            ProblemKind::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "The token's role does not allow this",
            ),
            ProblemKind::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ProblemKind::Conflict => (
                StatusCode::CONFLICT,
                "conflict",
                "It conflicts with what the registry holds",
            ),
            ProblemKind::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "The request body is too large",
            ),
            ProblemKind::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The request body must be JSON",
            ),
            ProblemKind::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "The registry failed to handle the request",
            ),
        }
    }

    /// The problem type URI.
    pub fn type_uri(self) -> String {
        format!("urn:accord:problem:{}", self.parts().1)
    }
}

/// An RFC 9457 problem details body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `urn:accord:problem:invalid-input`.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    /// What was wrong with this request, and what to do about it.
    pub detail: String,
    /// The rule of the agreement model that was broken, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For invalid input: every field that was wrong, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error on the way to answering a request.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ProblemKind,
    pub detail: String,
    pub rule: Option<String>,
    pub errors: Vec<FieldError>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        ApiError {
            kind,
            detail: detail.into(),
            rule: None,
            errors: Vec::new(),
        }
    }

    /// Broken rules of the agreement model: the first names the problem.
    pub fn violations(kind: ProblemKind, violations: Vec<RuleViolation>) -> Self {
        let detail = match violations.as_slice() {
            [] => "the request breaks a rule".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        let rule = violations.first().map(|v| v.rule.to_owned());
        let errors = violations
            .into_iter()
            .map(|v| FieldError {
                field: v.field.unwrap_or_default(),
                reason: v.detail,
                rule: Some(v.rule.to_owned()),
            })
            .collect();
        ApiError {
            kind,
            detail,
            rule,
            errors,
        }
    }

    pub fn violation(kind: ProblemKind, violation: RuleViolation) -> Self {
        ApiError::violations(kind, vec![violation])
    }

    /// Invalid input in one or more fields; the detail names the first.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [] => "the request's content is not valid".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        ApiError {
            kind: ProblemKind::InvalidInput,
            detail,
            rule: None,
            errors,
        }
    }

    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        ApiError::invalid(vec![FieldError::new(field, reason)])
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::NotFound, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::Conflict, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::Forbidden, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(ProblemKind::Unauthorized, detail)
    }

    /// A server fault: logged here in full, answered without the detail.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        ApiError::new(
            ProblemKind::Internal,
            "the registry failed to handle the request; the operator can find the cause in its log",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.kind.parts().0
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ApiError::conflict(format!("{what} already exists")),
            StoreError::Missing(what) => {
                ApiError::new(ProblemKind::InvalidInput, format!("{what} does not exist"))
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let kind = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemKind::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ProblemKind::InvalidInput,
            _ => ProblemKind::MalformedRequest,
        };
        ApiError::new(kind, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(ProblemKind::MalformedRequest, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(ProblemKind::MalformedRequest, r.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, title) = self.kind.parts();
        let body = Problem {
            type_uri: self.kind.type_uri(),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.detail,
            rule: self.rule,
            errors: self.errors,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.kind == ProblemKind::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"accord-registry\""),
            );
        }
        response
    }
}
