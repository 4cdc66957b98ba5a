//! Prometheus metrics of a gateway (`GET /metrics` on the consumer side).
//!
//! What an operator needs to see without reading logs: exchanges by side
//! and outcome (permitted, denied, failed), their latency, refused TLS
//! peers, the audit log's size and commit lag, the monitoring queue and
//! what the registry accepted, and the configuration's age. Counters are
//! updated on the request path (atomic increments); gauges that describe
//! state are read when scraped.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum SideLabel {
    Consumer,
    Provider,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum OutcomeLabel {
    /// Permitted and answered by the backend (any HTTP status).
    Permit,
    /// Refused by the agreements.
    Deny,
    /// Refused or failed for any other reason (bad request, unreachable, ...).
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    pub side: SideLabel,
    pub outcome: OutcomeLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideOnly {
    pub side: SideLabel,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub exchanges: Family<ExchangeLabels, Counter>,
    pub latency: Family<SideOnly, Histogram, fn() -> Histogram>,
    pub tls_refusals: Family<SideOnly, Counter>,
    pub audit_entries: Gauge,
    pub records_queued: Gauge,
    pub records_sent: Counter,
    pub records_dropped: Counter,
    pub checkpoints_anchored: Counter,
    pub anchor_failures: Counter,
    pub configuration_age: Gauge,
    pub configuration_usable: Gauge,
    pub quota_counters: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("accord_gateway");
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "exchanges",
            "Exchanges answered, by side and outcome",
            exchanges.clone(),
        );
        let latency: Family<SideOnly, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "exchange_duration_seconds",
            "Time from a request's arrival to its answer, audit included",
            latency.clone(),
        );
        let tls_refusals = Family::<SideOnly, Counter>::default();
        registry.register(
            "tls_refusals",
            "Gateway peers refused in the TLS handshake (unknown, revoked, expired, mismatched)",
            tls_refusals.clone(),
        );
        let audit_entries = Gauge::default();
        registry.register(
            "audit_entries",
            "Entries in this gateway's audit log",
            audit_entries.clone(),
        );
        let records_queued = Gauge::default();
        registry.register(
            "monitoring_records_queued",
            "Operational records waiting to be sent to the registry",
            records_queued.clone(),
        );
        let records_sent = Counter::default();
        registry.register(
            "monitoring_records_sent",
            "Operational records the registry acknowledged",
            records_sent.clone(),
        );
        let records_dropped = Counter::default();
        registry.register(
            "monitoring_records_dropped",
            "Operational records dropped because the queue was full (the audit log still has them)",
            records_dropped.clone(),
        );
        let checkpoints_anchored = Counter::default();
        registry.register(
            "checkpoints_anchored",
            "Audit checkpoints the registry accepted",
            checkpoints_anchored.clone(),
        );
        let anchor_failures = Counter::default();
        registry.register(
            "checkpoint_anchor_failures",
            "Failed attempts to anchor an audit checkpoint at the registry",
            anchor_failures.clone(),
        );
        let configuration_age = Gauge::default();
        registry.register(
            "configuration_age_seconds",
            "Seconds since the registry last confirmed the federation configuration",
            configuration_age.clone(),
        );
        let configuration_usable = Gauge::default();
        registry.register(
            "configuration_usable",
            "1 if the gateway exchanges on a configuration within its grace period",
            configuration_usable.clone(),
        );
        let quota_counters = Gauge::default();
        registry.register(
            "quota_counters",
            "Live quota counters",
            quota_counters.clone(),
        );
        Metrics {
            registry,
            exchanges,
            latency,
            tls_refusals,
            audit_entries,
            records_queued,
            records_sent,
            records_dropped,
            checkpoints_anchored,
            anchor_failures,
            configuration_age,
            configuration_usable,
            quota_counters,
        }
    }

    pub fn exchange(&self, side: SideLabel, outcome: OutcomeLabel, seconds: f64) {
        self.exchanges
            .get_or_create(&ExchangeLabels { side, outcome })
            .inc();
        self.latency
            .get_or_create(&SideOnly { side })
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
