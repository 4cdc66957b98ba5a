//! Quota counters on the provider gateway, and the decision taken with them.
//!
//! Agreements may cap a consumer's requests per minute, day or month. The
//! provider gateway counts permitted requests in memory, one counter per
//! (agreement version, grant, consumer, period, window); a new window is a
//! new counter, so nothing is ever reset, and counters of past windows are
//! dropped as they expire. The decision and the increments happen under one
//! lock, so concurrent requests cannot overshoot a quota (the decision
//! itself takes about a microsecond).
//!
//! Counters live in the process: a restarted gateway starts counting again,
//! and several instances of one gateway count separately. Both are stated
//! limits, not accidents: a shared counter store would put a network round
//! trip on every permitted exchange.

use std::collections::HashMap;
use std::sync::Mutex;

use accord_domain::agreement::decision::{Decision, DecisionRequest, Deny, QuotaKey};
use accord_domain::agreement::index::Index;

/// What a decision came to, owned (the index's borrowed permit does not
/// outlive the configuration it came from).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Permit {
        agreement: String,
        version: u32,
        grant: String,
    },
    Deny(Deny),
}

#[derive(Debug, Default)]
pub struct Quotas {
    inner: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Key text → (count, unix second the window ends).
    used: HashMap<String, (u64, i64)>,
    /// Inserts since the last sweep of expired windows.
    since_sweep: usize,
}

impl Quotas {
    /// Decides `request` against `index`, counting it if permitted.
    pub fn decide(&self, index: &Index, request: &DecisionRequest<'_>) -> Outcome {
        let Ok(mut counters) = self.inner.lock() else {
            // A panic while counting: refuse rather than guess.
            return Outcome::Deny(Deny {
                reason: accord_domain::agreement::decision::DenyReason::QuotaExhausted,
                explanation: "the gateway's quota counters are unavailable".into(),
                agreement: None,
            });
        };
        let (outcome, keys) = {
            let used = |key: &QuotaKey<'_>| -> u64 {
                counters
                    .used
                    .get(&key.to_string())
                    .map_or(0, |(count, _)| *count)
            };
            match index.decide(request, &used) {
                Decision::Permit(permit) => {
                    let keys: Vec<(String, i64)> = permit
                        .quotas
                        .iter()
                        .map(|k| (k.to_string(), k.window_end()))
                        .collect();
                    let outcome = Outcome::Permit {
                        agreement: permit.agreement.to_string(),
                        version: permit.version,
                        grant: permit.grant.to_owned(),
                    };
                    (outcome, keys)
                }
                Decision::Deny(deny) => (Outcome::Deny(deny), Vec::new()),
            }
        };
        for (key, end) in keys {
            counters.used.entry(key).or_insert((0, end)).0 += 1;
            counters.since_sweep += 1;
        }
        if counters.since_sweep > 10_000 {
            let now = request.at;
            counters.used.retain(|_, (_, end)| *end > now);
            counters.since_sweep = 0;
        }
        outcome
    }

    /// Live counters (for metrics).
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |c| c.used.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
