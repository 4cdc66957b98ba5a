//! Decision and compile speed of the authorization index, at the size of a
//! whole country's public sector: 100,000 active agreements among 5,000
//! members (10,000 subsystems, 20,000 services).
//!
//! Criterion measures compilation and typical decisions; since the target is
//! also a tail latency (p99 ≤ 5 µs), a plain pass afterwards times 1,000,000
//! single decisions over a mixed request set (70 % permitted, 30 % denied)
//! and prints percentiles.
//!
//! Run: `cargo bench -p accord-domain --bench decision`

use std::hint::black_box;
use std::time::{Duration, Instant};

use accord_domain::agreement::decision::{
    Decision, DecisionRequest, DenyReason, NoQuotaUsed, QuotaCounters, QuotaKey,
};
use accord_domain::agreement::index::{Index, IndexedAgreement};
use accord_domain::agreement::{
    AgreementState, AgreementTerms, Grant, Operation, Party, PartyRole, Quota, QuotaPeriod,
    ServiceScope, Validity,
};
use accord_domain::{MemberId, ServiceId, SubsystemId};
use criterion::{BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use time::macros::datetime;

const AGREEMENTS: usize = 100_000;
const MEMBERS: usize = 5_000;
const SUBSYSTEMS_PER_MEMBER: usize = 2;
const SERVICES_PER_SUBSYSTEM: usize = 2;
const TIMED_DECISIONS: usize = 1_000_000;

const PURPOSES: [&str; 30] = [
    "social-benefit-eligibility",
    "housing-support",
    "child-allowance",
    "unemployment-benefit",
    "pension-calculation",
    "tax-assessment",
    "tax-audit",
    "customs-clearance",
    "vehicle-registration",
    "driving-licence",
    "school-enrolment",
    "student-aid",
    "healthcare-eligibility",
    "prescription-check",
    "disability-assessment",
    "elderly-care",
    "business-registration",
    "procurement",
    "public-grant",
    "land-registry",
    "building-permit",
    "environmental-permit",
    "law-enforcement",
    "court-proceedings",
    "migration",
    "election-roll",
    "statistics",
    "research",
    "address-verification",
    "identity-verification",
];

/// (method, path pattern, a path it matches)
const OPERATIONS: [(&str, &str, &str); 8] = [
    ("GET", "/persons/*", "/persons/38001010000"),
    (
        "GET",
        "/persons/*/residence",
        "/persons/38001010000/residence",
    ),
    ("POST", "/applications/**", "/applications/2026/12345"),
    (
        "GET",
        "/companies/*/reports/**",
        "/companies/10000000/reports/2025/q4",
    ),
    ("PUT", "/cases/*", "/cases/c-42"),
    ("GET", "/vehicles/*/owner", "/vehicles/123ABC/owner"),
    ("GET", "/**", "/anything/at/all"),
    ("POST", "/decisions", "/decisions"),
];

struct World {
    agreements: Vec<IndexedAgreement>,
    subsystems: Vec<SubsystemId>,
    services: Vec<ServiceId>,
}

fn member(i: usize) -> MemberId {
    let class = ["GOV", "MUN", "NGO"][i % 3];
    MemberId::new("FED", class, &format!("{}", 70_000_000 + i)).expect("member id")
}

impl World {
    fn generate(rng: &mut StdRng, n: usize) -> World {
        let members: Vec<MemberId> = (0..MEMBERS).map(member).collect();
        let subsystems: Vec<SubsystemId> = members
            .iter()
            .flat_map(|m| {
                (0..SUBSYSTEMS_PER_MEMBER)
                    .map(move |s| m.subsystem(&format!("system-{s}")).expect("subsystem id"))
            })
            .collect();
        let services: Vec<ServiceId> = subsystems
            .iter()
            .flat_map(|s| {
                (0..SERVICES_PER_SUBSYSTEM).map(move |k| {
                    s.service(&format!("service-{k}"), Some("v1"))
                        .expect("service id")
                })
            })
            .collect();
        let per_member = SUBSYSTEMS_PER_MEMBER * SERVICES_PER_SUBSYSTEM;
        let start = datetime!(2025-01-01 00:00 UTC);
        let end = datetime!(2030-12-31 00:00 UTC);
        let agreements = (0..n)
            .map(|i| {
                let provider = rng.gen_range(0..MEMBERS);
                let mut consumers: Vec<usize> = Vec::new();
                while consumers.len() < rng.gen_range(1..=3) {
                    let c = rng.gen_range(0..MEMBERS);
                    if c != provider && !consumers.contains(&c) {
                        consumers.push(c);
                    }
                }
                let mut parties = vec![Party {
                    member: members[provider].clone(),
                    roles: vec![PartyRole::Provider],
                }];
                parties.extend(consumers.iter().map(|&c| Party {
                    member: members[c].clone(),
                    roles: vec![PartyRole::Consumer],
                }));
                let provider_services =
                    &services[provider * per_member..(provider + 1) * per_member];
                let grants = (0..rng.gen_range(1..=2))
                    .map(|g| {
                        let scope = if rng.gen_bool(0.2) {
                            let s = rng.gen_range(0..SUBSYSTEMS_PER_MEMBER);
                            ServiceScope::Subsystem(
                                subsystems[provider * SUBSYSTEMS_PER_MEMBER + s].clone(),
                            )
                        } else {
                            let n = rng.gen_range(1..=5).min(provider_services.len());
                            ServiceScope::Services(
                                provider_services.choose_multiple(rng, n).cloned().collect(),
                            )
                        };
                        let quotas = if rng.gen_bool(0.3) {
                            vec![
                                Quota {
                                    limit: 100,
                                    per: QuotaPeriod::Minute,
                                },
                                Quota {
                                    limit: 10_000,
                                    per: QuotaPeriod::Day,
                                },
                            ]
                        } else {
                            vec![]
                        };
                        let n_ops = rng.gen_range(1..=2);
                        let n_purposes = rng.gen_range(1..=3);
                        Grant {
                            id: format!("grant-{g}"),
                            services: scope,
                            consumers: consumers
                                .iter()
                                .map(|&c| {
                                    subsystems[c * SUBSYSTEMS_PER_MEMBER
                                        + rng.gen_range(0..SUBSYSTEMS_PER_MEMBER)]
                                    .clone()
                                })
                                .collect(),
                            purposes: PURPOSES
                                .choose_multiple(rng, n_purposes)
                                .map(|p| p.to_string())
                                .collect(),
                            operations: OPERATIONS
                                .choose_multiple(rng, n_ops)
                                .map(|(m, p, _)| Operation {
                                    methods: vec![m.to_string()],
                                    path: p.to_string(),
                                })
                                .collect(),
                            window: None,
                            quotas,
                            data_subject_required: rng.gen_bool(0.2),
                        }
                    })
                    .collect();
                IndexedAgreement {
                    id: format!("agreement-{i:06}").parse().expect("agreement id"),
                    version: rng.gen_range(1..=3),
                    state: AgreementState::Active,
                    terms: AgreementTerms {
                        title: format!("Agreement {i}"),
                        description: "Generated for the benchmark".to_owned(),
                        parties,
                        grants,
                        commitments: vec![],
                        indicators: vec![],
                        obligations: vec![],
                        conflict_resolution: vec![],
                        legal_basis: vec![],
                        validity: Validity {
                            start: start + Duration::from_secs(rng.gen_range(0..365) * 86_400),
                            end: Some(end),
                        },
                    },
                }
            })
            .collect();
        World {
            agreements,
            subsystems,
            services,
        }
    }
}

/// Counters that say every quota is used up.
struct Exhausted;

impl QuotaCounters for Exhausted {
    fn used(&self, key: &QuotaKey<'_>) -> u64 {
        key.limit as u64
    }
}

#[derive(Clone)]
struct Request {
    consumer: SubsystemId,
    service: ServiceId,
    method: &'static str,
    path: &'static str,
    purpose: Option<&'static str>,
    data_subject: bool,
    at: i64,
    exhausted: bool,
}

impl Request {
    fn borrow(&self) -> DecisionRequest<'_> {
        DecisionRequest {
            consumer: &self.consumer,
            service: &self.service,
            method: self.method,
            path: self.path,
            purpose: self.purpose,
            data_subject: self.data_subject,
            at: self.at,
        }
    }

    fn counters(&self) -> &'static dyn QuotaCounters {
        if self.exhausted {
            &Exhausted
        } else {
            &NoQuotaUsed
        }
    }

    fn decide<'i>(&self, index: &'i Index) -> Decision<'i> {
        index.decide(&self.borrow(), self.counters())
    }
}

const AT: i64 = 1_781_524_800; // 2026-06-15T12:00:00Z

/// A request that one grant of a random agreement permits.
fn permitted(world: &World, rng: &mut StdRng) -> Request {
    let agreement = world.agreements.choose(rng).expect("agreements");
    let grant = agreement.terms.grants.choose(rng).expect("grants");
    let service = match &grant.services {
        ServiceScope::Services(list) => list.choose(rng).expect("services").clone(),
        ServiceScope::Subsystem(sub) => sub
            .service(&format!("service-{}", rng.gen_range(0..9)), None)
            .expect("service id"),
    };
    let op = grant.operations.choose(rng).expect("operations");
    let (method, _, path) = OPERATIONS
        .iter()
        .find(|(_, p, _)| *p == op.path)
        .expect("known operation");
    let purpose = grant.purposes.choose(rng).expect("purposes");
    Request {
        consumer: grant.consumers.choose(rng).expect("consumers").clone(),
        service,
        method,
        path,
        purpose: PURPOSES.iter().find(|p| **p == purpose).copied(),
        data_subject: true,
        at: AT,
        exhausted: false,
    }
}

/// A request denied for (mostly) `reason`.
fn denied(world: &World, rng: &mut StdRng, reason: DenyReason) -> Request {
    let mut r = permitted(world, rng);
    match reason {
        DenyReason::NoAgreement => {
            r.consumer = world.subsystems.choose(rng).expect("subsystems").clone();
            r.service = world.services.choose(rng).expect("services").clone();
        }
        DenyReason::ServiceNotCovered => {
            r.service = r
                .service
                .subsystem()
                .service("not-granted", None)
                .expect("service id");
        }
        DenyReason::PurposeNotCovered => {
            r.purpose = if rng.gen_bool(0.5) {
                None
            } else {
                Some("marketing")
            }
        }
        DenyReason::OperationNotCovered => r.method = "DELETE",
        DenyReason::OutsideValidity => r.at = 1_700_000_000, // 2023
        DenyReason::DataSubjectRequired => r.data_subject = false,
        DenyReason::QuotaExhausted => r.exhausted = true,
        DenyReason::AgreementSuspended => {}
    }
    r
}

fn requests(
    world: &World,
    index: &Index,
    rng: &mut StdRng,
    n: usize,
    want: Option<DenyReason>,
) -> Vec<Request> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = match want {
            None => permitted(world, rng),
            Some(reason) => denied(world, rng, reason),
        };
        if r.decide(index).deny_reason() == want {
            out.push(r);
        }
    }
    out
}

fn bench_decide(c: &mut Criterion, name: &str, index: &Index, requests: &[Request]) {
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            let r = &requests[i % requests.len()];
            i += 1;
            black_box(r.decide(black_box(index)));
        })
    });
}

#[derive(Default)]
struct Samples(Vec<u64>);

impl Samples {
    fn report(&mut self, label: &str) {
        let v = &mut self.0;
        if v.is_empty() {
            return;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        println!(
            "  {label:<8} n={:>8}  p50={:>6} ns  p90={:>6} ns  p99={:>6} ns  p99.9={:>7} ns  max={:>9} ns",
            v.len(),
            at(0.50),
            at(0.90),
            at(0.99),
            at(0.999),
            v[v.len() - 1]
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`)
    // criterion only checks that each benchmark runs, and so do we.
    let quick = !std::env::args().any(|a| a == "--bench");
    // A name filter (e.g. `decide_permit`) runs only the matching criterion
    // benchmarks; the percentile pass runs without one or with `percentiles`.
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-') && a.parse::<f64>().is_err());
    let percentiles = filter.as_deref().is_none_or(|f| "percentiles".contains(f));
    let mut rng = StdRng::seed_from_u64(2026);

    let t = Instant::now();
    // `cargo test --benches` runs this once in a debug build: a smaller
    // federation keeps that a smoke test.
    let n = if quick { AGREEMENTS / 10 } else { AGREEMENTS };
    let world = World::generate(&mut rng, n);
    println!(
        "generated {} agreements in {:?}",
        world.agreements.len(),
        t.elapsed()
    );

    let mut compile_times = Vec::new();
    let mut index = None;
    for _ in 0..3 {
        let input = world.agreements.clone();
        let t = Instant::now();
        let compiled = Index::compile(input);
        compile_times.push(t.elapsed());
        index = Some(compiled);
    }
    let index = index.expect("compiled");
    assert_eq!(index.len(), n);

    // Criterion.
    let permits = requests(&world, &index, &mut rng, 10_000, None);
    let no_agreement = requests(
        &world,
        &index,
        &mut rng,
        10_000,
        Some(DenyReason::NoAgreement),
    );
    let purpose = requests(
        &world,
        &index,
        &mut rng,
        10_000,
        Some(DenyReason::PurposeNotCovered),
    );
    let quota = requests(
        &world,
        &index,
        &mut rng,
        10_000,
        Some(DenyReason::QuotaExhausted),
    );
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("compile_100k");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(10));
        group.bench_function("compile_100k", |b| {
            b.iter_batched(
                || world.agreements.clone(),
                Index::compile,
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
    bench_decide(&mut c, "decide_permit", &index, &permits);
    bench_decide(&mut c, "decide_deny_no_agreement", &index, &no_agreement);
    bench_decide(&mut c, "decide_deny_purpose_not_covered", &index, &purpose);
    bench_decide(&mut c, "decide_deny_quota_exhausted", &index, &quota);
    c.final_summary();
    if !percentiles {
        return;
    }

    // Percentiles of single decisions over a mixed set.
    let deny_kinds = [
        DenyReason::NoAgreement,
        DenyReason::ServiceNotCovered,
        DenyReason::PurposeNotCovered,
        DenyReason::OperationNotCovered,
        DenyReason::OutsideValidity,
        DenyReason::DataSubjectRequired,
        DenyReason::QuotaExhausted,
    ];
    let distinct = 100_000;
    let mut mixed: Vec<Request> = (0..distinct)
        .map(|i| {
            if i % 10 < 7 {
                permitted(&world, &mut rng)
            } else {
                denied(&world, &mut rng, deny_kinds[i % deny_kinds.len()])
            }
        })
        .collect();
    mixed.shuffle(&mut rng);
    let total = if quick { 10_000 } else { TIMED_DECISIONS };

    let mut empty = Samples::default();
    for _ in 0..100_000 {
        let t = Instant::now();
        empty.0.push(t.elapsed().as_nanos() as u64);
    }
    let (mut all, mut permit, mut deny) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut reasons = std::collections::BTreeMap::new();
    for i in 0..total {
        // A gateway decides on ids it has just parsed: copy the request so
        // its ids are fresh in cache, as after parsing, not cold in memory.
        let r = black_box(mixed[i % mixed.len()].clone());
        let request = r.borrow();
        let counters = r.counters();
        let t = Instant::now();
        let decision = index.decide(black_box(&request), counters);
        let is_permit = black_box(&decision).is_permit();
        let reason = decision.deny_reason();
        drop(decision);
        let ns = t.elapsed().as_nanos() as u64;
        all.0.push(ns);
        if is_permit {
            permit.0.push(ns);
        } else {
            deny.0.push(ns);
        }
        *reasons
            .entry(reason.map_or("permit", |r| r.code()))
            .or_insert(0u64) += 1;
    }
    compile_times.sort();
    println!();
    println!("== accord-domain decision index: {n} active agreements, {MEMBERS} members, {} subsystems, {} services ==", world.subsystems.len(), world.services.len());
    println!(
        "compile {n}: best {:.0} ms, median {:.0} ms, worst {:.0} ms (of 3, excluding cloning the input)",
        compile_times[0].as_secs_f64() * 1e3,
        compile_times[1].as_secs_f64() * 1e3,
        compile_times[2].as_secs_f64() * 1e3
    );
    println!("{total} single decisions over {distinct} distinct requests, 70 % meant to be permitted (each timed with Instant, timer cost included):");
    all.report("all");
    permit.report("permit");
    deny.report("deny");
    empty.report("(timer)");
    println!("  outcomes: {reasons:?}");
}
