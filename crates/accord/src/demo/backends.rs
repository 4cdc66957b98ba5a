//! Stand-ins for the agencies' own information systems, behind the demo's
//! gateways.
//!
//! `accord demo` runs real exchanges between agencies, and an exchange needs
//! something at the far end: the provider's information system, which
//! Accord never is. These backends play that part. One HTTP server per
//! member with services (as one agency runs one integration host), on a
//! loopback port, serves every operation of every OpenAPI document in
//! `federation.json`:
//!
//! - Answers are built from the operation's response schema, so they have
//!   exactly the documented shape even if a document changes. A vocabulary
//!   of property names and a few rules per schema (the `cohere_*` functions)
//!   make the values look like what a population register, tax board or
//!   health authority sends: Estonian and Finnish persons with well-formed
//!   personal codes, addresses in Tallinn, Tartu and Helsinki, incomes,
//!   health indicators, benefit decisions.
//! - Everything is derived from the request (a hash of the service, the
//!   parameters and the body), never from a clock or a random generator, so
//!   the same exchange always gets the same answer and the demo's audit log
//!   and monitoring figures are reproducible. "Today" is [`TODAY`].
//! - An identifier ending in `9` (personal code, registry code, document
//!   number, ...) names nobody: an operation that documents a 404 answers
//!   one, so the demo shows a permitted exchange whose provider says "not
//!   found"; a list operation answers an empty list.
//! - Parameters and bodies are checked against the document (required,
//!   pattern, enum, date formats, `from` not after `to`), and a malformed
//!   request gets a 400, as a real system would answer it.
//!
//! A gateway forwards the path after the r1 service id to the service's
//! base URL, `http://127.0.0.1:PORT/{subsystem}/{service}/{version or -}/`
//! ([`Backends::backend_url`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use time::macros::date;
use time::{Date, Month};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use accord_domain::id::{MemberId, ServiceId};

use super::{DemoFederation, DemoMember, DemoService};

/// The demo's "today": dates in answers are relative to it, so answers do
/// not change from one run to the next.
pub const TODAY: Date = date!(2026 - 03 - 16);

/// How long [`Backends::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The running backends: one server per member with services.
#[derive(Debug)]
pub struct Backends {
    urls: BTreeMap<ServiceId, String>,
    servers: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    member: MemberId,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Backends {
    /// The base URL of `service`'s backend, ending in `/`: append the path
    /// after the r1 service id (a leading `/` of it may stay; the backends
    /// ignore empty segments) and the query.
    pub fn backend_url(&self, service: &ServiceId) -> Option<String> {
        self.urls.get(service).cloned()
    }

    /// Every service with its base URL.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceId, &str)> {
        self.urls.iter().map(|(id, url)| (id, url.as_str()))
    }

    /// Every member's server and its address.
    pub fn servers(&self) -> impl Iterator<Item = (&MemberId, SocketAddr)> {
        self.servers.iter().map(|s| (&s.member, s.addr))
    }

    /// Stops every server, letting open requests finish for a few seconds.
    /// (Dropping [`Backends`] stops them too, without waiting.)
    pub async fn shutdown(self) -> anyhow::Result<()> {
        for server in self.servers {
            // The server may have stopped already; then nobody listens.
            let _ = server.stop.send(());
            let mut task = server.task;
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(joined) => joined
                    .with_context(|| format!("the demo backend of {} panicked", server.member))?
                    .with_context(|| format!("the demo backend of {} failed", server.member))?,
                Err(_) => task.abort(),
            }
        }
        Ok(())
    }
}

/// Starts one backend server per member of `spec` that has services, each
/// on its own loopback port.
pub async fn start(spec: &DemoFederation) -> anyhow::Result<Backends> {
    let mut urls = BTreeMap::new();
    let mut servers = Vec::new();
    for member in &spec.members {
        let member_id = MemberId::new(&spec.instance, &member.class, &member.code)
            .with_context(|| format!("demo member {}/{}", member.class, member.code))?;
        let mut services = HashMap::new();
        for subsystem in &member.subsystems {
            for service in &subsystem.services {
                let id = member_id
                    .subsystem(&subsystem.code)
                    .and_then(|s| s.service(&service.code, service.version.as_deref()))
                    .with_context(|| {
                        format!(
                            "demo service {member_id}/{}/{}",
                            subsystem.code, service.code
                        )
                    })?;
                let api = ServiceApi::new(id.clone(), member, service)
                    .with_context(|| format!("the OpenAPI document of demo service {id}"))?;
                services.insert(route_key(&id), api);
            }
        }
        if services.is_empty() {
            continue;
        }
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .with_context(|| format!("listening for the demo backend of {member_id}"))?;
        let addr = listener
            .local_addr()
            .context("reading a demo backend's address")?;
        for api in services.values() {
            urls.insert(api.id.clone(), base_url(addr, &api.id));
        }
        let state = Arc::new(MemberApi {
            member: member_id.clone(),
            services,
        });
        let router = Router::new().fallback(handle).with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        servers.push(Server {
            member: member_id,
            addr,
            stop,
            task,
        });
    }
    Ok(Backends { urls, servers })
}

/// (subsystem, service, version or `-`): the first three path segments.
type RouteKey = (String, String, String);

fn route_key(id: &ServiceId) -> RouteKey {
    (
        id.subsystem().code().to_owned(),
        id.code().to_owned(),
        id.version().unwrap_or("-").to_owned(),
    )
}

fn base_url(addr: SocketAddr, id: &ServiceId) -> String {
    let (subsystem, service, version) = route_key(id);
    format!(
        "http://{addr}/{}/{}/{}/",
        accord_xroad::encode_path_segment(&subsystem),
        accord_xroad::encode_path_segment(&service),
        accord_xroad::encode_path_segment(&version)
    )
}

/// What one member's server serves.
#[derive(Debug)]
struct MemberApi {
    member: MemberId,
    services: HashMap<RouteKey, ServiceApi>,
}

/// One service: its OpenAPI document, read into operations once at start.
#[derive(Debug)]
struct ServiceApi {
    id: ServiceId,
    title: String,
    /// The provider's country (ISO 3166-1 alpha-2).
    country: String,
    document: Value,
    operations: Vec<OperationSpec>,
}

#[derive(Debug)]
struct OperationSpec {
    method: Method,
    segments: Vec<Segment>,
    parameters: Vec<Parameter>,
    /// The JSON request body's schema, if the operation takes one.
    body: Option<Value>,
    /// The first documented 2xx status and its JSON schema.
    success: StatusCode,
    success_schema: Option<Value>,
    /// Whether the document lists a 404 answer.
    documents_not_found: bool,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Parameter(String),
}

#[derive(Debug)]
struct Parameter {
    name: String,
    in_path: bool,
    required: bool,
    schema: Value,
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

impl ServiceApi {
    fn new(id: ServiceId, member: &DemoMember, service: &DemoService) -> anyhow::Result<Self> {
        let document = service.openapi.clone();
        let paths = document
            .get("paths")
            .and_then(Value::as_object)
            .context("the document has no paths")?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            let item = item
                .as_object()
                .with_context(|| format!("path {template} is not an object"))?;
            let shared = item.get("parameters").and_then(Value::as_array);
            for (method, operation) in item {
                if !METHODS.contains(&method.as_str()) {
                    continue;
                }
                let spec = OperationSpec::new(template, method, operation, shared)
                    .with_context(|| format!("{} {template}", method.to_uppercase()))?;
                operations.push(spec);
            }
        }
        Ok(ServiceApi {
            id,
            title: service.title.clone(),
            country: member.country.clone(),
            document,
            operations,
        })
    }
}

impl OperationSpec {
    fn new(
        template: &str,
        method: &str,
        operation: &Value,
        shared: Option<&Vec<Value>>,
    ) -> anyhow::Result<Self> {
        let method =
            Method::from_bytes(method.to_uppercase().as_bytes()).context("not an HTTP method")?;
        let segments = template
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Parameter(name.to_owned()),
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        let own = operation.get("parameters").and_then(Value::as_array);
        let mut parameters = Vec::new();
        for p in shared.into_iter().chain(own).flatten() {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .context("a parameter has no name")?;
            let location = p.get("in").and_then(Value::as_str).unwrap_or("query");
            if location != "path" && location != "query" {
                continue;
            }
            parameters.push(Parameter {
                name: name.to_owned(),
                in_path: location == "path",
                required: location == "path"
                    || p.get("required").and_then(Value::as_bool).unwrap_or(false),
                schema: p.get("schema").cloned().unwrap_or(Value::Null),
            });
        }
        let body = operation
            .pointer("/requestBody/content/application~1json/schema")
            .cloned();
        let responses = operation
            .get("responses")
            .and_then(Value::as_object)
            .context("no responses")?;
        let (success, success_schema) = responses
            .iter()
            .filter_map(|(code, r)| {
                let status = code.parse::<u16>().ok()?;
                let status = StatusCode::from_u16(status).ok()?;
                status.is_success().then(|| {
                    (
                        status,
                        r.pointer("/content/application~1json/schema").cloned(),
                    )
                })
            })
            .min_by_key(|(status, _)| status.as_u16())
            .context("no 2xx response")?;
        Ok(OperationSpec {
            method,
            segments,
            parameters,
            body,
            success,
            success_schema,
            documents_not_found: responses.contains_key("404"),
        })
    }

    /// The path parameters, if `path` (decoded segments) fits the template.
    fn match_path(&self, path: &[String]) -> Option<BTreeMap<String, String>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (segment, value) in self.segments.iter().zip(path) {
            match segment {
                Segment::Literal(literal) if literal == value => {}
                Segment::Literal(_) => return None,
                Segment::Parameter(name) => {
                    params.insert(name.clone(), value.clone());
                }
            }
        }
        Some(params)
    }
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

async fn handle(
    State(api): State<Arc<MemberApi>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let response = answer(&api, &method, &uri, &body);
    tracing::debug!(
        member = %api.member,
        %method,
        path = uri.path(),
        status = response.status().as_u16(),
        "demo backend answered"
    );
    response
}

fn answer(api: &MemberApi, method: &Method, uri: &Uri, body: &[u8]) -> Response {
    let mut segments = uri.path().split('/').skip(1).map(decode_segment);
    let (Some(subsystem), Some(service), Some(version)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown-service",
            "the path must start with /{subsystem}/{service}/{version or -}/".into(),
        );
    };
    let Some(service) = api.services.get(&(subsystem, service, version)) else {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown-service",
            format!("{} serves no such service", api.member),
        );
    };
    let path: Vec<String> = segments.filter(|s| !s.is_empty()).collect();
    service.answer(method, &path, uri, body)
}

fn decode_segment(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned()
}

/// An error answer in the documents' `Error` shape (`code`, `message`).
fn problem(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({ "code": code, "message": message }))).into_response()
}

/// A request that passed validation.
struct Checked {
    /// Path and query parameters the operation declares.
    params: BTreeMap<String, String>,
    body: Option<Value>,
}

impl ServiceApi {
    fn answer(&self, method: &Method, path: &[String], uri: &Uri, body: &[u8]) -> Response {
        let matching: Vec<(&OperationSpec, BTreeMap<String, String>)> = self
            .operations
            .iter()
            .filter_map(|op| op.match_path(path).map(|params| (op, params)))
            .collect();
        let shown = format!("/{}", path.join("/"));
        if matching.is_empty() {
            return problem(
                StatusCode::NOT_FOUND,
                "not-found",
                format!("{} has no resource {shown}", self.title),
            );
        }
        let Some((op, path_params)) = matching.iter().find(|(op, _)| op.method == *method) else {
            let allow: Vec<&str> = matching.iter().map(|(op, _)| op.method.as_str()).collect();
            let allow = allow.join(", ");
            let mut response = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!("{shown} allows {allow}, not {method}"),
            );
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return response;
        };
        let query = match uri.query() {
            None => Vec::new(),
            Some(_) => match Query::<Vec<(String, String)>>::try_from_uri(uri) {
                Ok(Query(pairs)) => pairs,
                Err(e) => return problem(StatusCode::BAD_REQUEST, "invalid-query", e.body_text()),
            },
        };
        match self.check(op, path_params, &query, body) {
            Ok(checked) => self.respond(op, checked),
            Err(message) => problem(StatusCode::BAD_REQUEST, "invalid-request", message),
        }
    }

    fn check(
        &self,
        op: &OperationSpec,
        path: &BTreeMap<String, String>,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<Checked, String> {
        let mut params = BTreeMap::new();
        for p in &op.parameters {
            let place = if p.in_path { "path" } else { "query" };
            let value = if p.in_path {
                path.get(&p.name).cloned()
            } else {
                query
                    .iter()
                    .find(|(name, _)| name == &p.name)
                    .map(|(_, v)| v.clone())
            };
            match value {
                None if p.required => {
                    return Err(format!("{place} parameter {} is required", p.name))
                }
                None => {}
                Some(value) => {
                    check_parameter(&value, &p.schema)
                        .map_err(|e| format!("{place} parameter {} {e}", p.name))?;
                    params.insert(p.name.clone(), value);
                }
            }
        }
        check_ranges(&params)?;
        let body = match &op.body {
            None => None,
            Some(schema) => {
                if body.is_empty() {
                    return Err("a JSON request body is required".into());
                }
                let value: Value = serde_json::from_slice(body)
                    .map_err(|e| format!("the request body is not JSON: {e}"))?;
                check(&value, schema, &self.document, "body")?;
                check_ranges(&string_fields(&value))?;
                Some(value)
            }
        };
        Ok(Checked { params, body })
    }

    fn respond(&self, op: &OperationSpec, checked: Checked) -> Response {
        let unknown = unknown_identifier(op, &checked);
        if let Some((name, _)) = &unknown {
            if op.documents_not_found {
                return problem(StatusCode::NOT_FOUND, "not-found", not_found_message(name));
            }
        }
        let mut seed_text = format!("{}|{}", self.id, op.method);
        for (name, value) in &checked.params {
            seed_text.push_str(&format!("|{name}={value}"));
        }
        if let Some(body) = &checked.body {
            seed_text.push('|');
            seed_text.push_str(&body.to_string());
        }
        let seed = fnv(seed_text.as_bytes());
        let person = subject_code(&checked)
            .map(|code| Person::from_code(&code))
            .unwrap_or_else(|| Person::seeded(seed, self.country == "FI"));
        let generator = Generator {
            service: self,
            method: &op.method,
            params: &checked.params,
            body: checked.body.as_ref(),
            person,
            unknown: unknown.is_some(),
        };
        match &op.success_schema {
            Some(schema) => {
                let value = generator.value(schema, "", "response", seed);
                (op.success, Json(value)).into_response()
            }
            None => op.success.into_response(),
        }
    }
}

/// Body fields that identify a person (besides path parameters).
fn is_person_field(name: &str) -> bool {
    name.ends_with("PersonalCode") || name.ends_with("IdentityCode") || name == "personalIdentifier"
}

/// The first identifier of the request that names nobody (ends in `9`):
/// a path parameter, or a person field of the body.
fn unknown_identifier(op: &OperationSpec, checked: &Checked) -> Option<(String, String)> {
    let from_path = op.parameters.iter().filter(|p| p.in_path).filter_map(|p| {
        checked
            .params
            .get(&p.name)
            .map(|v| (p.name.clone(), v.clone()))
    });
    let from_body = checked
        .body
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(name, _)| is_person_field(name))
        .filter_map(|(name, v)| v.as_str().map(|v| (name.clone(), v.to_owned())));
    from_path
        .chain(from_body)
        .find(|(_, value)| value.ends_with('9'))
}

fn not_found_message(name: &str) -> String {
    match name {
        "personalCode" => "no person with this personal code is in the register".into(),
        "estonianPersonalCode" | "finnishPersonalIdentityCode" | "personalIdentifier" => {
            "the person is not in the population register".into()
        }
        "registryCode" => "no company with this registry code is in the register".into(),
        "mrn" => "no customs declaration has this MRN".into(),
        "documentNumber" => "no portable document A1 has this number".into(),
        "letterId" => "no letter has this identifier".into(),
        "decisionId" => "no benefit decision has this identifier".into(),
        other => format!("nothing has this {other}"),
    }
}

/// The personal code the request is about, if it names one.
fn subject_code(checked: &Checked) -> Option<String> {
    if let Some(code) = checked.params.get("personalCode") {
        return Some(code.clone());
    }
    let body = checked.body.as_ref()?.as_object()?;
    body.iter()
        .filter(|(name, _)| is_person_field(name))
        .find_map(|(_, v)| v.as_str().map(str::to_owned))
}

// ---------------------------------------------------------------------------
// Validation against the document
// ---------------------------------------------------------------------------

/// The schema a `$ref` points to (within the document) and its name.
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> (&'a Value, Option<&'a str>) {
    let mut schema = schema;
    let mut name = None;
    for _ in 0..8 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(target) = reference
            .strip_prefix('#')
            .and_then(|pointer| document.pointer(pointer))
        else {
            break;
        };
        name = reference.rsplit('/').next();
        schema = target;
    }
    (schema, name)
}

/// Checks a JSON value against a schema: types, `required`, `enum`,
/// `pattern`, `nullable` and the `date`/`date-time` formats. Extra
/// properties are allowed, as OpenAPI allows them by default.
fn check(value: &Value, schema: &Value, document: &Value, at: &str) -> Result<(), String> {
    let (schema, _) = resolve(document, schema);
    if value.is_null() {
        return if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(format!("{at} may not be null"))
        };
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let object = value
                .as_object()
                .ok_or_else(|| format!("{at} must be an object"))?;
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    return Err(format!("{at}.{name} is required"));
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, value) in object {
                    if let Some(property) = properties.get(name) {
                        check(value, property, document, &format!("{at}.{name}"))?;
                    }
                }
            }
            Ok(())
        }
        Some("array") => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("{at} must be an array"))?;
            let item_schema = schema.get("items").unwrap_or(&Value::Null);
            for (i, item) in items.iter().enumerate() {
                check(item, item_schema, document, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        Some("string") => {
            let text = value
                .as_str()
                .ok_or_else(|| format!("{at} must be a string"))?;
            check_string(text, schema).map_err(|e| format!("{at} {e}"))
        }
        Some("number") if !value.is_number() => Err(format!("{at} must be a number")),
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            Err(format!("{at} must be an integer"))
        }
        Some("boolean") if !value.is_boolean() => Err(format!("{at} must be true or false")),
        _ => Ok(()),
    }
}

/// Checks a parameter's text against its schema.
fn check_parameter(value: &str, schema: &Value) -> Result<(), String> {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => value
            .parse::<i64>()
            .map(|_| ())
            .map_err(|_| "must be an integer".into()),
        Some("number") => value
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| "must be a number".into()),
        Some("boolean") => match value {
            "true" | "false" => Ok(()),
            _ => Err("must be true or false".into()),
        },
        _ => check_string(value, schema),
    }
}

/// `enum`, `pattern` and format checks of a string. Values are not echoed:
/// they are often personal codes.
fn check_string(value: &str, schema: &Value) -> Result<(), String> {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.iter().any(|v| v.as_str() == Some(value)) {
            let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
            return Err(format!("must be one of {}", names.join(", ")));
        }
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        if let Some(compiled) = Pattern::compile(pattern) {
            if !compiled.matches(value) {
                return Err(format!("must match {pattern}"));
            }
        }
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("date") if parse_date(value).is_none() => Err("must be a date (YYYY-MM-DD)".into()),
        Some("date-time")
            if time::OffsetDateTime::parse(
                value,
                &time::format_description::well_known::Rfc3339,
            )
            .is_err() =>
        {
            Err("must be an RFC 3339 date and time".into())
        }
        _ => Ok(()),
    }
}

/// A `from…`/`…From` value after its `to…`/`…To` partner (same suffix or
/// prefix) is a 400: `fromMonth`/`toMonth`, `periodFrom`/`periodTo`.
fn check_ranges(fields: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, from) in fields {
        let partner = if let Some(rest) = name.strip_prefix("from") {
            format!("to{rest}")
        } else if let Some(rest) = name.strip_suffix("From") {
            format!("{rest}To")
        } else {
            continue;
        };
        if let Some(to) = fields.get(&partner) {
            if from > to {
                return Err(format!("{name} may not be after {partner}"));
            }
        }
    }
    Ok(())
}

fn string_fields(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect()
}

fn parse_date(value: &str) -> Option<Date> {
    let mut parts = value.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// The subset of regular expressions the documents use: anchored
/// sequences of literals, classes (`[1-6]`, `[-+A-Y]`), `\d` and `.`, each
/// with an optional `{n}`, `{n,m}`, `?`, `*` or `+`. Anything else
/// (groups, alternatives) is not compiled, and then not checked.
#[derive(Debug, Clone)]
struct Pattern {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
struct Piece {
    atom: Atom,
    min: usize,
    max: usize,
}

#[derive(Debug, Clone)]
enum Atom {
    Literal(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Any,
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Literal(l) => *l == c,
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
            Atom::Any => true,
        }
    }

    /// A character this atom matches, chosen by `seed`.
    fn sample(&self, seed: u64) -> char {
        match self {
            Atom::Literal(c) => *c,
            Atom::Class {
                negated: false,
                ranges,
            } => {
                let sizes: Vec<u64> = ranges
                    .iter()
                    .map(|(lo, hi)| u64::from(*hi).saturating_sub(u64::from(*lo)) + 1)
                    .collect();
                let total: u64 = sizes.iter().sum();
                let mut index = if total == 0 { 0 } else { seed % total };
                for ((lo, _), size) in ranges.iter().zip(&sizes) {
                    if index < *size {
                        return char::from_u32(u32::from(*lo) + index as u32).unwrap_or(*lo);
                    }
                    index -= size;
                }
                'x'
            }
            Atom::Class { negated: true, .. } | Atom::Any => 'x',
        }
    }
}

impl Pattern {
    fn compile(source: &str) -> Option<Pattern> {
        let body = source.strip_prefix('^')?.strip_suffix('$')?;
        let chars: Vec<char> = body.chars().collect();
        let mut pieces = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let atom = match chars[i] {
                '[' => {
                    i += 1;
                    let negated = chars.get(i) == Some(&'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = *chars.get(i)?;
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            i += 1;
                            match *chars.get(i)? {
                                'd' => {
                                    ranges.push(('0', '9'));
                                    i += 1;
                                    continue;
                                }
                                escaped => escaped,
                            }
                        } else {
                            c
                        };
                        if chars.get(i + 1) == Some(&'-')
                            && chars.get(i + 2).is_some_and(|c| *c != ']')
                        {
                            ranges.push((lo, *chars.get(i + 2)?));
                            i += 3;
                        } else {
                            ranges.push((lo, lo));
                            i += 1;
                        }
                    }
                    Atom::Class { negated, ranges }
                }
                '\\' => {
                    i += 1;
                    match *chars.get(i)? {
                        'd' => Atom::Class {
                            negated: false,
                            ranges: vec![('0', '9')],
                        },
                        c if c.is_ascii_alphanumeric() => return None,
                        c => Atom::Literal(c),
                    }
                }
                '.' => Atom::Any,
                '(' | ')' | '|' | '{' | '}' | '*' | '+' | '?' | '^' | '$' | ']' => return None,
                c => Atom::Literal(c),
            };
            i += 1;
            let (min, max) = match chars.get(i) {
                Some('{') => {
                    let close = chars[i..].iter().position(|c| *c == '}')? + i;
                    let inner: String = chars[i + 1..close].iter().collect();
                    i = close + 1;
                    match inner.split_once(',') {
                        None => {
                            let n = inner.parse().ok()?;
                            (n, n)
                        }
                        Some((lo, "")) => (lo.parse().ok()?, usize::MAX),
                        Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
                    }
                }
                Some('?') => {
                    i += 1;
                    (0, 1)
                }
                Some('*') => {
                    i += 1;
                    (0, usize::MAX)
                }
                Some('+') => {
                    i += 1;
                    (1, usize::MAX)
                }
                _ => (1, 1),
            };
            pieces.push(Piece { atom, min, max });
        }
        Some(Pattern { pieces })
    }

    fn matches(&self, value: &str) -> bool {
        let chars: Vec<char> = value.chars().collect();
        match_pieces(&self.pieces, &chars)
    }

    /// A string the pattern matches, chosen by `seed`.
    fn sample(&self, seed: u64) -> String {
        let mut out = String::new();
        for (i, piece) in self.pieces.iter().enumerate() {
            let count = piece.min.max(usize::from(piece.max > 0)).min(piece.max);
            for j in 0..count {
                out.push(piece.atom.sample(mix(seed, &format!("{i}.{j}"))));
            }
        }
        out
    }
}

fn match_pieces(pieces: &[Piece], input: &[char]) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return input.is_empty();
    };
    let mut n = 0;
    while n < first.max && n < input.len() && first.atom.matches(input[n]) {
        n += 1;
    }
    n >= first.min
        && (first.min..=n)
            .rev()
            .any(|k| match_pieces(rest, &input[k..]))
}

// ---------------------------------------------------------------------------
// Deterministic values
// ---------------------------------------------------------------------------

fn fnv(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A seed for a part (`tag`) of what `seed` is for (SplitMix64 finaliser).
fn mix(seed: u64, tag: &str) -> u64 {
    let mut z = (seed ^ fnv(tag.as_bytes())).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(items: &[T], seed: u64) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    items.get((seed % items.len() as u64) as usize).copied()
}

/// `pick` for the constant lists below, which are never empty.
fn choose(items: &[&'static str], seed: u64) -> &'static str {
    pick(items, seed).unwrap_or("")
}

fn ymd(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn timestamp(d: Date, seed: u64) -> String {
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        ymd(d),
        7 + seed % 10,
        (seed >> 8) % 60,
        (seed >> 16) % 60
    )
}

fn days_before(d: Date, days: u64) -> Date {
    d.checked_sub(time::Duration::days(days as i64))
        .unwrap_or(d)
}

fn days_after(d: Date, days: u64) -> Date {
    d.checked_add(time::Duration::days(days as i64))
        .unwrap_or(d)
}

fn add_years(d: Date, years: i32) -> Date {
    let year = d.year() + years;
    Date::from_calendar_date(year, d.month(), d.day())
        .or_else(|_| Date::from_calendar_date(year, d.month(), 28))
        .unwrap_or(d)
}

fn add_months(d: Date, months: i32) -> Date {
    let index = d.year() * 12 + i32::from(u8::from(d.month())) - 1 + months;
    let month = Month::try_from((index.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
    Date::from_calendar_date(index.div_euclid(12), month, d.day().min(28)).unwrap_or(d)
}

fn years_between(earlier: Date, later: Date) -> i32 {
    let mut years = later.year() - earlier.year();
    if (later.month(), later.day()) < (earlier.month(), earlier.day()) {
        years -= 1;
    }
    years
}

/// An amount in euros with cents, from `low` to `high` (whole euros).
fn euros(seed: u64, low: u64, high: u64) -> f64 {
    let cents = low * 100 + seed % ((high - low).max(1) * 100);
    cents as f64 / 100.0
}

const EE_MALE: &[&str] = &[
    "Andres", "Jaan", "Mart", "Toomas", "Rasmus", "Karl", "Priit", "Margus", "Indrek", "Siim",
    "Kristjan", "Oliver", "Tõnu", "Marko",
];
const EE_FEMALE: &[&str] = &[
    "Kadri",
    "Mari",
    "Liis",
    "Triin",
    "Kristiina",
    "Anneli",
    "Laura",
    "Piret",
    "Helen",
    "Maarja",
    "Eliisabet",
    "Sofia",
    "Ülle",
    "Kärt",
];
const EE_FAMILY: &[&str] = &[
    "Tamm", "Saar", "Sepp", "Mägi", "Kask", "Kukk", "Rebane", "Ilves", "Pärn", "Koppel", "Lepik",
    "Kuusk", "Kallas", "Oja", "Raudsepp", "Lõhmus", "Org", "Vaher",
];
const FI_MALE: &[&str] = &["Mikko", "Juha", "Antti", "Matti", "Jukka", "Ville", "Eero"];
const FI_FEMALE: &[&str] = &[
    "Aino", "Sanna", "Liisa", "Johanna", "Tiina", "Elina", "Maija",
];
const FI_FAMILY: &[&str] = &[
    "Virtanen",
    "Korhonen",
    "Mäkinen",
    "Nieminen",
    "Lehtonen",
    "Heikkinen",
    "Koskinen",
    "Laine",
];
const FI_MUNICIPALITIES: &[&str] = &["Helsinki", "Espoo", "Vantaa", "Tampere", "Turku"];

/// (street, settlement, postal code) in Tallinn and in Tartu.
const TALLINN_STREETS: &[(&str, &str, &str)] = &[
    ("Narva mnt", "Kesklinna linnaosa", "10117"),
    ("Pärnu mnt", "Kesklinna linnaosa", "10141"),
    ("Laagna tee", "Lasnamäe linnaosa", "13915"),
    ("Ehitajate tee", "Mustamäe linnaosa", "12915"),
    ("Kopli tn", "Põhja-Tallinna linnaosa", "10412"),
    ("Sõpruse pst", "Mustamäe linnaosa", "13413"),
    ("Paldiski mnt", "Haabersti linnaosa", "13516"),
    ("Tulika tn", "Kristiine linnaosa", "10613"),
];
const TARTU_STREETS: &[(&str, &str, &str)] = &[
    ("Riia tn", "Tartu linn", "51010"),
    ("Raatuse tn", "Tartu linn", "51009"),
    ("Tähe tn", "Tartu linn", "50108"),
    ("Anne tn", "Tartu linn", "50703"),
    ("Kalda tee", "Tartu linn", "50104"),
    ("Ülikooli tn", "Tartu linn", "51003"),
];
const HELSINKI_STREETS: &[(&str, &str)] = &[
    ("Mannerheimintie", "00100"),
    ("Hämeentie", "00530"),
    ("Mechelininkatu", "00260"),
    ("Itäkatu", "00930"),
];

/// Companies that pay salaries and have tax debts: (registry code, name).
const COMPANIES: &[(&str, &str)] = &[
    ("10257326", "AS Tallinna Vesi"),
    ("11046562", "OÜ Põhjala Ehitus"),
    ("12345670", "Tartu Mööblitööstus AS"),
    ("14230538", "OÜ Emajõe Logistika"),
    ("10421629", "AS Saku Õlletehas"),
    ("16012345", "Kalamaja Kohvik OÜ"),
];

/// Schools of the two cities: (registry code, name).
const TALLINN_SCHOOLS: &[(&str, &str)] = &[
    ("75016705", "Tallinna Kesklinna Põhikool"),
    ("75017337", "Gustav Adolfi Gümnaasium"),
    ("75017662", "Tallinna Reaalkool"),
    ("75016817", "Tallinna Lasnamäe Põhikool"),
];
const TARTU_SCHOOLS: &[(&str, &str)] = &[
    ("75006546", "Tartu Kivilinna Kool"),
    ("75006665", "Hugo Treffneri Gümnaasium"),
    ("75006523", "Tartu Descartes'i Kool"),
];

/// Municipalities of the North Estonia region: (EHAK code, share of the
/// region's population in per mille, for case counts).
const HARJU_MUNICIPALITIES: &[(&str, u64)] =
    &[("0784", 720), ("0890", 45), ("0446", 30), ("0296", 18)];

/// Food-aid distribution points: (id, name, address, EHAK, lat, lon, hours, operator).
type DistributionPoint = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    f64,
    f64,
    &'static str,
    &'static str,
);
const DISTRIBUTION_POINTS: &[DistributionPoint] = &[
    (
        "TP-TLN-01",
        "Toidupank Lasnamäe",
        "Harju maakond, Tallinn, Lasnamäe linnaosa, Punane tn 16",
        "0784",
        59.4386,
        24.8208,
        "Tu, Th 10:00-14:00",
        "Eesti Toidupank",
    ),
    (
        "TP-TLN-02",
        "Põhja-Tallinna toiduabi punkt",
        "Harju maakond, Tallinn, Põhja-Tallinna linnaosa, Kopli tn 93",
        "0784",
        59.4540,
        24.7005,
        "We 12:00-16:00",
        "Tallinna Sotsiaaltöö Keskus",
    ),
    (
        "TP-TRT-01",
        "Tartu Toidupank",
        "Tartu maakond, Tartu linn, Tartu linn, Turu tn 12",
        "0793",
        58.3700,
        26.7370,
        "Mo, We, Fr 11:00-15:00",
        "Eesti Toidupank",
    ),
    (
        "TP-TRT-02",
        "Pauluse koguduse toiduabi",
        "Tartu maakond, Tartu linn, Tartu linn, Riia tn 27",
        "0793",
        58.3745,
        26.7170,
        "Th 14:00-17:00",
        "EELK Tartu Pauluse kogudus",
    ),
    (
        "TP-NRV-01",
        "Narva toiduabi punkt",
        "Ida-Viru maakond, Narva linn, Narva linn, Tallinna mnt 6",
        "0511",
        59.3775,
        28.1903,
        "Tu 10:00-13:00",
        "Eesti Toidupank",
    ),
];

/// A person: from a personal code in the request, or made up from a seed.
#[derive(Debug, Clone)]
struct Person {
    code: String,
    male: bool,
    birth: Date,
    given: &'static str,
    family: &'static str,
    finnish: bool,
}

impl Person {
    /// The person an Estonian personal code (`GYYMMDDSSSC`) or a Finnish
    /// personal identity code (`DDMMYY-NNNC`) names. Anything else still
    /// gives a stable person.
    fn from_code(code: &str) -> Person {
        let h = fnv(code.as_bytes());
        let chars: Vec<char> = code.chars().collect();
        let number = |from: usize, to: usize| -> Option<u32> {
            chars.get(from..to)?.iter().collect::<String>().parse().ok()
        };
        let finnish = chars.len() == 11 && matches!(chars.get(6), Some('-' | '+' | 'A'..='Y'));
        let (birth, male) = if finnish {
            let century = match chars.get(6) {
                Some('+') => 1800,
                Some('-' | 'U'..='Y') => 1900,
                _ => 2000,
            };
            let birth = calendar_date(century, number(4, 6), number(2, 4), number(0, 2));
            (birth, number(7, 10).is_some_and(|n| n % 2 == 1))
        } else {
            let first = number(0, 1).unwrap_or(3);
            let century = match first {
                1 | 2 => 1800,
                5 | 6 => 2000,
                _ => 1900,
            };
            let birth = calendar_date(century, number(1, 3), number(3, 5), number(5, 7));
            (birth, first % 2 == 1)
        };
        let birth = birth.unwrap_or_else(|| days_before(date!(2000 - 01 - 01), h % 18_000));
        let (males, females, families) = if finnish {
            (FI_MALE, FI_FEMALE, FI_FAMILY)
        } else {
            (EE_MALE, EE_FEMALE, EE_FAMILY)
        };
        Person {
            code: code.to_owned(),
            male,
            birth,
            given: choose(if male { males } else { females }, mix(h, "given")),
            family: choose(families, mix(h, "family")),
            finnish,
        }
    }

    /// A made-up adult.
    fn seeded(seed: u64, finnish: bool) -> Person {
        let birth = days_before(date!(2004 - 12 - 31), mix(seed, "birth") % 18_000);
        let male = mix(seed, "sex") % 2 == 0;
        let code = if finnish {
            finnish_code(birth, male, mix(seed, "serial"))
        } else {
            estonian_code(birth, male, mix(seed, "serial"))
        };
        Person::from_code(&code)
    }

    fn full_name(&self) -> String {
        format!("{} {}", self.given, self.family)
    }

    fn age(&self) -> i32 {
        years_between(self.birth, TODAY)
    }

    /// Where the person lives: Tallinn or Tartu (or Helsinki for a Finn).
    fn city(&self) -> City {
        if self.finnish {
            City::Helsinki
        } else if mix(fnv(self.code.as_bytes()), "city") % 10 < 7 {
            City::Tallinn
        } else {
            City::Tartu
        }
    }
}

/// The date `century + yy`-`mm`-`dd`, if the parts make one.
fn calendar_date(century: i32, yy: Option<u32>, mm: Option<u32>, dd: Option<u32>) -> Option<Date> {
    let month = Month::try_from(u8::try_from(mm?).ok()?).ok()?;
    let year = century + i32::try_from(yy?).ok()?;
    Date::from_calendar_date(year, month, u8::try_from(dd?).ok()?).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum City {
    Tallinn,
    Tartu,
    Helsinki,
}

/// An Estonian personal code with a correct check digit, never ending in 9
/// (the backends' "unknown person").
fn estonian_code(birth: Date, male: bool, serial: u64) -> String {
    let century = match birth.year() {
        ..=1899 => 1,
        1900..=1999 => 3,
        _ => 5,
    };
    let first = century + u8::from(!male);
    for attempt in 0..20 {
        let serial = (serial + attempt) % 1000;
        let stem = format!(
            "{first}{:02}{:02}{:02}{serial:03}",
            birth.year().rem_euclid(100),
            u8::from(birth.month()),
            birth.day()
        );
        let check = estonian_check_digit(&stem);
        if check != 9 {
            return format!("{stem}{check}");
        }
    }
    format!("{first}0001010000")
}

fn estonian_check_digit(stem: &str) -> u32 {
    let digits: Vec<u32> = stem.chars().filter_map(|c| c.to_digit(10)).collect();
    let weighted = |weights: [u32; 10]| -> u32 {
        digits.iter().zip(weights).map(|(d, w)| d * w).sum::<u32>() % 11
    };
    match weighted([1, 2, 3, 4, 5, 6, 7, 8, 9, 1]) {
        10 => match weighted([3, 4, 5, 6, 7, 8, 9, 1, 2, 3]) {
            10 => 0,
            r => r,
        },
        r => r,
    }
}

/// A Finnish personal identity code (`DDMMYY-NNNC`) with its check character.
fn finnish_code(birth: Date, male: bool, serial: u64) -> String {
    let sign = match birth.year() {
        ..=1899 => '+',
        1900..=1999 => '-',
        _ => 'A',
    };
    let mut individual = 2 + serial % 897;
    if (individual % 2 == 1) != male {
        individual += 1;
    }
    let date = format!(
        "{:02}{:02}{:02}",
        birth.day(),
        u8::from(birth.month()),
        birth.year().rem_euclid(100)
    );
    let number: u64 = format!("{date}{individual:03}").parse().unwrap_or(0);
    const CHECK: &[u8] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
    let check = CHECK
        .get((number % 31) as usize)
        .map(|b| char::from(*b))
        .unwrap_or('0');
    format!("{date}{sign}{individual:03}{check}")
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

/// Builds one answer: the schema gives the shape, the request and the
/// person it is about give the values.
struct Generator<'a> {
    service: &'a ServiceApi,
    method: &'a Method,
    params: &'a BTreeMap<String, String>,
    body: Option<&'a Value>,
    person: Person,
    /// The request named nobody: lists are empty.
    unknown: bool,
}

fn set(object: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if let Some(slot) = object.get_mut(key) {
        *slot = value.into();
    }
}

impl Generator<'_> {
    fn document(&self) -> &Value {
        &self.service.document
    }

    /// A value for `schema`, the property `property` of the schema `owner`.
    fn value(&self, schema: &Value, owner: &str, property: &str, seed: u64) -> Value {
        let (schema, component) = resolve(self.document(), schema);
        if let Some(example) = schema.get("example") {
            return example.clone();
        }
        let kind = schema.get("type").and_then(Value::as_str);
        if kind == Some("object") || (kind.is_none() && schema.get("properties").is_some()) {
            let label = component
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{owner}.{property}"));
            let mut object = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property_schema) in properties {
                    let value = self.value(property_schema, &label, name, mix(seed, name));
                    object.insert(name.clone(), value);
                }
            }
            self.cohere(&label, schema, &mut object, seed);
            return Value::Object(object);
        }
        match kind {
            Some("array") => {
                let count = if self.unknown { 0 } else { 1 + seed % 3 };
                let items = schema.get("items").unwrap_or(&Value::Null);
                Value::Array(
                    (0..count)
                        .map(|i| self.value(items, owner, property, mix(seed, &i.to_string())))
                        .collect(),
                )
            }
            Some("string") => Value::String(self.string(schema, owner, property, seed)),
            Some("number") => json!(euros(seed, 10, 500)),
            Some("integer") => json!(1 + seed % 3),
            Some("boolean") => Value::Bool(seed % 2 == 0),
            _ => Value::Null,
        }
    }

    /// One item of the array property `property` of `schema`, as a map.
    fn item(&self, schema: &Value, owner: &str, property: &str, seed: u64) -> Map<String, Value> {
        let items = schema
            .pointer(&format!("/properties/{property}/items"))
            .unwrap_or(&Value::Null);
        match self.value(items, owner, property, seed) {
            Value::Object(object) => object,
            _ => Map::new(),
        }
    }

    fn string(&self, schema: &Value, owner: &str, property: &str, seed: u64) -> String {
        if let Some(value) = self.params.get(property) {
            return value.clone();
        }
        if let Some(value) = self
            .body
            .and_then(|b| b.get(property))
            .and_then(Value::as_str)
        {
            return value.to_owned();
        }
        if let Some(value) = self.vocabulary(owner, property, seed) {
            return value;
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let index = (seed % values.len().max(1) as u64) as usize;
            if let Some(value) = values.get(index).and_then(Value::as_str) {
                return value.to_owned();
            }
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date") => return ymd(days_before(TODAY, seed % 720)),
            Some("date-time") => return timestamp(days_before(TODAY, seed % 30), seed),
            // "%PDF-1.7\n", base64.
            Some("byte") => return "JVBERi0xLjcK".into(),
            _ => {}
        }
        if let Some(pattern) = schema
            .get("pattern")
            .and_then(Value::as_str)
            .and_then(Pattern::compile)
        {
            return pattern.sample(seed);
        }
        format!("{property}-{:05}", seed % 100_000)
    }

    /// Values by property name (and the schema it is in).
    fn vocabulary(&self, owner: &str, property: &str, seed: u64) -> Option<String> {
        let p = &self.person;
        let year = TODAY.year();
        let value = match (owner, property) {
            (_, "personalCode") => p.code.clone(),
            (_, "givenName") => p.given.into(),
            (_, "familyName" | "holderFamilyName") => p.family.into(),
            (_, "dateOfBirth" | "holderDateOfBirth") => ymd(p.birth),
            (_, "sex") => String::from(if p.male { "M" } else { "F" }),
            (_, "citizenship") => String::from(if p.finnish { "FI" } else { "EE" }),
            (_, "currency") => "EUR".into(),
            ("Person", "status") => "living".into(),
            ("TaxDebtCertificate", "companyName") => {
                let code = self.params.get("registryCode").map(String::as_str);
                COMPANIES
                    .iter()
                    .find(|(c, _)| Some(*c) == code)
                    .map(|(_, name)| name.to_string())
                    .or_else(|| pick(COMPANIES, seed).map(|(_, name)| name.to_string()))?
            }
            ("TaxDebtCertificate", "certificateNumber") => {
                format!("MTA-{year}-{:06}", seed % 1_000_000)
            }
            ("TaxDebtCertificate", "onDate") => ymd(TODAY),
            ("DeclarationStatus", "declarantEori") => {
                format!("EE{}", pick(COMPANIES, seed).map_or("10257326", |(c, _)| c))
            }
            ("DeclarationStatus", "officeOfDeclaration") => {
                choose(&["EE1000EE", "EE2000EE", "EE5000EE"], seed).into()
            }
            ("DeclarationStatus", "updatedAt") => timestamp(days_before(TODAY, seed % 6), seed),
            ("Decision", "decisionId") => {
                let prefix = match self.service.id.member().code() {
                    "75000002" => "TRT",
                    _ => "TLN",
                };
                format!("{prefix}-{year}-{:05}", seed % 100_000)
            }
            ("Decision", "benefitType") => choose(
                &[
                    "subsistence-benefit",
                    "needy-family-benefit",
                    "school-start-allowance",
                    "caregiver-allowance",
                ],
                seed,
            )
            .into(),
            ("SchoolPlace", "schoolYear") => format!("{year}/{}", year + 1),
            ("ResidenceConfirmation", "municipalityOfResidence") => choose(
                FI_MUNICIPALITIES,
                mix(fnv(p.code.as_bytes()), "fi-municipality"),
            )
            .into(),
            ("ResidenceConfirmation", "confirmedAt") | ("Receipt", "receivedAt") => {
                timestamp(TODAY, seed)
            }
            ("Receipt", "notificationId") => format!("DVV-MN-{year}-{:06}", seed % 1_000_000),
            ("InsurancePeriods", "requestId") => {
                let country = self
                    .body
                    .and_then(|b| b.get("targetCountry"))
                    .and_then(Value::as_str)
                    .unwrap_or("XX");
                format!("U1-{country}-{year}-{:07}", seed % 10_000_000)
            }
            ("LetterStatus", "letterId") => format!("BED-{year}-{:07}", seed % 10_000_000),
            ("LetterStatus", "receivedBy") => p.full_name(),
            _ => return None,
        };
        Some(value)
    }

    /// Cross-field rules of each known schema, applied after the generic
    /// pass: they only overwrite (or drop optional) declared properties.
    fn cohere(&self, label: &str, schema: &Value, object: &mut Map<String, Value>, seed: u64) {
        match label {
            "Address" => self.cohere_address(object),
            "Residence" => {
                let since = days_before(TODAY, mix(seed, "since") % 4_000);
                let adult = add_years(self.person.birth, 18);
                set(object, "registeredSince", ymd(since.max(adult).min(TODAY)));
                let kind = if seed % 7 == 0 {
                    "temporary"
                } else {
                    "permanent"
                };
                set(object, "residenceType", kind);
            }
            "Person" => set(object, "dateOfDeath", Value::Null),
            "FamilyRelations" => self.cohere_family(schema, object, seed),
            "IncomeStatement" => self.cohere_income(schema, object, seed),
            "TaxDebtCertificate" => {
                let debt = seed % 4 == 0;
                set(object, "hasTaxDebt", debt);
                set(
                    object,
                    "debtAmount",
                    if debt { euros(seed, 120, 9_000) } else { 0.0 },
                );
                set(object, "paymentScheduleInPlace", debt && seed % 8 == 0);
            }
            "Eligibility" => {
                let eligible = mix(fnv(self.person.code.as_bytes()), "eligible") % 3 != 0;
                set(object, "eligible", eligible);
                let types: Vec<&str> = if eligible {
                    let all = ["subsistence", "needy-family", "disability"];
                    let first = (seed % 3) as usize;
                    let mut chosen = vec![all[first]];
                    if seed % 5 == 0 {
                        chosen.push(all[(first + 1) % 3]);
                    }
                    chosen
                } else {
                    Vec::new()
                };
                set(object, "benefitTypes", json!(types));
                let until = add_months(TODAY, 6);
                set(object, "validUntil", ymd(until));
            }
            "Pension" => {
                let p = &self.person;
                if p.age() >= 65 {
                    set(object, "pensionType", "old-age");
                    set(object, "startDate", ymd(add_years(p.birth, 65)));
                    set(object, "monthlyAmount", euros(seed, 680, 1_080));
                } else {
                    set(object, "pensionType", "work-incapacity");
                    let start = days_before(TODAY, seed % 2_500).max(add_years(p.birth, 18));
                    set(object, "startDate", ymd(start.min(TODAY)));
                    set(object, "monthlyAmount", euros(seed, 290, 620));
                }
            }
            "IndicatorList" => self.cohere_indicators(schema, object, seed),
            "VaccinationRecord" => self.cohere_vaccinations(schema, object, seed),
            "Decision" => {
                let status = object
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let decided = matches!(status.as_str(), "granted" | "refused" | "paid");
                set(
                    object,
                    "decidedOn",
                    if decided {
                        Value::String(ymd(days_before(TODAY, 3 + seed % 200)))
                    } else {
                        Value::Null
                    },
                );
                if matches!(status.as_str(), "granted" | "paid") {
                    set(object, "amount", euros(seed, 50, 400));
                } else {
                    object.remove("amount");
                }
            }
            "SchoolPlace" => {
                let schools = if self.service.id.member().code() == "75000002" {
                    TARTU_SCHOOLS
                } else {
                    TALLINN_SCHOOLS
                };
                let h = mix(fnv(self.person.code.as_bytes()), "school");
                if let Some((code, name)) = pick(schools, h) {
                    set(object, "schoolRegistryCode", code);
                    set(object, "schoolName", name);
                }
                let status = match self.body.and_then(|b| b.get("accepted")) {
                    Some(Value::Bool(true)) => "accepted",
                    Some(Value::Bool(false)) => "declined",
                    _ => "offered",
                };
                set(object, "status", status);
            }
            "ResidenceConfirmation" => {
                let resident = mix(fnv(self.person.code.as_bytes()), "fi-resident") % 5 != 0;
                set(object, "residentInFinland", resident);
                if resident {
                    let since = days_before(TODAY, 200 + seed % 3_000);
                    set(object, "residentSince", ymd(since));
                } else {
                    object.remove("residentSince");
                    object.remove("municipalityOfResidence");
                }
            }
            "A1Certificate" => {
                let number = self
                    .params
                    .get("documentNumber")
                    .cloned()
                    .unwrap_or_default();
                let prefix: String = number.chars().take(2).collect();
                let country = if prefix.len() == 2 && prefix.chars().all(|c| c.is_ascii_uppercase())
                {
                    prefix
                } else {
                    "EE".to_owned()
                };
                set(object, "issuingCountry", country.clone());
                set(object, "applicableLegislation", country);
                let from = days_before(TODAY, seed % 700);
                let to = add_months(from, if seed % 2 == 0 { 12 } else { 24 });
                set(object, "validFrom", ymd(from));
                set(object, "validTo", ymd(to));
                let status = if to < TODAY {
                    "expired"
                } else if seed % 17 == 0 {
                    "withdrawn"
                } else {
                    "valid"
                };
                set(object, "status", status);
            }
            "InsurancePeriods" => self.cohere_insurance(schema, object, seed),
            "DistributionPointList" => self.cohere_distribution_points(schema, object),
            "LetterStatus" => {
                let status = if *self.method == Method::POST {
                    "accepted"
                } else {
                    choose(&["delivered", "delivered", "in-transit", "returned"], seed)
                };
                set(object, "status", status);
                if status == "delivered" {
                    set(
                        object,
                        "deliveredAt",
                        timestamp(days_before(TODAY, seed % 10), seed),
                    );
                } else {
                    set(object, "deliveredAt", Value::Null);
                    object.remove("receivedBy");
                }
            }
            _ => {}
        }
    }

    fn cohere_address(&self, object: &mut Map<String, Value>) {
        let h = mix(fnv(self.person.code.as_bytes()), "address");
        let house = 1 + h % 120;
        let flat = 1 + (h >> 12) % 60;
        match self.person.city() {
            City::Helsinki => {
                let (street, postal) =
                    pick(HELSINKI_STREETS, h).unwrap_or(("Mannerheimintie", "00100"));
                set(
                    object,
                    "fullAddress",
                    format!("{street} {house} A {flat}, {postal} Helsinki"),
                );
                set(object, "county", "Uusimaa");
                set(object, "municipality", "Helsinki");
                set(object, "settlement", "Helsinki");
                set(object, "postalCode", postal);
                object.remove("adsOid");
            }
            city => {
                let (streets, county, municipality) = if city == City::Tallinn {
                    (TALLINN_STREETS, "Harju maakond", "Tallinn")
                } else {
                    (TARTU_STREETS, "Tartu maakond", "Tartu linn")
                };
                let (street, settlement, postal) =
                    pick(streets, h).unwrap_or(("Narva mnt", "Kesklinna linnaosa", "10117"));
                set(
                    object,
                    "fullAddress",
                    format!("{county}, {municipality}, {settlement}, {street} {house}-{flat}"),
                );
                set(object, "county", county);
                set(object, "municipality", municipality);
                set(object, "settlement", settlement);
                set(object, "postalCode", postal);
                set(object, "adsOid", format!("ME{:08}", h % 100_000_000));
            }
        }
    }

    /// Spouse, children or parents, with well-formed personal codes and
    /// ages that fit the person's; filtered by `relationType`.
    fn cohere_family(&self, schema: &Value, object: &mut Map<String, Value>, seed: u64) {
        let p = &self.person;
        let h = fnv(p.code.as_bytes());
        // (relation, male, birth, valid from)
        let mut relatives: Vec<(&str, bool, Date, Date)> = Vec::new();
        if p.age() >= 24 && mix(h, "married") % 5 != 0 {
            let offset = (mix(h, "spouse-age") % 2_000) as i64 - 700;
            let birth = if offset >= 0 {
                days_after(p.birth, offset as u64)
            } else {
                days_before(p.birth, offset.unsigned_abs())
            };
            let married = add_years(p.birth, 24 + (mix(h, "wedding") % 8) as i32).min(TODAY);
            relatives.push(("spouse", !p.male, birth, married));
        }
        if p.age() >= 27 {
            let children = mix(h, "children") % 4;
            for i in 0..children {
                let birth = days_after(
                    add_years(p.birth, 26 + 3 * i as i32),
                    mix(h, &format!("child{i}")) % 900,
                );
                if birth < TODAY {
                    relatives.push(("child", mix(h, &format!("sex{i}")) % 2 == 0, birth, birth));
                }
            }
        }
        if p.age() < 30 {
            let mother = days_before(p.birth, 365 * 26 + mix(h, "mother") % 2_500);
            let father = days_before(p.birth, 365 * 28 + mix(h, "father") % 2_500);
            relatives.push(("parent", false, mother, p.birth));
            relatives.push(("parent", true, father, p.birth));
        }
        let wanted = self.params.get("relationType");
        let mut relations = Vec::new();
        for (i, (relation, male, birth, from)) in relatives.into_iter().enumerate() {
            if wanted.is_some_and(|w| w != relation) {
                continue;
            }
            let item_seed = mix(seed, &format!("relation{i}"));
            let mut item = self.item(schema, "FamilyRelations", "relations", item_seed);
            let code = estonian_code(birth, male, mix(h, &format!("code{i}")));
            let given = choose(
                if male { EE_MALE } else { EE_FEMALE },
                mix(h, &format!("given{i}")),
            );
            let family = if relation == "parent" && mix(h, &format!("kept{i}")) % 4 == 0 {
                choose(EE_FAMILY, mix(h, &format!("family{i}")))
            } else {
                p.family
            };
            set(&mut item, "relationType", relation);
            set(&mut item, "personalCode", code);
            set(&mut item, "givenName", given);
            set(&mut item, "familyName", family);
            set(&mut item, "dateOfBirth", ymd(birth));
            set(&mut item, "validFrom", ymd(from));
            relations.push(Value::Object(item));
        }
        set(object, "relations", relations);
    }

    /// One entry per month of `fromMonth`..`toMonth` (at most the last 24):
    /// a salary, or a pension from the Social Insurance Board.
    fn cohere_income(&self, schema: &Value, object: &mut Map<String, Value>, seed: u64) {
        let month_of = |name: &str| -> Option<i32> {
            let (y, m) = self.params.get(name)?.split_once('-')?;
            Some(y.parse::<i32>().ok()? * 12 + m.parse::<i32>().ok()? - 1)
        };
        let to = month_of("toMonth").unwrap_or(TODAY.year() * 12 + 1);
        let from = month_of("fromMonth").unwrap_or(to - 2).max(to - 23);
        let h = fnv(self.person.code.as_bytes());
        let pensioner = self.person.age() >= 65;
        let base = 1_250 + mix(h, "salary") % 3_000;
        let employer = pick(COMPANIES, mix(h, "employer")).map_or("10257326", |(c, _)| c);
        let mut months = Vec::new();
        if !self.unknown {
            for index in from..=to {
                let month = format!(
                    "{:04}-{:02}",
                    index.div_euclid(12),
                    index.rem_euclid(12) + 1
                );
                let item_seed = mix(seed, &month);
                let mut item = self.item(schema, "IncomeStatement", "months", item_seed);
                set(&mut item, "month", month);
                if pensioner {
                    set(&mut item, "grossIncome", euros(h, 680, 1_080));
                    set(&mut item, "incomeType", "benefit");
                    set(&mut item, "payerRegistryCode", "70000006");
                } else {
                    let gross = base as f64 + (item_seed % 12_000) as f64 / 100.0;
                    set(&mut item, "grossIncome", (gross * 100.0).round() / 100.0);
                    set(&mut item, "incomeType", "salary");
                    set(&mut item, "payerRegistryCode", employer);
                }
                months.push(Value::Object(item));
            }
        }
        set(object, "months", months);
    }

    /// Weekly indicators per municipality of the region; counts under 5
    /// are suppressed (no value), as statistics offices do.
    fn cohere_indicators(&self, schema: &Value, object: &mut Map<String, Value>, seed: u64) {
        let municipalities: Vec<(String, u64)> = match self.params.get("municipality") {
            Some(code) => vec![(
                code.clone(),
                HARJU_MUNICIPALITIES
                    .iter()
                    .find(|(c, _)| c == code)
                    .map_or(10, |(_, share)| *share),
            )],
            None => HARJU_MUNICIPALITIES
                .iter()
                .map(|(c, share)| (c.to_string(), *share))
                .collect(),
        };
        let all = [
            "influenza-cases",
            "covid19-cases",
            "measles-cases",
            "mmr-coverage",
        ];
        let indicators: Vec<&str> = match self.params.get("indicator") {
            Some(wanted) => all.iter().copied().filter(|i| i == wanted).collect(),
            None => all.to_vec(),
        };
        // The last complete week.
        let (week_year, week, _) = days_before(TODAY, 7).to_iso_week_date();
        let week = self
            .params
            .get("isoWeek")
            .cloned()
            .unwrap_or_else(|| format!("{week_year}-W{week:02}"));
        let mut items = Vec::new();
        for (municipality, share) in &municipalities {
            for indicator in &indicators {
                let s = mix(seed, &format!("{municipality}{indicator}{week}"));
                let mut item = self.item(schema, "IndicatorList", "items", s);
                set(&mut item, "municipality", municipality.clone());
                set(&mut item, "indicator", *indicator);
                set(&mut item, "isoWeek", week.clone());
                let (value, unit) = match *indicator {
                    "influenza-cases" => ((share * (300 + s % 500) / 1_000) as f64, "count"),
                    "covid19-cases" => ((share * (60 + s % 140) / 1_000) as f64, "count"),
                    "measles-cases" => ((s % 10 / 8) as f64, "count"),
                    _ => (((860 + s % 100) as f64) / 10.0, "percent"),
                };
                set(&mut item, "unit", unit);
                let suppressed = unit == "count" && value > 0.0 && value < 5.0;
                set(&mut item, "suppressed", suppressed);
                if suppressed {
                    item.remove("value");
                } else {
                    set(&mut item, "value", value);
                }
                items.push(Value::Object(item));
            }
        }
        set(object, "items", items);
    }

    /// A childhood schedule for children, seasonal vaccines for adults;
    /// filtered by `disease`.
    fn cohere_vaccinations(&self, schema: &Value, object: &mut Map<String, Value>, seed: u64) {
        let p = &self.person;
        let h = fnv(p.code.as_bytes());
        // (disease, ATC code, dose, given on, next dose due)
        let mut doses: Vec<(&str, &str, u64, Date, Option<Date>)> = Vec::new();
        let mmr = "measles, mumps, rubella";
        let first_mmr = days_after(add_years(p.birth, 1), h % 60);
        if first_mmr < TODAY {
            let second = days_after(add_years(p.birth, 13), h % 90);
            let next = (second >= TODAY).then_some(second);
            doses.push((mmr, "J07BD52", 1, first_mmr, next));
            if second < TODAY {
                doses.push((mmr, "J07BD52", 2, second, None));
            }
        }
        if p.age() >= 18 {
            let autumn = Date::from_calendar_date(TODAY.year() - 1, Month::October, 1)
                .map(|d| days_after(d, h % 50))
                .unwrap_or(TODAY);
            if mix(h, "flu") % 3 != 0 {
                doses.push(("influenza", "J07BB02", 1, autumn, None));
            }
            if mix(h, "covid") % 2 == 0 {
                doses.push(("COVID-19", "J07BX03", 1, days_after(autumn, 14), None));
            }
            if mix(h, "tbe") % 3 == 0 {
                let first = days_before(TODAY, 30 + h % 200);
                let due = add_years(first, 1);
                doses.push(("tick-borne encephalitis", "J07BA01", 2, first, Some(due)));
            }
        }
        let wanted = self.params.get("disease").map(|d| d.to_lowercase());
        let mut items = Vec::new();
        for (i, (disease, atc, dose, given, due)) in doses.into_iter().enumerate() {
            if wanted
                .as_ref()
                .is_some_and(|w| !disease.to_lowercase().contains(w.as_str()))
            {
                continue;
            }
            let mut item = self.item(
                schema,
                "VaccinationRecord",
                "vaccinations",
                mix(seed, &i.to_string()),
            );
            set(&mut item, "targetDisease", disease);
            set(&mut item, "vaccineCode", atc);
            set(&mut item, "doseNumber", dose);
            set(&mut item, "administeredOn", ymd(given));
            set(&mut item, "nextDoseDue", due.map(ymd));
            items.push(Value::Object(item));
        }
        set(object, "vaccinations", items);
    }

    /// Contiguous employment periods in the requested country and time.
    fn cohere_insurance(&self, schema: &Value, object: &mut Map<String, Value>, seed: u64) {
        let body_date = |name: &str| {
            self.body
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .and_then(parse_date)
        };
        let to = body_date("periodTo").unwrap_or(TODAY).min(TODAY);
        let from = body_date("periodFrom").unwrap_or_else(|| add_years(to, -3));
        let country = self
            .body
            .and_then(|b| b.get("targetCountry"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let employers: &[&str] = match country {
            "FI" => &["Rakennusliike Lehto Oy", "Kesko Oyj", "Posti Group Oyj"],
            "SE" => &["Skanska Sverige AB", "PostNord Sverige AB"],
            "DE" => &["Deutsche Bahn AG", "Bauer Hochbau GmbH"],
            _ => &["Baltic Builders SIA", "Nordic Care Services"],
        };
        let count = if self.unknown || from >= to {
            0
        } else {
            1 + seed % 3
        };
        let span = (to - from).whole_days().max(1) as u64;
        let mut periods = Vec::new();
        for i in 0..count {
            let start = days_after(from, span * i / count);
            let end = days_before(days_after(from, span * (i + 1) / count), 1).max(start);
            let mut item = self.item(
                schema,
                "InsurancePeriods",
                "periods",
                mix(seed, &i.to_string()),
            );
            set(&mut item, "from", ymd(start));
            set(&mut item, "to", ymd(end));
            let employed = mix(seed, &format!("self{i}")) % 5 != 0;
            set(
                &mut item,
                "type",
                if employed {
                    "employment"
                } else {
                    "self-employment"
                },
            );
            if employed {
                set(
                    &mut item,
                    "employerName",
                    choose(employers, mix(seed, &format!("employer{i}"))),
                );
            } else {
                item.remove("employerName");
            }
            periods.push(Value::Object(item));
        }
        set(object, "periods", periods);
    }

    fn cohere_distribution_points(&self, schema: &Value, object: &mut Map<String, Value>) {
        let wanted = self.params.get("municipality");
        let mut items = Vec::new();
        for (id, name, address, municipality, lat, lon, hours, operator) in DISTRIBUTION_POINTS {
            if wanted.is_some_and(|w| w != municipality) {
                continue;
            }
            let mut item = self.item(schema, "DistributionPointList", "items", fnv(id.as_bytes()));
            set(&mut item, "id", *id);
            set(&mut item, "name", *name);
            set(&mut item, "address", *address);
            set(&mut item, "municipality", *municipality);
            set(&mut item, "latitude", *lat);
            set(&mut item, "longitude", *lon);
            set(&mut item, "openingHours", *hours);
            set(&mut item, "operator", *operator);
            items.push(Value::Object(item));
        }
        set(object, "items", items);
    }
}

#[cfg(test)]
mod tests {
    use super::super::federation;
    use super::*;

    /// Sample values for the documents' parameters: real-looking, and
    /// never ending in 9 (which names nobody).
    fn sample_parameter(name: &str, schema: &Value) -> String {
        match name {
            "personalCode" => "38001010002".into(),
            "registryCode" => "10257326".into(),
            "mrn" => "26EE1000EE00012345".into(),
            "documentNumber" => "EE-A1-2026-000123".into(),
            "letterId" => "BED-2026-0001234".into(),
            "decisionId" => "TLN-2026-00412".into(),
            "fromMonth" => "2025-11".into(),
            "toMonth" => "2026-02".into(),
            "consentId" => "c-5f1d2a".into(),
            "municipality" => "0784".into(),
            "isoWeek" => "2026-W10".into(),
            "schoolYear" => "2026/2027".into(),
            "disease" => "influenza".into(),
            _ => sample_string(name, schema),
        }
    }

    fn sample_string(name: &str, schema: &Value) -> String {
        match name {
            "finnishPersonalIdentityCode" => return "150390-123X".into(),
            n if n.ends_with("PersonalCode") => return "49203110004".into(),
            "targetCountry" => return "FI".into(),
            _ => {}
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
            .and_then(Value::as_str)
        {
            return first.to_owned();
        }
        match schema.get("format").and_then(Value::as_str) {
            Some("date") => return "2026-02-01".into(),
            Some("byte") => return "JVBERi0xLjcK".into(),
            _ => {}
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            return Pattern::compile(pattern).unwrap().sample(1);
        }
        format!("sample {name}")
    }

    /// A request body for a schema, from the sample values.
    fn sample_body(schema: &Value, document: &Value, name: &str) -> Value {
        let (schema, _) = resolve(document, schema);
        match schema.get("type").and_then(Value::as_str) {
            Some("object") => {
                let mut object = Map::new();
                for (p, s) in schema["properties"].as_object().unwrap() {
                    object.insert(p.clone(), sample_body(s, document, p));
                }
                Value::Object(object)
            }
            Some("array") => json!([sample_body(&schema["items"], document, name)]),
            Some("boolean") => json!(true),
            Some("number") | Some("integer") => json!(1),
            _ => json!(sample_string(name, schema)),
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    /// `(service, operation, URL)` for every operation, with sample path
    /// parameters and, if `all_query`, every query parameter (else only
    /// the required ones).
    fn operation_urls<'a>(
        backends: &Backends,
        apis: &'a [(ServiceId, ServiceApi)],
        all_query: bool,
    ) -> Vec<(&'a ServiceApi, &'a OperationSpec, String)> {
        let mut out = Vec::new();
        for (id, api) in apis {
            let base = backends.backend_url(id).unwrap();
            for op in &api.operations {
                let mut path = Vec::new();
                for segment in &op.segments {
                    path.push(match segment {
                        Segment::Literal(l) => l.clone(),
                        Segment::Parameter(name) => {
                            let p = op.parameters.iter().find(|p| &p.name == name).unwrap();
                            sample_parameter(name, &p.schema)
                        }
                    });
                }
                let query: Vec<String> = op
                    .parameters
                    .iter()
                    .filter(|p| !p.in_path && (all_query || p.required))
                    .map(|p| format!("{}={}", p.name, sample_parameter(&p.name, &p.schema)))
                    .collect();
                let mut url = format!("{base}{}", path.join("/"));
                if !query.is_empty() {
                    url = format!("{url}?{}", query.join("&"));
                }
                out.push((api, op, url));
            }
        }
        out
    }

    fn all_apis() -> Vec<(ServiceId, ServiceApi)> {
        let spec = federation().unwrap();
        let mut out = Vec::new();
        for m in &spec.members {
            let member = MemberId::new(&spec.instance, &m.class, &m.code).unwrap();
            for s in &m.subsystems {
                for svc in &s.services {
                    let id = member
                        .subsystem(&s.code)
                        .unwrap()
                        .service(&svc.code, svc.version.as_deref())
                        .unwrap();
                    out.push((id.clone(), ServiceApi::new(id, m, svc).unwrap()));
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn every_service_gets_a_backend_url_on_its_members_server() {
        let spec = federation().unwrap();
        let backends = start(&spec).await.unwrap();
        let apis = all_apis();
        assert_eq!(apis.len(), 20, "the demo has 20 services");
        assert_eq!(backends.services().count(), apis.len());
        let members_with_services = spec
            .members
            .iter()
            .filter(|m| m.subsystems.iter().any(|s| !s.services.is_empty()))
            .count();
        assert_eq!(backends.servers().count(), members_with_services);
        for (id, _) in &apis {
            let url = backends.backend_url(id).unwrap();
            let (_, addr) = backends.servers().find(|(m, _)| *m == id.member()).unwrap();
            let version = id.version().unwrap_or("-");
            assert_eq!(
                url,
                format!(
                    "http://{addr}/{}/{}/{version}/",
                    id.subsystem().code(),
                    id.code()
                )
            );
        }
        backends.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn every_operation_answers_in_its_documented_shape() {
        let spec = federation().unwrap();
        let backends = start(&spec).await.unwrap();
        let apis = all_apis();
        let http = client();
        let mut gets = 0;
        let mut posts = 0;
        for all_query in [false, true] {
            for (api, op, url) in operation_urls(&backends, &apis, all_query) {
                let mut request = http.request(op.method.clone(), &url);
                if let Some(schema) = &op.body {
                    request = request.json(&sample_body(schema, &api.document, "body"));
                    posts += 1;
                } else {
                    gets += 1;
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let content_type = response.headers()[header::CONTENT_TYPE].clone();
                let body: Value = response.json().await.unwrap();
                assert_eq!(status, op.success, "{} {url}: {body}", op.method);
                assert_eq!(content_type, "application/json", "{url}");
                let schema = op.success_schema.as_ref().unwrap();
                check(&body, schema, &api.document, "response")
                    .unwrap_or_else(|e| panic!("{} {url}: {e}\n{body:#}", op.method));
                // Answers have content: not an empty object.
                assert!(body.as_object().is_some_and(|o| !o.is_empty()), "{url}");
            }
        }
        assert_eq!(
            (gets, posts),
            (2 * 19, 2 * 6),
            "GET and POST operations tried"
        );
        backends.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn answers_are_realistic_and_consistent() {
        let spec = federation().unwrap();
        let backends = start(&spec).await.unwrap();
        let http = client();
        let url = |service: &str, path: &str| {
            let id: ServiceId = service.parse().unwrap();
            format!("{}{path}", backends.backend_url(&id).unwrap())
        };
        let get = |url: String| {
            let http = http.clone();
            async move {
                let r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{url}");
                r.json::<Value>().await.unwrap()
            }
        };
        let register = "DEMO/GOV/70000002/population-register";
        let person = get(url(
            &format!("{register}/person-basic-data/v1"),
            "persons/38001010002",
        ))
        .await;
        assert_eq!(person["personalCode"], "38001010002");
        assert_eq!(person["dateOfBirth"], "1980-01-01");
        assert_eq!(person["sex"], "M");
        assert_eq!(person["status"], "living");
        assert!(EE_MALE.contains(&person["givenName"].as_str().unwrap()));
        // The same person, the same name, in every service.
        let residence = get(url(
            &format!("{register}/residence/v1"),
            "persons/38001010002/residence",
        ))
        .await;
        let address = residence["address"]["fullAddress"].as_str().unwrap();
        assert!(
            address.starts_with("Harju maakond, Tallinn")
                || address.starts_with("Tartu maakond, Tartu linn"),
            "{address}"
        );
        let family = get(url(
            &format!("{register}/family-relations/v1"),
            "persons/38001010002/family-relations",
        ))
        .await;
        for relation in family["relations"].as_array().unwrap() {
            let code = relation["personalCode"].as_str().unwrap();
            let relative = Person::from_code(code);
            assert_eq!(
                ymd(relative.birth),
                relation["dateOfBirth"].as_str().unwrap()
            );
            assert_eq!(
                estonian_check_digit(&code[..10]),
                code[10..].parse::<u32>().unwrap()
            );
        }
        let children = get(url(
            &format!("{register}/family-relations/v1"),
            "persons/38001010002/family-relations?relationType=child",
        ))
        .await;
        assert!(children["relations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["relationType"] == "child"));
        // Months as asked.
        let income = get(url(
            "DEMO/GOV/70000004/tax-information/person-income/v1",
            "persons/38001010002/income?fromMonth=2025-11&toMonth=2026-02",
        ))
        .await;
        let months: Vec<&str> = income["months"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["month"].as_str().unwrap())
            .collect();
        assert_eq!(months, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!(income["currency"], "EUR");
        // Filters of the health statistics.
        let stats = get(url(
            "DEMO/GOV/70000007/public-health/health-statistics/v1",
            "indicators?municipality=0784&indicator=influenza-cases&isoWeek=2026-W10",
        ))
        .await;
        let items = stats["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["municipality"], "0784");
        assert_eq!(items[0]["isoWeek"], "2026-W10");
        assert_eq!(items[0]["unit"], "count");
        // Tartu's decisions carry Tartu's municipality code and ids.
        let decisions = get(url(
            "DEMO/MUN/75000002/social-benefits/benefit-decision-status/v1",
            "persons/49203110004/decisions",
        ))
        .await;
        for d in decisions["decisions"].as_array().unwrap() {
            assert_eq!(d["municipalityCode"], "0793");
            assert!(d["decisionId"].as_str().unwrap().starts_with("TRT-"));
        }
        // Deterministic: the same request, the same answer.
        let again = get(url(
            &format!("{register}/family-relations/v1"),
            "persons/38001010002/family-relations",
        ))
        .await;
        assert_eq!(family, again);
        backends.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_identifiers_are_404_and_lists_empty() {
        let spec = federation().unwrap();
        let backends = start(&spec).await.unwrap();
        let http = client();
        let base = |s: &str| backends.backend_url(&s.parse().unwrap()).unwrap();
        for url in [
            format!(
                "{}persons/39107150009/residence",
                base("DEMO/GOV/70000002/population-register/residence/v1")
            ),
            format!(
                "{}persons/39107150009",
                base("DEMO/GOV/70000002/population-register/person-basic-data/v1")
            ),
            format!(
                "{}companies/10000009/tax-debt",
                base("DEMO/GOV/70000004/tax-information/tax-debt-certificate/v1")
            ),
            format!(
                "{}letters/BED-2026-0000009",
                base("DEMO/COM/10000001/registered-mail/registered-letter/v1")
            ),
        ] {
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{url}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "not-found", "{url}");
            assert!(body["message"]
                .as_str()
                .is_some_and(|m| !m.contains("39107150009")));
        }
        // A person unknown in Finland, by the body.
        let response = http
            .post(format!(
                "{}residence-confirmations",
                base("DEMO/GOV/0245437-2/cross-border-population/residence-confirmation/v1")
            ))
            .json(&json!({"estonianPersonalCode": "39107150009", "dateOfBirth": "1991-07-15", "familyName": "Tamm"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        // An operation without a documented 404 answers an empty list.
        let response = http
            .get(format!(
                "{}persons/39107150009/decisions",
                base("DEMO/MUN/75000001/social-benefits/benefit-decision-status/v1")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["decisions"], json!([]));
        backends.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn malformed_requests_are_400_and_unknown_routes_404_or_405() {
        let spec = federation().unwrap();
        let backends = start(&spec).await.unwrap();
        let http = client();
        let base = |s: &str| backends.backend_url(&s.parse().unwrap()).unwrap();
        let residence = base("DEMO/GOV/70000002/population-register/residence/v1");
        let income = base("DEMO/GOV/70000004/tax-information/person-income/v1");
        let family = base("DEMO/GOV/70000002/population-register/family-relations/v1");
        let confirm = base("DEMO/GOV/0245437-2/cross-border-population/residence-confirmation/v1");
        let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
            (
                http.get(format!("{residence}persons/7800101000/residence")),
                StatusCode::BAD_REQUEST,
                "path parameter personalCode must match",
            ),
            (
                http.get(format!(
                    "{residence}persons/38001010002/residence?onDate=2026-02-30"
                )),
                StatusCode::BAD_REQUEST,
                "query parameter onDate must be a date",
            ),
            (
                http.get(format!(
                    "{income}persons/38001010002/income?fromMonth=2026-01"
                )),
                StatusCode::BAD_REQUEST,
                "query parameter toMonth is required",
            ),
            (
                http.get(format!(
                    "{income}persons/38001010002/income?fromMonth=2026-03&toMonth=2026-01"
                )),
                StatusCode::BAD_REQUEST,
                "fromMonth may not be after toMonth",
            ),
            (
                http.get(format!(
                    "{family}persons/38001010002/family-relations?relationType=cousin"
                )),
                StatusCode::BAD_REQUEST,
                "must be one of spouse, child, parent",
            ),
            (
                http.post(format!("{confirm}residence-confirmations"))
                    .json(&json!({"familyName": "Tamm"})),
                StatusCode::BAD_REQUEST,
                "body.dateOfBirth is required",
            ),
            (
                http.post(format!("{confirm}residence-confirmations"))
                    .body("not json"),
                StatusCode::BAD_REQUEST,
                "not JSON",
            ),
            (
                http.post(format!("{confirm}residence-confirmations")),
                StatusCode::BAD_REQUEST,
                "body is required",
            ),
            (
                http.post(format!("{residence}persons/38001010002/residence")),
                StatusCode::METHOD_NOT_ALLOWED,
                "allows GET",
            ),
            (
                http.get(format!("{residence}persons/38001010002/history")),
                StatusCode::NOT_FOUND,
                "has no resource /persons/38001010002/history",
            ),
            (
                http.get(residence.replace("/residence/v1/", "/residence/v9/")),
                StatusCode::NOT_FOUND,
                "serves no such service",
            ),
        ];
        for (request, status, message) in cases {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), status, "{message}");
            let body: Value = response.json().await.unwrap();
            let text = body["message"].as_str().unwrap();
            assert!(text.contains(message), "{text:?} does not say {message:?}");
        }
        // A doubled slash between base URL and path is harmless.
        let response = http
            .get(format!("{residence}/persons/38001010002/residence"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        backends.shutdown().await.unwrap();
    }

    #[test]
    fn the_documents_patterns_compile_and_match_their_samples() {
        let spec = federation().unwrap();
        let mut patterns = Vec::new();
        fn collect(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::Object(o) => {
                    if let Some(Value::String(p)) = o.get("pattern") {
                        out.push(p.clone());
                    }
                    o.values().for_each(|v| collect(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        for m in &spec.members {
            for s in &m.subsystems {
                for svc in &s.services {
                    collect(&svc.openapi, &mut patterns);
                }
            }
        }
        assert!(patterns.len() >= 6);
        for pattern in &patterns {
            let compiled = Pattern::compile(pattern).unwrap_or_else(|| panic!("{pattern}"));
            for seed in 0..50 {
                let sample = compiled.sample(seed);
                assert!(compiled.matches(&sample), "{pattern} {sample}");
            }
        }
        let code = Pattern::compile("^[1-6][0-9]{10}$").unwrap();
        assert!(code.matches("38001010002"));
        assert!(!code.matches("78001010002"));
        assert!(!code.matches("3800101000"));
        assert!(!code.matches("380010100021"));
        let fi = Pattern::compile("^[0-9]{6}[-+A-Y][0-9]{3}[0-9A-Y]$").unwrap();
        assert!(fi.matches("150390-123X"));
        assert!(fi.matches("010105A9876"));
        assert!(!fi.matches("150390Z123X"));
        let optional = Pattern::compile("^a?b+c*\\.d{2,3}$").unwrap();
        assert!(optional.matches("bb.dd"));
        assert!(optional.matches("abccc.ddd"));
        assert!(!optional.matches("a.dd"));
        assert!(!optional.matches("b.dddd"));
        assert!(Pattern::compile("^(a|b)$").is_none());
        assert!(Pattern::compile("no anchors").is_none());
    }

    #[test]
    fn made_up_personal_codes_are_well_formed() {
        for seed in 0..500 {
            let person = Person::seeded(seed, false);
            let code = &person.code;
            assert_eq!(code.len(), 11);
            assert!(!code.ends_with('9'));
            assert_eq!(
                estonian_check_digit(&code[..10]),
                code[10..].parse::<u32>().unwrap(),
                "{code}"
            );
            assert_eq!(Person::from_code(code).birth, person.birth);
            assert_eq!(Person::from_code(code).male, person.male);
            let finn = Person::seeded(seed, true);
            let fi = Pattern::compile("^[0-9]{6}[-+A-Y][0-9]{3}[0-9A-Y]$").unwrap();
            assert!(fi.matches(&finn.code), "{}", finn.code);
            assert!(finn.finnish);
            assert!(FI_FAMILY.contains(&finn.family));
        }
        // A published example: 37605030299 is a valid code.
        assert_eq!(estonian_check_digit("3760503029"), 9);
        let p = Person::from_code("49203110004");
        assert!(!p.male);
        assert_eq!(p.birth, date!(1992 - 03 - 11));
    }
}
