//! The rules an agreement's terms must meet before anyone may sign them.
//!
//! Checks that need the catalogue (does this service exist, who offers it,
//! is this purpose in the federation's vocabulary) ask a [`CatalogueView`],
//! which the registry fills from its database; the rules themselves stay
//! pure and are tested here. Every problem is reported, each with the rule
//! it breaks and the field it is in.

use std::collections::HashSet;

use super::terms::*;
use super::RuleViolation;
use crate::catalogue::{check_text, DESCRIPTION_MAX, NAME_MAX};
use crate::id::{MemberId, ServiceId, SubsystemId};

/// What validation needs to know about the federation.
pub trait CatalogueView {
    fn member_exists(&self, member: &MemberId) -> bool;
    fn subsystem_exists(&self, subsystem: &SubsystemId) -> bool;
    fn service_exists(&self, service: &ServiceId) -> bool;
    fn purpose_exists(&self, purpose: &str) -> bool;
}

/// HTTP methods a grant may allow.
pub const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn check_code(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a path pattern: absolute, segments without wildcards inside
/// them, `**` only as the last segment.
pub fn check_path_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err(format!("{pattern:?} must start with \"/\""));
    }
    if pattern.len() > 512 {
        return Err("is longer than 512 characters".into());
    }
    let segments: Vec<&str> = pattern[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if *seg == "**" && i + 1 != segments.len() {
            return Err(format!("{pattern:?}: \"**\" may only be the last segment"));
        }
        if *seg != "*" && *seg != "**" && seg.contains('*') {
            return Err(format!("{pattern:?}: \"*\" must be a whole segment"));
        }
        if seg.contains('?') || seg.contains('#') {
            return Err(format!(
                "{pattern:?}: a path pattern has no query or fragment"
            ));
        }
    }
    Ok(())
}

fn check_date(value: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value, &format).is_ok()
}

/// Could two path patterns match a common path?
fn patterns_overlap(a: &str, b: &str) -> bool {
    let sa: Vec<&str> = a.trim_start_matches('/').split('/').collect();
    let sb: Vec<&str> = b.trim_start_matches('/').split('/').collect();
    let mut i = 0;
    loop {
        match (sa.get(i), sb.get(i)) {
            (Some(&"**"), _) | (_, Some(&"**")) => return true,
            (None, None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if *x != "*" && *y != "*" && x != y {
                    return false;
                }
            }
        }
        i += 1;
    }
}

fn scopes_overlap(a: &ServiceScope, b: &ServiceScope) -> bool {
    match (a, b) {
        (ServiceScope::Services(x), ServiceScope::Services(y)) => x.iter().any(|s| y.contains(s)),
        (ServiceScope::Services(x), ServiceScope::Subsystem(sub))
        | (ServiceScope::Subsystem(sub), ServiceScope::Services(x)) => {
            x.iter().any(|s| s.subsystem() == sub)
        }
        (ServiceScope::Subsystem(x), ServiceScope::Subsystem(y)) => x == y,
    }
}

fn grants_overlap(a: &Grant, b: &Grant) -> bool {
    scopes_overlap(&a.services, &b.services)
        && a.consumers.iter().any(|c| b.consumers.contains(c))
        && a.purposes.iter().any(|p| b.purposes.contains(p))
        && a.operations.iter().any(|x| {
            b.operations.iter().any(|y| {
                x.methods.iter().any(|m| y.methods.contains(m))
                    && patterns_overlap(&x.path, &y.path)
            })
        })
}

fn quota_set(g: &Grant) -> Vec<(QuotaPeriod, i64)> {
    let mut q: Vec<_> = g.quotas.iter().map(|q| (q.per, q.limit)).collect();
    q.sort();
    q
}

/// Every rule the terms break; empty when they may be proposed.
pub fn validate_terms(terms: &AgreementTerms, view: &dyn CatalogueView) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    let mut bad = |rule: &'static str, field: String, detail: String| {
        out.push(RuleViolation::at(rule, field, detail));
    };
    if let Err(e) = check_text(&terms.title, NAME_MAX) {
        bad("invalid-text", "title".into(), e);
    }
    if let Err(e) = check_text(&terms.description, DESCRIPTION_MAX) {
        bad("invalid-text", "description".into(), e);
    }

    // Parties.
    if terms.parties.len() < 2 {
        bad(
            "too-few-parties",
            "parties".into(),
            format!(
                "an agreement needs at least two parties, found {}",
                terms.parties.len()
            ),
        );
    }
    let mut seen = HashSet::new();
    for (i, party) in terms.parties.iter().enumerate() {
        let field = format!("parties[{i}]");
        if !seen.insert(&party.member) {
            bad(
                "duplicate-party",
                field.clone(),
                format!("{} is listed twice", party.member),
            );
        }
        if !view.member_exists(&party.member) {
            bad(
                "unknown-party",
                format!("{field}.member"),
                format!("member {} does not exist", party.member),
            );
        }
        if party.roles.is_empty() {
            bad(
                "party-without-role",
                format!("{field}.roles"),
                "a party needs at least one role".into(),
            );
        }
        let roles: HashSet<_> = party.roles.iter().collect();
        if roles.len() != party.roles.len() {
            bad(
                "duplicate-role",
                format!("{field}.roles"),
                "a role is listed twice".into(),
            );
        }
    }
    let has_role = |member: &MemberId, role: PartyRole| {
        terms.party(member).is_some_and(|p| p.roles.contains(&role))
    };

    // Grants.
    let mut grant_ids = HashSet::new();
    let mut providers_with_services = HashSet::new();
    for (i, grant) in terms.grants.iter().enumerate() {
        let field = format!("grants[{i}]");
        if !check_code(&grant.id) {
            bad(
                "invalid-grant-id",
                format!("{field}.id"),
                format!(
                    "{:?} is not a grant id (lower-case letters, digits, hyphens)",
                    grant.id
                ),
            );
        }
        if !grant_ids.insert(grant.id.as_str()) {
            bad(
                "duplicate-grant",
                format!("{field}.id"),
                format!("grant {:?} is defined twice", grant.id),
            );
        }
        match &grant.services {
            ServiceScope::Services(list) => {
                if list.is_empty() {
                    bad(
                        "grant-without-service",
                        format!("{field}.services"),
                        "a grant needs at least one service".into(),
                    );
                }
                for (j, service) in list.iter().enumerate() {
                    if !view.service_exists(service) {
                        bad(
                            "unknown-service",
                            format!("{field}.services[{j}]"),
                            format!("service {service} does not exist"),
                        );
                    }
                }
            }
            ServiceScope::Subsystem(sub) => {
                if !view.subsystem_exists(sub) {
                    bad(
                        "unknown-service",
                        format!("{field}.services"),
                        format!("subsystem {sub} does not exist"),
                    );
                }
            }
        }
        for provider in grant.services.providers() {
            providers_with_services.insert(provider.clone());
            if !has_role(provider, PartyRole::Provider) {
                bad(
                    "provider-not-party",
                    format!("{field}.services"),
                    format!("{provider} offers a service in this grant but is not a party with the provider role"),
                );
            }
        }
        if grant.consumers.is_empty() {
            bad(
                "grant-without-consumer",
                format!("{field}.consumers"),
                "a grant needs at least one consumer subsystem".into(),
            );
        }
        for (j, consumer) in grant.consumers.iter().enumerate() {
            if !view.subsystem_exists(consumer) {
                bad(
                    "unknown-consumer",
                    format!("{field}.consumers[{j}]"),
                    format!("subsystem {consumer} does not exist"),
                );
            }
            if !has_role(consumer.member(), PartyRole::Consumer) {
                bad(
                    "consumer-not-party",
                    format!("{field}.consumers[{j}]"),
                    format!(
                        "{} is not a party with the consumer role",
                        consumer.member()
                    ),
                );
            }
        }
        if grant.purposes.is_empty() {
            bad(
                "grant-without-purpose",
                format!("{field}.purposes"),
                "a grant must name the purposes it allows".into(),
            );
        }
        for (j, purpose) in grant.purposes.iter().enumerate() {
            if !view.purpose_exists(purpose) {
                bad(
                    "unknown-purpose",
                    format!("{field}.purposes[{j}]"),
                    format!("purpose {purpose:?} is not in the federation's vocabulary"),
                );
            }
        }
        if grant.operations.is_empty() {
            bad(
                "grant-without-operation",
                format!("{field}.operations"),
                "a grant needs at least one operation".into(),
            );
        }
        for (j, op) in grant.operations.iter().enumerate() {
            if op.methods.is_empty() {
                bad(
                    "invalid-operation",
                    format!("{field}.operations[{j}].methods"),
                    "name at least one HTTP method".into(),
                );
            }
            for m in &op.methods {
                if !METHODS.contains(&m.as_str()) {
                    bad(
                        "invalid-operation",
                        format!("{field}.operations[{j}].methods"),
                        format!("{m:?} is not one of {}", METHODS.join(", ")),
                    );
                }
            }
            if let Err(e) = check_path_pattern(&op.path) {
                bad(
                    "invalid-operation",
                    format!("{field}.operations[{j}].path"),
                    e,
                );
            }
        }
        if let Some(window) = &grant.window {
            if let (Some(from), Some(until)) = (window.from, window.until) {
                if until <= from {
                    bad(
                        "window-end-before-start",
                        format!("{field}.window"),
                        "the window must end after it starts".into(),
                    );
                }
            }
        }
        let mut periods = HashSet::new();
        for (j, quota) in grant.quotas.iter().enumerate() {
            if quota.limit <= 0 {
                bad(
                    "quota-not-positive",
                    format!("{field}.quotas[{j}].limit"),
                    format!(
                        "a quota must allow at least one request, found {}",
                        quota.limit
                    ),
                );
            }
            if !periods.insert(quota.per) {
                bad(
                    "duplicate-quota",
                    format!("{field}.quotas[{j}]"),
                    format!("two quotas per {}", quota.per.as_str()),
                );
            }
        }
    }
    for (i, a) in terms.grants.iter().enumerate() {
        for (j, b) in terms.grants.iter().enumerate().skip(i + 1) {
            if grants_overlap(a, b)
                && (quota_set(a) != quota_set(b)
                    || a.data_subject_required != b.data_subject_required)
            {
                bad(
                    "conflicting-grants",
                    format!("grants[{j}]"),
                    format!(
                        "grants {:?} and {:?} cover the same consumer, service, purpose and operation with different limits",
                        a.id, b.id
                    ),
                );
            }
        }
    }
    for party in &terms.parties {
        if party.roles.contains(&PartyRole::Provider)
            && !providers_with_services.contains(&party.member)
        {
            bad(
                "provider-without-service",
                "parties".into(),
                format!(
                    "{} has the provider role but offers no service in any grant",
                    party.member
                ),
            );
        }
    }

    // Validity.
    if let Some(end) = terms.validity.end {
        if end <= terms.validity.start {
            bad(
                "validity-end-before-start",
                "validity.end".into(),
                "the agreement must end after it starts".into(),
            );
        }
    }

    // Commitments.
    for (i, c) in terms.commitments.iter().enumerate() {
        let field = format!("commitments[{i}]");
        if !terms.is_party(&c.party) {
            bad(
                "commitment-by-non-party",
                format!("{field}.party"),
                format!("{} is not a party", c.party),
            );
        }
        match &c.contribution {
            Contribution::Budget { amount, currency } => {
                if !amount.is_finite() || *amount <= 0.0 {
                    bad(
                        "invalid-commitment",
                        format!("{field}.contribution.amount"),
                        "a budget must be a positive amount".into(),
                    );
                }
                if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
                    bad(
                        "invalid-commitment",
                        format!("{field}.contribution.currency"),
                        format!("{currency:?} is not an ISO 4217 currency code"),
                    );
                }
            }
            Contribution::Staff { fte } => {
                if !fte.is_finite() || *fte <= 0.0 {
                    bad(
                        "invalid-commitment",
                        format!("{field}.contribution.fte"),
                        "staff must be a positive number of full-time equivalents".into(),
                    );
                }
            }
            Contribution::Ict { description } | Contribution::Data { description } => {
                if let Err(e) = check_text(description, DESCRIPTION_MAX) {
                    bad(
                        "invalid-commitment",
                        format!("{field}.contribution.description"),
                        e,
                    );
                }
            }
        }
        if !check_date(&c.period.from)
            || !check_date(&c.period.until)
            || c.period.until < c.period.from
        {
            bad(
                "invalid-commitment",
                format!("{field}.period"),
                "the period needs dates YYYY-MM-DD, from before until".into(),
            );
        }
    }

    // Indicators.
    let mut indicator_ids = HashSet::new();
    for (i, ind) in terms.indicators.iter().enumerate() {
        let field = format!("indicators[{i}]");
        if !check_code(&ind.id) || !indicator_ids.insert(ind.id.as_str()) {
            bad(
                "invalid-indicator",
                format!("{field}.id"),
                format!("{:?} is not a unique indicator id", ind.id),
            );
        }
        for (name, text, max) in [
            ("name", &ind.name, NAME_MAX),
            ("definition", &ind.definition, DESCRIPTION_MAX),
            ("unit", &ind.unit, 64),
        ] {
            if let Err(e) = check_text(text, max) {
                bad("invalid-indicator", format!("{field}.{name}"), e);
            }
        }
        if !ind.baseline.is_finite() || !ind.target.is_finite() {
            bad(
                "invalid-indicator",
                format!("{field}.target"),
                "baseline and target must be numbers".into(),
            );
        }
        match &ind.source {
            IndicatorSource::Metric { grant: Some(g), .. } if !grant_ids.contains(g.as_str()) => {
                bad(
                    "invalid-indicator",
                    format!("{field}.source.metric.grant"),
                    format!("grant {g:?} is not in this agreement"),
                );
            }
            IndicatorSource::Reported { by } if !terms.is_party(by) => {
                bad(
                    "invalid-indicator",
                    format!("{field}.source.reported.by"),
                    format!("{by} is not a party"),
                );
            }
            _ => {}
        }
    }

    // Obligations.
    for (i, ob) in terms.obligations.iter().enumerate() {
        let field = format!("obligations[{i}]");
        if !terms.is_party(&ob.party) {
            bad(
                "obligation-on-non-party",
                format!("{field}.party"),
                format!("{} is not a party", ob.party),
            );
        }
        if let ObligationKind::Availability { percent } = ob.kind {
            if !(percent > 0.0 && percent <= 100.0) {
                bad(
                    "invalid-obligation",
                    format!("{field}.kind.percent"),
                    "availability is a percentage above 0 and at most 100".into(),
                );
            }
        }
        if let Err(e) = check_text(&ob.description, DESCRIPTION_MAX) {
            bad("invalid-obligation", format!("{field}.description"), e);
        }
    }

    // Conflict resolution.
    for (i, step) in terms.conflict_resolution.iter().enumerate() {
        let field = format!("conflict_resolution[{i}]");
        if step.deadline_days == 0 {
            bad(
                "invalid-resolution-step",
                format!("{field}.deadline_days"),
                "each step needs a deadline of at least one day".into(),
            );
        }
        match &step.decided_by {
            Decider::Party(m) if !terms.is_party(m) => {
                bad(
                    "invalid-resolution-step",
                    format!("{field}.decided_by"),
                    format!("{m} is not a party"),
                );
            }
            Decider::Body(name) if check_text(name, NAME_MAX).is_err() => {
                bad(
                    "invalid-resolution-step",
                    format!("{field}.decided_by"),
                    "name the deciding body".into(),
                );
            }
            _ => {}
        }
    }
    for (i, basis) in terms.legal_basis.iter().enumerate() {
        if let Err(e) = check_text(&basis.reference, NAME_MAX) {
            bad(
                "invalid-legal-basis",
                format!("legal_basis[{i}].reference"),
                e,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct View;
    impl CatalogueView for View {
        fn member_exists(&self, m: &MemberId) -> bool {
            m.code() != "404"
        }
        fn subsystem_exists(&self, s: &SubsystemId) -> bool {
            s.code() != "nope"
        }
        fn service_exists(&self, s: &ServiceId) -> bool {
            s.code() != "nope"
        }
        fn purpose_exists(&self, p: &str) -> bool {
            p != "marketing"
        }
    }

    fn terms(patch: impl FnOnce(&mut serde_json::Value)) -> AgreementTerms {
        let mut v = serde_json::json!({
            "title": "Residence data for social benefits",
            "description": "Tallinn reads residence",
            "parties": [
                {"member": "DEMO/GOV/1", "roles": ["provider"]},
                {"member": "DEMO/MUN/2", "roles": ["consumer"]}
            ],
            "grants": [{
                "id": "residence",
                "services": {"services": ["DEMO/GOV/1/pop/residence/v1"]},
                "consumers": ["DEMO/MUN/2/benefits"],
                "purposes": ["social-benefit-eligibility"],
                "operations": [{"methods": ["GET"], "path": "/persons/*"}],
                "quotas": [{"limit": 100, "per": "day"}]
            }],
            "validity": {"start": "2026-01-01T00:00:00Z", "end": "2027-01-01T00:00:00Z"}
        });
        patch(&mut v);
        serde_json::from_value(v).unwrap()
    }

    fn rules(t: &AgreementTerms) -> Vec<&'static str> {
        validate_terms(t, &View)
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    #[test]
    fn valid_terms_pass() {
        assert_eq!(rules(&terms(|_| {})), Vec::<&str>::new());
    }

    #[test]
    fn each_rule_is_named() {
        type Patch = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Patch)> = vec![
            (
                "unknown-party",
                Box::new(|v| v["parties"][1]["member"] = "DEMO/MUN/404".into()),
            ),
            (
                "unknown-service",
                Box::new(|v| {
                    v["grants"][0]["services"]["services"][0] = "DEMO/GOV/1/pop/nope".into()
                }),
            ),
            (
                "unknown-purpose",
                Box::new(|v| v["grants"][0]["purposes"][0] = "marketing".into()),
            ),
            (
                "provider-not-party",
                Box::new(|v| v["grants"][0]["services"]["services"][0] = "DEMO/GOV/9/pop/x".into()),
            ),
            (
                "provider-without-service",
                Box::new(|v| {
                    v["parties"][1]["roles"] = serde_json::json!(["consumer", "provider"])
                }),
            ),
            (
                "consumer-not-party",
                Box::new(|v| v["grants"][0]["consumers"][0] = "DEMO/MUN/7/benefits".into()),
            ),
            (
                "quota-not-positive",
                Box::new(|v| v["grants"][0]["quotas"][0]["limit"] = 0.into()),
            ),
            (
                "quota-not-positive",
                Box::new(|v| v["grants"][0]["quotas"][0]["limit"] = (-5).into()),
            ),
            (
                "validity-end-before-start",
                Box::new(|v| v["validity"]["end"] = "2025-01-01T00:00:00Z".into()),
            ),
            (
                "too-few-parties",
                Box::new(|v| {
                    v["parties"].as_array_mut().unwrap().pop();
                }),
            ),
            (
                "invalid-operation",
                Box::new(|v| v["grants"][0]["operations"][0]["path"] = "/a/**/b".into()),
            ),
            (
                "invalid-operation",
                Box::new(|v| v["grants"][0]["operations"][0]["methods"][0] = "FETCH".into()),
            ),
            (
                "conflicting-grants",
                Box::new(|v| {
                    let mut g = v["grants"][0].clone();
                    g["id"] = "residence-2".into();
                    g["quotas"][0]["limit"] = 5000.into();
                    v["grants"].as_array_mut().unwrap().push(g);
                }),
            ),
            (
                "commitment-by-non-party",
                Box::new(|v| {
                    v["commitments"] = serde_json::json!([{
                "party": "DEMO/GOV/8", "contribution": {"type": "staff", "fte": 1.0},
                "period": {"from": "2026-01-01", "until": "2026-12-31"}}])
                }),
            ),
            (
                "invalid-commitment",
                Box::new(|v| {
                    v["commitments"] = serde_json::json!([{
                "party": "DEMO/GOV/1", "contribution": {"type": "budget", "amount": 10.0, "currency": "euro"},
                "period": {"from": "2026-01-01", "until": "2026-12-31"}}])
                }),
            ),
        ];
        for (rule, patch) in cases {
            let t = terms(patch);
            assert!(
                rules(&t).contains(&rule),
                "expected {rule}, got {:?}",
                rules(&t)
            );
        }
    }

    #[test]
    fn grants_with_the_same_limits_may_overlap() {
        let t = terms(|v| {
            let mut g = v["grants"][0].clone();
            g["id"] = "residence-2".into();
            v["grants"].as_array_mut().unwrap().push(g);
        });
        assert_eq!(rules(&t), Vec::<&str>::new());
        assert!(patterns_overlap("/persons/*", "/persons/**"));
        assert!(patterns_overlap("/**", "/a/b"));
        assert!(!patterns_overlap("/persons/*", "/companies/*"));
        assert!(!patterns_overlap("/persons/*", "/persons/*/x"));
    }
}
