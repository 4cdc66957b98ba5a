//! The terms of a co-operation agreement: what the parties sign.
//!
//! The serde shape of these types *is* the agreement's JSON, in the API and
//! in the canonical form whose digest the parties sign, so every field is
//! explicit (`deny_unknown_fields`) and nothing is derived.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::id::{MemberId, ServiceId, SubsystemId};

/// What a party does in an agreement.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PartyRole {
    /// Offers services the agreement grants access to.
    Provider,
    /// Calls them.
    Consumer,
    /// Contributes budget or other resources.
    Funder,
    /// Runs the co-operation (secretariat, steering).
    Coordinator,
    /// Follows it without obligations (e.g. a supervisory body).
    Observer,
}

impl PartyRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            PartyRole::Provider => "provider",
            PartyRole::Consumer => "consumer",
            PartyRole::Funder => "funder",
            PartyRole::Coordinator => "coordinator",
            PartyRole::Observer => "observer",
        }
    }
}

/// A member that is party to the agreement, in one or more roles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Party {
    #[schema(value_type = String, example = "DEMO/MUN/75000001")]
    pub member: MemberId,
    pub roles: Vec<PartyRole>,
}

/// Which provider services a grant covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceScope {
    /// These services.
    Services(Vec<ServiceId>),
    /// Every service of this subsystem, including ones added later.
    Subsystem(SubsystemId),
}

impl ServiceScope {
    /// Does the scope cover `service`?
    pub fn covers(&self, service: &ServiceId) -> bool {
        match self {
            ServiceScope::Services(list) => list.contains(service),
            ServiceScope::Subsystem(sub) => service.subsystem() == sub,
        }
    }

    /// The member(s) whose services are in scope.
    pub fn providers(&self) -> Vec<&MemberId> {
        let mut out: Vec<&MemberId> = match self {
            ServiceScope::Services(list) => list.iter().map(|s| s.member()).collect(),
            ServiceScope::Subsystem(sub) => vec![sub.member()],
        };
        out.sort();
        out.dedup();
        out
    }
}

/// HTTP methods and a path pattern a grant allows.
///
/// Patterns are matched segment by segment: a literal segment matches
/// itself, `*` matches exactly one segment, and a final `**` matches any
/// remaining segments (including none). `/**` allows every path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Upper-case HTTP methods, e.g. `["GET"]`.
    pub methods: Vec<String>,
    #[schema(example = "/persons/*/residence")]
    pub path: String,
}

/// When, within the agreement's validity, a grant may be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// Per-consumer rate limit of a grant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    Minute,
    Day,
    Month,
}

impl QuotaPeriod {
    pub fn as_str(&self) -> &'static str {
        match self {
            QuotaPeriod::Minute => "minute",
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
        }
    }
}

/// At most `limit` requests per `per`, for each consumer subsystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Must be positive (checked with a named rule, so it is signed as given).
    pub limit: i64,
    pub per: QuotaPeriod,
}

/// Access from consumer subsystems to provider services, for purposes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Unique within the agreement, e.g. `residence-lookup`.
    pub id: String,
    pub services: ServiceScope,
    #[schema(value_type = Vec<String>)]
    pub consumers: Vec<SubsystemId>,
    /// Purposes from the federation's vocabulary, e.g. `social-benefit-eligibility`.
    pub purposes: Vec<String>,
    pub operations: Vec<Operation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<Quota>,
    /// Each request must name a data subject (`X-Accord-Subject`).
    #[serde(default)]
    pub data_subject_required: bool,
}

/// A period of calendar dates (inclusive), for commitments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    #[schema(example = "2026-01-01")]
    pub from: String,
    #[schema(example = "2026-12-31")]
    pub until: String,
}

/// What a party contributes: the resource-sharing part of an agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Contribution {
    /// Money, in a currency (ISO 4217 code).
    Budget { amount: f64, currency: String },
    /// People, in full-time equivalents.
    Staff { fte: f64 },
    /// ICT capacity: hosting, licences, operations.
    Ict { description: String },
    /// Data the party makes available.
    Data { description: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Commitment {
    #[schema(value_type = String)]
    pub party: MemberId,
    pub contribution: Contribution,
    pub period: DateRange,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Where an indicator's values come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IndicatorSource {
    /// Computed from the exchanges that really flowed.
    Metric {
        metric: Metric,
        /// Only this grant's exchanges; all of the agreement's if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<String>,
    },
    /// A value a party reports each period.
    Reported {
        #[schema(value_type = String)]
        by: MemberId,
    },
}

/// Metrics the monitoring computes from exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    ExchangeCount,
    SuccessRate,
    P95LatencyMs,
    DistinctDataSubjects,
    DeniedCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportingPeriod {
    Month,
    Quarter,
    Year,
}

/// How the agreement's success is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    pub id: String,
    pub name: String,
    pub definition: String,
    pub source: IndicatorSource,
    pub unit: String,
    pub baseline: f64,
    pub target: f64,
    pub direction: Direction,
    pub period: ReportingPeriod,
}

/// A duty a party takes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ObligationKind {
    /// The provider keeps its services available this share of the time.
    Availability {
        percent: f64,
    },
    /// The party reports (e.g. indicator values) every period.
    Reporting {
        every: ReportingPeriod,
    },
    /// The party notifies the others of incidents within hours.
    Notification {
        within_hours: u32,
    },
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Obligation {
    pub id: String,
    #[schema(value_type = String)]
    pub party: MemberId,
    pub kind: ObligationKind,
    pub description: String,
}

/// Who decides at a step of conflict resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Decider {
    /// One of the parties.
    Party(MemberId),
    /// A named body, e.g. "Joint steering committee".
    Body(String),
}

/// One step of the conflict-resolution clause, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolutionStep {
    pub description: String,
    /// Days the step may take before the next one starts.
    pub deadline_days: u32,
    pub decided_by: Decider,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegalBasis {
    /// E.g. "Population Register Act § 12".
    pub reference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// When the agreement is in force (once active).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Validity {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub start: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end: Option<OffsetDateTime>,
}

/// Everything a co-operation agreement says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementTerms {
    pub title: String,
    pub description: String,
    pub parties: Vec<Party>,
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub commitments: Vec<Commitment>,
    #[serde(default)]
    pub indicators: Vec<Indicator>,
    #[serde(default)]
    pub obligations: Vec<Obligation>,
    #[serde(default)]
    pub conflict_resolution: Vec<ResolutionStep>,
    #[serde(default)]
    pub legal_basis: Vec<LegalBasis>,
    pub validity: Validity,
}

impl AgreementTerms {
    pub fn party(&self, member: &MemberId) -> Option<&Party> {
        self.parties.iter().find(|p| &p.member == member)
    }

    pub fn is_party(&self, member: &MemberId) -> bool {
        self.party(member).is_some()
    }
}
