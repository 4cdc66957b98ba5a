//! Authorization decisions: what a gateway asks and what it is told.
//!
//! Every exchange between agencies must be traceable to the signed
//! agreement that allowed it, and every refusal must say *why* in terms the
//! parties recognise from the text they signed. So a decision is not a
//! boolean: a [`Permit`] names the agreement, version and grant that allow
//! the request (and the quota counters the gateway must then advance), and
//! a [`Deny`] carries a stable reason code (for metrics, problem bodies and
//! dashboards) plus a sentence naming the agreement or grant concerned and
//! what it expected against what the request brought.
//!
//! The decision is a pure function of the agreements in force, the request
//! and the current quota counters ([`QuotaCounters`]): no clock, no I/O, no
//! randomness. The gateway supplies the time and the counters, so the same
//! inputs always give the same answer, in a test, a replay of an audit log
//! or a dispute about a refused call. The function itself is
//! [`Index::decide`](super::index::Index::decide): this module holds the
//! types it speaks in, kept apart from the index so that callers (gateway,
//! registry API, monitoring) can depend on the vocabulary without the
//! data structure.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::terms::{Quota, QuotaPeriod};
use super::AgreementId;
use crate::id::{ServiceId, SubsystemId};

/// One request as the gateway sees it, reduced to what the agreements talk
/// about. Everything is borrowed so that a gateway can decide straight from
/// its parsed request without copying.
#[derive(Debug, Clone, Copy)]
pub struct DecisionRequest<'a> {
    /// The calling subsystem (from the client certificate and `X-Road-Client`).
    pub consumer: &'a SubsystemId,
    /// The service called.
    pub service: &'a ServiceId,
    /// Upper-case HTTP method, e.g. `GET`.
    pub method: &'a str,
    /// The path after the service id, starting with `/`, without the query
    /// string; the gateway normalises percent-encoding before asking.
    pub path: &'a str,
    /// The `X-Accord-Purpose` header, if the request has one.
    pub purpose: Option<&'a str>,
    /// Whether the request names a data subject (`X-Accord-Subject`).
    pub data_subject: bool,
    /// When the request arrived, in unix seconds (UTC).
    pub at: i64,
}

/// The answer to a [`DecisionRequest`]. A permit borrows from the index it
/// came from (`'i`), so permitting allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'i> {
    Permit(Permit<'i>),
    Deny(Deny),
}

impl Decision<'_> {
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit(_))
    }

    /// The deny reason, if the request is denied.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        match self {
            Decision::Permit(_) => None,
            Decision::Deny(deny) => Some(deny.reason),
        }
    }

    /// One sentence for logs and problem bodies: `permitted by agreement X
    /// version N, grant G`, or the deny explanation.
    pub fn explain(&self) -> String {
        match self {
            Decision::Permit(p) => format!(
                "permitted by agreement {} version {}, grant {}",
                p.agreement, p.version, p.grant
            ),
            Decision::Deny(deny) => deny.explanation.clone(),
        }
    }
}

/// The agreement version and grant that allow a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Permit<'i> {
    pub agreement: &'i AgreementId,
    pub version: u32,
    pub grant: &'i str,
    /// The quota counters the caller must advance now that the request is
    /// permitted: one per quota of the grant (none if it has no quotas).
    pub quotas: QuotaKeys<'i>,
}

/// Why a request is denied. The variants are in the order in which a
/// request is checked against a grant, so a later variant means the
/// request got further (the order decides which reason is reported when
/// several grants fail differently).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DenyReason {
    /// No agreement in force has both the consumer's member and the
    /// service's member as parties.
    NoAgreement,
    /// The parties share an agreement, but no grant lets this subsystem
    /// call this service.
    ServiceNotCovered,
    /// The purpose is missing or not one the grant allows.
    PurposeNotCovered,
    /// The method or path is not among the grant's operations.
    OperationNotCovered,
    /// Outside the agreement's validity or the grant's time window.
    OutsideValidity,
    /// The agreement is suspended.
    AgreementSuspended,
    /// The grant requires a data subject and the request names none.
    DataSubjectRequired,
    /// A quota of the grant is used up for the current period.
    QuotaExhausted,
}

impl DenyReason {
    /// Every reason, in check order.
    pub const ALL: [DenyReason; 8] = [
        DenyReason::NoAgreement,
        DenyReason::ServiceNotCovered,
        DenyReason::PurposeNotCovered,
        DenyReason::OperationNotCovered,
        DenyReason::OutsideValidity,
        DenyReason::AgreementSuspended,
        DenyReason::DataSubjectRequired,
        DenyReason::QuotaExhausted,
    ];

    /// The stable code, as in problem bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NoAgreement => "no-agreement",
            DenyReason::ServiceNotCovered => "service-not-covered",
            DenyReason::PurposeNotCovered => "purpose-not-covered",
            DenyReason::OperationNotCovered => "operation-not-covered",
            DenyReason::OutsideValidity => "outside-validity",
            DenyReason::AgreementSuspended => "agreement-suspended",
            DenyReason::DataSubjectRequired => "data-subject-required",
            DenyReason::QuotaExhausted => "quota-exhausted",
        }
    }

    pub fn parse(code: &str) -> Option<DenyReason> {
        DenyReason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: the reason code and a human explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub reason: DenyReason,
    /// Names the agreement/grant concerned and what it expected against
    /// what the request brought.
    pub explanation: String,
    /// The agreement (and grant) the explanation is about, when it is
    /// about one: monitoring counts denials per agreement and grant.
    pub agreement: Option<DeniedUnder>,
}

/// The agreement version (and grant) a denial is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedUnder {
    pub agreement: AgreementId,
    pub version: u32,
    /// `None` when no grant of the agreement covered the service.
    pub grant: Option<String>,
}

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.explanation, self.reason.code())
    }
}

/// The current value of the quota counters, kept by the gateway (or a
/// shared store). The decision only reads them; after a permit the caller
/// increments the counters of [`Permit::quotas`].
pub trait QuotaCounters {
    /// How many requests were already counted under `key` (in its window).
    fn used(&self, key: &QuotaKey<'_>) -> u64;
}

/// Counters that are always zero: for callers without quotas, and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuotaUsed;

impl QuotaCounters for NoQuotaUsed {
    fn used(&self, _key: &QuotaKey<'_>) -> u64 {
        0
    }
}

impl<F: Fn(&QuotaKey<'_>) -> u64> QuotaCounters for F {
    fn used(&self, key: &QuotaKey<'_>) -> u64 {
        self(key)
    }
}

/// One quota counter: per agreement version, grant, consumer subsystem,
/// period and window. A new window starts a new counter, so counters never
/// need resetting, only expiring after [`QuotaKey::window_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaKey<'a> {
    pub agreement: &'a AgreementId,
    pub version: u32,
    pub grant: &'a str,
    pub consumer: &'a SubsystemId,
    pub period: QuotaPeriod,
    /// Unix seconds of the window's start: the minute, the UTC day or the
    /// UTC month the request falls in.
    pub window_start: i64,
    /// Requests allowed in the window.
    pub limit: i64,
}

impl QuotaKey<'_> {
    /// Unix seconds at which the next window starts.
    pub fn window_end(&self) -> i64 {
        window_end(self.period, self.window_start)
    }
}

/// The stable text form of a counter's identity (without the limit), for
/// counter stores keyed by strings:
/// `agreement/version/grant/consumer/period/window_start`.
impl fmt::Display for QuotaKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}/{}",
            self.agreement,
            self.version,
            self.grant,
            self.consumer,
            self.period.as_str(),
            self.window_start
        )
    }
}

/// The quota keys of a permit: a view into the index, made into
/// [`QuotaKey`]s on iteration, so a permit carries them without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaKeys<'i> {
    agreement: &'i AgreementId,
    version: u32,
    grant: &'i str,
    consumer: &'i SubsystemId,
    at: i64,
    quotas: &'i [Quota],
}

impl<'i> QuotaKeys<'i> {
    pub(crate) fn new(
        agreement: &'i AgreementId,
        version: u32,
        grant: &'i str,
        consumer: &'i SubsystemId,
        at: i64,
        quotas: &'i [Quota],
    ) -> Self {
        QuotaKeys {
            agreement,
            version,
            grant,
            consumer,
            at,
            quotas,
        }
    }

    pub fn len(&self) -> usize {
        self.quotas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<QuotaKey<'i>> {
        self.quotas.get(i).map(|q| self.key(q))
    }

    pub fn iter(&self) -> QuotaKeyIter<'i> {
        QuotaKeyIter {
            keys: *self,
            quotas: self.quotas.iter(),
        }
    }

    fn key(&self, quota: &Quota) -> QuotaKey<'i> {
        QuotaKey {
            agreement: self.agreement,
            version: self.version,
            grant: self.grant,
            consumer: self.consumer,
            period: quota.per,
            window_start: window_start(quota.per, self.at),
            limit: quota.limit,
        }
    }
}

impl<'i> IntoIterator for QuotaKeys<'i> {
    type Item = QuotaKey<'i>;
    type IntoIter = QuotaKeyIter<'i>;
    fn into_iter(self) -> QuotaKeyIter<'i> {
        self.iter()
    }
}

impl<'i> IntoIterator for &QuotaKeys<'i> {
    type Item = QuotaKey<'i>;
    type IntoIter = QuotaKeyIter<'i>;
    fn into_iter(self) -> QuotaKeyIter<'i> {
        self.iter()
    }
}

/// Iterator over [`QuotaKeys`].
#[derive(Debug, Clone)]
pub struct QuotaKeyIter<'i> {
    keys: QuotaKeys<'i>,
    quotas: std::slice::Iter<'i, Quota>,
}

impl<'i> Iterator for QuotaKeyIter<'i> {
    type Item = QuotaKey<'i>;
    fn next(&mut self) -> Option<QuotaKey<'i>> {
        self.quotas.next().map(|q| self.keys.key(q))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.quotas.size_hint()
    }
}

impl ExactSizeIterator for QuotaKeyIter<'_> {}

const MINUTE: i64 = 60;
const DAY: i64 = 86_400;

/// The start (unix seconds) of the quota window of `period` that `at`
/// falls in: the minute, the UTC day, or the first day of the UTC month.
/// Quotas count calendar windows, not sliding ones, so every gateway of a
/// federation agrees on which counter a request belongs to.
pub fn window_start(period: QuotaPeriod, at: i64) -> i64 {
    match period {
        QuotaPeriod::Minute => at - at.rem_euclid(MINUTE),
        QuotaPeriod::Day => at - at.rem_euclid(DAY),
        QuotaPeriod::Month => {
            let days = at.div_euclid(DAY);
            let (_, _, day) = civil_from_days(days);
            (days - (day - 1)) * DAY
        }
    }
}

/// The start of the window after the one starting at `start`.
fn window_end(period: QuotaPeriod, start: i64) -> i64 {
    match period {
        QuotaPeriod::Minute => start + MINUTE,
        QuotaPeriod::Day => start + DAY,
        QuotaPeriod::Month => {
            let (y, m, _) = civil_from_days(start.div_euclid(DAY));
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) * DAY
        }
    }
}

/// (year, month 1–12, day 1–31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar (H. Hinnant's `civil_from_days`): branch-
/// and allocation-free, so computing a month window costs nanoseconds.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn unix(t: time::OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn window_starts_for_minute_day_and_month() {
        let at = unix(datetime!(2026-03-15 10:20:30 UTC));
        assert_eq!(
            window_start(QuotaPeriod::Minute, at),
            unix(datetime!(2026-03-15 10:20:00 UTC))
        );
        assert_eq!(
            window_start(QuotaPeriod::Day, at),
            unix(datetime!(2026-03-15 00:00:00 UTC))
        );
        assert_eq!(
            window_start(QuotaPeriod::Month, at),
            unix(datetime!(2026-03-01 00:00:00 UTC))
        );
        // The first second of a window is in it; the last second of the
        // previous one is not.
        let march = unix(datetime!(2026-03-01 00:00:00 UTC));
        assert_eq!(window_start(QuotaPeriod::Month, march), march);
        assert_eq!(
            window_start(QuotaPeriod::Month, march - 1),
            unix(datetime!(2026-02-01 00:00:00 UTC))
        );
        // Leap day, and before 1970.
        let leap = unix(datetime!(2024-02-29 23:59:59 UTC));
        assert_eq!(
            window_start(QuotaPeriod::Month, leap),
            unix(datetime!(2024-02-01 00:00:00 UTC))
        );
        let old = unix(datetime!(1969-12-31 23:59:59 UTC));
        assert_eq!(window_start(QuotaPeriod::Minute, old), old - 59);
        assert_eq!(
            window_start(QuotaPeriod::Month, old),
            unix(datetime!(1969-12-01 00:00:00 UTC))
        );
    }

    #[test]
    fn window_ends_are_the_next_window_starts() {
        let key = |period, at| QuotaKey {
            agreement: &AGREEMENT,
            version: 1,
            grant: "g",
            consumer: &CONSUMER,
            period,
            window_start: window_start(period, at),
            limit: 1,
        };
        let dec = unix(datetime!(2026-12-15 10:20:30 UTC));
        assert_eq!(
            key(QuotaPeriod::Month, dec).window_end(),
            unix(datetime!(2027-01-01 00:00:00 UTC))
        );
        assert_eq!(
            key(QuotaPeriod::Day, dec).window_end(),
            unix(datetime!(2026-12-16 00:00:00 UTC))
        );
        assert_eq!(
            key(QuotaPeriod::Minute, dec).window_end(),
            unix(datetime!(2026-12-15 10:21:00 UTC))
        );
        assert_eq!(
            key(QuotaPeriod::Day, dec).to_string(),
            format!(
                "some-agreement/1/g/DEMO/MUN/75000001/benefits/day/{}",
                unix(datetime!(2026-12-15 00:00:00 UTC))
            )
        );
    }

    static AGREEMENT: std::sync::LazyLock<AgreementId> =
        std::sync::LazyLock::new(|| "some-agreement".parse().unwrap());
    static CONSUMER: std::sync::LazyLock<SubsystemId> =
        std::sync::LazyLock::new(|| "DEMO/MUN/75000001/benefits".parse().unwrap());

    proptest! {
        #[test]
        fn month_windows_agree_with_the_time_crate(at in -62_000_000_000i64..250_000_000_000i64) {
            let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
            let first = t.replace_day(1).unwrap().replace_time(time::Time::MIDNIGHT);
            prop_assert_eq!(window_start(QuotaPeriod::Month, at), first.unix_timestamp());
            let day = t.replace_time(time::Time::MIDNIGHT);
            prop_assert_eq!(window_start(QuotaPeriod::Day, at), day.unix_timestamp());
            let (y, m, d) = civil_from_days(at.div_euclid(DAY));
            prop_assert_eq!((y, m, d), (i64::from(t.year()), i64::from(u8::from(t.month())), i64::from(t.day())));
            prop_assert_eq!(days_from_civil(y, m, d), at.div_euclid(DAY));
        }
    }

    #[test]
    fn reason_codes_are_stable_and_distinct() {
        let codes: Vec<&str> = DenyReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(
            codes,
            [
                "no-agreement",
                "service-not-covered",
                "purpose-not-covered",
                "operation-not-covered",
                "outside-validity",
                "agreement-suspended",
                "data-subject-required",
                "quota-exhausted"
            ]
        );
        for reason in DenyReason::ALL {
            assert_eq!(DenyReason::parse(reason.code()), Some(reason));
            // The serde form is the code, so problem bodies and Rust agree.
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                serde_json::json!(reason.code())
            );
        }
        assert!(DenyReason::ALL.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(DenyReason::parse("nope"), None);
    }

    #[test]
    fn quota_keys_iterate_one_key_per_quota() {
        let quotas = [
            Quota {
                limit: 10,
                per: QuotaPeriod::Minute,
            },
            Quota {
                limit: 1000,
                per: QuotaPeriod::Month,
            },
        ];
        let at = unix(datetime!(2026-03-15 10:20:30 UTC));
        let keys = QuotaKeys::new(&AGREEMENT, 2, "g", &CONSUMER, at, &quotas);
        assert_eq!(keys.len(), 2);
        let all: Vec<QuotaKey<'_>> = keys.into_iter().collect();
        assert_eq!(all[0].limit, 10);
        assert_eq!(
            all[0].window_start,
            unix(datetime!(2026-03-15 10:20:00 UTC))
        );
        assert_eq!(all[1].period, QuotaPeriod::Month);
        assert_eq!(
            all[1].window_start,
            unix(datetime!(2026-03-01 00:00:00 UTC))
        );
        assert_eq!(keys.get(1), Some(all[1]));
        assert_eq!(keys.get(2), None);
    }
}
