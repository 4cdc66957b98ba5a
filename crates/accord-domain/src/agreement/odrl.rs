//! ODRL 2.2 export and import of agreements.
//!
//! [`export_agreement`] writes any agreement version as an ODRL 2.2
//! `Agreement` policy in compact JSON-LD, with the ODRL context
//! (`http://www.w3.org/ns/odrl.jsonld`) and one small extra context that
//! binds the prefix `accord:` to `urn:accord:vocab#`. Everything ODRL can
//! say is said in ODRL terms; what it cannot (commitments, indicators,
//! conflict resolution, legal basis, the parties' roles) is kept under
//! `accord:` properties, so the document stays valid JSON-LD and nothing is
//! lost. The accord terms are the ODRL profile `urn:accord:odrl-profile:v1`,
//! named in `profile`. Export is deterministic: the same terms always give
//! the same JSON.
//!
//! [`import_offer`] reads an ODRL `Offer` (compact JSON-LD with the ODRL
//! context) back into draft terms where it maps, and otherwise says
//! precisely what does not, by JSON path: rule `odrl-unmappable`, or
//! `odrl-no-assignee` when a permission does not say who may call (an Offer
//! need not; a draft grant must). An export whose `@type` is changed to
//! `Offer` imports back to the same terms.
//!
//! # Identifiers
//!
//! | accord | IRI |
//! | --- | --- |
//! | agreement version | `urn:accord:agreement:{federation}:{id}:v{version}` |
//! | member | `urn:accord:member:{INSTANCE/CLASS/CODE}` |
//! | subsystem | `urn:accord:subsystem:{INSTANCE/CLASS/CODE/SUBSYSTEM}` |
//! | service | `urn:accord:service:{INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]}` |
//! | purpose | `urn:accord:purpose:{code}` |
//! | accord vocabulary | `urn:accord:vocab#…` (prefix `accord:`) |
//!
//! Identifiers are written in their percent-encoded wire form (each part
//! encoded on its own, see [`MemberId::to_encoded`]), which is the text form
//! except that `?` and `+` are escaped, so every IRI is an absolute IRI
//! without query; the federation and purpose codes are percent-encoded
//! likewise.
//!
//! # Mapping
//!
//! | accord terms | ODRL 2.2 |
//! | --- | --- |
//! | the version | policy `"@type": "Agreement"`, `uid` as above, `profile` `urn:accord:odrl-profile:v1`, `accord:federation`, `accord:agreement`, `accord:version` |
//! | `title`, `description` | `dct:title`, `dct:description` |
//! | `validity` | `accord:validFrom` / `accord:validUntil` (`xsd:dateTime`), and folded into every permission's `dateTime` constraints |
//! | `parties` | `accord:party`: `{"@id": member IRI, "accord:role": ["provider", …]}` |
//! | a grant | one `permission` per provider member in its scope (usually one), each with `accord:id` = the grant id |
//! | `services: {services: […]}` | `target`: the service IRIs (a rule with several targets is, in ODRL's atomic reading, one rule per target: exactly what the grant means) |
//! | `services: {subsystem: …}` | `target`: `{"@type": "AssetCollection", "uid": subsystem IRI}`: the collection of all the subsystem's services, including later ones |
//! | provider(s) of the scope | `assigner` (member IRI) |
//! | `consumers` | `assignee` (subsystem IRIs) |
//! | `operations` | `action`: `[{"rdf:value": {"@id": "odrl:read" or "odrl:use"}, "refinement": [{"leftOperand": "accord:httpOperation", "operator": "isAnyOf", "rightOperand": [{"@type": "accord:HttpOperation", "accord:method": ["GET"], "accord:path": "/persons/*"}]}]}]`; `odrl:read` when every operation allows only `GET`/`HEAD`, `odrl:use` otherwise |
//! | `purposes` | constraint `purpose isAnyOf [{"@id": purpose IRI}, …]` |
//! | validity and `window` | constraint `dateTime gteq` the later start and, if either ends, `dateTime lt` the earlier end, as `{"@value": …, "@type": "xsd:dateTime"}` (starts inclusive, ends exclusive, as the index decides) |
//! | a quota | constraint `count lteq {limit}` with `unit` `accord:perMinute` / `accord:perDay` / `accord:perMonth`: requests per calendar minute, UTC day or UTC month, counted for each assignee (ODRL's `timeInterval` is the time *between* executions, not a counting period, so the unit carries the period) |
//! | `data_subject_required` | permission `duty`: `{"action": "accord:nameDataSubject"}` (each request names its data subject; the duty's parties are the permission's) |
//! | an obligation | policy `obligation` (a Duty) with `accord:id`, `assignee` = the obligated party (no assigner: all parties agreed it), `dct:description` |
//! | … `availability` | action `accord:keepAvailable`, constraint `accord:availabilityPercent gteq {percent}` |
//! | … `reporting` | action `inform`, `informedParty` = the other parties, constraint `timeInterval eq P1M` / `P3M` / `P1Y` |
//! | … `notification` | action `inform`, `informedParty` = the other parties, constraint `andSequence` (`event gt accord:incident`, `delayPeriod lteq PT{h}H`) |
//! | … `other` | action `accord:fulfil` (what to do is the description) |
//! | `commitments` | `accord:commitment`: `accord:Commitment` nodes (`accord:committedBy`, `accord:contribution` typed `accord:Budget` / `accord:Staff` / `accord:Ict` / `accord:Data`, `accord:periodFrom` / `accord:periodUntil` as `xsd:date`, `accord:note`) |
//! | `indicators` | `accord:indicator`: `accord:Indicator` nodes (`accord:id`, `dct:title`, `dct:description`, `accord:source`, `accord:unit`, `accord:baseline`, `accord:target`, `accord:direction`, `accord:reportingPeriod`) |
//! | `conflict_resolution` | `accord:conflictResolution`: an ordered `@list` of `accord:ResolutionStep` nodes (`dct:description`, `accord:deadlineDays`, `accord:decidedBy` a member IRI or an `accord:Body` with `dct:title`) |
//! | `legal_basis` | `accord:legalBasis`: `accord:LegalBasis` nodes (`accord:reference`, `accord:url` as `xsd:anyURI`) |
//!
//! # Import
//!
//! The importer reads the compact form this module writes, and the usual
//! variations of it: single values or arrays, `uid`/`@id`, terms as
//! `odrl:` compact IRIs or full IRIs, policy-level `assigner`, `assignee`
//! and `target` (ODRL's compact policy), plain `use`/`read` actions, `and`
//! logical constraints, `xsd:date` bounds. It does not run a JSON-LD
//! processor: a context may only add prefixes, never redefine ODRL terms.
//! What it approximates it says in [`ImportedOffer::notes`]:
//!
//! - no operation refinement: `read` allows `GET` and `HEAD` on `/**`,
//!   `use` every method on `/**`;
//! - no `accord:validFrom`: validity runs from the earliest `dateTime`
//!   lower bound to the latest upper bound (none if a permission has none);
//! - `dateTime gt` is read as `gteq`, `lteq` as `lt` (for `xsd:date`
//!   values `lteq` means the whole day); `count lt n` is `lteq n-1`;
//! - no grant id: `permission-{n}`; no title: one made from the uid;
//! - no `accord:party`: the parties are the assigners (providers) and the
//!   assignees' members (consumers).
//!
//! Permissions with the same `accord:id` are one grant again (their
//! services concatenated, so a list that alternated between providers comes
//! back grouped by provider). Obligations' `informedParty` is derived on
//! export (the other parties) and ignored on import. Validity is
//! `accord:validFrom`/`accord:validUntil`; a permission's `dateTime`
//! bounds that differ from it are the grant's window.
//!
//! Refused (`odrl-unmappable`, naming the path): any policy type other than
//! `Offer`; another profile; prohibitions, `conflict`, `inheritFrom`; a
//! target that is not an accord service (or one subsystem collection); an
//! assigner that is not the member offering the targets; an assignee that is
//! not a subsystem; any action but `use`/`read`; any left operand but
//! `purpose`, `dateTime`, `count` (with a period unit) and
//! `accord:httpOperation`; `or`/`xone` constraints; duties other than
//! `accord:nameDataSubject`; obligations other than the four above; unknown
//! properties. A policy without any start of validity is refused too.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::terms::*;
use super::validate::METHODS;
use super::{AgreementId, RuleViolation};
use crate::id::{MemberId, ServiceId, SubsystemId};

/// The ODRL 2.2 JSON-LD context every exported policy names.
pub const ODRL_CONTEXT: &str = "http://www.w3.org/ns/odrl.jsonld";
/// The ODRL 2.2 namespace (prefix `odrl:`).
pub const ODRL_NS: &str = "http://www.w3.org/ns/odrl/2/";
/// Accord's own terms (prefix `accord:`).
pub const ACCORD_VOCAB: &str = "urn:accord:vocab#";
/// The ODRL profile of accord's terms.
pub const ACCORD_PROFILE: &str = "urn:accord:odrl-profile:v1";

const DCT_NS: &str = "http://purl.org/dc/terms/";
const RDF_NS: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const AGREEMENT_IRI: &str = "urn:accord:agreement:";
const MEMBER_IRI: &str = "urn:accord:member:";
const SUBSYSTEM_IRI: &str = "urn:accord:subsystem:";
const SERVICE_IRI: &str = "urn:accord:service:";
const PURPOSE_IRI: &str = "urn:accord:purpose:";

/// The rule of every refusal but a missing assignee.
pub const UNMAPPABLE: &str = "odrl-unmappable";
/// A permission that does not say who may call.
pub const NO_ASSIGNEE: &str = "odrl-no-assignee";

/// Characters of a free-text code (federation, purpose) that are escaped in an IRI.
const IRI_CODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An ODRL Offer read as draft terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportedOffer {
    /// The agreement id the Offer's uid names, if it is an accord uid.
    pub suggested_id: Option<AgreementId>,
    pub terms: AgreementTerms,
    /// What was approximated or filled in, for the person who imports.
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------- IRIs

/// The uid of an agreement version.
pub fn policy_uid(federation: &str, id: &AgreementId, version: u32) -> String {
    format!(
        "{AGREEMENT_IRI}{}:{id}:v{version}",
        utf8_percent_encode(federation, IRI_CODE)
    )
}

/// `urn:accord:member:INSTANCE/CLASS/CODE` (parts percent-encoded).
pub fn member_iri(member: &MemberId) -> String {
    format!("{MEMBER_IRI}{}", member.to_encoded())
}

/// `urn:accord:subsystem:INSTANCE/CLASS/CODE/SUBSYSTEM`.
pub fn subsystem_iri(subsystem: &SubsystemId) -> String {
    format!("{SUBSYSTEM_IRI}{}", subsystem.to_encoded())
}

/// `urn:accord:service:INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]`.
pub fn service_iri(service: &ServiceId) -> String {
    format!("{SERVICE_IRI}{}", service.to_encoded())
}

/// `urn:accord:purpose:CODE` (the code percent-encoded).
pub fn purpose_iri(purpose: &str) -> String {
    format!("{PURPOSE_IRI}{}", utf8_percent_encode(purpose, IRI_CODE))
}

fn decode(text: &str) -> Option<String> {
    percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// A compact IRI with a prefix this module knows, expanded; anything else as is.
fn expand_iri(text: &str) -> String {
    for (prefix, ns) in [
        ("accord:", ACCORD_VOCAB),
        ("odrl:", ODRL_NS),
        ("dct:", DCT_NS),
        ("rdf:", RDF_NS),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return format!("{ns}{rest}");
        }
    }
    text.to_owned()
}

/// A key or vocabulary value in one spelling: ODRL terms bare (`target`),
/// others as `accord:`, `dct:` or `rdf:` compact IRIs, `uid` as `@id`.
fn canon(term: &str) -> String {
    match term {
        "uid" => return "@id".into(),
        "type" => return "@type".into(),
        _ => {}
    }
    let full = expand_iri(term);
    if let Some(rest) = full.strip_prefix(ODRL_NS) {
        return rest.to_owned();
    }
    for (prefix, ns) in [
        ("accord:", ACCORD_VOCAB),
        ("dct:", DCT_NS),
        ("rdf:", RDF_NS),
    ] {
        if let Some(rest) = full.strip_prefix(ns) {
            return format!("{prefix}{rest}");
        }
    }
    full
}

// ---------------------------------------------------------------- literals

fn date_time_text(at: OffsetDateTime) -> String {
    match at.format(&Rfc3339) {
        Ok(text) => text,
        Err(_) => {
            // Outside RFC 3339's range (a negative year, or an offset with
            // seconds): write it in UTC by hand, as xsd:dateTime allows.
            let utc = at.to_offset(UtcOffset::UTC);
            let year = utc.year();
            let sign = if year < 0 { "-" } else { "" };
            format!(
                "{sign}{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                year.unsigned_abs(),
                u8::from(utc.month()),
                utc.day(),
                utc.hour(),
                utc.minute(),
                utc.second()
            )
        }
    }
}

fn date_time_literal(at: OffsetDateTime) -> Value {
    json!({"@value": date_time_text(at), "@type": "xsd:dateTime"})
}

fn parse_plain_date(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).ok()
}

/// A calendar date of a commitment: typed when it is one.
fn date_literal(text: &str) -> Value {
    if parse_plain_date(text).is_some() {
        json!({"@value": text, "@type": "xsd:date"})
    } else {
        json!(text)
    }
}

/// How a lexical date(time) was read.
enum Instant {
    /// An `xsd:dateTime` with a time zone.
    Exact(OffsetDateTime),
    /// An `xsd:date`: the day starting at this instant (UTC).
    Day(OffsetDateTime),
    /// An `xsd:dateTime` without a time zone, read as UTC.
    Floating(OffsetDateTime),
}

fn parse_instant(text: &str) -> Option<Instant> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(Instant::Exact(at));
    }
    if let Some(day) = parse_plain_date(text) {
        return Some(Instant::Day(day.midnight().assume_utc()));
    }
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(text, &format)
        .ok()
        .map(|at| Instant::Floating(at.assume_utc()))
}

fn reporting_duration(period: ReportingPeriod) -> &'static str {
    match period {
        ReportingPeriod::Month => "P1M",
        ReportingPeriod::Quarter => "P3M",
        ReportingPeriod::Year => "P1Y",
    }
}

fn reporting_period(duration: &str) -> Option<ReportingPeriod> {
    match duration {
        "P1M" => Some(ReportingPeriod::Month),
        "P3M" => Some(ReportingPeriod::Quarter),
        "P1Y" | "P12M" => Some(ReportingPeriod::Year),
        _ => None,
    }
}

/// Whole hours of an `xsd:duration` made of days, hours, minutes and seconds.
fn duration_hours(text: &str) -> Option<u32> {
    let rest = text.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut seconds: u64 = 0;
    if !days.is_empty() {
        seconds += days.strip_suffix('D')?.parse::<u64>().ok()? * 86_400;
    }
    let mut number = String::new();
    for ch in time.chars() {
        match ch {
            '0'..='9' => number.push(ch),
            'H' | 'M' | 'S' => {
                let n: u64 = number.parse().ok()?;
                number.clear();
                seconds += n * match ch {
                    'H' => 3600,
                    'M' => 60,
                    _ => 1,
                };
            }
            _ => return None,
        }
    }
    if !number.is_empty() || (days.is_empty() && time.is_empty()) || seconds % 3600 != 0 {
        return None;
    }
    u32::try_from(seconds / 3600).ok()
}

fn quota_unit(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Minute => "accord:perMinute",
        QuotaPeriod::Day => "accord:perDay",
        QuotaPeriod::Month => "accord:perMonth",
    }
}

fn quota_period(unit: &str) -> Option<QuotaPeriod> {
    match unit {
        "accord:perMinute" => Some(QuotaPeriod::Minute),
        "accord:perDay" => Some(QuotaPeriod::Day),
        "accord:perMonth" => Some(QuotaPeriod::Month),
        _ => None,
    }
}

/// The serde (kebab-case) name of a unit enum value.
fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        _ => String::new(),
    }
}

fn enum_from_text<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(Value::String(text.to_owned())).ok()
}

fn one_or_many(mut values: Vec<Value>) -> Value {
    if values.len() == 1 {
        values.remove(0)
    } else {
        Value::Array(values)
    }
}

// ---------------------------------------------------------------- export

/// Export an agreement version as an ODRL 2.2 Agreement (compact JSON-LD
/// with the ODRL context and the `accord:` prefix); see the module doc for
/// the mapping. Deterministic.
pub fn export_agreement(
    federation: &str,
    id: &AgreementId,
    version: u32,
    terms: &AgreementTerms,
) -> Value {
    let mut policy = Map::new();
    let mut put = |key: &str, value: Value| {
        policy.insert(key.to_owned(), value);
    };
    put("@context", json!([ODRL_CONTEXT, {"accord": ACCORD_VOCAB}]));
    put("@type", json!("Agreement"));
    put("uid", json!(policy_uid(federation, id, version)));
    put("profile", json!(ACCORD_PROFILE));
    put("dct:title", json!(terms.title));
    put("dct:description", json!(terms.description));
    put("accord:federation", json!(federation));
    put("accord:agreement", json!(id.as_str()));
    put("accord:version", json!(version));
    put("accord:validFrom", date_time_literal(terms.validity.start));
    if let Some(end) = terms.validity.end {
        put("accord:validUntil", date_time_literal(end));
    }
    put(
        "accord:party",
        Value::Array(
            terms
                .parties
                .iter()
                .map(|p| {
                    json!({
                        "@id": member_iri(&p.member),
                        "accord:role": p.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
    );
    put(
        "permission",
        Value::Array(
            terms
                .grants
                .iter()
                .flat_map(|g| export_grant(g, &terms.validity))
                .collect(),
        ),
    );
    if !terms.obligations.is_empty() {
        put(
            "obligation",
            Value::Array(
                terms
                    .obligations
                    .iter()
                    .map(|o| export_obligation(o, &terms.parties))
                    .collect(),
            ),
        );
    }
    if !terms.commitments.is_empty() {
        put(
            "accord:commitment",
            Value::Array(terms.commitments.iter().map(export_commitment).collect()),
        );
    }
    if !terms.indicators.is_empty() {
        put(
            "accord:indicator",
            Value::Array(terms.indicators.iter().map(export_indicator).collect()),
        );
    }
    if !terms.conflict_resolution.is_empty() {
        let steps: Vec<Value> = terms
            .conflict_resolution
            .iter()
            .map(|step| {
                let decided_by = match &step.decided_by {
                    Decider::Party(member) => json!({"@id": member_iri(member)}),
                    Decider::Body(name) => json!({"@type": "accord:Body", "dct:title": name}),
                };
                json!({
                    "@type": "accord:ResolutionStep",
                    "dct:description": step.description,
                    "accord:deadlineDays": step.deadline_days,
                    "accord:decidedBy": decided_by,
                })
            })
            .collect();
        put("accord:conflictResolution", json!({"@list": steps}));
    }
    if !terms.legal_basis.is_empty() {
        put(
            "accord:legalBasis",
            Value::Array(
                terms
                    .legal_basis
                    .iter()
                    .map(|basis| {
                        let mut node = Map::new();
                        node.insert("@type".into(), json!("accord:LegalBasis"));
                        node.insert("accord:reference".into(), json!(basis.reference));
                        if let Some(url) = &basis.url {
                            node.insert(
                                "accord:url".into(),
                                json!({"@value": url, "@type": "xsd:anyURI"}),
                            );
                        }
                        Value::Object(node)
                    })
                    .collect(),
            ),
        );
    }
    Value::Object(policy)
}

fn export_grant(grant: &Grant, validity: &Validity) -> Vec<Value> {
    // One permission per provider: an assigner grants only its own services.
    let mut groups: Vec<(Option<&MemberId>, Vec<Value>)> = Vec::new();
    match &grant.services {
        ServiceScope::Services(list) => {
            for service in list {
                let iri = json!(service_iri(service));
                match groups
                    .iter_mut()
                    .find(|(m, _)| *m == Some(service.member()))
                {
                    Some((_, targets)) => targets.push(iri),
                    None => groups.push((Some(service.member()), vec![iri])),
                }
            }
        }
        ServiceScope::Subsystem(sub) => groups.push((
            Some(sub.member()),
            vec![json!({"@type": "AssetCollection", "uid": subsystem_iri(sub)})],
        )),
    }
    if groups.is_empty() {
        groups.push((None, Vec::new()));
    }

    let read_only = grant
        .operations
        .iter()
        .all(|op| op.methods.iter().all(|m| m == "GET" || m == "HEAD"));
    let operations: Vec<Value> = grant
        .operations
        .iter()
        .map(|op| {
            json!({
                "@type": "accord:HttpOperation",
                "accord:method": op.methods,
                "accord:path": op.path,
            })
        })
        .collect();
    let action = json!([{
        "rdf:value": {"@id": if read_only { "odrl:read" } else { "odrl:use" }},
        "refinement": [{
            "leftOperand": "accord:httpOperation",
            "operator": "isAnyOf",
            "rightOperand": operations,
        }],
    }]);

    let mut constraints = vec![json!({
        "leftOperand": "purpose",
        "operator": "isAnyOf",
        "rightOperand": grant
            .purposes
            .iter()
            .map(|p| json!({"@id": purpose_iri(p)}))
            .collect::<Vec<_>>(),
    })];
    let window = grant.window.as_ref();
    let from = window
        .and_then(|w| w.from)
        .map_or(validity.start, |from| from.max(validity.start));
    constraints.push(json!({
        "leftOperand": "dateTime",
        "operator": "gteq",
        "rightOperand": date_time_literal(from),
    }));
    let until = match (validity.end, window.and_then(|w| w.until)) {
        (Some(end), Some(until)) => Some(end.min(until)),
        (end, until) => end.or(until),
    };
    if let Some(until) = until {
        constraints.push(json!({
            "leftOperand": "dateTime",
            "operator": "lt",
            "rightOperand": date_time_literal(until),
        }));
    }
    for quota in &grant.quotas {
        constraints.push(json!({
            "leftOperand": "count",
            "operator": "lteq",
            "rightOperand": quota.limit,
            "unit": {"@id": quota_unit(quota.per)},
        }));
    }
    let assignees: Vec<Value> = grant
        .consumers
        .iter()
        .map(|c| json!(subsystem_iri(c)))
        .collect();

    groups
        .into_iter()
        .map(|(provider, targets)| {
            let mut rule = Map::new();
            rule.insert("accord:id".into(), json!(grant.id));
            rule.insert("target".into(), one_or_many(targets));
            if let Some(provider) = provider {
                rule.insert("assigner".into(), json!(member_iri(provider)));
            }
            rule.insert("assignee".into(), one_or_many(assignees.clone()));
            rule.insert("action".into(), action.clone());
            rule.insert("constraint".into(), Value::Array(constraints.clone()));
            if grant.data_subject_required {
                rule.insert("duty".into(), json!([{"action": "accord:nameDataSubject"}]));
            }
            Value::Object(rule)
        })
        .collect()
}

fn export_obligation(obligation: &Obligation, parties: &[Party]) -> Value {
    let mut duty = Map::new();
    duty.insert("accord:id".into(), json!(obligation.id));
    duty.insert("assignee".into(), json!(member_iri(&obligation.party)));
    let others: Vec<Value> = parties
        .iter()
        .filter(|p| p.member != obligation.party)
        .map(|p| json!(member_iri(&p.member)))
        .collect();
    let inform = |duty: &mut Map<String, Value>, constraint: Value| {
        duty.insert("action".into(), json!("inform"));
        if !others.is_empty() {
            duty.insert("informedParty".into(), one_or_many(others.clone()));
        }
        duty.insert("constraint".into(), json!([constraint]));
    };
    match &obligation.kind {
        ObligationKind::Availability { percent } => {
            duty.insert("action".into(), json!("accord:keepAvailable"));
            duty.insert(
                "constraint".into(),
                json!([{
                    "leftOperand": "accord:availabilityPercent",
                    "operator": "gteq",
                    "rightOperand": percent,
                }]),
            );
        }
        ObligationKind::Reporting { every } => inform(
            &mut duty,
            json!({
                "leftOperand": "timeInterval",
                "operator": "eq",
                "rightOperand": {"@value": reporting_duration(*every), "@type": "xsd:duration"},
            }),
        ),
        ObligationKind::Notification { within_hours } => inform(
            &mut duty,
            json!({"andSequence": {"@list": [
                {
                    "leftOperand": "event",
                    "operator": "gt",
                    "rightOperand": {"@id": "accord:incident"},
                },
                {
                    "leftOperand": "delayPeriod",
                    "operator": "lteq",
                    "rightOperand": {"@value": format!("PT{within_hours}H"), "@type": "xsd:duration"},
                },
            ]}}),
        ),
        ObligationKind::Other => {
            duty.insert("action".into(), json!("accord:fulfil"));
        }
    }
    duty.insert("dct:description".into(), json!(obligation.description));
    Value::Object(duty)
}

fn export_commitment(commitment: &Commitment) -> Value {
    let contribution = match &commitment.contribution {
        Contribution::Budget { amount, currency } => {
            json!({"@type": "accord:Budget", "accord:amount": amount, "accord:currency": currency})
        }
        Contribution::Staff { fte } => json!({"@type": "accord:Staff", "accord:fte": fte}),
        Contribution::Ict { description } => {
            json!({"@type": "accord:Ict", "dct:description": description})
        }
        Contribution::Data { description } => {
            json!({"@type": "accord:Data", "dct:description": description})
        }
    };
    let mut node = Map::new();
    node.insert("@type".into(), json!("accord:Commitment"));
    node.insert(
        "accord:committedBy".into(),
        json!({"@id": member_iri(&commitment.party)}),
    );
    node.insert("accord:contribution".into(), contribution);
    node.insert(
        "accord:periodFrom".into(),
        date_literal(&commitment.period.from),
    );
    node.insert(
        "accord:periodUntil".into(),
        date_literal(&commitment.period.until),
    );
    if !commitment.note.is_empty() {
        node.insert("accord:note".into(), json!(commitment.note));
    }
    Value::Object(node)
}

fn export_indicator(indicator: &Indicator) -> Value {
    let source = match &indicator.source {
        IndicatorSource::Metric { metric, grant } => {
            let mut node = Map::new();
            node.insert("@type".into(), json!("accord:MetricSource"));
            node.insert("accord:metric".into(), json!(enum_text(metric)));
            if let Some(grant) = grant {
                node.insert("accord:grant".into(), json!(grant));
            }
            Value::Object(node)
        }
        IndicatorSource::Reported { by } => json!({
            "@type": "accord:ReportedSource",
            "accord:reportedBy": {"@id": member_iri(by)},
        }),
    };
    json!({
        "@type": "accord:Indicator",
        "accord:id": indicator.id,
        "dct:title": indicator.name,
        "dct:description": indicator.definition,
        "accord:source": source,
        "accord:unit": indicator.unit,
        "accord:baseline": indicator.baseline,
        "accord:target": indicator.target,
        "accord:direction": enum_text(&indicator.direction),
        "accord:reportingPeriod": enum_text(&indicator.period),
    })
}

// ---------------------------------------------------------------- import

/// Import an ODRL Offer (compact JSON-LD with the ODRL context) as draft
/// terms, or say precisely what does not map: every problem, each with its
/// rule and JSON path.
pub fn import_offer(offer: &Value) -> Result<ImportedOffer, Vec<RuleViolation>> {
    let mut reader = Reader::default();
    let imported = reader.offer(offer);
    match imported {
        Some(imported) if reader.violations.is_empty() => Ok(imported),
        _ => {
            if reader.violations.is_empty() {
                reader.bad("", "the Offer could not be read");
            }
            Err(reader.violations)
        }
    }
}

#[derive(Default)]
struct Reader {
    violations: Vec<RuleViolation>,
    notes: Vec<String>,
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// A property's values with their paths: an array's items, `@list` items,
/// or the single value.
fn items<'a>(value: &'a Value, path: &str) -> Vec<(String, &'a Value)> {
    match value {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}[{i}]"), v))
            .collect(),
        Value::Null => Vec::new(),
        Value::Object(map) if map.len() == 1 && map.contains_key("@list") => {
            items(&map["@list"], &join(path, "@list"))
        }
        _ => vec![(path.to_owned(), value)],
    }
}

/// The plain value of a literal or a value object.
fn literal(value: &Value) -> Option<&Value> {
    match value {
        Value::Object(map) => {
            if map
                .keys()
                .all(|k| matches!(k.as_str(), "@value" | "@type" | "@language"))
            {
                map.get("@value")
            } else {
                None
            }
        }
        Value::Array(_) | Value::Null => None,
        other => Some(other),
    }
}

fn text_literal(value: &Value) -> Option<&str> {
    literal(value)?.as_str()
}

fn number_literal(value: &Value) -> Option<f64> {
    match literal(value)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn integer_literal(value: &Value) -> Option<i64> {
    match literal(value)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A reference's IRI (a string or `{"@id": …}`), compact prefixes expanded.
fn reference(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(expand_iri(s)),
        Value::Object(map) => map
            .iter()
            .find(|(k, _)| canon(k) == "@id")
            .and_then(|(_, v)| v.as_str())
            .map(expand_iri),
        _ => None,
    }
}

/// A vocabulary value (`use`, `odrl:use`, the full IRI, `{"@id": …}`), canonical.
fn vocab(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(canon(s)),
        Value::Object(_) => reference(value).map(|iri| canon(&iri)),
        _ => None,
    }
}

fn type_of(map: &Map<String, Value>) -> Vec<String> {
    map.iter()
        .filter(|(k, _)| canon(k) == "@type")
        .flat_map(|(_, v)| match v {
            Value::Array(list) => list.iter().filter_map(|t| t.as_str()).map(canon).collect(),
            Value::String(s) => vec![canon(s)],
            _ => Vec::new(),
        })
        .collect()
}

/// What a permission says, before grants are assembled.
struct PermissionDraft {
    path: String,
    id: Option<String>,
    services: Vec<ServiceId>,
    subsystems: Vec<SubsystemId>,
    assigners: Vec<MemberId>,
    consumers: Vec<SubsystemId>,
    purposes: Vec<String>,
    operations: Vec<Operation>,
    lower: Option<OffsetDateTime>,
    upper: Option<OffsetDateTime>,
    quotas: Vec<Quota>,
    data_subject_required: bool,
}

/// Policy-level rule properties (ODRL's compact policy): every rule has
/// them in addition to its own.
#[derive(Default)]
struct Inherited<'a> {
    assigner: Vec<(String, &'a Value)>,
    assignee: Vec<(String, &'a Value)>,
    target: Vec<(String, &'a Value)>,
}

impl Reader {
    fn bad(&mut self, path: &str, detail: impl Into<String>) {
        self.violations
            .push(RuleViolation::at(UNMAPPABLE, path.to_owned(), detail));
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    fn member(&mut self, value: &Value, path: &str) -> Option<MemberId> {
        let Some(iri) = reference(value) else {
            self.bad(
                path,
                "expected a party IRI (urn:accord:member:INSTANCE/CLASS/CODE)",
            );
            return None;
        };
        let Some(rest) = iri.strip_prefix(MEMBER_IRI) else {
            self.bad(
                path,
                format!("{iri} is not an accord member (urn:accord:member:INSTANCE/CLASS/CODE)"),
            );
            return None;
        };
        match MemberId::parse_encoded(rest) {
            Ok(member) => Some(member),
            Err(e) => {
                self.bad(path, format!("{iri} is not a member identifier: {e}"));
                None
            }
        }
    }

    fn subsystem(&mut self, iri: &str, path: &str) -> Option<SubsystemId> {
        let rest = iri.strip_prefix(SUBSYSTEM_IRI)?;
        match SubsystemId::parse_encoded(rest) {
            Ok(sub) => Some(sub),
            Err(e) => {
                self.bad(path, format!("{iri} is not a subsystem identifier: {e}"));
                None
            }
        }
    }

    fn text(&mut self, value: &Value, path: &str) -> Option<String> {
        let text = text_literal(value).map(str::to_owned);
        if text.is_none() {
            self.bad(path, "expected a text literal");
        }
        text
    }

    fn number(&mut self, value: &Value, path: &str) -> Option<f64> {
        let n = number_literal(value);
        if n.is_none() {
            self.bad(path, "expected a number");
        }
        n
    }

    fn instant(&mut self, value: &Value, path: &str, lower: bool) -> Option<OffsetDateTime> {
        let Some(text) = text_literal(value) else {
            self.bad(path, "expected an xsd:dateTime or xsd:date literal");
            return None;
        };
        match parse_instant(text) {
            Some(Instant::Exact(at)) => Some(at),
            Some(Instant::Day(day)) => {
                self.note(format!(
                    "{path}: the date {text} was read as {} at 00:00 UTC",
                    if lower { "from" } else { "until" }
                ));
                Some(day)
            }
            Some(Instant::Floating(at)) => {
                self.note(format!(
                    "{path}: {text} has no time zone and was read as UTC"
                ));
                Some(at)
            }
            None => {
                self.bad(path, format!("{text:?} is not an xsd:dateTime or xsd:date"));
                None
            }
        }
    }

    fn offer(&mut self, offer: &Value) -> Option<ImportedOffer> {
        let Some(policy) = offer.as_object() else {
            self.bad("", "an ODRL policy is a JSON object");
            return None;
        };
        self.context(policy.get("@context"));

        let mut uid = None;
        let mut title = None;
        let mut description = None;
        let mut valid_from = None;
        let mut valid_until = None;
        let mut agreement_id = None;
        let mut parties: Option<Vec<Party>> = None;
        let mut inherited = Inherited::default();
        let mut permissions = Vec::new();
        let mut obligations = Vec::new();
        let mut commitments = Vec::new();
        let mut indicators = Vec::new();
        let mut conflict_resolution = Vec::new();
        let mut legal_basis = Vec::new();
        let mut seen_type = false;

        for (key, value) in policy {
            let path = key.clone();
            match canon(key).as_str() {
                "@context" => {}
                "@type" => {
                    seen_type = true;
                    let types = type_of(policy);
                    if types != ["Offer"] {
                        self.bad(
                            &path,
                            format!(
                                "only an ODRL Offer is imported as a draft, this policy is {}",
                                types.join(", ")
                            ),
                        );
                    }
                }
                "@id" => uid = value.as_str().map(expand_iri),
                "profile" => {
                    for (p, v) in items(value, &path) {
                        if reference(v).as_deref() != Some(ACCORD_PROFILE) {
                            self.bad(
                                &p,
                                format!(
                                    "the only ODRL profile understood is {ACCORD_PROFILE}, not {v}"
                                ),
                            );
                        }
                    }
                }
                "dct:title" => title = self.text(value, &path),
                "dct:description" => description = self.text(value, &path),
                "accord:federation" | "accord:version" => {}
                "accord:agreement" => agreement_id = text_literal(value).map(str::to_owned),
                "accord:validFrom" => valid_from = self.instant(value, &path, true),
                "accord:validUntil" => valid_until = self.instant(value, &path, false),
                "accord:party" => parties = Some(self.parties(value, &path)),
                "assigner" => inherited.assigner.push((path, value)),
                "assignee" => inherited.assignee.push((path, value)),
                "target" => inherited.target.push((path, value)),
                "permission" => permissions = items(value, &path),
                "obligation" => obligations = items(value, &path),
                "accord:commitment" => commitments = self.commitments(value, &path),
                "accord:indicator" => indicators = self.indicators(value, &path),
                "accord:conflictResolution" => {
                    conflict_resolution = self.conflict_resolution(value, &path);
                }
                "accord:legalBasis" => legal_basis = self.legal_basis(value, &path),
                "prohibition" => self.bad(
                    &path,
                    "accord grants only permissions (everything not granted is denied), so a prohibition cannot be mapped",
                ),
                "conflict" | "inheritFrom" => self.bad(
                    &path,
                    format!("{key} has no counterpart in accord's terms"),
                ),
                other if other.starts_with("dct:") => self.note(format!(
                    "{path}: this metadata has no place in the terms and was left out"
                )),
                _ => self.bad(&path, format!("the property {key} is not part of the mapping")),
            }
        }
        if !seen_type {
            self.bad("@type", "the policy does not say it is an Offer");
        }

        let suggested_id = uid
            .as_deref()
            .and_then(parse_policy_uid)
            .or_else(|| agreement_id.and_then(|id| id.parse().ok()));
        if uid.is_none() {
            self.note("the Offer has no uid (ODRL requires one)");
        }

        let drafts: Vec<PermissionDraft> = permissions
            .iter()
            .filter_map(|(path, value)| self.permission(value, path, &inherited))
            .collect();
        if drafts.is_empty() && permissions.is_empty() {
            self.bad("permission", "the Offer has no permission");
        }

        // Validity: stated, or spanned by the permissions' bounds.
        let validity = match valid_from {
            Some(start) => Some(Validity {
                start,
                end: valid_until,
            }),
            None => {
                let start = drafts.iter().filter_map(|d| d.lower).min();
                match start {
                    Some(start) => {
                        let end = if drafts.iter().all(|d| d.upper.is_some()) {
                            drafts.iter().filter_map(|d| d.upper).max()
                        } else {
                            None
                        };
                        self.note(format!(
                            "validity was taken from the permissions' dateTime constraints: from {}{}",
                            date_time_text(start),
                            end.map_or(String::new(), |e| format!(" until {}", date_time_text(e)))
                        ));
                        Some(Validity { start, end })
                    }
                    None => {
                        if !drafts.is_empty() {
                            self.bad(
                                "accord:validFrom",
                                "the Offer does not say from when it applies: add accord:validFrom to the policy or a dateTime gteq constraint to its permissions",
                            );
                        }
                        None
                    }
                }
            }
        };

        let grants = self.grants(drafts, validity.as_ref());
        let parties = self.complete_parties(parties, &grants);
        let obligations: Vec<Obligation> = obligations
            .iter()
            .enumerate()
            .filter_map(|(i, (path, value))| self.obligation(value, path, i, &parties))
            .collect();

        let title = title.unwrap_or_else(|| {
            let title = format!(
                "Imported ODRL offer {}",
                uid.as_deref().unwrap_or("(no uid)")
            );
            self.note(format!(
                "the Offer has no dct:title; the title is {title:?}"
            ));
            title
        });
        let description = description.unwrap_or_else(|| {
            self.note("the Offer has no dct:description; the description is empty");
            String::new()
        });

        let validity = validity?;
        Some(ImportedOffer {
            suggested_id,
            terms: AgreementTerms {
                title,
                description,
                parties,
                grants,
                commitments,
                indicators,
                obligations,
                conflict_resolution,
                legal_basis,
                validity,
            },
            notes: std::mem::take(&mut self.notes),
        })
    }

    /// The context must be ODRL's, plus at most prefix definitions that do
    /// not change what ODRL's terms (or `accord:`) mean.
    fn context(&mut self, context: Option<&Value>) {
        let Some(context) = context else {
            self.bad(
                "@context",
                format!("the Offer has no @context; it must use the ODRL context {ODRL_CONTEXT}"),
            );
            return;
        };
        let is_odrl = |v: &Value| {
            matches!(
                v.as_str(),
                Some("http://www.w3.org/ns/odrl.jsonld" | "https://www.w3.org/ns/odrl.jsonld")
            )
        };
        let entries = items(context, "@context");
        if !entries.iter().any(|(_, v)| is_odrl(v)) {
            self.bad(
                "@context",
                format!("the Offer does not use the ODRL context {ODRL_CONTEXT}"),
            );
        }
        for (path, entry) in entries {
            if is_odrl(entry) {
                continue;
            }
            let Some(map) = entry.as_object() else {
                self.bad(
                    &path,
                    "only the ODRL context and inline prefix definitions can be read offline",
                );
                continue;
            };
            for (term, definition) in map {
                let at = join(&path, term);
                let known = [
                    ("accord", ACCORD_VOCAB),
                    ("odrl", ODRL_NS),
                    ("dct", DCT_NS),
                    ("rdf", RDF_NS),
                ];
                match (definition.as_str(), known.iter().find(|(t, _)| t == term)) {
                    (Some(iri), Some((_, ns))) if iri == *ns => {}
                    (_, Some(_)) => self.bad(&at, format!("the prefix {term} must not be redefined")),
                    (Some(iri), None)
                        if !term.starts_with('@')
                            && (iri.ends_with('/') || iri.ends_with('#'))
                            && canon(term) == *term
                            && !is_odrl_term(term) => {}
                    _ => self.bad(
                        &at,
                        format!("{term}: only prefix definitions (a namespace IRI ending in / or #) that do not redefine an ODRL term are understood"),
                    ),
                }
            }
        }
    }

    fn parties(&mut self, value: &Value, path: &str) -> Vec<Party> {
        let mut out = Vec::new();
        for (p, node) in items(value, path) {
            let Some(map) = node.as_object() else {
                self.bad(
                    &p,
                    "expected a party node {\"@id\": member IRI, \"accord:role\": […]}",
                );
                continue;
            };
            let member = self.member(node, &p);
            let mut roles = Vec::new();
            for (key, v) in map {
                match canon(key).as_str() {
                    "@id" => {}
                    "accord:role" => {
                        for (rp, role) in items(v, &join(&p, key)) {
                            match text_literal(role).and_then(enum_from_text::<PartyRole>) {
                                Some(role) => roles.push(role),
                                None => self.bad(
                                    &rp,
                                    "expected a role: provider, consumer, funder, coordinator or observer",
                                ),
                            }
                        }
                    }
                    _ => self.bad(
                        &join(&p, key),
                        format!("the property {key} is not part of the mapping"),
                    ),
                }
            }
            if let Some(member) = member {
                out.push(Party { member, roles });
            }
        }
        out
    }

    fn permission(
        &mut self,
        value: &Value,
        path: &str,
        inherited: &Inherited<'_>,
    ) -> Option<PermissionDraft> {
        let Some(rule) = value.as_object() else {
            self.bad(path, "a permission is a JSON object");
            return None;
        };
        let mut draft = PermissionDraft {
            path: path.to_owned(),
            id: None,
            services: Vec::new(),
            subsystems: Vec::new(),
            assigners: Vec::new(),
            consumers: Vec::new(),
            purposes: Vec::new(),
            operations: Vec::new(),
            lower: None,
            upper: None,
            quotas: Vec::new(),
            data_subject_required: false,
        };
        let mut target = inherited.target.clone();
        let mut assigner = inherited.assigner.clone();
        let mut assignee = inherited.assignee.clone();
        let mut action = None;
        let mut constraints = Vec::new();
        let mut duties = Vec::new();
        for (key, v) in rule {
            let p = join(path, key);
            match canon(key).as_str() {
                "accord:id" => draft.id = self.text(v, &p),
                "target" => target.push((p, v)),
                "assigner" => assigner.push((p, v)),
                "assignee" => assignee.push((p, v)),
                "action" => action = Some((p, v)),
                "constraint" => constraints = items(v, &p),
                "duty" => duties = items(v, &p),
                _ => self.bad(&p, format!("the property {key} is not part of the mapping")),
            }
        }

        // Targets: accord services, or one subsystem collection.
        let targets: Vec<(String, &Value)> =
            target.iter().flat_map(|(tp, tv)| items(tv, tp)).collect();
        if targets.is_empty() {
            self.bad(path, "the permission has no target");
        }
        for (p, t) in targets {
            self.target(t, &p, &mut draft);
        }
        if !draft.subsystems.is_empty()
            && (!draft.services.is_empty() || draft.subsystems.len() > 1)
        {
            self.bad(
                path,
                "a grant covers either a list of services or every service of one subsystem, not both or several subsystems",
            );
        }

        // Assigners: the members that offer the targets.
        let assigners: Vec<(String, &Value)> =
            assigner.iter().flat_map(|(ap, av)| items(av, ap)).collect();
        match assigner.first() {
            None => self.bad(
                path,
                "the permission has no assigner: an Offer must name the provider that offers it",
            ),
            Some((ap, _)) => {
                for (p, a) in assigners {
                    if let Some(member) = self.member(a, &p) {
                        let provides = draft.services.iter().any(|s| s.member() == &member)
                            || draft.subsystems.iter().any(|s| s.member() == &member);
                        if !provides {
                            self.bad(
                                &p,
                                format!(
                                    "assigner {member} offers none of the permission's targets"
                                ),
                            );
                        }
                        draft.assigners.push(member);
                    }
                }
                let owners = draft
                    .services
                    .iter()
                    .map(ServiceId::member)
                    .chain(draft.subsystems.iter().map(SubsystemId::member));
                let mut missing: Vec<String> = owners
                    .filter(|m| !draft.assigners.contains(m))
                    .map(|m| m.to_string())
                    .collect();
                missing.sort();
                missing.dedup();
                if !missing.is_empty() && !draft.assigners.is_empty() {
                    self.bad(
                        ap,
                        format!(
                            "the targets of {} are not offered by an assigner of the permission",
                            missing.join(", ")
                        ),
                    );
                }
            }
        }

        // Assignees: the consumer subsystems.
        let assignees: Vec<(String, &Value)> =
            assignee.iter().flat_map(|(ap, av)| items(av, ap)).collect();
        match assignee.first() {
            None => self.violations.push(RuleViolation::at(
                NO_ASSIGNEE,
                path.to_owned(),
                "the Offer does not name who may call: add an assignee (urn:accord:subsystem:INSTANCE/CLASS/CODE/SUBSYSTEM) to the permission or the policy before importing it",
            )),
            Some((ap, _)) => {
                if assignees.is_empty() {
                    self.violations.push(RuleViolation::at(
                        NO_ASSIGNEE,
                        ap.clone(),
                        "the assignee list is empty: name the consumer subsystems",
                    ));
                }
                for (p, a) in assignees {
                    let iri = reference(a).unwrap_or_default();
                    if iri.starts_with(SUBSYSTEM_IRI) {
                        if let Some(sub) = self.subsystem(&iri, &p) {
                            draft.consumers.push(sub);
                        }
                    } else if iri.starts_with(MEMBER_IRI) {
                        self.bad(&p, format!("{iri} is a member, but a grant names the consumer subsystems (urn:accord:subsystem:INSTANCE/CLASS/CODE/SUBSYSTEM)"));
                    } else {
                        self.bad(&p, format!("assignee {a} is not an accord subsystem (urn:accord:subsystem:INSTANCE/CLASS/CODE/SUBSYSTEM)"));
                    }
                }
            }
        }

        match action {
            None => self.bad(path, "the permission has no action"),
            Some((p, v)) => self.action(v, &p, &mut draft),
        }

        let mut purposes_seen = false;
        for (p, c) in constraints {
            self.permission_constraint(c, &p, &mut draft, &mut purposes_seen);
        }
        if !purposes_seen {
            self.note(format!(
                "{path}: no purpose constraint, so the grant names no purpose yet"
            ));
        }

        for (p, duty) in duties {
            let ok = duty.as_object().is_some_and(|d| {
                d.iter().all(|(k, v)| {
                    canon(k) == "action" && vocab(v).as_deref() == Some("accord:nameDataSubject")
                })
            });
            if ok {
                draft.data_subject_required = true;
            } else {
                self.bad(&p, "the only duty a permission can carry is {\"action\": \"accord:nameDataSubject\"}");
            }
        }
        Some(draft)
    }

    fn target(&mut self, value: &Value, path: &str, draft: &mut PermissionDraft) {
        if let Some(map) = value.as_object() {
            for key in map.keys() {
                let k = canon(key);
                if k != "@id" && k != "@type" {
                    self.bad(
                        &join(path, key),
                        format!("the target property {key} is not part of the mapping"),
                    );
                }
            }
            for t in type_of(map) {
                if t != "AssetCollection" && t != "Asset" {
                    self.bad(path, format!("a target of type {t} cannot be mapped"));
                }
            }
        }
        let Some(iri) = reference(value) else {
            self.bad(path, "expected a target IRI");
            return;
        };
        if let Some(rest) = iri.strip_prefix(SERVICE_IRI) {
            match ServiceId::parse_encoded(rest) {
                Ok(service) => draft.services.push(service),
                Err(e) => self.bad(path, format!("{iri} is not a service identifier: {e}")),
            }
        } else if iri.starts_with(SUBSYSTEM_IRI) {
            if let Some(sub) = self.subsystem(&iri, path) {
                draft.subsystems.push(sub);
            }
        } else {
            self.bad(
                path,
                format!("target {iri} is not an accord service (urn:accord:service:INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]) or subsystem collection"),
            );
        }
    }

    fn action(&mut self, value: &Value, path: &str, draft: &mut PermissionDraft) {
        let list = items(value, path);
        if list.len() != 1 {
            self.bad(path, "a grant maps from exactly one action (use or read)");
            return;
        }
        let (path, value) = &list[0];
        let mut name = None;
        let mut refinement = None;
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match canon(key).as_str() {
                        "rdf:value" | "@id" => name = vocab(v),
                        "refinement" => refinement = Some((join(path, key), v)),
                        _ => self.bad(
                            &join(path, key),
                            format!("the action property {key} is not part of the mapping"),
                        ),
                    }
                }
            }
            other => name = vocab(other),
        }
        let read_only = match name.as_deref() {
            Some("read") => true,
            Some("use") => false,
            Some(other) => {
                self.bad(path, format!("the action {other} cannot be mapped: a grant allows use (or read) of services"));
                return;
            }
            None => {
                self.bad(path, "expected an action");
                return;
            }
        };
        match refinement {
            Some((rp, rv)) => {
                let list = items(rv, &rp);
                if list.len() != 1 {
                    self.bad(
                        &rp,
                        "expected exactly one refinement: accord:httpOperation isAnyOf […]",
                    );
                }
                for (p, c) in list {
                    self.operations(c, &p, draft);
                }
                if read_only {
                    if let Some(op) = draft
                        .operations
                        .iter()
                        .find(|op| op.methods.iter().any(|m| m != "GET" && m != "HEAD"))
                    {
                        self.bad(
                            path,
                            format!(
                                "read allows only GET and HEAD, but an operation on {} allows {}",
                                op.path,
                                op.methods.join(", ")
                            ),
                        );
                    }
                }
            }
            None => {
                let methods: Vec<String> = if read_only {
                    vec!["GET".into(), "HEAD".into()]
                } else {
                    METHODS.iter().map(|m| (*m).to_owned()).collect()
                };
                self.note(format!(
                    "{path}: no accord:httpOperation refinement, so the grant allows {} on every path (/**)",
                    methods.join(", ")
                ));
                draft.operations.push(Operation {
                    methods,
                    path: "/**".into(),
                });
            }
        }
    }

    fn operations(&mut self, value: &Value, path: &str, draft: &mut PermissionDraft) {
        let Some(constraint) = self.constraint(value, path) else {
            return;
        };
        if constraint.left != "accord:httpOperation" || constraint.operator != "isAnyOf" {
            self.bad(
                path,
                format!("the refinement {} {} cannot be mapped: expected accord:httpOperation isAnyOf […]", constraint.left, constraint.operator),
            );
            return;
        }
        if let Some(unit) = constraint.unit {
            self.bad(
                &join(path, "unit"),
                format!("an operation has no unit, found {unit}"),
            );
        }
        let Some((rp, rv)) = constraint.right else {
            self.bad(path, "the refinement has no rightOperand");
            return;
        };
        for (p, node) in items(rv, &rp) {
            let Some(map) = node.as_object() else {
                self.bad(
                    &p,
                    "expected an operation {\"accord:method\": […], \"accord:path\": …}",
                );
                continue;
            };
            let mut methods = Vec::new();
            let mut op_path = None;
            for (key, v) in map {
                let kp = join(&p, key);
                match canon(key).as_str() {
                    "@type" => {
                        if type_of(map) != ["accord:HttpOperation"] {
                            self.bad(&kp, "an operation is of type accord:HttpOperation");
                        }
                    }
                    "accord:method" => {
                        for (mp, m) in items(v, &kp) {
                            match text_literal(m) {
                                Some(m) => methods.push(m.to_owned()),
                                None => self.bad(&mp, "expected an HTTP method"),
                            }
                        }
                    }
                    "accord:path" => op_path = self.text(v, &kp),
                    _ => self.bad(
                        &kp,
                        format!("the operation property {key} is not part of the mapping"),
                    ),
                }
            }
            match op_path {
                Some(op_path) => draft.operations.push(Operation {
                    methods,
                    path: op_path,
                }),
                None => self.bad(&p, "the operation has no accord:path"),
            }
        }
    }

    /// An atomic constraint's parts; logical constraints are refused here.
    fn constraint<'a>(&mut self, value: &'a Value, path: &str) -> Option<Atomic<'a>> {
        let Some(map) = value.as_object() else {
            self.bad(path, "a constraint is a JSON object");
            return None;
        };
        let mut left = None;
        let mut operator = None;
        let mut right = None;
        let mut unit = None;
        let mut ok = true;
        for (key, v) in map {
            let p = join(path, key);
            match canon(key).as_str() {
                "leftOperand" => left = vocab(v),
                "operator" => operator = vocab(v),
                "rightOperand" => right = Some((p, v)),
                "unit" => unit = reference(v).map(|iri| canon(&iri)),
                "@id" => {}
                "and" | "or" | "xone" | "andSequence" => {
                    self.bad(
                        &p,
                        format!("the logical constraint {key} cannot be mapped here"),
                    );
                    ok = false;
                }
                _ => {
                    self.bad(
                        &p,
                        format!("the constraint property {key} cannot be mapped"),
                    );
                    ok = false;
                }
            }
        }
        let (Some(left), Some(operator)) = (left, operator) else {
            if ok {
                self.bad(path, "a constraint needs a leftOperand and an operator");
            }
            return None;
        };
        ok.then_some(Atomic {
            left,
            operator,
            right,
            unit,
        })
    }

    fn permission_constraint(
        &mut self,
        value: &Value,
        path: &str,
        draft: &mut PermissionDraft,
        purposes_seen: &mut bool,
    ) {
        // `and` of constraints is the same as listing them.
        if let Some(map) = value.as_object() {
            if let Some((key, operands)) = map.iter().find(|(k, _)| canon(k) == "and") {
                if map.len() == 1 {
                    for (p, c) in items(operands, &join(path, key)) {
                        self.permission_constraint(c, &p, draft, purposes_seen);
                    }
                    return;
                }
            }
        }
        let Some(c) = self.constraint(value, path) else {
            return;
        };
        let lp = join(path, "leftOperand");
        let Some((rp, rv)) = c.right else {
            self.bad(path, "the constraint has no rightOperand");
            return;
        };
        if c.unit.is_some() && c.left != "count" {
            self.bad(
                &join(path, "unit"),
                format!("a unit on {} cannot be mapped", c.left),
            );
        }
        match c.left.as_str() {
            "purpose" => {
                if *purposes_seen {
                    self.bad(path, "a second purpose constraint cannot be mapped: list all purposes in one isAnyOf");
                    return;
                }
                *purposes_seen = true;
                if c.operator != "isAnyOf" && c.operator != "eq" {
                    self.bad(&join(path, "operator"), format!("purpose {} cannot be mapped: expected isAnyOf (or eq)", c.operator));
                    return;
                }
                for (p, v) in items(rv, &rp) {
                    let iri = reference(v).unwrap_or_default();
                    match iri.strip_prefix(PURPOSE_IRI).and_then(decode) {
                        Some(code) if !code.is_empty() => draft.purposes.push(code),
                        _ => self.bad(&p, format!("purpose {v} is not an accord purpose (urn:accord:purpose:CODE)")),
                    }
                }
            }
            "dateTime" => {
                let lower = match c.operator.as_str() {
                    "gteq" | "gt" => true,
                    "lt" | "lteq" => false,
                    other => {
                        self.bad(&join(path, "operator"), format!("dateTime {other} cannot be mapped: expected gteq or lt"));
                        return;
                    }
                };
                let Some(text) = text_literal(rv) else {
                    self.bad(&rp, "expected an xsd:dateTime literal");
                    return;
                };
                let Some(at) = parse_instant(text) else {
                    self.bad(&rp, format!("{text:?} is not an xsd:dateTime or xsd:date"));
                    return;
                };
                let at = match (at, c.operator.as_str()) {
                    (Instant::Exact(at), "gteq" | "lt") => at,
                    (Instant::Exact(at), op) => {
                        self.note(format!("{path}: dateTime {op} {text} was read as {}", if lower { "gteq" } else { "lt" }));
                        at
                    }
                    (Instant::Floating(at), _) => {
                        self.note(format!("{path}: {text} has no time zone and was read as UTC"));
                        at
                    }
                    (Instant::Day(day), "gt" | "lteq") => {
                        let next = day + time::Duration::DAY;
                        self.note(format!("{path}: dateTime {} {text} was read as {} {}", c.operator, if lower { "gteq" } else { "lt" }, date_time_text(next)));
                        next
                    }
                    (Instant::Day(day), _) => day,
                };
                if lower {
                    draft.lower = Some(draft.lower.map_or(at, |l| l.max(at)));
                } else {
                    draft.upper = Some(draft.upper.map_or(at, |u| u.min(at)));
                }
            }
            "count" => {
                let Some(per) = c.unit.as_deref().and_then(quota_period) else {
                    self.bad(
                        path,
                        "a count maps to a quota only with a period unit: accord:perMinute, accord:perDay or accord:perMonth",
                    );
                    return;
                };
                let Some(n) = integer_literal(rv) else {
                    self.bad(&rp, "expected a whole number");
                    return;
                };
                let limit = match c.operator.as_str() {
                    "lteq" => n,
                    "lt" => {
                        self.note(format!("{path}: count lt {n} was read as lteq {}", n - 1));
                        n - 1
                    }
                    other => {
                        self.bad(&join(path, "operator"), format!("count {other} cannot be mapped: expected lteq"));
                        return;
                    }
                };
                draft.quotas.push(Quota { limit, per });
            }
            other => self.bad(
                &lp,
                format!("the leftOperand {other} cannot be mapped: a permission's constraints are purpose, dateTime and count"),
            ),
        }
    }

    /// Permissions with the same accord:id are one grant (one per provider).
    fn grants(&mut self, drafts: Vec<PermissionDraft>, validity: Option<&Validity>) -> Vec<Grant> {
        let mut grants: Vec<(Grant, Option<OffsetDateTime>, Option<OffsetDateTime>)> = Vec::new();
        for (i, draft) in drafts.into_iter().enumerate() {
            let id = match &draft.id {
                Some(id) => id.clone(),
                None => {
                    let id = format!("permission-{}", i + 1);
                    self.note(format!(
                        "{}: no accord:id, so the grant is called {id:?}",
                        draft.path
                    ));
                    id
                }
            };
            if let Some((grant, lower, upper)) = grants.iter_mut().find(|(g, _, _)| g.id == id) {
                let same = grant.consumers == draft.consumers
                    && grant.purposes == draft.purposes
                    && grant.operations == draft.operations
                    && grant.quotas == draft.quotas
                    && grant.data_subject_required == draft.data_subject_required
                    && *lower == draft.lower
                    && *upper == draft.upper;
                match (&mut grant.services, draft.subsystems.is_empty()) {
                    (ServiceScope::Services(list), true) if same => list.extend(draft.services),
                    _ => self.bad(
                        &draft.path,
                        format!("permissions of grant {id:?} differ in more than their services, so they cannot be one grant"),
                    ),
                }
                continue;
            }
            let services = match draft.subsystems.first() {
                Some(sub) if draft.services.is_empty() => ServiceScope::Subsystem(sub.clone()),
                _ => ServiceScope::Services(draft.services),
            };
            grants.push((
                Grant {
                    id,
                    services,
                    consumers: draft.consumers,
                    purposes: draft.purposes,
                    operations: draft.operations,
                    window: None,
                    quotas: draft.quotas,
                    data_subject_required: draft.data_subject_required,
                },
                draft.lower,
                draft.upper,
            ));
        }
        grants
            .into_iter()
            .map(|(mut grant, lower, upper)| {
                let from = lower.filter(|l| validity.is_none_or(|v| *l != v.start));
                let until = upper.filter(|u| validity.is_none_or(|v| Some(*u) != v.end));
                if from.is_some() || until.is_some() {
                    grant.window = Some(TimeWindow { from, until });
                }
                grant
            })
            .collect()
    }

    /// The stated parties, with the roles the grants imply added; or, if
    /// none are stated, the parties the grants imply.
    fn complete_parties(&mut self, stated: Option<Vec<Party>>, grants: &[Grant]) -> Vec<Party> {
        let derived = stated.is_none();
        let mut parties = stated.unwrap_or_default();
        let mut implied: Vec<(MemberId, PartyRole)> = Vec::new();
        for grant in grants {
            for provider in grant.services.providers() {
                implied.push((provider.clone(), PartyRole::Provider));
            }
            for consumer in &grant.consumers {
                implied.push((consumer.member().clone(), PartyRole::Consumer));
            }
        }
        for (member, role) in implied {
            match parties.iter_mut().find(|p| p.member == member) {
                Some(party) if party.roles.contains(&role) => {}
                Some(party) => {
                    if !derived {
                        self.note(format!(
                            "{member} was given the role {} its permissions imply",
                            role.as_str()
                        ));
                    }
                    party.roles.push(role);
                }
                None => {
                    if !derived {
                        self.note(format!(
                            "{member} was added as a party with the role {} its permissions imply",
                            role.as_str()
                        ));
                    }
                    parties.push(Party {
                        member,
                        roles: vec![role],
                    });
                }
            }
        }
        if derived && !parties.is_empty() {
            self.note("no accord:party: the parties are the assigners (providers) and the assignees' members (consumers)");
        }
        parties
    }

    fn obligation(
        &mut self,
        value: &Value,
        path: &str,
        index: usize,
        parties: &[Party],
    ) -> Option<Obligation> {
        let Some(duty) = value.as_object() else {
            self.bad(path, "an obligation is a JSON object");
            return None;
        };
        let mut id = None;
        let mut party = None;
        let mut action = None;
        let mut description = None;
        let mut constraints: Vec<(String, &Value)> = Vec::new();
        for (key, v) in duty {
            let p = join(path, key);
            match canon(key).as_str() {
                "accord:id" => id = self.text(v, &p),
                "assignee" => {
                    let list = items(v, &p);
                    if list.len() == 1 {
                        party = self.member(list[0].1, &list[0].0);
                    } else {
                        self.bad(&p, "an obligation binds exactly one party (its assignee)");
                    }
                }
                // Derived on export: the parties other than the obligated one.
                "informedParty" => {}
                "action" => action = Some((p, v)),
                "constraint" => {
                    for (cp, c) in items(v, &p) {
                        // Logical `and`/`andSequence` of atomic constraints: flatten.
                        let logical = c.as_object().and_then(|m| {
                            m.iter()
                                .find(|(k, _)| matches!(canon(k).as_str(), "and" | "andSequence"))
                                .filter(|_| m.len() == 1)
                        });
                        match logical {
                            Some((k, operands)) => {
                                constraints.extend(items(operands, &join(&cp, k)))
                            }
                            None => constraints.push((cp, c)),
                        }
                    }
                }
                "dct:description" => description = self.text(v, &p),
                _ => self.bad(
                    &p,
                    format!("the obligation property {key} is not part of the mapping"),
                ),
            }
        }
        let Some(party) = party else {
            if !duty.keys().any(|k| canon(k) == "assignee") {
                self.bad(path, "the obligation has no assignee (the obligated party)");
            }
            return None;
        };
        if !parties.iter().any(|p| p.member == party) {
            self.bad(
                &join(path, "assignee"),
                format!("{party} is not a party: list it in accord:party with its roles"),
            );
        }
        let action = match &action {
            Some((p, v)) => match items(v, p).as_slice() {
                [(_, one)] => vocab(one),
                _ => None,
            },
            None => None,
        };
        let atomics: Vec<(String, Atomic<'_>)> = constraints
            .iter()
            .filter_map(|(p, c)| self.constraint(c, p).map(|a| (p.clone(), a)))
            .collect();
        let find = |left: &str, op: &str| {
            atomics
                .iter()
                .find(|(_, a)| a.left == left && a.operator == op)
                .and_then(|(_, a)| a.right.as_ref().map(|(_, v)| *v))
        };
        let kind = match action.as_deref() {
            Some("accord:keepAvailable") if atomics.len() == 1 => {
                find("accord:availabilityPercent", "gteq")
                    .and_then(number_literal)
                    .map(|percent| ObligationKind::Availability { percent })
            }
            Some("inform") if atomics.len() == 1 => find("timeInterval", "eq")
                .and_then(text_literal)
                .and_then(reporting_period)
                .map(|every| ObligationKind::Reporting { every }),
            Some("inform") if atomics.len() == 2 => {
                let incident = find("event", "gt")
                    .and_then(reference)
                    .map(|iri| canon(&iri));
                let hours = find("delayPeriod", "lteq")
                    .and_then(text_literal)
                    .and_then(duration_hours);
                match (incident.as_deref(), hours) {
                    (Some("accord:incident"), Some(within_hours)) => {
                        Some(ObligationKind::Notification { within_hours })
                    }
                    _ => None,
                }
            }
            Some("accord:fulfil") if atomics.is_empty() && constraints.is_empty() => {
                Some(ObligationKind::Other)
            }
            _ => None,
        };
        let Some(kind) = kind else {
            self.bad(
                path,
                "the obligation cannot be mapped: expected accord:keepAvailable (accord:availabilityPercent gteq n), inform (timeInterval eq P1M/P3M/P1Y, or event gt accord:incident then delayPeriod lteq PTnH) or accord:fulfil",
            );
            return None;
        };
        let id = id.unwrap_or_else(|| {
            let id = format!("obligation-{}", index + 1);
            self.note(format!(
                "{path}: no accord:id, so the obligation is called {id:?}"
            ));
            id
        });
        Some(Obligation {
            id,
            party,
            kind,
            description: description.unwrap_or_default(),
        })
    }

    fn commitments(&mut self, value: &Value, path: &str) -> Vec<Commitment> {
        let mut out = Vec::new();
        for (p, node) in items(value, path) {
            let Some(map) = node.as_object() else {
                self.bad(&p, "expected an accord:Commitment node");
                continue;
            };
            let (mut party, mut contribution, mut from, mut until) = (None, None, None, None);
            let mut note = String::new();
            for (key, v) in map {
                let kp = join(&p, key);
                match canon(key).as_str() {
                    "@type" => self.expect_type(map, "accord:Commitment", &kp),
                    "accord:committedBy" => party = self.member(v, &kp),
                    "accord:contribution" => contribution = self.contribution(v, &kp),
                    "accord:periodFrom" => from = self.text(v, &kp),
                    "accord:periodUntil" => until = self.text(v, &kp),
                    "accord:note" => note = self.text(v, &kp).unwrap_or_default(),
                    _ => self.bad(
                        &kp,
                        format!("the property {key} is not part of the mapping"),
                    ),
                }
            }
            match (party, contribution, from, until) {
                (Some(party), Some(contribution), Some(from), Some(until)) => out.push(Commitment {
                    party,
                    contribution,
                    period: DateRange { from, until },
                    note,
                }),
                _ => self.bad(&p, "a commitment needs accord:committedBy, accord:contribution, accord:periodFrom and accord:periodUntil"),
            }
        }
        out
    }

    fn expect_type(&mut self, map: &Map<String, Value>, expected: &str, path: &str) {
        if type_of(map) != [expected] {
            self.bad(path, format!("expected the type {expected}"));
        }
    }

    fn contribution(&mut self, value: &Value, path: &str) -> Option<Contribution> {
        let Some(map) = value.as_object() else {
            self.bad(path, "expected a contribution node");
            return None;
        };
        let types = type_of(map);
        let field = |name: &str| {
            map.iter()
                .find(|(k, _)| canon(k) == name)
                .map(|(k, v)| (join(path, k), v))
        };
        let allowed: &[&str] = match types.first().map(String::as_str) {
            Some("accord:Budget") => &["@type", "accord:amount", "accord:currency"],
            Some("accord:Staff") => &["@type", "accord:fte"],
            Some("accord:Ict" | "accord:Data") => &["@type", "dct:description"],
            _ => {
                self.bad(path, "a contribution is of type accord:Budget, accord:Staff, accord:Ict or accord:Data");
                return None;
            }
        };
        for key in map.keys() {
            if !allowed.contains(&canon(key).as_str()) {
                self.bad(
                    &join(path, key),
                    format!("the property {key} is not part of the mapping"),
                );
            }
        }
        let mut get_number = |name: &str| match field(name) {
            Some((p, v)) => self.number(v, &p),
            None => {
                self.bad(path, format!("the contribution has no {name}"));
                None
            }
        };
        let contribution = match types.first().map(String::as_str) {
            Some("accord:Budget") => {
                let amount = get_number("accord:amount")?;
                let currency = match field("accord:currency") {
                    Some((p, v)) => self.text(v, &p)?,
                    None => {
                        self.bad(path, "the budget has no accord:currency");
                        return None;
                    }
                };
                Contribution::Budget { amount, currency }
            }
            Some("accord:Staff") => Contribution::Staff {
                fte: get_number("accord:fte")?,
            },
            Some(kind) => {
                let description = match field("dct:description") {
                    Some((p, v)) => self.text(v, &p)?,
                    None => String::new(),
                };
                if kind == "accord:Ict" {
                    Contribution::Ict { description }
                } else {
                    Contribution::Data { description }
                }
            }
            None => return None,
        };
        Some(contribution)
    }

    fn indicators(&mut self, value: &Value, path: &str) -> Vec<Indicator> {
        let mut out = Vec::new();
        for (p, node) in items(value, path) {
            let Some(map) = node.as_object() else {
                self.bad(&p, "expected an accord:Indicator node");
                continue;
            };
            let mut id = None;
            let mut name = None;
            let mut definition = None;
            let mut source = None;
            let mut unit = None;
            let mut baseline = None;
            let mut target = None;
            let mut direction = None;
            let mut period = None;
            for (key, v) in map {
                let kp = join(&p, key);
                match canon(key).as_str() {
                    "@type" => self.expect_type(map, "accord:Indicator", &kp),
                    "accord:id" => id = self.text(v, &kp),
                    "dct:title" => name = self.text(v, &kp),
                    "dct:description" => definition = self.text(v, &kp),
                    "accord:source" => source = self.indicator_source(v, &kp),
                    "accord:unit" => unit = self.text(v, &kp),
                    "accord:baseline" => baseline = self.number(v, &kp),
                    "accord:target" => target = self.number(v, &kp),
                    "accord:direction" => {
                        direction = text_literal(v).and_then(enum_from_text::<Direction>);
                        if direction.is_none() {
                            self.bad(&kp, "expected higher-is-better or lower-is-better");
                        }
                    }
                    "accord:reportingPeriod" => {
                        period = text_literal(v).and_then(enum_from_text::<ReportingPeriod>);
                        if period.is_none() {
                            self.bad(&kp, "expected month, quarter or year");
                        }
                    }
                    _ => self.bad(
                        &kp,
                        format!("the property {key} is not part of the mapping"),
                    ),
                }
            }
            match (id, name, definition, source, unit, baseline, target, direction, period) {
                (
                    Some(id),
                    Some(name),
                    Some(definition),
                    Some(source),
                    Some(unit),
                    Some(baseline),
                    Some(target),
                    Some(direction),
                    Some(period),
                ) => out.push(Indicator {
                    id,
                    name,
                    definition,
                    source,
                    unit,
                    baseline,
                    target,
                    direction,
                    period,
                }),
                _ => self.bad(&p, "an indicator needs accord:id, dct:title, dct:description, accord:source, accord:unit, accord:baseline, accord:target, accord:direction and accord:reportingPeriod"),
            }
        }
        out
    }

    fn indicator_source(&mut self, value: &Value, path: &str) -> Option<IndicatorSource> {
        let Some(map) = value.as_object() else {
            self.bad(
                path,
                "expected an accord:MetricSource or accord:ReportedSource node",
            );
            return None;
        };
        let types = type_of(map);
        let mut metric = None;
        let mut grant = None;
        let mut by = None;
        for (key, v) in map {
            let kp = join(path, key);
            match canon(key).as_str() {
                "@type" => {}
                "accord:metric" => {
                    metric = text_literal(v).and_then(enum_from_text::<Metric>);
                    if metric.is_none() {
                        self.bad(&kp, "not a metric accord computes");
                    }
                }
                "accord:grant" => grant = self.text(v, &kp),
                "accord:reportedBy" => by = self.member(v, &kp),
                _ => self.bad(
                    &kp,
                    format!("the property {key} is not part of the mapping"),
                ),
            }
        }
        match (types.first().map(String::as_str), metric, by) {
            (Some("accord:MetricSource"), Some(metric), None) => {
                Some(IndicatorSource::Metric { metric, grant })
            }
            (Some("accord:ReportedSource"), None, Some(by)) if grant.is_none() => {
                Some(IndicatorSource::Reported { by })
            }
            _ => {
                self.bad(path, "expected an accord:MetricSource with accord:metric, or an accord:ReportedSource with accord:reportedBy");
                None
            }
        }
    }

    fn conflict_resolution(&mut self, value: &Value, path: &str) -> Vec<ResolutionStep> {
        let mut out = Vec::new();
        for (p, node) in items(value, path) {
            let Some(map) = node.as_object() else {
                self.bad(&p, "expected an accord:ResolutionStep node");
                continue;
            };
            let mut description = None;
            let mut deadline = None;
            let mut decided_by = None;
            for (key, v) in map {
                let kp = join(&p, key);
                match canon(key).as_str() {
                    "@type" => self.expect_type(map, "accord:ResolutionStep", &kp),
                    "dct:description" => description = self.text(v, &kp),
                    "accord:deadlineDays" => {
                        deadline = integer_literal(v).and_then(|n| u32::try_from(n).ok());
                        if deadline.is_none() {
                            self.bad(&kp, "expected a number of days");
                        }
                    }
                    "accord:decidedBy" => decided_by = self.decider(v, &kp),
                    _ => self.bad(
                        &kp,
                        format!("the property {key} is not part of the mapping"),
                    ),
                }
            }
            match (description, deadline, decided_by) {
                (Some(description), Some(deadline_days), Some(decided_by)) => {
                    out.push(ResolutionStep {
                        description,
                        deadline_days,
                        decided_by,
                    })
                }
                _ => self.bad(&p, "a resolution step needs dct:description, accord:deadlineDays and accord:decidedBy"),
            }
        }
        out
    }

    fn decider(&mut self, value: &Value, path: &str) -> Option<Decider> {
        let map = value.as_object();
        let body = map.filter(|m| type_of(m) == ["accord:Body"]);
        match body {
            Some(map) => {
                let mut name = None;
                for (key, v) in map {
                    match canon(key).as_str() {
                        "@type" => {}
                        "dct:title" => name = self.text(v, &join(path, key)),
                        _ => self.bad(
                            &join(path, key),
                            format!("the property {key} is not part of the mapping"),
                        ),
                    }
                }
                if name.is_none() {
                    self.bad(path, "the body has no dct:title");
                }
                name.map(Decider::Body)
            }
            None => self.member(value, path).map(Decider::Party),
        }
    }

    fn legal_basis(&mut self, value: &Value, path: &str) -> Vec<LegalBasis> {
        let mut out = Vec::new();
        for (p, node) in items(value, path) {
            let Some(map) = node.as_object() else {
                self.bad(&p, "expected an accord:LegalBasis node");
                continue;
            };
            let mut reference = None;
            let mut url = None;
            for (key, v) in map {
                let kp = join(&p, key);
                match canon(key).as_str() {
                    "@type" => self.expect_type(map, "accord:LegalBasis", &kp),
                    "accord:reference" => reference = self.text(v, &kp),
                    "accord:url" => url = self.text(v, &kp),
                    _ => self.bad(
                        &kp,
                        format!("the property {key} is not part of the mapping"),
                    ),
                }
            }
            match reference {
                Some(reference) => out.push(LegalBasis { reference, url }),
                None => self.bad(&p, "a legal basis needs accord:reference"),
            }
        }
        out
    }
}

/// An atomic constraint as read.
struct Atomic<'a> {
    left: String,
    operator: String,
    right: Option<(String, &'a Value)>,
    unit: Option<String>,
}

/// ODRL terms the importer reads with their ODRL meaning, so an Offer's
/// context must not redefine them.
fn is_odrl_term(term: &str) -> bool {
    matches!(
        term,
        "uid"
            | "type"
            | "Policy"
            | "Set"
            | "Asset"
            | "conflict"
            | "inheritFrom"
            | "or"
            | "xone"
            | "rightOperandReference"
            | "dataType"
            | "profile"
            | "target"
            | "assigner"
            | "assignee"
            | "action"
            | "permission"
            | "prohibition"
            | "obligation"
            | "duty"
            | "constraint"
            | "refinement"
            | "leftOperand"
            | "operator"
            | "rightOperand"
            | "unit"
            | "use"
            | "read"
            | "purpose"
            | "dateTime"
            | "count"
            | "Offer"
            | "Agreement"
            | "AssetCollection"
            | "isAnyOf"
            | "eq"
            | "gteq"
            | "lt"
            | "lteq"
            | "gt"
            | "and"
            | "andSequence"
            | "inform"
            | "informedParty"
            | "timeInterval"
            | "event"
            | "delayPeriod"
    )
}

/// The agreement id of an accord policy uid.
fn parse_policy_uid(uid: &str) -> Option<AgreementId> {
    let rest = uid.strip_prefix(AGREEMENT_IRI)?;
    let mut parts = rest.split(':');
    let (_federation, id, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with('v') {
        return None;
    }
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use serde_json::json;

    use super::*;

    /// `shared/vocab` beside the repository (as in CI's checkout).
    const VOCAB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vocab");
    const XSD: &str = "http://www.w3.org/2001/XMLSchema#";

    fn read_vocab(file: &str) -> String {
        let path = format!("{VOCAB_DIR}/{file}");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (shared/vocab must be beside the repository)"))
    }

    fn id() -> AgreementId {
        "tallinn-social-services".parse().unwrap()
    }

    /// A realistic agreement: three parties, a services grant with a window,
    /// two quotas and a data-subject duty, a subsystem grant, a grant over
    /// two providers' services, four kinds of obligation, commitments,
    /// indicators, conflict resolution and legal basis.
    fn terms() -> AgreementTerms {
        serde_json::from_value(json!({
            "title": "Residence and benefit applications for Tallinn social services",
            "description": "Tallinn reads residence from the population register and files benefit applications",
            "parties": [
                {"member": "DEMO/GOV/70000002", "roles": ["provider"]},
                {"member": "DEMO/GOV/70000003", "roles": ["provider", "coordinator"]},
                {"member": "DEMO/MUN/75000001", "roles": ["consumer", "funder"]}
            ],
            "grants": [
                {
                    "id": "residence",
                    "services": {"services": [
                        "DEMO/GOV/70000002/population-register/residence/v1",
                        "DEMO/GOV/70000002/population-register/address-history"
                    ]},
                    "consumers": ["DEMO/MUN/75000001/social-benefits", "DEMO/MUN/75000001/case-management"],
                    "purposes": ["social-benefit-eligibility", "fraud-prevention"],
                    "operations": [
                        {"methods": ["GET", "HEAD"], "path": "/persons/*/residence"},
                        {"methods": ["GET"], "path": "/persons/*/addresses/**"}
                    ],
                    "window": {"from": "2026-03-01T00:00:00Z", "until": "2027-03-01T00:00:00Z"},
                    "quotas": [{"limit": 1000, "per": "day"}, {"limit": 60, "per": "minute"}],
                    "data_subject_required": true
                },
                {
                    "id": "applications",
                    "services": {"subsystem": "DEMO/GOV/70000003/benefits"},
                    "consumers": ["DEMO/MUN/75000001/social-benefits"],
                    "purposes": ["social-benefit-eligibility"],
                    "operations": [{"methods": ["GET", "POST"], "path": "/applications/**"}],
                    "quotas": [{"limit": 20000, "per": "month"}]
                },
                {
                    "id": "statistics",
                    "services": {"services": [
                        "DEMO/GOV/70000002/population-register/statistics",
                        "DEMO/GOV/70000003/benefits/statistics/v2"
                    ]},
                    "consumers": ["DEMO/MUN/75000001/analytics"],
                    "purposes": ["official-statistics"],
                    "operations": [{"methods": ["GET"], "path": "/**"}],
                    "window": {"until": "2027-01-01T00:00:00Z"}
                }
            ],
            "commitments": [
                {"party": "DEMO/MUN/75000001", "contribution": {"type": "budget", "amount": 25000.5, "currency": "EUR"},
                 "period": {"from": "2026-01-01", "until": "2026-12-31"}, "note": "first year"},
                {"party": "DEMO/GOV/70000002", "contribution": {"type": "staff", "fte": 0.5},
                 "period": {"from": "2026-01-01", "until": "2027-12-31"}},
                {"party": "DEMO/GOV/70000003", "contribution": {"type": "ict", "description": "Hosting of the benefits API"},
                 "period": {"from": "2026-01-01", "until": "2028-12-31"}},
                {"party": "DEMO/GOV/70000002", "contribution": {"type": "data", "description": "Residence history since 2000"},
                 "period": {"from": "2026-01-01", "until": "2028-12-31"}}
            ],
            "indicators": [
                {"id": "lookups", "name": "Residence look-ups", "definition": "Successful look-ups per month",
                 "source": {"metric": {"metric": "exchange-count", "grant": "residence"}},
                 "unit": "requests", "baseline": 0.0, "target": 5000.0, "direction": "higher-is-better", "period": "month"},
                {"id": "processing-days", "name": "Days to decide", "definition": "Median days from application to decision",
                 "source": {"reported": {"by": "DEMO/MUN/75000001"}},
                 "unit": "days", "baseline": 21.0, "target": 7.5, "direction": "lower-is-better", "period": "quarter"}
            ],
            "obligations": [
                {"id": "uptime", "party": "DEMO/GOV/70000002", "kind": {"type": "availability", "percent": 99.5},
                 "description": "Residence services are available 99.5% of each month"},
                {"id": "quarterly-report", "party": "DEMO/MUN/75000001", "kind": {"type": "reporting", "every": "quarter"},
                 "description": "Report the processing days"},
                {"id": "incidents", "party": "DEMO/GOV/70000003", "kind": {"type": "notification", "within_hours": 24},
                 "description": "Notify the others of incidents"},
                {"id": "dpia", "party": "DEMO/MUN/75000001", "kind": {"type": "other"},
                 "description": "Keep the data protection impact assessment current"}
            ],
            "conflict_resolution": [
                {"description": "The contact persons negotiate", "deadline_days": 14, "decided_by": {"party": "DEMO/GOV/70000003"}},
                {"description": "The joint steering committee decides", "deadline_days": 30, "decided_by": {"body": "Joint steering committee"}}
            ],
            "legal_basis": [
                {"reference": "Population Register Act § 12", "url": "https://www.riigiteataja.ee/akt/population-register"},
                {"reference": "Social Welfare Act § 15"}
            ],
            "validity": {"start": "2026-01-01T00:00:00Z", "end": "2028-12-31T23:59:59Z"}
        }))
        .unwrap()
    }

    fn export() -> Value {
        export_agreement("DEMO", &id(), 2, &terms())
    }

    fn as_offer(mut policy: Value) -> Value {
        policy["@type"] = json!("Offer");
        policy
    }

    // ------------------------------------------------ JSON-LD validity

    /// The ODRL context file's term definitions plus an extra context:
    /// term → (IRI or keyword, type coercion).
    struct Context {
        terms: HashMap<String, (String, Option<String>)>,
    }

    impl Context {
        fn new(extra: &Value) -> Context {
            let file: Value = serde_json::from_str(&read_vocab("odrl.jsonld")).unwrap();
            let mut terms = HashMap::new();
            for definitions in [&file["@context"], extra] {
                for (term, definition) in definitions.as_object().unwrap() {
                    let entry = match definition {
                        Value::String(iri) => (iri.clone(), None),
                        Value::Object(d) => (
                            d["@id"].as_str().unwrap().to_owned(),
                            d.get("@type").and_then(Value::as_str).map(str::to_owned),
                        ),
                        other => panic!("unexpected definition of {term}: {other}"),
                    };
                    terms.insert(term.clone(), entry);
                }
            }
            Context { terms }
        }

        fn is_odrl_term(&self, term: &str) -> bool {
            Context::new(&json!({})).terms.contains_key(term)
        }

        /// A term, compact IRI or absolute IRI as an absolute IRI (or keyword).
        fn expand(&self, text: &str, vocab: bool) -> Result<String, String> {
            if text.starts_with('@') {
                return Ok(text.to_owned());
            }
            if vocab {
                if let Some((iri, _)) = self.terms.get(text) {
                    return if iri.starts_with('@') {
                        Ok(iri.clone())
                    } else {
                        self.expand(iri, false)
                    };
                }
            }
            if let Some((prefix, suffix)) = text.split_once(':') {
                if !suffix.starts_with("//") {
                    if let Some((ns, _)) = self.terms.get(prefix) {
                        if ns.ends_with('/') || ns.ends_with('#') {
                            return Ok(format!("{ns}{suffix}"));
                        }
                    }
                }
                check_absolute_iri(text)?;
                // Anything else would be an undefined prefix read as a scheme.
                if !["http", "https", "urn"].contains(&prefix) {
                    return Err(format!("{text:?}: {prefix} is neither a prefix of the context nor an IRI scheme used here"));
                }
                return Ok(text.to_owned());
            }
            Err(format!(
                "{text:?} is not a term of the context, a compact IRI or an absolute IRI"
            ))
        }
    }

    /// RFC 3987 in ASCII: a scheme, then only IRI characters and valid escapes.
    fn check_absolute_iri(text: &str) -> Result<(), String> {
        let (scheme, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} has no scheme"))?;
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        let bytes = rest.as_bytes();
        let mut i = 0;
        let mut chars_ok = !rest.is_empty() && rest.matches('#').count() <= 1;
        while chars_ok && i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                chars_ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
                i += 3;
                continue;
            }
            chars_ok =
                b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#".contains(&b);
            i += 1;
        }
        if scheme_ok && chars_ok {
            Ok(())
        } else {
            Err(format!("{text:?} is not an absolute IRI"))
        }
    }

    #[derive(Default)]
    struct Report {
        errors: Vec<String>,
        properties: BTreeSet<String>,
        types: BTreeSet<String>,
        /// (property IRI, value IRI) for `@vocab`-typed properties (and
        /// `rdf:value` of an action, recorded as `odrl:action`).
        vocab_values: BTreeSet<(String, String)>,
        /// (datatype IRI, lexical form) of typed literals.
        typed: Vec<(String, String)>,
    }

    fn walk(ctx: &Context, value: &Value, path: &str, report: &mut Report) {
        let Some(map) = value.as_object() else {
            report
                .errors
                .push(format!("{path}: expected a node object, found {value}"));
            return;
        };
        if map.contains_key("@value") {
            for (k, v) in map {
                match k.as_str() {
                    "@value" if !(v.is_object() || v.is_array() || v.is_null()) => {}
                    "@type" => match v.as_str().map(|t| ctx.expand(t, true)) {
                        Some(Ok(t)) => report
                            .typed
                            .push((t, map["@value"].as_str().unwrap_or_default().to_owned())),
                        _ => report.errors.push(format!("{path}: bad datatype {v}")),
                    },
                    _ => report.errors.push(format!("{path}: {k} in a value object")),
                }
            }
            return;
        }
        if let Some(list) = map.get("@list") {
            if map.len() != 1 || !list.is_array() {
                report.errors.push(format!("{path}: malformed @list"));
            }
            for (i, item) in list.as_array().into_iter().flatten().enumerate() {
                walk(ctx, item, &format!("{path}.@list[{i}]"), report);
            }
            return;
        }
        for (key, v) in map {
            let p = join(path, key);
            if key == "@context" {
                if !path.is_empty() {
                    report.errors.push(format!("{p}: a nested context"));
                }
                continue;
            }
            let keyword = match ctx.terms.get(key.as_str()) {
                Some((iri, _)) if iri.starts_with('@') => iri.clone(),
                _ => key.clone(),
            };
            match keyword.as_str() {
                "@id" => match v.as_str().map(|s| ctx.expand(s, false)) {
                    Some(Ok(iri)) if !iri.starts_with('@') => {}
                    _ => report.errors.push(format!("{p}: {v} is not an IRI")),
                },
                "@type" => {
                    let types: Vec<&Value> = match v {
                        Value::Array(list) => list.iter().collect(),
                        one => vec![one],
                    };
                    for t in types {
                        match t.as_str().map(|s| ctx.expand(s, true)) {
                            Some(Ok(iri)) => {
                                report.types.insert(iri);
                            }
                            _ => report.errors.push(format!("{p}: {t} is not a type IRI")),
                        }
                    }
                }
                k if k.starts_with('@') => report.errors.push(format!("{p}: unexpected keyword")),
                _ => {
                    let property = match ctx.expand(key, true) {
                        Ok(iri) => iri,
                        Err(e) => {
                            report.errors.push(format!("{p}: {e}"));
                            continue;
                        }
                    };
                    report.properties.insert(property.clone());
                    let coercion = ctx.terms.get(key.as_str()).and_then(|(_, t)| t.clone());
                    for (ip, item) in items(v, &p) {
                        match item {
                            Value::String(s) => match coercion.as_deref() {
                                Some("@id") => {
                                    if let Err(e) = ctx.expand(s, false) {
                                        report.errors.push(format!("{ip}: {e}"));
                                    }
                                }
                                Some("@vocab") => match ctx.expand(s, true) {
                                    Ok(iri) => {
                                        report.vocab_values.insert((property.clone(), iri));
                                    }
                                    Err(e) => report.errors.push(format!("{ip}: {e}")),
                                },
                                _ => {}
                            },
                            Value::Object(node) => {
                                if property == format!("{RDF_NS}value") {
                                    match node
                                        .get("@id")
                                        .and_then(Value::as_str)
                                        .map(|s| ctx.expand(s, false))
                                    {
                                        Some(Ok(iri)) => {
                                            report
                                                .vocab_values
                                                .insert((format!("{ODRL_NS}action"), iri));
                                        }
                                        _ => report.errors.push(format!(
                                            "{ip}: an action's rdf:value is an action IRI"
                                        )),
                                    }
                                }
                                walk(ctx, item, &ip, report);
                            }
                            Value::Number(_) | Value::Bool(_) => {}
                            Value::Null | Value::Array(_) => {
                                report.errors.push(format!("{ip}: null or nested array"));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The ODRL 2.2 vocabulary's individuals of a class, by local name.
    fn odrl_individuals(class: &str) -> BTreeSet<String> {
        let ttl = read_vocab("ODRL22.ttl");
        let mut out = BTreeSet::new();
        let mut subject: Option<String> = None;
        for line in ttl.lines() {
            if let Some(name) = line.strip_prefix(':') {
                subject = name.split_whitespace().next().map(str::to_owned);
            } else if let Some(subject) = &subject {
                let trimmed = line.trim_start();
                if trimmed.starts_with("a ")
                    && trimmed[2..]
                        .split([',', ';'])
                        .any(|c| c.trim() == format!(":{class}"))
                {
                    out.insert(format!("{ODRL_NS}{subject}"));
                }
            }
        }
        assert!(!out.is_empty(), "no {class} in ODRL22.ttl");
        out
    }

    /// Everything `validate_json_ld` finds wrong with a policy, and what it uses.
    fn validate_json_ld(policy: &Value) -> Report {
        let extra = &policy["@context"][1];
        let mut report = Report::default();
        if policy["@context"][0] != json!(ODRL_CONTEXT)
            || policy["@context"].as_array().map(Vec::len) != Some(2)
        {
            report.errors.push(format!(
                "@context must be [ODRL context, extra], found {}",
                policy["@context"]
            ));
        }
        let ctx = Context::new(extra);
        for (term, definition) in extra.as_object().into_iter().flatten() {
            let ok = definition.as_str().is_some_and(|iri| {
                check_absolute_iri(iri).is_ok() && (iri.ends_with('#') || iri.ends_with('/'))
            });
            if !ok || ctx.is_odrl_term(term) {
                report
                    .errors
                    .push(format!("extra context: {term} must be a new prefix"));
            }
        }
        walk(&ctx, policy, "", &mut report);
        for (datatype, lexical) in &report.typed {
            let ok = match datatype.strip_prefix(XSD) {
                Some("dateTime") => OffsetDateTime::parse(lexical, &Rfc3339).is_ok(),
                Some("date") => parse_plain_date(lexical).is_some(),
                Some("duration") => {
                    reporting_period(lexical).is_some() || duration_hours(lexical).is_some()
                }
                Some("anyURI") => check_absolute_iri(lexical).is_ok(),
                _ => false,
            };
            if !ok {
                report
                    .errors
                    .push(format!("{lexical:?} is not a valid {datatype}"));
            }
        }
        report
    }

    #[test]
    fn the_vocabulary_files_resolve_beside_the_repository() {
        let context: Value = serde_json::from_str(&read_vocab("odrl.jsonld")).unwrap();
        assert_eq!(context["@context"]["odrl"], json!(ODRL_NS));
        assert!(read_vocab("ODRL22.ttl").contains(":isAnyOf"));
    }

    #[test]
    fn export_is_valid_json_ld_with_the_odrl_context() {
        let policy = export();
        let report = validate_json_ld(&policy);
        assert!(report.errors.is_empty(), "{:#?}", report.errors);

        // Every property is an ODRL term of the context, or accord's, Dublin Core's or rdf:value.
        let ctx = Context::new(&json!({}));
        let odrl_properties: BTreeSet<String> = ctx
            .terms
            .keys()
            .filter_map(|t| ctx.expand(t, true).ok())
            .filter(|iri| iri.starts_with(ODRL_NS))
            .collect();
        for property in &report.properties {
            assert!(
                odrl_properties.contains(property)
                    || property.starts_with(ACCORD_VOCAB)
                    || [format!("{DCT_NS}title"), format!("{DCT_NS}description"), format!("{RDF_NS}value")]
                        .contains(property),
                "{property} is neither an ODRL term nor an accord, dct:title/description or rdf:value property"
            );
        }

        // Actions, left operands and operators are ODRL vocabulary (or accord profile) terms.
        let actions = odrl_individuals("Action");
        let left_operands = odrl_individuals("LeftOperand");
        let operators = odrl_individuals("Operator");
        let mut used: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for (property, value) in &report.vocab_values {
            let (kind, allowed) = match property.strip_prefix(ODRL_NS) {
                Some("action") => ("action", &actions),
                Some("leftOperand") => ("leftOperand", &left_operands),
                Some("operator") => ("operator", &operators),
                other => panic!("unexpected @vocab property {other:?}"),
            };
            assert!(
                allowed.contains(value) || (kind != "operator" && value.starts_with(ACCORD_VOCAB)),
                "{kind} {value} is not in the ODRL vocabulary"
            );
            used.entry(kind).or_default().insert(
                value
                    .replace(ODRL_NS, "odrl:")
                    .replace(ACCORD_VOCAB, "accord:"),
            );
        }
        let names = |kind: &str| {
            used.get(kind)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("action"),
            [
                "accord:fulfil",
                "accord:keepAvailable",
                "accord:nameDataSubject",
                "odrl:inform",
                "odrl:read",
                "odrl:use"
            ]
        );
        assert_eq!(
            names("leftOperand"),
            [
                "accord:availabilityPercent",
                "accord:httpOperation",
                "odrl:count",
                "odrl:dateTime",
                "odrl:delayPeriod",
                "odrl:event",
                "odrl:purpose",
                "odrl:timeInterval"
            ]
        );
        assert_eq!(
            names("operator"),
            [
                "odrl:eq",
                "odrl:gt",
                "odrl:gteq",
                "odrl:isAnyOf",
                "odrl:lt",
                "odrl:lteq"
            ]
        );
        for t in &report.types {
            assert!(
                t == &format!("{ODRL_NS}Agreement")
                    || t == &format!("{ODRL_NS}AssetCollection")
                    || t.starts_with(ACCORD_VOCAB),
                "type {t}"
            );
        }
        assert!(report
            .typed
            .iter()
            .any(|(t, v)| t == &format!("{XSD}dateTime") && v == "2026-03-01T00:00:00Z"));
    }

    #[test]
    fn the_structural_check_catches_what_it_should() {
        let mut policy = export();
        policy["permission"][0]["constraint"][0]["leftOperand"] = json!("purposeOfUse");
        policy["permission"][0]["ex:foo"] = json!(1);
        policy["permission"][0]["assignee"] = json!("not an iri");
        policy["permission"][0]["target"] = json!({"@type": "AssetCollection", "uid": "urn:x:a b"});
        policy["dct:title"] = json!({"@value": "2026-13-01", "@type": "xsd:date"});
        let errors = validate_json_ld(&policy).errors.join("\n");
        for expected in [
            "purposeOfUse",
            "ex:foo",
            "not an iri",
            "urn:x:a b",
            "2026-13-01",
        ] {
            assert!(
                errors.contains(expected),
                "{expected} not caught in:\n{errors}"
            );
        }
    }

    /// Parses with oxjsonld (JSON-LD 1.0 to RDF), serving the ODRL context
    /// from shared/vocab and refusing every other URL; the triples as
    /// (subject, predicate, object) in N-Triples form.
    fn to_rdf(policy: &Value) -> Vec<(String, String, String)> {
        let context = read_vocab("odrl.jsonld").into_bytes();
        let text = policy.to_string();
        oxjsonld::JsonLdParser::new()
            .for_reader(text.as_bytes())
            .with_load_document_callback(move |url, _| {
                if url == ODRL_CONTEXT {
                    Ok(oxjsonld::JsonLdRemoteDocument {
                        document: context.clone(),
                        document_url: url.into(),
                    })
                } else {
                    Err(format!("offline: {url} is not served").into())
                }
            })
            .map(|quad| {
                let quad = quad.unwrap_or_else(|e| panic!("not valid JSON-LD: {e}"));
                (
                    quad.subject.to_string(),
                    quad.predicate.as_str().to_owned(),
                    quad.object.to_string(),
                )
            })
            .collect()
    }

    /// How many triples the compact document states: one per property
    /// value and type, two more per list item.
    fn stated_triples(value: &Value) -> usize {
        let Some(map) = value.as_object() else {
            return 0;
        };
        if map.contains_key("@value") {
            return 0;
        }
        let mut n = 0;
        for (key, v) in map {
            match key.as_str() {
                "@context" | "@id" | "uid" => {}
                "@type" | "type" => n += v.as_array().map_or(1, Vec::len),
                _ => {
                    let values = match v {
                        Value::Array(list) => list.iter().collect(),
                        one => vec![one],
                    };
                    for item in values {
                        n += 1;
                        match item.get("@list").and_then(Value::as_array) {
                            Some(list) => {
                                n += 2 * list.len() + list.iter().map(stated_triples).sum::<usize>()
                            }
                            None => n += stated_triples(item),
                        }
                    }
                }
            }
        }
        n
    }

    #[test]
    fn export_converts_to_rdf_with_a_json_ld_processor_and_loses_nothing() {
        let policy = export();
        let triples = to_rdf(&policy);
        // Nothing dropped: a JSON-LD processor silently drops keys that are
        // not terms and values that are not IRIs, so count.
        assert_eq!(triples.len(), stated_triples(&policy), "{triples:#?}");

        let uid = format!("<{}>", policy_uid("DEMO", &id(), 2));
        let odrl = |local: &str| format!("{ODRL_NS}{local}");
        let has = |s: Option<&str>, p: &str, o: &str| {
            triples
                .iter()
                .any(|(ts, tp, to)| s.is_none_or(|s| s == ts) && tp == p && to == o)
        };
        assert!(has(
            Some(&uid),
            &format!("{RDF_NS}type"),
            &format!("<{}>", odrl("Agreement"))
        ));
        assert!(has(
            Some(&uid),
            &odrl("profile"),
            &format!("<{ACCORD_PROFILE}>")
        ));
        let permissions: Vec<&String> = triples
            .iter()
            .filter(|(s, p, _)| s == &uid && p == &odrl("permission"))
            .map(|(_, _, o)| o)
            .collect();
        assert_eq!(
            permissions.len(),
            4,
            "residence, applications and statistics (two providers)"
        );
        assert_eq!(
            triples
                .iter()
                .filter(|(s, p, _)| s == &uid && p == &odrl("obligation"))
                .count(),
            4
        );
        assert!(has(
            None,
            &odrl("target"),
            "<urn:accord:service:DEMO/GOV/70000002/population-register/residence/v1>"
        ));
        assert!(has(
            None,
            &odrl("assigner"),
            "<urn:accord:member:DEMO/GOV/70000002>"
        ));
        assert!(has(
            None,
            &odrl("assignee"),
            "<urn:accord:subsystem:DEMO/MUN/75000001/social-benefits>"
        ));
        assert!(has(
            None,
            &format!("{RDF_NS}value"),
            &format!("<{}>", odrl("read"))
        ));
        assert!(has(
            None,
            &format!("{RDF_NS}value"),
            &format!("<{}>", odrl("use"))
        ));
        assert!(has(
            None,
            &odrl("leftOperand"),
            &format!("<{}>", odrl("purpose"))
        ));
        assert!(has(
            None,
            &odrl("operator"),
            &format!("<{}>", odrl("isAnyOf"))
        ));
        assert!(has(
            None,
            &odrl("rightOperand"),
            "<urn:accord:purpose:social-benefit-eligibility>"
        ));
        assert!(has(
            None,
            &odrl("rightOperand"),
            &format!("\"2026-03-01T00:00:00Z\"^^<{XSD}dateTime>")
        ));
        assert!(has(
            None,
            &odrl("rightOperand"),
            &format!("\"1000\"^^<{XSD}integer>")
        ));
        assert!(has(None, &odrl("unit"), &format!("<{ACCORD_VOCAB}perDay>")));
        assert!(has(
            None,
            &odrl("rightOperand"),
            &format!("\"PT24H\"^^<{XSD}duration>")
        ));
        assert!(has(
            None,
            &format!("{ACCORD_VOCAB}committedBy"),
            "<urn:accord:member:DEMO/MUN/75000001>"
        ));
        // Every constraint hangs off a rule or a logical constraint.
        let constraints = triples
            .iter()
            .filter(|(_, p, _)| p == &odrl("constraint"))
            .count();
        assert_eq!(
            constraints,
            5 + 4 + 3 + 3 + 3,
            "purpose, from, until and quotas of the four permissions; availability, reporting, notification (one andSequence)"
        );
    }

    #[test]
    fn a_minimal_agreement_exports_valid_json_ld_and_round_trips() {
        let terms: AgreementTerms = serde_json::from_value(json!({
            "title": "Tax notices",
            "description": "",
            "parties": [
                {"member": "DEMO/GOV/70000004", "roles": ["provider"]},
                {"member": "DEMO/COM/10000001", "roles": ["consumer"]}
            ],
            "grants": [{
                "id": "notices",
                "services": {"services": ["DEMO/GOV/70000004/tax/notices"]},
                "consumers": ["DEMO/COM/10000001/mail"],
                "purposes": ["registered-mail"],
                "operations": [{"methods": ["POST"], "path": "/notices"}]
            }],
            "validity": {"start": "2026-01-01T00:00:00+02:00"}
        }))
        .unwrap();
        let policy = export_agreement("DEMO", &id(), 1, &terms);
        let report = validate_json_ld(&policy);
        assert!(report.errors.is_empty(), "{:#?}", report.errors);
        assert_eq!(to_rdf(&policy).len(), stated_triples(&policy));
        assert!(policy.get("obligation").is_none() && policy.get("accord:validUntil").is_none());
        assert_eq!(
            policy["permission"][0]["constraint"][1]["rightOperand"]["@value"],
            json!("2026-01-01T00:00:00+02:00")
        );
        assert_eq!(
            policy["permission"][0]["constraint"]
                .as_array()
                .map(Vec::len),
            Some(2),
            "no end, no quota"
        );
        let imported = import_offer(&as_offer(policy)).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(imported.terms, terms);
        assert!(imported.notes.is_empty(), "{:#?}", imported.notes);
    }

    // ------------------------------------------------ export shape

    #[test]
    fn export_is_deterministic_and_says_what_the_terms_say() {
        let policy = export();
        assert_eq!(policy, export());
        assert_eq!(policy.to_string(), export().to_string());
        assert_eq!(policy["@type"], json!("Agreement"));
        assert_eq!(
            policy["uid"],
            json!("urn:accord:agreement:DEMO:tallinn-social-services:v2")
        );
        assert_eq!(policy["profile"], json!(ACCORD_PROFILE));

        let residence = &policy["permission"][0];
        assert_eq!(residence["accord:id"], json!("residence"));
        assert_eq!(
            residence["assigner"],
            json!("urn:accord:member:DEMO/GOV/70000002")
        );
        assert_eq!(
            residence["assignee"],
            json!([
                "urn:accord:subsystem:DEMO/MUN/75000001/social-benefits",
                "urn:accord:subsystem:DEMO/MUN/75000001/case-management"
            ])
        );
        assert_eq!(
            residence["action"][0]["rdf:value"],
            json!({"@id": "odrl:read"}),
            "GET and HEAD only"
        );
        assert_eq!(
            residence["constraint"],
            json!([
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": [
                    {"@id": "urn:accord:purpose:social-benefit-eligibility"}, {"@id": "urn:accord:purpose:fraud-prevention"}]},
                {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": {"@value": "2026-03-01T00:00:00Z", "@type": "xsd:dateTime"}},
                {"leftOperand": "dateTime", "operator": "lt", "rightOperand": {"@value": "2027-03-01T00:00:00Z", "@type": "xsd:dateTime"}},
                {"leftOperand": "count", "operator": "lteq", "rightOperand": 1000, "unit": {"@id": "accord:perDay"}},
                {"leftOperand": "count", "operator": "lteq", "rightOperand": 60, "unit": {"@id": "accord:perMinute"}}
            ])
        );
        assert_eq!(
            residence["duty"],
            json!([{"action": "accord:nameDataSubject"}])
        );

        let applications = &policy["permission"][1];
        assert_eq!(
            applications["target"],
            json!({"@type": "AssetCollection", "uid": "urn:accord:subsystem:DEMO/GOV/70000003/benefits"})
        );
        assert_eq!(
            applications["action"][0]["rdf:value"],
            json!({"@id": "odrl:use"}),
            "POST"
        );
        assert_eq!(
            applications["constraint"][2],
            json!({"leftOperand": "dateTime", "operator": "lt", "rightOperand": {"@value": "2028-12-31T23:59:59Z", "@type": "xsd:dateTime"}}),
            "no window: the agreement's validity"
        );
        assert!(applications.get("duty").is_none());

        // The statistics grant spans two providers: one permission each.
        let (a, b) = (&policy["permission"][2], &policy["permission"][3]);
        assert_eq!(
            (&a["accord:id"], &b["accord:id"]),
            (&json!("statistics"), &json!("statistics"))
        );
        assert_eq!(a["assigner"], json!("urn:accord:member:DEMO/GOV/70000002"));
        assert_eq!(
            b["target"],
            json!("urn:accord:service:DEMO/GOV/70000003/benefits/statistics/v2")
        );

        let incidents = &policy["obligation"][2];
        assert_eq!(
            incidents["assignee"],
            json!("urn:accord:member:DEMO/GOV/70000003")
        );
        assert_eq!(incidents["action"], json!("inform"));
        assert_eq!(
            incidents["informedParty"],
            json!([
                "urn:accord:member:DEMO/GOV/70000002",
                "urn:accord:member:DEMO/MUN/75000001"
            ])
        );
        assert_eq!(
            policy["obligation"][1]["constraint"][0]["rightOperand"]["@value"],
            json!("P3M")
        );
        assert_eq!(
            policy["accord:conflictResolution"]["@list"][1]["accord:decidedBy"]["dct:title"],
            json!("Joint steering committee")
        );
    }

    #[test]
    fn identifiers_with_query_characters_stay_absolute_iris() {
        let member: MemberId = "DEMO/GOV/a?b+c".parse().unwrap();
        assert_eq!(member_iri(&member), "urn:accord:member:DEMO/GOV/a%3Fb%2Bc");
        assert_eq!(
            purpose_iri("statistik & forschung"),
            "urn:accord:purpose:statistik%20%26%20forschung"
        );
        assert_eq!(
            policy_uid("EE:TEST", &id(), 1),
            "urn:accord:agreement:EE%3ATEST:tallinn-social-services:v1"
        );
        check_absolute_iri(&member_iri(&member)).unwrap();
    }

    // ------------------------------------------------ import

    #[test]
    fn an_offerified_export_imports_back_to_the_same_terms() {
        let imported = import_offer(&as_offer(export())).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(imported.suggested_id, Some(id()));
        assert!(imported.notes.is_empty(), "{:#?}", imported.notes);
        assert_eq!(imported.terms, terms());
    }

    #[test]
    fn a_plain_odrl_offer_maps_to_a_draft_with_notes() {
        let offer = json!({
            "@context": ["http://www.w3.org/ns/odrl.jsonld", {"accord": "urn:accord:vocab#"}],
            "@type": "Offer",
            "uid": "http://example.com/policy:42",
            "assigner": "urn:accord:member:DEMO/GOV/70000002",
            "permission": [{
                "target": "urn:accord:service:DEMO/GOV/70000002/population-register/residence/v1",
                "assignee": "urn:accord:subsystem:DEMO/MUN/75000001/social-benefits",
                "action": "read",
                "constraint": [
                    {"leftOperand": "purpose", "operator": "isAnyOf",
                     "rightOperand": [{"@id": "urn:accord:purpose:social-benefit-eligibility"}]},
                    {"and": [
                        {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": {"@value": "2026-01-01", "@type": "xsd:date"}},
                        {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": {"@value": "2026-12-31", "@type": "xsd:date"}}
                    ]},
                    {"leftOperand": "odrl:count", "operator": "lt", "rightOperand": 501, "unit": {"@id": "urn:accord:vocab#perDay"}}
                ]
            }]
        });
        let imported = import_offer(&offer).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(imported.suggested_id, None);
        let expected: AgreementTerms = serde_json::from_value(json!({
            "title": "Imported ODRL offer http://example.com/policy:42",
            "description": "",
            "parties": [
                {"member": "DEMO/GOV/70000002", "roles": ["provider"]},
                {"member": "DEMO/MUN/75000001", "roles": ["consumer"]}
            ],
            "grants": [{
                "id": "permission-1",
                "services": {"services": ["DEMO/GOV/70000002/population-register/residence/v1"]},
                "consumers": ["DEMO/MUN/75000001/social-benefits"],
                "purposes": ["social-benefit-eligibility"],
                "operations": [{"methods": ["GET", "HEAD"], "path": "/**"}],
                "quotas": [{"limit": 500, "per": "day"}]
            }],
            "validity": {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
        }))
        .unwrap();
        assert_eq!(imported.terms, expected);
        let notes = imported.notes.join("\n");
        for said in [
            "GET, HEAD on every path",
            "count lt 501 was read as lteq 500",
            "lteq 2026-12-31 was read as lt 2027-01-01T00:00:00Z",
            "validity was taken from",
            "permission-1",
            "no dct:title",
            "no accord:party",
        ] {
            assert!(notes.contains(said), "{said:?} not in notes:\n{notes}");
        }
    }

    fn refusal(offer: &Value) -> Vec<(String, String, String)> {
        import_offer(offer)
            .expect_err("must be refused")
            .into_iter()
            .map(|v| (v.rule.to_owned(), v.field.unwrap_or_default(), v.detail))
            .collect()
    }

    fn has_refusal(
        refusals: &[(String, String, String)],
        rule: &str,
        field: &str,
        detail: &str,
    ) -> bool {
        refusals
            .iter()
            .any(|(r, f, d)| r == rule && f == field && d.contains(detail))
    }

    #[test]
    fn an_unknown_left_operand_is_refused_with_its_path() {
        let mut offer = as_offer(export());
        offer["permission"][1]["constraint"][3] = json!({"leftOperand": "spatial", "operator": "eq", "rightOperand": {"@id": "http://www.geonames.org/453733"}});
        offer["permission"][0]["action"][0]["refinement"][0]["leftOperand"] = json!("ex:verb");
        let refusals = refusal(&offer);
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[1].constraint[3].leftOperand",
                "leftOperand spatial cannot be mapped"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[0].action[0].refinement[0]",
                "ex:verb"
            ),
            "{refusals:#?}"
        );
        assert_eq!(refusals.len(), 2, "{refusals:#?}");
    }

    #[test]
    fn a_target_that_is_not_an_accord_service_is_refused_with_its_path() {
        let mut offer = as_offer(export());
        offer["permission"][0]["target"][1] = json!("http://example.com/asset:9898.movie");
        offer["permission"][3]["target"] = json!("urn:accord:service:DEMO/GOV");
        let refusals = refusal(&offer);
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[0].target[1]",
                "http://example.com/asset:9898.movie is not an accord service"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[3].target",
                "is not a service identifier"
            ),
            "{refusals:#?}"
        );
    }

    #[test]
    fn an_offer_without_assignee_or_of_another_kind_is_refused() {
        let mut offer = as_offer(export());
        offer["permission"][1]
            .as_object_mut()
            .unwrap()
            .remove("assignee");
        offer["permission"][2]["assignee"] = json!("urn:accord:member:DEMO/MUN/75000001");
        offer["prohibition"] =
            json!([{"target": "urn:accord:service:DEMO/GOV/70000002/x/y", "action": "use"}]);
        offer["permission"][0]["duty"][0]["action"] = json!("compensate");
        let refusals = refusal(&offer);
        assert!(
            has_refusal(
                &refusals,
                NO_ASSIGNEE,
                "permission[1]",
                "does not name who may call"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[2].assignee",
                "is a member"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(&refusals, UNMAPPABLE, "prohibition", "prohibition"),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[0].duty[0]",
                "accord:nameDataSubject"
            ),
            "{refusals:#?}"
        );

        // The export itself is an Agreement, not an Offer.
        let refusals = refusal(&export());
        assert!(
            has_refusal(&refusals, UNMAPPABLE, "@type", "this policy is Agreement"),
            "{refusals:#?}"
        );

        // Not JSON-LD with the ODRL context.
        let mut offer = as_offer(export());
        offer["@context"] = json!({"odrl": "http://example.com/not-odrl/"});
        let refusals = refusal(&offer);
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "@context",
                "does not use the ODRL context"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "@context.odrl",
                "must not be redefined"
            ),
            "{refusals:#?}"
        );
    }

    #[test]
    fn an_assigner_must_offer_the_targets_and_obligations_must_map() {
        let mut offer = as_offer(export());
        offer["permission"][1]["assigner"] = json!("urn:accord:member:DEMO/GOV/70000002");
        offer["obligation"][3]["action"] = json!("compensate");
        offer["permission"][0]["constraint"][3]["unit"] =
            json!({"@id": "http://qudt.org/vocab/unit/HR"});
        let refusals = refusal(&offer);
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[1].assigner",
                "offers none of the permission's targets"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "obligation[3]",
                "the obligation cannot be mapped"
            ),
            "{refusals:#?}"
        );
        assert!(
            has_refusal(
                &refusals,
                UNMAPPABLE,
                "permission[0].constraint[3]",
                "period unit"
            ),
            "{refusals:#?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn grants_key_fields_round_trip(
            limit in 1i64..1_000_000,
            per in 0usize..3,
            methods in proptest::sample::subsequence(METHODS.to_vec(), 1..=METHODS.len()),
            from_days in proptest::option::of(1i64..300),
            until_days in proptest::option::of(301i64..700),
            dsr: bool,
        ) {
            let mut terms = terms();
            let start = terms.validity.start;
            let grant = &mut terms.grants[1];
            grant.quotas = vec![Quota { limit, per: [QuotaPeriod::Minute, QuotaPeriod::Day, QuotaPeriod::Month][per] }];
            grant.operations[0].methods = methods.iter().map(|m| (*m).to_owned()).collect();
            grant.window = (from_days.is_some() || until_days.is_some()).then(|| TimeWindow {
                from: from_days.map(|d| start + time::Duration::days(d)),
                until: until_days.map(|d| start + time::Duration::days(d)),
            });
            grant.data_subject_required = dsr;
            let policy = export_agreement("DEMO", &id(), 1, &terms);
            let imported = import_offer(&as_offer(policy)).unwrap();
            proptest::prop_assert_eq!(&imported.terms.grants, &terms.grants);
            proptest::prop_assert!(imported.notes.is_empty());
        }
    }
}
