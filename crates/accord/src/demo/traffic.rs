//! A scripted stream of exchanges between the demo's agencies, sent
//! through their gateways.
//!
//! A federation only shows what its agreements mean when calls flow: the
//! audit logs, the monitoring figures and the "who used my data" view are
//! empty until then. `traffic.json` is a day in the demo federation told in
//! about twenty-five calls: Tallinn and Tartu deciding social benefits, the
//! Ministry of Social Affairs reading health statistics, the Estonian and
//! Finnish registers confirming residences, the suspended tax-notice
//! delivery, the Food Bank whose agreement awaits a signature, and the
//! mistakes real systems make (no purpose, no data subject, the wrong
//! subsystem, a write where only reads are agreed).
//!
//! Each exchange says what the agreements imply for it (`expect`): a
//! permit, a permit the provider answers with a status such as 404, a
//! denial with the reason the decision index gives, or a failure (the
//! provider's system is down). The tests hold the script to the real
//! decision logic ([`Index::decide`](accord_domain::agreement::index::Index::decide)
//! over `agreements.json`), so an edited agreement that changes an outcome
//! breaks the build instead of the demo. [`run`] sends the exchanges the
//! way an agency's information system would (X-Road REST r1 with Accord's
//! purpose and subject headers) and classifies each answer by X-Road's
//! error model: no `X-Road-Error` means the provider answered; a type
//! containing `AccessDenied` is a denial whose reason is its last part
//! (`Server.ServerProxy.AccessDenied.purpose-not-covered`); any other type
//! is a failure.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use accord_domain::agreement::decision::DenyReason;
use accord_domain::agreement::AgreementId;
use accord_domain::id::{ServiceId, SubsystemId};
use accord_xroad::error::X_ROAD_ERROR;
use accord_xroad::request::{X_ACCORD_PURPOSE, X_ACCORD_SUBJECT, X_ROAD_CLIENT};
use accord_xroad::response::X_ACCORD_AGREEMENT;
use accord_xroad::{format_request_target, AgreementRef, ServicePath};

const TRAFFIC: &str = include_str!("traffic.json");

/// How long one exchange may take before it counts as unanswered.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Methods an exchange may use (those the r1 protocol forwards).
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// One call of the script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What happens, for people: "Tallinn checks a benefit applicant's residence".
    pub description: String,
    /// The calling subsystem (`X-Road-Client`); its member runs a gateway.
    pub client: SubsystemId,
    pub service: ServiceId,
    #[serde(default = "default_method")]
    pub method: String,
    /// The path after the service id, starting with `/`, unencoded, with
    /// an optional `?query` (sent as written).
    pub path: String,
    /// `X-Accord-Purpose`.
    #[serde(default)]
    pub purpose: Option<String>,
    /// `X-Accord-Subject`: the data subject, e.g. `EE38001010002`.
    #[serde(default)]
    pub subject: Option<String>,
    /// A JSON request body.
    #[serde(default)]
    pub body: Option<Value>,
    pub expect: Expectation,
    /// The agreement that permits the exchange (or that a denial is
    /// attributed to); a permit's `X-Accord-Agreement` must name it.
    #[serde(default)]
    pub agreement: Option<AgreementId>,
    /// The grant of `agreement` that permits it.
    #[serde(default)]
    pub grant: Option<String>,
}

fn default_method() -> String {
    "GET".into()
}

impl Exchange {
    /// The path without the query, and the query.
    pub fn path_and_query(&self) -> (&str, Option<&str>) {
        match self.path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (&self.path, None),
        }
    }

    /// The r1 request target: `/r1/{service, wire form}{path}[?query]`,
    /// each path segment percent-encoded.
    pub fn request_target(&self) -> anyhow::Result<String> {
        let (path, query) = self.path_and_query();
        let rest = path
            .strip_prefix('/')
            .with_context(|| format!("the path {path:?} does not start with /"))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let path = ServicePath::from_segments(&segments)
            .with_context(|| format!("the path {path:?} is not a valid service path"))?;
        Ok(format_request_target(&self.service, &path, query))
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.description.trim().is_empty() {
            bail!("the description is empty");
        }
        if !METHODS.contains(&self.method.as_str()) {
            bail!(
                "method {:?} is not one of {}",
                self.method,
                METHODS.join(", ")
            );
        }
        self.request_target()?;
        if let (Some(_), None) = (&self.grant, &self.agreement) {
            bail!("a grant is named without its agreement");
        }
        Ok(())
    }
}

/// What the agreements imply for an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Expectation {
    /// `permit`: allowed, and the provider answers with a 2xx.
    Permit,
    /// `permit-404` (any status): allowed, and the provider answers with
    /// this status (no `X-Road-Error`), e.g. an unknown person.
    ProviderStatus(u16),
    /// `deny:<reason>`: a gateway refuses it for this reason.
    Deny(DenyReason),
    /// `fail`: allowed, but a gateway reports an error other than a denial
    /// (in the demo: the provider's system is down).
    Fail,
}

impl Expectation {
    /// Whether the exchange is expected to pass the agreements.
    pub fn is_permitted(&self) -> bool {
        !matches!(self, Expectation::Deny(_))
    }

    /// Whether `observed` is what this expects.
    pub fn matches(&self, observed: &Observed) -> bool {
        match (self, observed) {
            (Expectation::Permit, Observed::Answered(status)) => (200..300).contains(status),
            (Expectation::ProviderStatus(want), Observed::Answered(status)) => want == status,
            (Expectation::Deny(want), Observed::Denied(reason)) => *reason == Some(*want),
            (Expectation::Fail, Observed::Failed { .. }) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Permit => f.write_str("permit"),
            Expectation::ProviderStatus(status) => write!(f, "permit-{status}"),
            Expectation::Deny(reason) => write!(f, "deny:{reason}"),
            Expectation::Fail => f.write_str("fail"),
        }
    }
}

impl FromStr for Expectation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "permit" {
            return Ok(Expectation::Permit);
        }
        if s == "fail" {
            return Ok(Expectation::Fail);
        }
        if let Some(status) = s.strip_prefix("permit-") {
            return match status.parse::<u16>() {
                Ok(status) if (100..600).contains(&status) => {
                    Ok(Expectation::ProviderStatus(status))
                }
                _ => Err(format!("{s:?}: permit- must be followed by an HTTP status")),
            };
        }
        if let Some(reason) = s.strip_prefix("deny:") {
            return DenyReason::parse(reason)
                .map(Expectation::Deny)
                .ok_or_else(|| {
                    let codes: Vec<&str> = DenyReason::ALL.iter().map(|r| r.code()).collect();
                    format!("{s:?}: the deny reason must be one of {}", codes.join(", "))
                });
        }
        Err(format!(
            "{s:?} is not an expectation: permit, permit-STATUS, deny:REASON or fail"
        ))
    }
}

impl TryFrom<String> for Expectation {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Expectation> for String {
    fn from(e: Expectation) -> String {
        e.to_string()
    }
}

/// What came back for an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Both gateways let it through and the provider's system answered
    /// with this status (no `X-Road-Error`).
    Answered(u16),
    /// A gateway refused it (`X-Road-Error: ...AccessDenied[.reason]`).
    Denied(Option<DenyReason>),
    /// A gateway reported another error (`X-Road-Error`).
    Failed { status: u16, error_type: String },
    /// No HTTP answer from the consumer's gateway.
    Unreachable(String),
}

impl Observed {
    /// Classifies an answer by its status and `X-Road-Error` header.
    pub fn classify(status: u16, x_road_error: Option<&str>) -> Observed {
        let Some(error_type) = x_road_error else {
            return Observed::Answered(status);
        };
        match error_type.split_once(".AccessDenied") {
            Some((_, rest)) if rest.is_empty() || rest.starts_with('.') => {
                Observed::Denied(DenyReason::parse(rest.trim_start_matches('.')))
            }
            _ => Observed::Failed {
                status,
                error_type: error_type.to_owned(),
            },
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Answered(status) if (200..300).contains(status) => {
                write!(f, "permit ({status})")
            }
            Observed::Answered(status) => write!(f, "permit-{status}"),
            Observed::Denied(Some(reason)) => write!(f, "deny:{reason}"),
            Observed::Denied(None) => f.write_str("deny (no reason given)"),
            Observed::Failed { error_type, .. } => write!(f, "fail ({error_type})"),
            Observed::Unreachable(why) => write!(f, "unreachable ({why})"),
        }
    }
}

/// The result of one exchange.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The HTTP status, if the consumer's gateway answered.
    pub status: Option<u16>,
    pub observed: Observed,
    /// `X-Road-Error`, if any.
    pub error_type: Option<String>,
    /// The `message` of an X-Road error body.
    pub error_message: Option<String>,
    /// `X-Accord-Agreement`, if any: the agreement, version and grant that
    /// permitted the exchange.
    pub agreement: Option<String>,
    /// Whether the outcome is what the script expects.
    pub matched: bool,
    /// If not: why not.
    pub mismatch: Option<String>,
    pub elapsed: Duration,
}

/// Counts over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub total: usize,
    /// Answered by the provider (any status).
    pub permitted: usize,
    pub denied: usize,
    /// Failed in a gateway, or no answer at all.
    pub failed: usize,
    /// Not what the script expects.
    pub mismatched: usize,
}

impl Summary {
    fn count(&mut self, outcome: &Outcome) {
        self.total += 1;
        match outcome.observed {
            Observed::Answered(_) => self.permitted += 1,
            Observed::Denied(_) => self.denied += 1,
            Observed::Failed { .. } | Observed::Unreachable(_) => self.failed += 1,
        }
        if !outcome.matched {
            self.mismatched += 1;
        }
    }
}

/// The built-in script, checked (methods, paths, expectations).
pub fn script() -> anyhow::Result<Vec<Exchange>> {
    let script: Vec<Exchange> =
        serde_json::from_str(TRAFFIC).context("the built-in demo traffic is malformed")?;
    for (i, exchange) in script.iter().enumerate() {
        exchange
            .check()
            .with_context(|| format!("demo exchange {} ({})", i + 1, exchange.description))?;
    }
    Ok(script)
}

/// The services the script expects to fail: the demo points their
/// backends at a closed port, and no other exchange needs them.
pub fn backend_down(script: &[Exchange]) -> BTreeSet<ServiceId> {
    script
        .iter()
        .filter(|e| e.expect == Expectation::Fail)
        .map(|e| e.service.clone())
        .collect()
}

/// Sends every exchange of `script`, one after another, to the gateway of
/// its client (`consumer_gateway_url`, e.g. `http://127.0.0.1:8801`),
/// calling `on_result` after each. Refuses to start if a client has no
/// gateway; an unreachable gateway is an outcome, not an error.
pub async fn run(
    script: &[Exchange],
    consumer_gateway_url: impl Fn(&SubsystemId) -> Option<String>,
    mut on_result: impl FnMut(&Exchange, &Outcome),
) -> anyhow::Result<Summary> {
    let mut urls = Vec::with_capacity(script.len());
    for exchange in script {
        let gateway = consumer_gateway_url(&exchange.client)
            .with_context(|| format!("no demo gateway serves the client {}", exchange.client))?;
        let target = exchange
            .request_target()
            .with_context(|| format!("demo exchange {:?}", exchange.description))?;
        urls.push(format!("{}{target}", gateway.trim_end_matches('/')));
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client of the demo traffic")?;
    let mut summary = Summary::default();
    for (exchange, url) in script.iter().zip(urls) {
        let outcome = send(&client, exchange, &url).await;
        summary.count(&outcome);
        on_result(exchange, &outcome);
    }
    Ok(summary)
}

async fn send(client: &reqwest::Client, exchange: &Exchange, url: &str) -> Outcome {
    let started = Instant::now();
    let method =
        reqwest::Method::from_bytes(exchange.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut request = client
        .request(method, url)
        .header(X_ROAD_CLIENT, exchange.client.to_encoded());
    if let Some(purpose) = &exchange.purpose {
        request = request.header(X_ACCORD_PURPOSE, purpose);
    }
    if let Some(subject) = &exchange.subject {
        request = request.header(X_ACCORD_SUBJECT, subject);
    }
    if let Some(body) = &exchange.body {
        request = request.json(body);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            let observed = Observed::Unreachable(error_chain(&e));
            return Outcome {
                status: None,
                mismatch: Some(format!("expected {}, got {observed}", exchange.expect)),
                observed,
                error_type: None,
                error_message: None,
                agreement: None,
                matched: false,
                elapsed: started.elapsed(),
            };
        }
    };
    let status = response.status().as_u16();
    let header = |name: &reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let error_type = header(&X_ROAD_ERROR);
    let agreement = header(&X_ACCORD_AGREEMENT);
    let error_message = match &error_type {
        Some(_) => response
            .json::<Value>()
            .await
            .ok()
            .and_then(|body| body.get("message")?.as_str().map(str::to_owned)),
        // The provider's body is not the demo's business; read it so the
        // connection can be reused.
        None => {
            let _ = response.bytes().await;
            None
        }
    };
    let observed = Observed::classify(status, error_type.as_deref());
    let mismatch = mismatch(exchange, &observed, agreement.as_deref());
    Outcome {
        status: Some(status),
        observed,
        error_type,
        error_message,
        agreement,
        matched: mismatch.is_none(),
        mismatch,
        elapsed: started.elapsed(),
    }
}

/// Why `observed` (with its `X-Accord-Agreement`) is not what `exchange`
/// expects, or `None` if it is.
fn mismatch(exchange: &Exchange, observed: &Observed, agreement: Option<&str>) -> Option<String> {
    if !exchange.expect.matches(observed) {
        return Some(format!("expected {}, got {observed}", exchange.expect));
    }
    let (Observed::Answered(_), Some(want)) = (observed, &exchange.agreement) else {
        return None;
    };
    let Some(header) = agreement else {
        return Some(format!(
            "permitted without X-Accord-Agreement, expected agreement {want}"
        ));
    };
    match header.parse::<AgreementRef>() {
        Err(e) => Some(format!("X-Accord-Agreement {header:?}: {e}")),
        Ok(got) if got.agreement() != want => Some(format!(
            "permitted by agreement {}, expected {want}",
            got.agreement()
        )),
        Ok(got) => match &exchange.grant {
            Some(grant) if got.grant() != grant => Some(format!(
                "permitted by grant {} of {want}, expected grant {grant}",
                got.grant()
            )),
            _ => None,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use accord_domain::agreement::decision::{Decision, DecisionRequest, NoQuotaUsed};
    use accord_domain::agreement::index::{Index, IndexedAgreement};
    use accord_domain::agreement::AgreementState;
    use accord_domain::id::MemberId;
    use accord_xroad::error::{ErrorKind, Origin, XRoadError};
    use accord_xroad::{ConsumerRequest, Limits};
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{header::CONTENT_TYPE, HeaderMap, Method, Uri};
    use axum::response::{IntoResponse, Response};

    use super::super::{agreements, backends, federation, DemoFederation};
    use super::*;

    /// The demo's agreements as the registry holds them after seeding: the
    /// state each is left in, version 1, valid from this year's start for
    /// four years (as `seed` sets them).
    fn demo_index() -> Index {
        let now = time::OffsetDateTime::now_utc();
        let year_start = |year| {
            time::Date::from_calendar_date(year, time::Month::January, 1)
                .unwrap()
                .midnight()
                .assume_utc()
        };
        let indexed = agreements().unwrap().into_iter().map(|a| {
            let mut terms = a.terms;
            terms.validity.start = year_start(now.year());
            terms.validity.end = Some(year_start(now.year() + 4));
            IndexedAgreement {
                id: a.id.parse().unwrap(),
                version: 1,
                state: AgreementState::parse(&a.state).unwrap(),
                terms,
            }
        });
        Index::compile(indexed)
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// Subsystems of members that run a gateway, and every service.
    fn catalogue(spec: &DemoFederation) -> (HashSet<SubsystemId>, HashMap<ServiceId, Value>) {
        let mut clients = HashSet::new();
        let mut services = HashMap::new();
        for m in &spec.members {
            let member = MemberId::new(&spec.instance, &m.class, &m.code).unwrap();
            for s in &m.subsystems {
                let subsystem = member.subsystem(&s.code).unwrap();
                clients.insert(subsystem.clone());
                for svc in &s.services {
                    let id = subsystem
                        .service(&svc.code, svc.version.as_deref())
                        .unwrap();
                    services.insert(id, svc.openapi.clone());
                }
            }
        }
        (clients, services)
    }

    /// Whether the OpenAPI document has `method` at `path` (templates
    /// match any segment).
    fn documented(openapi: &Value, method: &str, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        openapi["paths"]
            .as_object()
            .unwrap()
            .iter()
            .any(|(template, item)| {
                let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
                item.get(method.to_lowercase()).is_some()
                    && parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            })
    }

    #[test]
    fn expectations_parse_and_print() {
        for (text, expectation) in [
            ("permit", Expectation::Permit),
            ("permit-404", Expectation::ProviderStatus(404)),
            ("fail", Expectation::Fail),
            (
                "deny:purpose-not-covered",
                Expectation::Deny(DenyReason::PurposeNotCovered),
            ),
            (
                "deny:quota-exhausted",
                Expectation::Deny(DenyReason::QuotaExhausted),
            ),
        ] {
            assert_eq!(text.parse::<Expectation>().unwrap(), expectation);
            assert_eq!(expectation.to_string(), text);
        }
        for bad in ["allow", "deny:nope", "permit-", "permit-99", "deny"] {
            assert!(bad.parse::<Expectation>().is_err(), "{bad}");
        }
        let e: Expectation =
            serde_json::from_value(serde_json::json!("deny:no-agreement")).unwrap();
        assert_eq!(e, Expectation::Deny(DenyReason::NoAgreement));
    }

    #[test]
    fn answers_are_classified_by_the_x_road_error_type() {
        for reason in DenyReason::ALL {
            for origin in [Origin::ConsumerGateway, Origin::ProviderGateway] {
                let ty = ErrorKind::AccessDenied(origin, Some(reason)).error_type();
                assert_eq!(
                    Observed::classify(500, Some(&ty)),
                    Observed::Denied(Some(reason)),
                    "{ty}"
                );
            }
        }
        let ty = ErrorKind::AccessDenied(Origin::ProviderGateway, None).error_type();
        assert_eq!(Observed::classify(500, Some(&ty)), Observed::Denied(None));
        for kind in [
            ErrorKind::BackendUnavailable,
            ErrorKind::BackendTimeout,
            ErrorKind::ProviderUnreachable,
            ErrorKind::UnknownService(Origin::ConsumerGateway),
            ErrorKind::BadRequest,
        ] {
            let ty = kind.error_type();
            assert_eq!(
                Observed::classify(kind.status().as_u16(), Some(&ty)),
                Observed::Failed {
                    status: kind.status().as_u16(),
                    error_type: ty.to_string()
                }
            );
        }
        assert_eq!(Observed::classify(404, None), Observed::Answered(404));
        assert!(Expectation::ProviderStatus(404).matches(&Observed::Answered(404)));
        assert!(!Expectation::Permit.matches(&Observed::Answered(404)));
        assert!(Expectation::Permit.matches(&Observed::Answered(201)));
        assert!(!Expectation::Fail.matches(&Observed::Unreachable("refused".into())));
        assert!(!Expectation::Deny(DenyReason::NoAgreement).matches(&Observed::Denied(None)));
    }

    #[test]
    fn a_permit_must_name_the_expected_agreement_and_grant() {
        let mut exchange = script().unwrap().remove(0);
        exchange.agreement = Some("tallinn-residence-benefits".parse().unwrap());
        exchange.grant = Some("residence-and-family".into());
        let ok = "agreement=tallinn-residence-benefits; version=2; grant=residence-and-family";
        assert_eq!(
            mismatch(&exchange, &Observed::Answered(200), Some(ok)),
            None
        );
        let other = "agreement=social-benefit-data-platform; version=1; grant=eligibility";
        assert!(mismatch(&exchange, &Observed::Answered(200), Some(other))
            .unwrap()
            .contains("permitted by agreement social-benefit-data-platform"));
        let grant = "agreement=tallinn-residence-benefits; version=1; grant=other";
        assert!(mismatch(&exchange, &Observed::Answered(200), Some(grant))
            .unwrap()
            .contains("expected grant residence-and-family"));
        assert!(mismatch(&exchange, &Observed::Answered(200), None)
            .unwrap()
            .contains("without X-Accord-Agreement"));
        assert!(mismatch(&exchange, &Observed::Answered(500), Some(ok))
            .unwrap()
            .contains("expected permit, got permit-500"));
    }

    #[test]
    fn the_script_calls_real_services_from_subsystems_with_gateways() {
        let spec = federation().unwrap();
        let (clients, services) = catalogue(&spec);
        let script = script().unwrap();
        assert!(
            (20..=30).contains(&script.len()),
            "{} exchanges",
            script.len()
        );
        let purposes: HashSet<&str> = accord_registry::DEFAULT_PURPOSES
            .iter()
            .map(|(code, _)| *code)
            .collect();
        for e in &script {
            let what = &e.description;
            assert!(
                clients.contains(&e.client),
                "{what}: no client {}",
                e.client
            );
            let openapi = services
                .get(&e.service)
                .unwrap_or_else(|| panic!("{what}: no service {}", e.service));
            if let Some(purpose) = &e.purpose {
                assert!(
                    purposes.contains(purpose.as_str()),
                    "{what}: purpose {purpose}"
                );
            }
            // The target is one a gateway parses back to this exchange.
            let target = e.request_target().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(X_ROAD_CLIENT, e.client.to_encoded().parse().unwrap());
            if let Some(subject) = &e.subject {
                headers.insert(X_ACCORD_SUBJECT, subject.parse().unwrap());
            }
            let method = Method::from_bytes(e.method.as_bytes()).unwrap();
            let parsed =
                ConsumerRequest::parse(&method, &target, &headers, &Limits::default(), |s| {
                    services.contains_key(s)
                })
                .unwrap_or_else(|err| panic!("{what}: {target}: {err}"));
            assert_eq!(parsed.service, e.service, "{what}");
            assert_eq!(parsed.client(), &e.client, "{what}");
            let (path, query) = e.path_and_query();
            assert_eq!(parsed.path.decoded(), path, "{what}");
            assert_eq!(parsed.query.as_deref(), query, "{what}");
            // What the provider is expected to answer, it documents.
            if e.expect.is_permitted() {
                assert!(
                    documented(openapi, &e.method, path),
                    "{what}: {} {path}",
                    e.method
                );
                assert!(
                    e.agreement.is_some() && e.grant.is_some(),
                    "{what}: name the permit"
                );
            }
            if e.body.is_some() {
                assert_ne!(e.method, "GET", "{what}: a GET with a body");
            }
        }
    }

    /// The valuable one: every expectation is what the real decision index
    /// decides over the demo's agreements, in the states they are seeded in.
    #[test]
    fn every_expectation_is_what_the_agreements_decide() {
        let index = demo_index();
        for e in &script().unwrap() {
            let what = &e.description;
            let (path, _) = e.path_and_query();
            let request = DecisionRequest {
                consumer: &e.client,
                service: &e.service,
                method: &e.method,
                path,
                purpose: e.purpose.as_deref(),
                data_subject: e.subject.is_some(),
                at: now(),
            };
            match index.decide(&request, &NoQuotaUsed) {
                Decision::Permit(permit) => {
                    assert!(
                        e.expect.is_permitted(),
                        "{what}: permitted ({}), expected {}",
                        Decision::Permit(permit).explain(),
                        e.expect
                    );
                    assert_eq!(Some(permit.agreement), e.agreement.as_ref(), "{what}");
                    assert_eq!(Some(permit.grant), e.grant.as_deref(), "{what}");
                }
                Decision::Deny(deny) => {
                    assert_eq!(
                        e.expect,
                        Expectation::Deny(deny.reason),
                        "{what}: {}",
                        deny.explanation
                    );
                    let under = deny.agreement.as_ref().map(|d| &d.agreement);
                    assert_eq!(under, e.agreement.as_ref(), "{what}: {}", deny.explanation);
                }
            }
        }
    }

    #[test]
    fn the_script_shows_every_agreement_and_kind_of_outcome() {
        let script = script().unwrap();
        let expected: HashSet<String> = script.iter().map(|e| e.expect.to_string()).collect();
        for kind in [
            "permit",
            "permit-404",
            "fail",
            "deny:no-agreement",
            "deny:service-not-covered",
            "deny:purpose-not-covered",
            "deny:operation-not-covered",
            "deny:agreement-suspended",
            "deny:data-subject-required",
        ] {
            assert!(expected.contains(kind), "no exchange expects {kind}");
        }
        let named: HashSet<String> = script
            .iter()
            .filter_map(|e| e.agreement.as_ref().map(|a| a.to_string()))
            .collect();
        for a in agreements().unwrap() {
            if a.state == "proposed" {
                // Not in force: its grant is tried, and there is no agreement.
                let tried = a.terms.grants.iter().any(|g| {
                    script.iter().any(|e| {
                        g.consumers.contains(&e.client)
                            && e.expect == Expectation::Deny(DenyReason::NoAgreement)
                    })
                });
                assert!(tried, "no exchange tries the proposed agreement {}", a.id);
            } else {
                assert!(named.contains(&a.id), "no exchange involves {}", a.id);
            }
        }
        // The services mapped to a closed port are needed by nothing else.
        let down = backend_down(&script);
        assert_eq!(down.len(), 1);
        for e in &script {
            if down.contains(&e.service) {
                assert_eq!(e.expect, Expectation::Fail, "{}", e.description);
            }
        }
    }

    /// A stand-in for the gateways, just enough to run the script: the real
    /// r1 parsing, the real decision index and X-Road error rendering, and
    /// forwarding to the real demo backends.
    struct FakeGateway {
        index: Index,
        services: HashSet<ServiceId>,
        backends: HashMap<ServiceId, String>,
        http: reqwest::Client,
    }

    fn x_road_error(error: XRoadError) -> Response {
        error.render().into_http().map(Body::from).into_response()
    }

    async fn fake_gateway(
        State(gw): State<Arc<FakeGateway>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let request =
            match ConsumerRequest::parse(&method, target, &headers, &Limits::default(), |s| {
                gw.services.contains(s)
            }) {
                Ok(request) => request,
                Err(e) => return x_road_error(e.into()),
            };
        let path = request.path.decoded();
        let decision = gw.index.decide(
            &DecisionRequest {
                consumer: request.client(),
                service: &request.service,
                method: request.method.as_str(),
                path: &path,
                purpose: request.headers.purpose.as_deref(),
                data_subject: request.headers.subject.is_some(),
                at: now(),
            },
            &NoQuotaUsed,
        );
        let permit = match decision {
            Decision::Permit(permit) => permit,
            Decision::Deny(deny) => {
                return x_road_error(XRoadError::new(
                    ErrorKind::AccessDenied(Origin::ProviderGateway, Some(deny.reason)),
                    deny.explanation,
                ))
            }
        };
        let agreement = AgreementRef::from_permit(&permit).unwrap();
        let mut url = format!(
            "{}{}",
            gw.backends[&request.service].trim_end_matches('/'),
            request.path.raw()
        );
        if let Some(query) = &request.query {
            url = format!("{url}?{query}");
        }
        let mut forwarded = gw.http.request(method, url).body(body.to_vec());
        if let Some(content_type) = headers.get(CONTENT_TYPE) {
            forwarded = forwarded.header(CONTENT_TYPE, content_type);
        }
        match forwarded.send().await {
            Err(e) => x_road_error(XRoadError::new(
                ErrorKind::BackendUnavailable,
                e.to_string(),
            )),
            Ok(answer) => {
                let status = answer.status();
                let content_type = answer.headers().get(CONTENT_TYPE).cloned();
                let bytes = answer.bytes().await.unwrap();
                let mut response = (status, bytes).into_response();
                if let Some(content_type) = content_type {
                    response.headers_mut().insert(CONTENT_TYPE, content_type);
                }
                response
                    .headers_mut()
                    .insert(X_ACCORD_AGREEMENT, agreement.header_value().unwrap());
                response
            }
        }
    }

    #[tokio::test]
    async fn the_script_runs_as_expected_against_the_demo_backends() {
        let spec = federation().unwrap();
        let backends = backends::start(&spec).await.unwrap();
        let script = script().unwrap();
        let (_, services) = catalogue(&spec);
        // A port nobody listens on, for the services that are down.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let down = backend_down(&script);
        let urls = services
            .keys()
            .map(|id| {
                let url = if down.contains(id) {
                    format!("http://127.0.0.1:{closed}/")
                } else {
                    backends.backend_url(id).unwrap()
                };
                (id.clone(), url)
            })
            .collect();
        let gateway = FakeGateway {
            index: demo_index(),
            services: services.keys().cloned().collect(),
            backends: urls,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let router = axum::Router::new()
            .fallback(fake_gateway)
            .with_state(Arc::new(gateway));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });

        let mut seen = Vec::new();
        let summary = run(
            &script,
            |_| Some(url.clone()),
            |e, outcome| {
                seen.push((e.description.clone(), outcome.clone()));
            },
        )
        .await
        .unwrap();
        let mismatches: Vec<String> = seen
            .iter()
            .filter(|(_, o)| !o.matched)
            .map(|(d, o)| format!("{d}: {}", o.mismatch.clone().unwrap_or_default()))
            .collect();
        assert!(mismatches.is_empty(), "{mismatches:#?}");
        assert_eq!(summary.total, script.len());
        assert_eq!(summary.mismatched, 0);
        let expected =
            |f: &dyn Fn(&Expectation) -> bool| script.iter().filter(|e| f(&e.expect)).count();
        assert_eq!(
            summary.permitted,
            expected(&|x| matches!(x, Expectation::Permit | Expectation::ProviderStatus(_)))
        );
        assert_eq!(
            summary.denied,
            expected(&|x| matches!(x, Expectation::Deny(_)))
        );
        assert_eq!(summary.failed, expected(&|x| *x == Expectation::Fail));
        // Denials and failures carry the X-Road error; permits the agreement.
        for (description, outcome) in &seen {
            assert!(outcome.status.is_some(), "{description}");
            assert!(outcome.elapsed < REQUEST_TIMEOUT, "{description}");
            match outcome.observed {
                Observed::Answered(_) => assert!(outcome.agreement.is_some(), "{description}"),
                _ => {
                    assert!(outcome.error_type.is_some(), "{description}");
                    assert!(outcome.error_message.is_some(), "{description}");
                }
            }
        }

        // A client without a gateway stops the run before anything is sent.
        let err = run(&script, |_| None, |_, _| panic!("nothing is sent"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("no demo gateway serves the client"),
            "{err}"
        );
        // An unreachable gateway is an outcome.
        let summary = run(
            &script[..1],
            |_| Some(format!("http://127.0.0.1:{closed}")),
            |_, outcome| assert!(matches!(outcome.observed, Observed::Unreachable(_))),
        )
        .await
        .unwrap();
        assert_eq!((summary.failed, summary.mismatched), (1, 1));
        backends.shutdown().await.unwrap();
    }
}
