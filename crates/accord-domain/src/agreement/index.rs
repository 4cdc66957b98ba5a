//! The compiled authorization index: every agreement in force, arranged so
//! that a gateway can decide a request in about a microsecond.
//!
//! A gateway decides on every single exchange, and a federation of a whole
//! country's public sector holds on the order of 100,000 agreements. Walking
//! the agreements' terms per request would cost milliseconds and allocate,
//! so the registry compiles them once (whenever an agreement is activated,
//! suspended, resumed or ends) into this read-only structure, which
//! gateways share behind an `Arc` across threads and swap when a new one is
//! published. The decision rules themselves are in [`Index::decide`]; the
//! vocabulary it answers in is in [`decision`](super::decision).
//!
//! With 100,000 agreements the index does not fit in the CPU caches, so a
//! decision costs what it reads from memory, not what it computes. The
//! layout therefore minimises the distinct cache lines a decision touches:
//!
//! - The hash tables are open-addressed with key and value in one slot, so
//!   a probe is one memory read (a `HashMap` reads its control bytes and
//!   its bucket, often two cache lines), and the two candidate probes of a
//!   request are independent, so the CPU overlaps their misses.
//! - Members, subsystems and services are interned to small integers. A
//!   request's id is hashed from its own (already cached) parts and
//!   verified against the interned id's text, which sits in one contiguous
//!   arena: one memory read, where comparing against a stored `SubsystemId`
//!   would chase one pointer per part. Nothing is formatted or allocated.
//! - Candidate grants are keyed by (consumer subsystem, service) and by
//!   (consumer subsystem, provider subsystem) for grants whose scope is a
//!   whole subsystem: at most two integer-keyed lookups find every grant
//!   that could apply. A key with a single candidate (the usual case)
//!   holds the grant number itself; longer lists are spans of one shared
//!   array. Lists hold grant numbers in the stable order (agreement id,
//!   version, grant order), so merging the two keeps that order and the
//!   first grant that passes is the one every gateway picks.
//! - Everything a grant's check and a permit read (purposes and operations
//!   as inline id lists, the effective time range, flags, the agreement's
//!   version, where its quotas are) fits in one 64-byte cache line.
//!   Operations and path patterns are interned: federations reuse a
//!   handful of patterns, so they stay in cache. Cold data (explanation
//!   texts, the separate validity and window bounds) lives apart.
//! - Compiling reads the agreements by reference and drops them at the end,
//!   with every large vector sized up front (see [`Builder::add`]).
//! - The (consumer member, provider member) pairs of every agreement in
//!   force are kept apart too, read only to tell "no agreement between
//!   these parties" from "service not covered" on the deny path.
//! - Only the deny path builds a string: the explanation, produced from the
//!   furthest-reaching candidate after the search, never during it.

use std::fmt::{self, Write as _};
use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::decision::{
    civil_from_days, window_start, Decision, DecisionRequest, DeniedUnder, Deny, DenyReason,
    Permit, QuotaCounters, QuotaKeys,
};
use super::lifecycle::AgreementState;
use super::terms::{AgreementTerms, Operation, Quota, ServiceScope};
use super::AgreementId;
use crate::id::{MemberId, ServiceId, SubsystemId};

/// An agreement version as the registry hands it to [`Index::compile`].
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedAgreement {
    pub id: AgreementId,
    pub version: u32,
    /// Active or suspended; versions in any other state are left out.
    pub state: AgreementState,
    pub terms: AgreementTerms,
}

/// Every agreement in force, compiled for fast decisions. Immutable once
/// compiled; `Send + Sync`, so share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct Index {
    /// In force, sorted by (id, version).
    agreements: Vec<CompiledAgreement>,
    /// In the stable order (agreement, grant order): a grant's number is its rank.
    grants: Vec<CompiledGrant>,
    /// Same numbering as `grants`.
    grant_details: Vec<GrantDetails>,
    /// Spill area of the grants' id lists longer than [`TinyIds`] holds.
    spilled_ids: Vec<u32>,
    quotas: Vec<Quota>,
    members: Interner,
    subsystems: Interner,
    /// The subsystems by number, for the quota keys a permit returns.
    subsystem_ids: Vec<SubsystemId>,
    /// `extra` is the number of the service's subsystem.
    services: Interner,
    purposes: FxHashMap<Box<str>, u32>,
    purpose_names: Vec<Box<str>>,
    operations: Vec<CompiledOperation>,
    /// (consumer subsystem, service or tagged provider subsystem) → candidates.
    candidates: Table<Candidates>,
    candidate_lists: Vec<u32>,
    /// (member, member), smaller first → the first agreement (in stable
    /// order) that has both as parties, and how many do.
    pairs: Table<PairEntry>,
}

#[derive(Debug)]
struct CompiledAgreement {
    id: AgreementId,
    version: u32,
    start: i64,
    end: Option<i64>,
}

/// What checking a grant and permitting read: one cache line.
#[derive(Debug)]
#[repr(align(64))]
struct CompiledGrant {
    /// The intersection of the agreement's validity and the grant's window:
    /// usable from `not_before` (inclusive) to `not_after` (exclusive).
    not_before: i64,
    not_after: i64,
    id: Box<str>,
    /// Interned, sorted.
    purposes: TinyIds,
    /// Interned operations.
    operations: TinyIds,
    /// The grant's quotas are `Index::quotas[quota_start..][..quota_len]`.
    quota_start: u32,
    agreement: u32,
    version: u32,
    /// At most one per period (see [`Builder::quotas`]).
    quota_len: u8,
    flags: u8,
}

const SUSPENDED: u8 = 1;
const DATA_SUBJECT_REQUIRED: u8 = 2;

/// What only explanations read.
#[derive(Debug)]
struct GrantDetails {
    from: Option<i64>,
    until: Option<i64>,
}

/// A short list of ids inline (the usual case: one to three purposes or
/// operations, numbered below 65,535), or a place in [`Index::spilled_ids`]
/// holding the count and then the ids.
#[derive(Debug, Clone, Copy, Default)]
struct TinyIds {
    len: u16,
    /// The ids, or if `len == SPILLED` the spill position's low and high halves.
    items: [u16; 3],
}

const SPILLED: u16 = u16::MAX;

impl TinyIds {
    fn new(ids: &[u32], spill: &mut Vec<u32>) -> TinyIds {
        let mut items = [0u16; 3];
        if ids.len() <= items.len() {
            let mut fits = true;
            for (item, &id) in items.iter_mut().zip(ids) {
                match u16::try_from(id) {
                    Ok(small) if small != SPILLED => *item = small,
                    _ => fits = false,
                }
            }
            if fits {
                return TinyIds {
                    len: ids.len() as u16,
                    items,
                };
            }
        }
        let start = spill.len() as u32;
        spill.push(ids.len() as u32);
        spill.extend_from_slice(ids);
        TinyIds {
            len: SPILLED,
            items: [start as u16, (start >> 16) as u16, 0],
        }
    }

    fn iter<'a>(&'a self, spill: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
        let (inline, spilled): (&[u16], &[u32]) = if self.len == SPILLED {
            let start = (usize::from(self.items[1]) << 16) | usize::from(self.items[0]);
            let len = spill.get(start).map_or(0, |&n| n as usize);
            (&[], spill.get(start + 1..start + 1 + len).unwrap_or(&[]))
        } else {
            (self.items.get(..usize::from(self.len)).unwrap_or(&[]), &[])
        };
        inline
            .iter()
            .map(|&id| u32::from(id))
            .chain(spilled.iter().copied())
    }
}

/// The candidate grants of a key: one inline, or a span of
/// [`Index::candidate_lists`].
#[derive(Debug, Clone, Copy, Default)]
struct Candidates {
    /// The grant number if `len == 1`, else the span's start.
    first: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct PairEntry {
    first: u32,
    count: u32,
}

/// Marks a candidate key's target as a provider subsystem (a grant scoped
/// to a whole subsystem) rather than a service.
const SUBSYSTEM_TARGET: u32 = 1 << 31;

fn candidate_key(consumer: u32, target: u32) -> u64 {
    (u64::from(consumer) << 32) | u64::from(target)
}

fn pair_key(a: u32, b: u32) -> u64 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (u64::from(lo) << 32) | u64::from(hi)
}

/// An identifier the [`Interner`] can hash and compare with its text form
/// without building that text.
trait IdText: std::hash::Hash {
    fn parts(&self) -> IdParts<'_>;
}

/// An id's parts, in text order (at most six: a versioned service).
struct IdParts<'a> {
    parts: [&'a str; 6],
    len: usize,
}

impl<'a> IdParts<'a> {
    fn as_slice(&self) -> &[&'a str] {
        self.parts.get(..self.len).unwrap_or(&[])
    }

    /// Is `text` exactly these parts joined by `/`? Parts never contain
    /// `/`, so this is equality of the text forms.
    fn is_text(&self, text: &str) -> bool {
        let mut rest = text;
        for (i, part) in self.as_slice().iter().enumerate() {
            if i > 0 {
                match rest.strip_prefix('/') {
                    Some(r) => rest = r,
                    None => return false,
                }
            }
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }

    fn write_to(&self, out: &mut String) {
        for (i, part) in self.as_slice().iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(part);
        }
    }
}

impl IdText for MemberId {
    fn parts(&self) -> IdParts<'_> {
        IdParts {
            parts: [self.instance(), self.class(), self.code(), "", "", ""],
            len: 3,
        }
    }
}

impl IdText for SubsystemId {
    fn parts(&self) -> IdParts<'_> {
        let m = self.member();
        IdParts {
            parts: [m.instance(), m.class(), m.code(), self.code(), "", ""],
            len: 4,
        }
    }
}

impl IdText for ServiceId {
    fn parts(&self) -> IdParts<'_> {
        let m = self.member();
        let version = self.version();
        IdParts {
            parts: [
                m.instance(),
                m.class(),
                m.code(),
                self.subsystem().code(),
                self.code(),
                version.unwrap_or(""),
            ],
            len: if version.is_some() { 6 } else { 5 },
        }
    }
}

/// A hash table keyed by `u64`, open-addressed with linear probing and at
/// most half full, key and value side by side: a lookup reads one slot
/// (rarely the next few). Several entries may share a key (the interner
/// relies on that for colliding hashes); `get` returns the first.
#[derive(Debug)]
struct Table<V> {
    slots: Box<[(u64, V)]>,
    len: usize,
}

/// Marks a free slot. No key is ever this value: candidate and pair keys
/// hold numbers below 2³¹ in their high half, and the interner maps a hash
/// equal to it to another value.
const FREE: u64 = u64::MAX;

/// A hash usable as a [`Table`] key.
fn not_free(hash: u64) -> u64 {
    if hash == FREE {
        FREE - 1
    } else {
        hash
    }
}

impl<V: Copy + Default> Default for Table<V> {
    fn default() -> Self {
        Table::with_capacity(0)
    }
}

impl<V: Copy + Default> Table<V> {
    fn with_capacity(n: usize) -> Self {
        let size = n.saturating_mul(2).next_power_of_two().max(8);
        Table {
            slots: vec![(FREE, V::default()); size].into_boxed_slice(),
            len: 0,
        }
    }

    fn home(&self, key: u64) -> usize {
        // Fibonacci hashing: the top bits of the product depend on every
        // bit of the key.
        let bits = self.slots.len().trailing_zeros();
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// The first value under `key` that `accept` takes.
    fn find(&self, key: u64, mut accept: impl FnMut(&V) -> bool) -> Option<&V> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        for _ in 0..self.slots.len() {
            let (k, v) = self.slots.get(i)?;
            if *k == FREE {
                return None;
            }
            if *k == key && accept(v) {
                return Some(v);
            }
            i = (i + 1) & mask;
        }
        None
    }

    fn get(&self, key: u64) -> Option<&V> {
        self.find(key, |_| true)
    }

    /// Adds an entry (even if `key` is already there).
    fn insert(&mut self, key: u64, value: V) {
        if (self.len + 1) * 2 > self.slots.len() {
            let mut bigger = Table::with_capacity(self.slots.len());
            for &(k, v) in self.slots.iter().filter(|(k, _)| *k != FREE) {
                bigger.insert(k, v);
            }
            *self = bigger;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        while let Some(slot) = self.slots.get_mut(i) {
            if slot.0 == FREE {
                *slot = (key, value);
                self.len += 1;
                return;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Interned ids of one kind: the id's hash → slot, the slot pointing into
/// one text arena. Distinct ids with the same 64-bit hash (never seen in
/// practice, but possible) get separate slots under the same key, and the
/// text decides, so lookups stay exact.
#[derive(Debug, Default)]
struct Interner {
    slots: Table<Slot>,
    text: String,
    len: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    id: u32,
    /// Free for the table's user (services: their subsystem's number).
    extra: u32,
    start: u32,
    len: u32,
}

impl Interner {
    fn hash<K: IdText>(key: &K) -> u64 {
        not_free(FxBuildHasher.hash_one(key))
    }

    fn slot_text(&self, slot: &Slot) -> &str {
        let start = slot.start as usize;
        self.text
            .get(start..start + slot.len as usize)
            .unwrap_or("")
    }

    fn find<K: IdText>(&self, key: &K) -> Option<Slot> {
        let parts = key.parts();
        self.slots
            .find(Interner::hash(key), |slot| {
                parts.is_text(self.slot_text(slot))
            })
            .copied()
    }

    /// The slot of `key`, and whether it is new (numbered `self.len - 1`).
    fn intern<K: IdText>(&mut self, key: &K, extra: u32) -> (Slot, bool) {
        if let Some(slot) = self.find(key) {
            return (slot, false);
        }
        let start = self.text.len() as u32;
        key.parts().write_to(&mut self.text);
        let slot = Slot {
            id: self.len,
            extra,
            start,
            len: self.text.len() as u32 - start,
        };
        self.len += 1;
        self.slots.insert(Interner::hash(key), slot);
        (slot, true)
    }
}

impl Index {
    /// Compiles the agreements in force (active or suspended; other states
    /// are ignored). Takes them by value: ids move into the index instead
    /// of being copied.
    pub fn compile(agreements: impl IntoIterator<Item = IndexedAgreement>) -> Index {
        // Collecting a Vec reuses its buffer; filtering in place and sorting
        // by a cached key (which moves each agreement once, not log n times)
        // keep a 100,000-agreement compile from copying the terms around.
        let mut list: Vec<IndexedAgreement> = agreements.into_iter().collect();
        list.retain(|a| a.state.in_force());
        list.sort_by_cached_key(|a| (a.id.clone(), a.version));
        // (Sorting references would leave the terms where they are, but
        // then reading them in id order would jump around memory.)
        let mut builder = Builder::with_capacity(&list);
        for agreement in &list {
            builder.add(agreement);
        }
        drop(list);
        builder.finish()
    }

    /// The number of agreement versions indexed.
    pub fn len(&self) -> usize {
        self.agreements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agreements.is_empty()
    }

    /// Decides `request` against the agreements in force, reading (never
    /// changing) the quota `counters`.
    ///
    /// The candidates are the grants whose consumers include the request's
    /// subsystem and whose scope covers its service. Each is checked, in
    /// the stable order (agreement id, version, grant order), for purpose,
    /// operation (method and path), validity and time window, suspension,
    /// data subject and quotas; the first that passes everything permits.
    /// Otherwise the reason is that of the candidate that got furthest
    /// through those checks (the first such candidate on a tie). Without
    /// candidates the reason is [`DenyReason::ServiceNotCovered`] if an
    /// agreement in force has both the consumer's and the service's member
    /// as parties, and [`DenyReason::NoAgreement`] if none has.
    pub fn decide<'i>(
        &'i self,
        request: &DecisionRequest<'_>,
        counters: &dyn QuotaCounters,
    ) -> Decision<'i> {
        let Some(consumer) = self.subsystems.find(request.consumer) else {
            return Decision::Deny(self.uncovered(request));
        };
        let (service, provider) = match self.services.find(request.service) {
            Some(slot) => (Some(slot.id), Some(slot.extra)),
            None => (
                None,
                self.subsystems
                    .find(request.service.subsystem())
                    .map(|s| s.id),
            ),
        };
        // Independent probes: their cache misses overlap.
        let by_service = service.map(|s| self.candidates.get(candidate_key(consumer.id, s)));
        let by_subsystem = provider.map(|p| {
            self.candidates
                .get(candidate_key(consumer.id, p | SUBSYSTEM_TARGET))
        });
        let by_service = self.candidate_list(by_service.flatten());
        let by_subsystem = self.candidate_list(by_subsystem.flatten());
        if by_service.is_empty() && by_subsystem.is_empty() {
            return Decision::Deny(self.uncovered(request));
        }
        let Some(consumer) = self.subsystem_ids.get(consumer.id as usize) else {
            return Decision::Deny(self.uncovered(request));
        };

        let purpose = match request.purpose {
            None => Purpose::Missing,
            Some(p) => match self.purposes.get(p) {
                Some(&id) => Purpose::Known(id),
                None => Purpose::Unknown,
            },
        };
        let path = RequestPath::new(request.path);
        let mut furthest: Option<Miss> = None;
        for grant_no in Merged::new(by_service, by_subsystem) {
            match self.check(grant_no, request, purpose, &path, consumer, counters) {
                Ok(permit) => return Decision::Permit(permit),
                Err(miss) => {
                    if furthest.is_none_or(|f| miss.reason() > f.reason()) {
                        furthest = Some(miss);
                    }
                }
            }
        }
        Decision::Deny(match furthest {
            Some(miss) => self.explain(miss, request),
            // Unreachable: there was at least one candidate.
            None => self.uncovered(request),
        })
    }

    fn candidate_list<'a>(&'a self, candidates: Option<&'a Candidates>) -> &'a [u32] {
        match candidates {
            None => &[],
            Some(c) if c.len == 1 => std::slice::from_ref(&c.first),
            Some(c) => {
                let start = c.first as usize;
                self.candidate_lists
                    .get(start..start + c.len as usize)
                    .unwrap_or(&[])
            }
        }
    }

    /// Checks one candidate grant, in the order of [`DenyReason`].
    fn check<'i>(
        &'i self,
        grant_no: u32,
        request: &DecisionRequest<'_>,
        purpose: Purpose,
        path: &RequestPath<'_>,
        consumer: &'i SubsystemId,
        counters: &dyn QuotaCounters,
    ) -> Result<Permit<'i>, Miss> {
        let miss = |kind| Miss {
            grant: grant_no,
            kind,
        };
        let Some(grant) = self.grants.get(grant_no as usize) else {
            return Err(miss(MissKind::PurposeNotAllowed));
        };
        let allowed = match purpose {
            Purpose::Missing => return Err(miss(MissKind::PurposeMissing)),
            Purpose::Unknown => false,
            Purpose::Known(p) => grant.purposes.iter(&self.spilled_ids).any(|q| q == p),
        };
        if !allowed {
            return Err(miss(MissKind::PurposeNotAllowed));
        }
        let operation_ok = grant.operations.iter(&self.spilled_ids).any(|op| {
            self.operations
                .get(op as usize)
                .is_some_and(|op| op.allows(request.method, path))
        });
        if !operation_ok {
            return Err(miss(MissKind::Operation));
        }
        let at = request.at;
        if at < grant.not_before || at >= grant.not_after {
            return Err(miss(MissKind::Time));
        }
        if grant.flags & SUSPENDED != 0 {
            return Err(miss(MissKind::Suspended));
        }
        if grant.flags & DATA_SUBJECT_REQUIRED != 0 && !request.data_subject {
            return Err(miss(MissKind::DataSubject));
        }
        // Addresses only: the agreement and the quotas are not read here.
        let Some(agreement) = self.agreements.get(grant.agreement as usize) else {
            return Err(miss(MissKind::Suspended));
        };
        let quotas = QuotaKeys::new(
            &agreement.id,
            grant.version,
            &grant.id,
            consumer,
            at,
            self.grant_quotas(grant),
        );
        for (i, key) in quotas.iter().enumerate() {
            let used = counters.used(&key);
            if u64::try_from(key.limit).map_or(true, |limit| used >= limit) {
                return Err(miss(MissKind::Quota { quota: i, used }));
            }
        }
        Ok(Permit {
            agreement: &agreement.id,
            version: grant.version,
            grant: &grant.id,
            quotas,
        })
    }

    fn grant_quotas(&self, grant: &CompiledGrant) -> &[Quota] {
        let start = grant.quota_start as usize;
        self.quotas
            .get(start..start + usize::from(grant.quota_len))
            .unwrap_or(&[])
    }

    /// The denial when no grant covers (consumer, service).
    fn uncovered(&self, request: &DecisionRequest<'_>) -> Deny {
        let consumer_member = request.consumer.member();
        let provider_member = request.service.member();
        let pair = match (
            self.members.find(consumer_member),
            self.members.find(provider_member),
        ) {
            (Some(c), Some(p)) => self.pairs.get(pair_key(c.id, p.id)),
            _ => None,
        };
        let agreement = pair.and_then(|p| self.agreements.get(p.first as usize).map(|a| (p, a)));
        let mut text = String::with_capacity(200);
        let Some((pair, agreement)) = agreement else {
            let _ = write!(
                text,
                "no agreement in force between {} (member of the consumer {}) and {} (provider of {})",
                Id(consumer_member),
                Id(request.consumer),
                Id(provider_member),
                Id(request.service)
            );
            return Deny {
                reason: DenyReason::NoAgreement,
                explanation: text,
                agreement: None,
            };
        };
        let _ = write!(
            text,
            "no grant of agreement {} version {} between {} and {} lets {} call {}",
            agreement.id,
            agreement.version,
            Id(consumer_member),
            Id(provider_member),
            Id(request.consumer),
            Id(request.service)
        );
        let _ = match pair.count {
            0 | 1 => Ok(()),
            2 => write!(text, " (nor does the other agreement between them)"),
            n => write!(
                text,
                " (nor do the {} other agreements between them)",
                n - 1
            ),
        };
        Deny {
            reason: DenyReason::ServiceNotCovered,
            explanation: text,
            agreement: Some(DeniedUnder {
                agreement: agreement.id.clone(),
                version: agreement.version,
                grant: None,
            }),
        }
    }

    /// The denial for the candidate that got furthest.
    fn explain(&self, miss: Miss, request: &DecisionRequest<'_>) -> Deny {
        let reason = miss.reason();
        let grant = self.grants.get(miss.grant as usize);
        let details = self.grant_details.get(miss.grant as usize);
        let agreement = grant.and_then(|g| self.agreements.get(g.agreement as usize));
        let (Some(grant), Some(details), Some(agreement)) = (grant, details, agreement) else {
            return Deny {
                reason,
                explanation: format!("denied ({})", reason.code()),
                agreement: None,
            };
        };
        let (a, v, g) = (&agreement.id, agreement.version, &grant.id);
        let at = request.at;
        let mut text = String::with_capacity(200);
        let _ = match miss.kind {
            MissKind::PurposeMissing => {
                let _ = write!(
                    text,
                    "the X-Accord-Purpose header is required: agreement {a} version {v}, grant {g} allows the purposes "
                );
                self.write_purposes(&mut text, grant)
            }
            MissKind::PurposeNotAllowed => {
                let _ = write!(
                    text,
                    "purpose {:?} is not allowed by agreement {a} version {v}, grant {g}, which allows ",
                    request.purpose.unwrap_or_default()
                );
                self.write_purposes(&mut text, grant)
            }
            MissKind::Operation => {
                let _ = write!(
                    text,
                    "{} {} is not allowed by agreement {a} version {v}, grant {g}, which allows ",
                    request.method, request.path
                );
                let labels = grant
                    .operations
                    .iter(&self.spilled_ids)
                    .filter_map(|op| self.operations.get(op as usize));
                for (i, op) in labels.enumerate() {
                    text.push_str(if i == 0 { "" } else { "; " });
                    text.push_str(&op.label);
                }
                if RequestPath::new(request.path).dot_segments {
                    text.push_str(" (a path with . or .. segments is never allowed)");
                }
                Ok(())
            }
            MissKind::Time if at < agreement.start || agreement.end.is_some_and(|e| at >= e) => {
                write!(
                    text,
                    "agreement {a} version {v} is valid from {} until {}; the request at {} is outside it",
                    Utc(agreement.start),
                    Bound(agreement.end, "further notice"),
                    Utc(at)
                )
            }
            MissKind::Time => write!(
                text,
                "grant {g} of agreement {a} version {v} may be used from {} until {}; the request at {} is outside that window",
                Bound(details.from, "the agreement's start"),
                Bound(details.until, "the agreement's end"),
                Utc(at)
            ),
            MissKind::Suspended => write!(
                text,
                "agreement {a} version {v} is suspended, so its grant {g} may not be used until it is resumed"
            ),
            MissKind::DataSubject => write!(
                text,
                "grant {g} of agreement {a} version {v} requires each request to name a data subject (X-Accord-Subject header); this one names none"
            ),
            MissKind::Quota { quota, used } => match self.grant_quotas(grant).get(quota) {
                Some(q) => write!(
                    text,
                    "the quota of agreement {a} version {v}, grant {g} is exhausted: {} requests per {} for {}, {used} already used in the {} starting {}",
                    q.limit,
                    q.per.as_str(),
                    Id(request.consumer),
                    q.per.as_str(),
                    Utc(window_start(q.per, at))
                ),
                None => write!(text, "a quota of agreement {a} version {v}, grant {g} is exhausted"),
            },
        };
        Deny {
            reason,
            explanation: text,
            agreement: Some(DeniedUnder {
                agreement: a.clone(),
                version: v,
                grant: Some(g.to_string()),
            }),
        }
    }

    fn write_purposes(&self, text: &mut String, grant: &CompiledGrant) -> fmt::Result {
        let names = grant
            .purposes
            .iter(&self.spilled_ids)
            .filter_map(|p| self.purpose_names.get(p as usize));
        for (i, name) in names.enumerate() {
            text.push_str(if i == 0 { "" } else { ", " });
            text.push_str(name);
        }
        Ok(())
    }
}

/// An id in its text form, written part by part (its `Display` nests a
/// `write!` per level).
struct Id<'a, K: IdText>(&'a K);

impl<K: IdText> fmt::Display for Id<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.parts().as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// Unix seconds in RFC 3339 (`2026-03-15T10:20:30Z`), written directly:
/// explanations are built on the deny path of every refused request.
struct Utc(i64);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            write!(
                f,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
        } else {
            write!(f, "{} (unix seconds)", self.0)
        }
    }
}

/// An optional bound: the time, or what stands in for its absence.
struct Bound(Option<i64>, &'static str);

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => Utc(t).fmt(f),
            None => f.write_str(self.1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Missing,
    /// Named, but in no grant of the index.
    Unknown,
    Known(u32),
}

/// How far a candidate got, and what stopped it.
#[derive(Debug, Clone, Copy)]
struct Miss {
    grant: u32,
    kind: MissKind,
}

#[derive(Debug, Clone, Copy)]
enum MissKind {
    PurposeMissing,
    PurposeNotAllowed,
    Operation,
    /// Outside the agreement's validity or the grant's window.
    Time,
    Suspended,
    DataSubject,
    Quota {
        quota: usize,
        used: u64,
    },
}

impl Miss {
    fn reason(&self) -> DenyReason {
        match self.kind {
            MissKind::PurposeMissing | MissKind::PurposeNotAllowed => DenyReason::PurposeNotCovered,
            MissKind::Operation => DenyReason::OperationNotCovered,
            MissKind::Time => DenyReason::OutsideValidity,
            MissKind::Suspended => DenyReason::AgreementSuspended,
            MissKind::DataSubject => DenyReason::DataSubjectRequired,
            MissKind::Quota { .. } => DenyReason::QuotaExhausted,
        }
    }
}

/// Two ascending lists of grant numbers, merged in ascending order.
struct Merged<'a> {
    a: &'a [u32],
    b: &'a [u32],
}

impl<'a> Merged<'a> {
    fn new(a: &'a [u32], b: &'a [u32]) -> Self {
        Merged { a, b }
    }
}

impl Iterator for Merged<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        match (self.a.split_first(), self.b.split_first()) {
            (Some((&x, a_rest)), Some((&y, b_rest))) => {
                if x <= y {
                    self.a = a_rest;
                    if x == y {
                        self.b = b_rest;
                    }
                    Some(x)
                } else {
                    self.b = b_rest;
                    Some(y)
                }
            }
            (Some((&x, rest)), None) => {
                self.a = rest;
                Some(x)
            }
            (None, Some((&y, rest))) => {
                self.b = rest;
                Some(y)
            }
            (None, None) => None,
        }
    }
}

/// The segments of a path: without the leading `/` and one trailing `/`
/// (`/a/` is `/a`); `/` has none.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    (!path.is_empty())
        .then(|| path.split('/'))
        .into_iter()
        .flatten()
}

/// The request's path, examined once per decision.
struct RequestPath<'a> {
    path: &'a str,
    /// `.` or `..` segments could let `/persons/**` reach outside
    /// `/persons` once the provider resolves them, so such a path matches
    /// no pattern (the gateway normalises paths before asking anyway).
    dot_segments: bool,
}

impl<'a> RequestPath<'a> {
    fn new(path: &'a str) -> Self {
        RequestPath {
            path,
            dot_segments: segments(path).any(|s| s == "." || s == ".."),
        }
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

fn method_bit(method: &str) -> Option<u16> {
    METHODS.iter().position(|m| *m == method).map(|i| 1u16 << i)
}

#[derive(Debug)]
struct CompiledOperation {
    /// Standard methods as bits of [`METHODS`].
    methods: u16,
    /// Any other method, verbatim.
    other_methods: Box<[Box<str>]>,
    pattern: PathPattern,
    /// `GET, HEAD /persons/*`, for explanations.
    label: Box<str>,
    /// As in the terms: the interning key.
    source: Operation,
}

impl CompiledOperation {
    fn compile(op: &Operation) -> Self {
        let mut methods = 0;
        let mut other = Vec::new();
        for m in &op.methods {
            match method_bit(m) {
                Some(bit) => methods |= bit,
                None => other.push(m.as_str().into()),
            }
        }
        CompiledOperation {
            methods,
            other_methods: other.into_boxed_slice(),
            pattern: PathPattern::compile(&op.path),
            label: format!("{} {}", op.methods.join(", "), op.path).into_boxed_str(),
            source: op.clone(),
        }
    }

    fn allows(&self, method: &str, path: &RequestPath<'_>) -> bool {
        let method_ok = match method_bit(method) {
            Some(bit) => self.methods & bit != 0,
            None => self.other_methods.iter().any(|m| **m == *method),
        };
        method_ok && !path.dot_segments && self.pattern.matches(path.path)
    }
}

#[derive(Debug)]
enum Segment {
    /// `*`: exactly one non-empty segment.
    Any,
    Literal(Box<str>),
}

/// A compiled path pattern: segments, then optionally `**` (any rest).
#[derive(Debug)]
struct PathPattern {
    segments: Box<[Segment]>,
    rest: bool,
    /// A `**` that is not last: the validation refuses such terms; were one
    /// to get here anyway, it matches nothing (failing closed).
    invalid: bool,
}

impl PathPattern {
    fn compile(pattern: &str) -> Self {
        let parts: Vec<&str> = segments(pattern).collect();
        let mut out = PathPattern {
            segments: Box::default(),
            rest: false,
            invalid: false,
        };
        let mut segs = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            match *part {
                "**" if i + 1 == parts.len() => out.rest = true,
                "**" => out.invalid = true,
                "*" => segs.push(Segment::Any),
                literal => segs.push(Segment::Literal(literal.into())),
            }
        }
        out.segments = segs.into_boxed_slice();
        out
    }

    fn matches(&self, path: &str) -> bool {
        if self.invalid {
            return false;
        }
        let mut parts = segments(path);
        for seg in self.segments.iter() {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match seg {
                Segment::Any => !part.is_empty(),
                Segment::Literal(lit) => **lit == *part,
            };
            if !ok {
                return false;
            }
        }
        self.rest || parts.next().is_none()
    }
}

#[derive(Default)]
struct Builder {
    index: Index,
    /// Hash of (methods, path) → operation number.
    operation_ids: Table<u32>,
    /// (candidate key, grant number), sorted and grouped at the end.
    candidates: Vec<(u64, u32)>,
    /// (pair key, agreement number).
    pairs: Vec<(u64, u32)>,
    scratch: Vec<u32>,
}

impl Builder {
    /// A builder with room for everything `list` holds, so that no large
    /// vector is copied while it grows.
    fn with_capacity(list: &[IndexedAgreement]) -> Builder {
        let (mut grants, mut candidates, mut pairs, mut quotas) = (0, 0, 0, 0);
        for a in list {
            let parties = a.terms.parties.len();
            pairs += parties * (parties + 1) / 2;
            for g in &a.terms.grants {
                grants += 1;
                quotas += g.quotas.len();
                let targets = match &g.services {
                    ServiceScope::Services(list) => list.len(),
                    ServiceScope::Subsystem(_) => 1,
                };
                candidates += g.consumers.len() * targets;
            }
        }
        let mut builder = Builder::default();
        builder.index.agreements.reserve(list.len());
        builder.index.grants.reserve(grants);
        builder.index.grant_details.reserve(grants);
        builder.candidates.reserve(candidates);
        builder.pairs.reserve(pairs);
        builder.index.quotas.reserve(quotas);
        builder
    }

    fn member(&mut self, id: &MemberId) -> u32 {
        self.index.members.intern(id, 0).0.id
    }

    fn subsystem(&mut self, id: &SubsystemId) -> u32 {
        let (slot, new) = self.index.subsystems.intern(id, 0);
        if new {
            self.index.subsystem_ids.push(id.clone());
        }
        slot.id
    }

    fn service(&mut self, id: &ServiceId) -> u32 {
        if let Some(slot) = self.index.services.find(id) {
            return slot.id;
        }
        let subsystem = self.subsystem(id.subsystem());
        self.index.services.intern(id, subsystem).0.id
    }

    fn purpose(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.purposes.get(name) {
            return id;
        }
        let next = self.index.purpose_names.len() as u32;
        let name: Box<str> = name.into();
        self.index.purpose_names.push(name.clone());
        self.index.purposes.insert(name, next);
        next
    }

    fn operation(&mut self, op: &Operation) -> u32 {
        let hash = not_free(FxBuildHasher.hash_one((&op.methods, &op.path)));
        let operations = &self.index.operations;
        let known = self.operation_ids.find(hash, |&id| {
            operations
                .get(id as usize)
                .is_some_and(|known| known.source == *op)
        });
        if let Some(&id) = known {
            return id;
        }
        let id = self.index.operations.len() as u32;
        self.index.operations.push(CompiledOperation::compile(op));
        self.operation_ids.insert(hash, id);
        id
    }

    fn tiny_ids(&mut self, ids: &mut Vec<u32>) -> TinyIds {
        ids.sort_unstable();
        ids.dedup();
        TinyIds::new(ids, &mut self.index.spilled_ids)
    }

    /// Stores a grant's quotas, one per period: two quotas of one period
    /// count the same requests, so only the smaller limit matters, and a
    /// caller advancing one counter per quota key must not count a request
    /// twice. Returns where they are.
    fn quotas(&mut self, quotas: &[Quota]) -> (u32, u8) {
        let start = self.index.quotas.len();
        self.index.quotas.extend_from_slice(quotas);
        let added = &mut self.index.quotas[start..];
        added.sort_by_key(|q| (q.per, q.limit));
        let mut kept = 0;
        for i in 0..added.len() {
            if kept == 0 || added[kept - 1].per != added[i].per {
                added.swap(kept, i);
                kept += 1;
            }
        }
        self.index.quotas.truncate(start + kept);
        (start as u32, kept as u8) // at most one per period: three
    }

    /// Compiles one agreement. Reads it by reference: the input is dropped
    /// all at once after the build, because freeing it piecemeal here would
    /// fill the allocator's free lists and make every growth of a large
    /// vector consolidate them (that alone cost a third of a compile).
    fn add(&mut self, agreement: &IndexedAgreement) {
        let number = self.index.agreements.len() as u32;
        let terms = &agreement.terms;
        let start = terms.validity.start.unix_timestamp();
        let end = terms.validity.end.map(|t| t.unix_timestamp());
        let suspended = agreement.state == AgreementState::Suspended;
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for party in &terms.parties {
            ids.push(self.member(&party.member));
        }
        ids.sort_unstable();
        ids.dedup();
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i..] {
                self.pairs.push((pair_key(a, b), number));
            }
        }
        for grant in &terms.grants {
            let grant_no = self.index.grants.len() as u32;
            ids.clear();
            for consumer in &grant.consumers {
                ids.push(self.subsystem(consumer));
            }
            let consumers = ids.len();
            match &grant.services {
                ServiceScope::Services(list) => {
                    for service in list {
                        ids.push(self.service(service));
                    }
                }
                ServiceScope::Subsystem(sub) => ids.push(self.subsystem(sub) | SUBSYSTEM_TARGET),
            }
            let (consumers, targets) = ids.split_at(consumers);
            for &c in consumers {
                for &t in targets {
                    self.candidates.push((candidate_key(c, t), grant_no));
                }
            }
            ids.clear();
            for purpose in &grant.purposes {
                ids.push(self.purpose(purpose));
            }
            let purposes = self.tiny_ids(&mut ids);
            ids.clear();
            for operation in &grant.operations {
                ids.push(self.operation(operation));
            }
            let operations = self.tiny_ids(&mut ids);
            let window = grant.window.as_ref();
            let from = window.and_then(|w| w.from).map(|t| t.unix_timestamp());
            let until = window.and_then(|w| w.until).map(|t| t.unix_timestamp());
            let not_after = match (end, until) {
                (Some(e), Some(u)) => e.min(u),
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => i64::MAX,
            };
            let (quota_start, quota_len) = self.quotas(&grant.quotas);
            let mut flags = 0;
            if suspended {
                flags |= SUSPENDED;
            }
            if grant.data_subject_required {
                flags |= DATA_SUBJECT_REQUIRED;
            }
            self.index.grants.push(CompiledGrant {
                not_before: from.map_or(start, |f| f.max(start)),
                not_after,
                id: grant.id.as_str().into(),
                purposes,
                operations,
                quota_start,
                agreement: number,
                version: agreement.version,
                quota_len,
                flags,
            });
            self.index.grant_details.push(GrantDetails { from, until });
        }
        self.scratch = ids;
        self.index.agreements.push(CompiledAgreement {
            id: agreement.id.clone(),
            version: agreement.version,
            start,
            end,
        });
    }

    fn finish(mut self) -> Index {
        let mut index = self.index;

        // Grant numbers were pushed in ascending order per key, so sorting
        // by (key, grant) keeps each list in the stable order.
        self.candidates.sort_unstable();
        self.candidates.dedup();
        let keys = self.candidates.chunk_by(|x, y| x.0 == y.0).count();
        index.candidates = Table::with_capacity(keys);
        for group in self.candidates.chunk_by(|x, y| x.0 == y.0) {
            let entry = if let [(_, only)] = group {
                Candidates {
                    first: *only,
                    len: 1,
                }
            } else {
                let first = index.candidate_lists.len() as u32;
                index
                    .candidate_lists
                    .extend(group.iter().map(|&(_, grant)| grant));
                Candidates {
                    first,
                    len: group.len() as u32,
                }
            };
            index.candidates.insert(group[0].0, entry);
        }

        self.pairs.sort_unstable();
        self.pairs.dedup();
        let pairs = self.pairs.chunk_by(|x, y| x.0 == y.0).count();
        index.pairs = Table::with_capacity(pairs);
        for group in self.pairs.chunk_by(|x, y| x.0 == y.0) {
            index.pairs.insert(
                group[0].0,
                PairEntry {
                    first: group[0].1,
                    count: group.len() as u32,
                },
            );
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::decision::{window_start, NoQuotaUsed, QuotaKey};
    use crate::agreement::terms::QuotaPeriod;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    const CONSUMER: &str = "DEMO/MUN/75000001/social-benefits";
    const RESIDENCE: &str = "DEMO/GOV/70000002/population-register/residence/v1";
    const APPLICATIONS: &str = "DEMO/GOV/70000002/applications/submit";
    const INCOME: &str = "DEMO/GOV/70000003/tax/income";
    const T: &str = "2026-03-15T10:20:30Z";

    fn agreement(
        id: &str,
        version: u32,
        state: AgreementState,
        terms: serde_json::Value,
    ) -> IndexedAgreement {
        IndexedAgreement {
            id: id.parse().unwrap(),
            version,
            state,
            terms: serde_json::from_value(terms).unwrap(),
        }
    }

    fn terms(parties: &[&str], grants: serde_json::Value) -> serde_json::Value {
        let parties: Vec<serde_json::Value> = parties
            .iter()
            .map(|m| json!({"member": m, "roles": ["provider", "consumer"]}))
            .collect();
        json!({
            "title": "t",
            "description": "d",
            "parties": parties,
            "grants": grants,
            "validity": {"start": "2026-01-01T00:00:00Z", "end": "2029-01-01T00:00:00Z"}
        })
    }

    /// Population register and applications for Tallinn's social
    /// benefits (active), tax data (suspended), and a proposed agreement
    /// that must be ignored.
    fn index() -> Index {
        let alpha = terms(
            &["DEMO/GOV/70000002", "DEMO/MUN/75000001"],
            json!([
                {
                    "id": "residence",
                    "services": {"services": [RESIDENCE]},
                    "consumers": [CONSUMER],
                    "purposes": ["social-benefit-eligibility", "housing-support"],
                    "operations": [
                        {"methods": ["GET"], "path": "/persons/*/residence"},
                        {"methods": ["GET", "HEAD"], "path": "/persons/*/history/**"}
                    ],
                    "quotas": [{"limit": 1000, "per": "day"}],
                    "data_subject_required": true
                },
                {
                    "id": "applications",
                    "services": {"subsystem": "DEMO/GOV/70000002/applications"},
                    "consumers": [CONSUMER],
                    "purposes": ["social-benefit-eligibility"],
                    "operations": [{"methods": ["POST"], "path": "/applications/**"}],
                    "window": {"from": "2026-03-01T00:00:00Z", "until": "2026-09-01T00:00:00Z"}
                }
            ]),
        );
        let tax = terms(
            &["DEMO/GOV/70000003", "DEMO/MUN/75000001"],
            json!([{
                "id": "income",
                "services": {"services": [INCOME]},
                "consumers": [CONSUMER],
                "purposes": ["social-benefit-eligibility"],
                "operations": [{"methods": ["GET"], "path": "/**"}]
            }]),
        );
        // Sorts before "alpha": its grant is tried first, for statistics only.
        let aardvark = terms(
            &["DEMO/GOV/70000002", "DEMO/MUN/75000001"],
            json!([{
                "id": "stats",
                "services": {"services": [RESIDENCE]},
                "consumers": [CONSUMER],
                "purposes": ["statistics"],
                "operations": [{"methods": ["GET"], "path": "/**"}]
            }]),
        );
        let proposed = terms(
            &["DEMO/GOV/70000002", "DEMO/MUN/75000009"],
            json!([{
                "id": "residence",
                "services": {"services": [RESIDENCE]},
                "consumers": ["DEMO/MUN/75000009/schools"],
                "purposes": ["school-enrolment"],
                "operations": [{"methods": ["GET"], "path": "/**"}]
            }]),
        );
        Index::compile([
            agreement("alpha-residence", 1, AgreementState::Active, alpha),
            agreement("tax-income", 2, AgreementState::Suspended, tax),
            agreement("aardvark-stats", 1, AgreementState::Active, aardvark),
            agreement("schools-residence", 1, AgreementState::Proposed, proposed),
        ])
    }

    fn unix(text: &str) -> i64 {
        OffsetDateTime::parse(text, &Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    enum Expect {
        Permit(&'static str, u32, &'static str),
        Deny(DenyReason, &'static str, &'static [&'static str]),
    }

    struct Case {
        name: &'static str,
        consumer: &'static str,
        service: &'static str,
        method: &'static str,
        path: &'static str,
        purpose: Option<&'static str>,
        subject: bool,
        at: &'static str,
        used: fn(&QuotaKey<'_>) -> u64,
        expect: Expect,
    }

    fn zero(_: &QuotaKey<'_>) -> u64 {
        0
    }

    fn at_limit(k: &QuotaKey<'_>) -> u64 {
        k.limit as u64
    }

    fn below_limit(k: &QuotaKey<'_>) -> u64 {
        k.limit as u64 - 1
    }

    const BASE: Case = Case {
        name: "permit",
        consumer: CONSUMER,
        service: RESIDENCE,
        method: "GET",
        path: "/persons/38001010000/residence",
        purpose: Some("social-benefit-eligibility"),
        subject: true,
        at: T,
        used: zero,
        expect: Expect::Permit("alpha-residence", 1, "residence"),
    };

    fn cases() -> Vec<Case> {
        use DenyReason::*;
        use Expect::{Deny as D, Permit as P};
        vec![
            BASE,
            Case { name: "permit, second purpose, trailing slash", purpose: Some("housing-support"), path: "/persons/1/residence/", ..BASE },
            Case { name: "permit via Subsystem scope", service: APPLICATIONS, method: "POST", path: "/applications/2026/17", subject: false, expect: P("alpha-residence", 1, "applications"), ..BASE },
            Case { name: "permit via Subsystem scope, other service of the subsystem", service: "DEMO/GOV/70000002/applications/appeal/v2", method: "POST", path: "/applications", subject: false, expect: P("alpha-residence", 1, "applications"), ..BASE },
            Case { name: "first grant in stable order wins", purpose: Some("statistics"), subject: false, expect: P("aardvark-stats", 1, "stats"), ..BASE },
            Case { name: "** matches deeper paths", method: "HEAD", path: "/persons/1/history/2020/01", expect: P("alpha-residence", 1, "residence"), ..BASE },
            Case { name: "** matches zero segments", path: "/persons/1/history", expect: P("alpha-residence", 1, "residence"), ..BASE },
            Case { name: "quota not yet exhausted", used: below_limit, ..BASE },
            Case { name: "no agreement between the parties", consumer: "DEMO/MUN/75000009/schools", expect: D(NoAgreement, "", &["no agreement in force between DEMO/MUN/75000009", "DEMO/GOV/70000002"]), ..BASE },
            Case { name: "no agreement: unknown provider", service: "DEMO/GOV/79999999/x/y", expect: D(NoAgreement, "", &["DEMO/GOV/79999999"]), ..BASE },
            Case { name: "service not covered", service: "DEMO/GOV/70000002/population-register/address/v1", expect: D(ServiceNotCovered, "aardvark-stats", &["no grant of agreement aardvark-stats version 1", "nor does the other agreement", "address/v1"]), ..BASE },
            Case { name: "service not covered for another subsystem of the consumer", consumer: "DEMO/MUN/75000001/schools", expect: D(ServiceNotCovered, "aardvark-stats", &["lets DEMO/MUN/75000001/schools call"]), ..BASE },
            Case { name: "purpose not covered", service: APPLICATIONS, method: "POST", path: "/applications/1", purpose: Some("marketing"), expect: D(PurposeNotCovered, "alpha-residence", &["purpose \"marketing\" is not allowed by agreement alpha-residence version 1, grant applications, which allows social-benefit-eligibility"]), ..BASE },
            // Both grants fail at the purpose: the first in stable order is named.
            Case { name: "purpose not covered by two grants", purpose: Some("marketing"), expect: D(PurposeNotCovered, "aardvark-stats", &["\"marketing\"", "grant stats, which allows statistics"]), ..BASE },
            Case { name: "purpose missing", purpose: None, expect: D(PurposeNotCovered, "aardvark-stats", &["X-Accord-Purpose header is required", "statistics"]), ..BASE },
            Case { name: "operation not covered by method", method: "DELETE", expect: D(OperationNotCovered, "alpha-residence", &["DELETE /persons/38001010000/residence", "GET /persons/*/residence; GET, HEAD /persons/*/history/**"]), ..BASE },
            Case { name: "operation not covered by path", path: "/persons/1/income", expect: D(OperationNotCovered, "alpha-residence", &["/persons/1/income is not allowed"]), ..BASE },
            Case { name: "* needs exactly one segment", path: "/persons/1/2/residence", expect: D(OperationNotCovered, "alpha-residence", &[]), ..BASE },
            Case { name: "* needs a non-empty segment", path: "/persons//residence", expect: D(OperationNotCovered, "alpha-residence", &[]), ..BASE },
            Case { name: "* does not match zero segments", path: "/persons/residence", expect: D(OperationNotCovered, "alpha-residence", &[]), ..BASE },
            Case { name: "dot segments match nothing", method: "HEAD", path: "/persons/1/history/../../../admin", expect: D(OperationNotCovered, "alpha-residence", &[". or .. segments"]), ..BASE },
            Case { name: "before validity start", at: "2025-12-31T23:59:59Z", expect: D(OutsideValidity, "alpha-residence", &["valid from 2026-01-01T00:00:00Z until 2029-01-01T00:00:00Z", "2025-12-31T23:59:59Z"]), ..BASE },
            Case { name: "validity start is inclusive", at: "2026-01-01T00:00:00Z", ..BASE },
            Case { name: "after validity end (end exclusive)", at: "2029-01-01T00:00:00Z", expect: D(OutsideValidity, "alpha-residence", &["is outside it"]), ..BASE },
            Case { name: "outside grant window", service: APPLICATIONS, method: "POST", path: "/applications/1", at: "2026-09-01T00:00:00Z", expect: D(OutsideValidity, "alpha-residence", &["grant applications", "until 2026-09-01T00:00:00Z", "outside that window"]), ..BASE },
            Case { name: "suspended agreement", service: INCOME, path: "/people/1", expect: D(AgreementSuspended, "tax-income", &["agreement tax-income version 2 is suspended"]), ..BASE },
            Case { name: "data subject required", subject: false, expect: D(DataSubjectRequired, "alpha-residence", &["grant residence", "X-Accord-Subject"]), ..BASE },
            Case { name: "quota exhausted", used: at_limit, expect: D(QuotaExhausted, "alpha-residence", &["1000 requests per day", "1000 already used", "day starting 2026-03-15T00:00:00Z"]), ..BASE },
            // aardvark fails at the purpose, alpha later: alpha's reason is reported.
            Case { name: "furthest stage: data subject beats purpose", subject: false, expect: D(DataSubjectRequired, "alpha-residence", &[]), ..BASE },
            Case { name: "furthest stage: operation beats purpose", method: "POST", expect: D(OperationNotCovered, "alpha-residence", &[]), ..BASE },
            // Both get to the operation: the first in stable order is named.
            Case { name: "furthest stage: tie names the first", purpose: Some("statistics"), method: "POST", expect: D(OperationNotCovered, "aardvark-stats", &[]), ..BASE },
        ]
    }

    #[test]
    fn decision_table() {
        let index = index();
        assert_eq!(index.len(), 3, "the proposed agreement is not indexed");
        for case in cases() {
            let consumer: SubsystemId = case.consumer.parse().unwrap();
            let service: ServiceId = case.service.parse().unwrap();
            let request = DecisionRequest {
                consumer: &consumer,
                service: &service,
                method: case.method,
                path: case.path,
                purpose: case.purpose,
                data_subject: case.subject,
                at: unix(case.at),
            };
            let decision = index.decide(&request, &case.used);
            let name = case.name;
            match (case.expect, &decision) {
                (Expect::Permit(a, v, g), Decision::Permit(p)) => {
                    assert_eq!(
                        (p.agreement.as_str(), p.version, p.grant),
                        (a, v, g),
                        "{name}"
                    );
                    assert_eq!(
                        decision.explain(),
                        format!("permitted by agreement {a} version {v}, grant {g}"),
                        "{name}"
                    );
                }
                (Expect::Deny(reason, under, phrases), Decision::Deny(deny)) => {
                    assert_eq!(deny.reason, reason, "{name}: {}", deny.explanation);
                    assert_eq!(
                        deny.agreement.as_ref().map_or("", |d| d.agreement.as_str()),
                        under,
                        "{name}: {}",
                        deny.explanation
                    );
                    for phrase in phrases {
                        assert!(
                            deny.explanation.contains(phrase),
                            "{name}: {phrase:?} not in {:?}",
                            deny.explanation
                        );
                    }
                    assert_eq!(decision.explain(), deny.explanation);
                }
                (_, other) => panic!("{name}: unexpected {other:?}"),
            }
        }
        // Every reason is exercised.
        let seen: Vec<DenyReason> = cases()
            .iter()
            .filter_map(|c| match c.expect {
                Expect::Deny(r, _, _) => Some(r),
                Expect::Permit(..) => None,
            })
            .collect();
        for reason in DenyReason::ALL {
            assert!(seen.contains(&reason), "no case for {reason}");
        }
    }

    #[test]
    fn a_permit_names_its_quota_counters() {
        let index = index();
        let consumer: SubsystemId = CONSUMER.parse().unwrap();
        let service: ServiceId = RESIDENCE.parse().unwrap();
        let at = unix(T);
        let request = DecisionRequest {
            consumer: &consumer,
            service: &service,
            method: "GET",
            path: "/persons/1/residence",
            purpose: Some("housing-support"),
            data_subject: true,
            at,
        };
        let Decision::Permit(permit) = index.decide(&request, &zero) else {
            panic!("denied")
        };
        let keys: Vec<QuotaKey<'_>> = permit.quotas.iter().collect();
        assert_eq!(keys.len(), 1);
        let key = keys[0];
        assert_eq!(key.agreement.as_str(), "alpha-residence");
        assert_eq!((key.version, key.grant, key.limit), (1, "residence", 1000));
        assert_eq!(key.consumer, &consumer);
        assert_eq!(key.period, QuotaPeriod::Day);
        assert_eq!(key.window_start, unix("2026-03-15T00:00:00Z"));
        assert_eq!(key.window_start, window_start(QuotaPeriod::Day, at));

        // The counters are asked about exactly that key.
        let asked = std::cell::RefCell::new(Vec::new());
        let counters = |k: &QuotaKey<'_>| {
            asked.borrow_mut().push(k.to_string());
            0
        };
        assert!(index.decide(&request, &counters).is_permit());
        assert_eq!(*asked.borrow(), [key.to_string()]);

        // A grant without quotas has no counters to advance.
        let service: ServiceId = APPLICATIONS.parse().unwrap();
        let request = DecisionRequest {
            service: &service,
            method: "POST",
            purpose: Some("social-benefit-eligibility"),
            path: "/applications/1",
            ..request
        };
        let Decision::Permit(permit) = index.decide(&request, &NoQuotaUsed) else {
            panic!("denied")
        };
        assert!(permit.quotas.is_empty());
    }

    #[test]
    fn interned_ids_stay_exact_when_64_bit_hashes_collide() {
        let a: SubsystemId = "DEMO/GOV/1/a".parse().unwrap();
        let b: SubsystemId = "DEMO/GOV/1/b".parse().unwrap();
        let mut table = Interner::default();
        let (slot_a, _) = table.intern(&a, 0);
        // Pretend b hashes like a: a's slot sits where b's hash leads.
        table.slots.insert(Interner::hash(&b), slot_a);
        assert!(table.find(&b).is_none());
        let (slot_b, new) = table.intern(&b, 7);
        assert!(new);
        assert_ne!(slot_a.id, slot_b.id);
        assert_eq!(
            table.find(&b).map(|s| (s.id, s.extra)),
            Some((slot_b.id, 7))
        );
        assert_eq!(table.find(&a).map(|s| s.id), Some(slot_a.id));
        // Versioned and unversioned services are different ids.
        let mut services = Interner::default();
        let v1: ServiceId = "DEMO/GOV/1/a/s/v1".parse().unwrap();
        let bare: ServiceId = "DEMO/GOV/1/a/s".parse().unwrap();
        services.intern(&v1, 0);
        assert!(services.find(&bare).is_none());
        assert!(services.find(&v1).is_some());
    }

    #[test]
    fn a_grant_fits_one_cache_line() {
        assert_eq!(std::mem::size_of::<CompiledGrant>(), 64);
        assert_eq!(std::mem::align_of::<CompiledGrant>(), 64);
    }

    #[test]
    fn long_or_large_id_lists_spill() {
        let mut spill = vec![9];
        let cases: [&[u32]; 5] = [&[], &[1, 2, 3], &[1, 2, 3, 4], &[70_000], &[65_535]];
        let tiny: Vec<TinyIds> = cases
            .iter()
            .map(|ids| TinyIds::new(ids, &mut spill))
            .collect();
        for (ids, tiny) in cases.iter().zip(&tiny) {
            assert_eq!(tiny.iter(&spill).collect::<Vec<_>>(), *ids);
        }
        assert_eq!(spill.len(), 1 + 5 + 2 + 2, "three lists spilled");
    }

    #[test]
    fn quotas_of_one_period_count_once_with_the_smaller_limit() {
        let grant = json!([{
            "id": "g",
            "services": {"services": [RESIDENCE]},
            "consumers": [CONSUMER],
            "purposes": ["p"],
            "operations": [{"methods": ["GET"], "path": "/**"}],
            "quotas": [
                {"limit": 100, "per": "day"},
                {"limit": 10, "per": "minute"},
                {"limit": 50, "per": "day"}
            ]
        }]);
        let index = Index::compile([agreement(
            "quota-test",
            1,
            AgreementState::Active,
            terms(&["DEMO/GOV/70000002", "DEMO/MUN/75000001"], grant),
        )]);
        let consumer: SubsystemId = CONSUMER.parse().unwrap();
        let service: ServiceId = RESIDENCE.parse().unwrap();
        let request = DecisionRequest {
            consumer: &consumer,
            service: &service,
            method: "GET",
            path: "/",
            purpose: Some("p"),
            data_subject: false,
            at: unix(T),
        };
        let Decision::Permit(permit) = index.decide(&request, &NoQuotaUsed) else {
            panic!("denied")
        };
        let limits: Vec<(QuotaPeriod, i64)> =
            permit.quotas.iter().map(|k| (k.period, k.limit)).collect();
        assert_eq!(limits, [(QuotaPeriod::Minute, 10), (QuotaPeriod::Day, 50)]);
        let fifty = |k: &QuotaKey<'_>| if k.period == QuotaPeriod::Day { 50 } else { 0 };
        let Decision::Deny(deny) = index.decide(&request, &fifty) else {
            panic!("permitted")
        };
        assert!(
            deny.explanation.contains("50 requests per day"),
            "{}",
            deny.explanation
        );
    }

    #[test]
    fn tables_grow_and_keep_every_entry() {
        let mut table: Table<u32> = Table::default();
        for k in 0..10_000u64 {
            table.insert(k * 7919, k as u32);
        }
        assert!((0..10_000u64).all(|k| table.get(k * 7919) == Some(&(k as u32))));
        assert_eq!(table.get(3), None);
        assert!(table.slots.len() >= 2 * 10_000);
    }

    #[test]
    fn explanations_write_times_as_rfc3339() {
        for t in [
            0,
            1,
            59,
            86_399,
            951_782_400,
            1_773_570_030,
            253_402_300_799,
            -1,
            -62_135_596_800,
        ] {
            let expected = OffsetDateTime::from_unix_timestamp(t)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(Utc(t).to_string(), expected);
        }
        assert_eq!(
            Utc(253_402_300_800).to_string(),
            "253402300800 (unix seconds)"
        );
        assert_eq!(Bound(None, "further notice").to_string(), "further notice");
        let service: ServiceId = RESIDENCE.parse().unwrap();
        assert_eq!(Id(&service).to_string(), service.to_string());
        assert_eq!(
            Id(service.subsystem()).to_string(),
            service.subsystem().to_string()
        );
        assert_eq!(
            Id(service.member()).to_string(),
            service.member().to_string()
        );
        let bare: ServiceId = APPLICATIONS.parse().unwrap();
        assert_eq!(Id(&bare).to_string(), APPLICATIONS);
    }

    #[test]
    fn path_patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("/**", "/", true),
            ("/**", "/a/b/c", true),
            ("/", "/", true),
            ("/", "/a", false),
            ("/a", "/a/", true),
            ("/a/", "/a", true),
            ("/a", "/b", false),
            ("/a/*", "/a/x", true),
            ("/a/*", "/a", false),
            ("/a/*", "/a/x/y", false),
            ("/a/*/c", "/a/x/c", true),
            ("/a/**", "/a", true),
            ("/a/**", "/ab", false),
            ("/a/*/**", "/a", false),
            ("/a/*/**", "/a/x", true),
            ("/a/**/b", "/a/x/b", false),
            ("/A", "/a", false),
        ];
        for &(pattern, path, expected) in cases {
            assert_eq!(
                PathPattern::compile(pattern).matches(path),
                expected,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn an_empty_index_denies_everything_and_is_shareable() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Index>();
        let index = Index::compile([]);
        assert!(index.is_empty());
        let consumer: SubsystemId = CONSUMER.parse().unwrap();
        let service: ServiceId = RESIDENCE.parse().unwrap();
        let request = DecisionRequest {
            consumer: &consumer,
            service: &service,
            method: "GET",
            path: "/",
            purpose: None,
            data_subject: false,
            at: 0,
        };
        assert_eq!(
            index.decide(&request, &NoQuotaUsed).deny_reason(),
            Some(DenyReason::NoAgreement)
        );
    }

    // --- The index against a direct reading of the rules -----------------

    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    const PURPOSES: [&str; 4] = ["p0", "p1", "p2", "p3"];
    const OPS: [(&str, &str); 5] = [
        ("GET", "/x/*"),
        ("POST", "/x/**"),
        ("GET", "/**"),
        ("GET", "/y"),
        ("PUT", "/x/*/z"),
    ];
    const PATHS: [&str; 8] = [
        "/", "/x", "/x/1", "/x/1/", "/x/1/z", "/y", "/y/1", "/x/../y",
    ];
    const TIMES: [i64; 5] = [100, 200, 300, 400, 500];

    fn ts(t: i64) -> String {
        Utc(t).to_string()
    }

    fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
        items.choose(rng).unwrap()
    }

    fn subset<T: Clone>(rng: &mut StdRng, items: &[T], min: usize) -> Vec<T> {
        let n = rng.gen_range(min..=items.len().min(3));
        items.choose_multiple(rng, n).cloned().collect()
    }

    fn random_universe(rng: &mut StdRng) -> Vec<IndexedAgreement> {
        let members = ["DEMO/GOV/m0", "DEMO/GOV/m1", "DEMO/MUN/m2"];
        let subsystems: Vec<String> = members
            .iter()
            .flat_map(|m| [format!("{m}/s0"), format!("{m}/s1")])
            .collect();
        let services: Vec<String> = subsystems
            .iter()
            .flat_map(|s| [format!("{s}/a"), format!("{s}/b/v1")])
            .collect();
        let states = [
            AgreementState::Active,
            AgreementState::Active,
            AgreementState::Suspended,
            AgreementState::Draft,
        ];
        (0..rng.gen_range(0..6))
            .map(|i| {
                let grants: Vec<serde_json::Value> = (0..rng.gen_range(1..3))
                    .map(|g| {
                        let scope = if rng.gen_bool(0.3) {
                            json!({"subsystem": pick(rng, &subsystems)})
                        } else {
                            json!({"services": subset(rng, &services, 1)})
                        };
                        let ops: Vec<serde_json::Value> = subset(rng, &OPS, 1)
                            .into_iter()
                            .map(|(m, p)| json!({"methods": [m], "path": p}))
                            .collect();
                        let mut grant = json!({
                            "id": format!("g{g}"),
                            "services": scope,
                            "consumers": subset(rng, &subsystems, 1),
                            "purposes": subset(rng, &PURPOSES[..3], 1),
                            "operations": ops,
                            "data_subject_required": rng.gen_bool(0.3),
                        });
                        if rng.gen_bool(0.3) {
                            grant["window"] = json!({"from": ts(*pick(rng, &TIMES)), "until": ts(*pick(rng, &TIMES) + 50)});
                        }
                        if rng.gen_bool(0.3) {
                            grant["quotas"] = json!([{"limit": rng.gen_range(1..4), "per": "minute"}]);
                        }
                        grant
                    })
                    .collect();
                let mut terms = terms(&subset(rng, &members, 1), json!(grants));
                terms["validity"] = json!({"start": ts(*pick(rng, &TIMES)), "end": if rng.gen_bool(0.5) { json!(ts(450)) } else { json!(null) }});
                agreement(&format!("ag-{}", i % 4), rng.gen_range(1..3), *pick(rng, &states), terms)
            })
            .collect()
    }

    /// The rules as the issue states them, one agreement after another.
    fn reference(
        agreements: &[IndexedAgreement],
        r: &DecisionRequest<'_>,
        used: u64,
    ) -> (DenyReason, Option<(String, u32, String)>) {
        fn path_matches(pattern: &str, path: &str) -> bool {
            let norm = |s: &str| -> Vec<String> {
                let s = s.trim_start_matches('/');
                let s = s.strip_suffix('/').unwrap_or(s);
                if s.is_empty() {
                    vec![]
                } else {
                    s.split('/').map(String::from).collect()
                }
            };
            fn go(p: &[String], q: &[String]) -> bool {
                match (p.split_first(), q.split_first()) {
                    (None, _) => q.is_empty(),
                    (Some((h, t)), _) if h == "**" && t.is_empty() => true,
                    (Some(_), None) => false,
                    (Some((h, t)), Some((qh, qt))) => {
                        ((h == "*" && !qh.is_empty()) || h == qh) && go(t, qt)
                    }
                }
            }
            let q = norm(path);
            !q.iter().any(|s| s == "." || s == "..") && go(&norm(pattern), &q)
        }
        let mut sorted: Vec<&IndexedAgreement> =
            agreements.iter().filter(|a| a.state.in_force()).collect();
        sorted.sort_by(|a, b| (&a.id, a.version).cmp(&(&b.id, b.version)));
        let mut best: Option<(DenyReason, (String, u32, String))> = None;
        for a in &sorted {
            for g in &a.terms.grants {
                if !g.consumers.contains(r.consumer) || !g.services.covers(r.service) {
                    continue;
                }
                let name = (a.id.to_string(), a.version, g.id.clone());
                let at = r.at;
                let window = g.window.as_ref();
                let stage = if !r.purpose.is_some_and(|p| g.purposes.iter().any(|q| q == p)) {
                    Some(DenyReason::PurposeNotCovered)
                } else if !g.operations.iter().any(|o| {
                    o.methods.iter().any(|m| m == r.method) && path_matches(&o.path, r.path)
                }) {
                    Some(DenyReason::OperationNotCovered)
                } else if at < a.terms.validity.start.unix_timestamp()
                    || a.terms
                        .validity
                        .end
                        .is_some_and(|e| at >= e.unix_timestamp())
                    || window
                        .and_then(|w| w.from)
                        .is_some_and(|f| at < f.unix_timestamp())
                    || window
                        .and_then(|w| w.until)
                        .is_some_and(|u| at >= u.unix_timestamp())
                {
                    Some(DenyReason::OutsideValidity)
                } else if a.state == AgreementState::Suspended {
                    Some(DenyReason::AgreementSuspended)
                } else if g.data_subject_required && !r.data_subject {
                    Some(DenyReason::DataSubjectRequired)
                } else if g.quotas.iter().any(|q| used >= q.limit as u64) {
                    Some(DenyReason::QuotaExhausted)
                } else {
                    None
                };
                match stage {
                    None => return (DenyReason::NoAgreement, Some(name)), // a permit
                    Some(s) if best.as_ref().is_none_or(|b| s > b.0) => best = Some((s, name)),
                    Some(_) => {}
                }
            }
        }
        if let Some((reason, name)) = best {
            return (reason, Some(name));
        }
        let shared = sorted
            .iter()
            .any(|a| a.terms.is_party(r.consumer.member()) && a.terms.is_party(r.service.member()));
        (
            if shared {
                DenyReason::ServiceNotCovered
            } else {
                DenyReason::NoAgreement
            },
            None,
        )
    }

    #[test]
    fn the_index_decides_as_the_rules_read() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..1500 {
            let agreements = random_universe(&mut rng);
            let index = Index::compile(agreements.clone());
            for _ in 0..30 {
                let member = *pick(
                    &mut rng,
                    &["DEMO/GOV/m0", "DEMO/GOV/m1", "DEMO/MUN/m2", "DEMO/GOV/m9"],
                );
                let consumer: SubsystemId = format!("{member}/s{}", rng.gen_range(0..2))
                    .parse()
                    .unwrap();
                let member = *pick(
                    &mut rng,
                    &["DEMO/GOV/m0", "DEMO/GOV/m1", "DEMO/MUN/m2", "DEMO/GOV/m9"],
                );
                let service: ServiceId = format!(
                    "{member}/s{}/{}",
                    rng.gen_range(0..2),
                    pick(&mut rng, &["a", "b/v1", "c"])
                )
                .parse()
                .unwrap();
                let used = rng.gen_range(0..3);
                let request = DecisionRequest {
                    consumer: &consumer,
                    service: &service,
                    method: ["GET", "POST", "PUT"][rng.gen_range(0..3)],
                    path: PATHS[rng.gen_range(0..PATHS.len())],
                    purpose: if rng.gen_bool(0.1) {
                        None
                    } else {
                        Some(*pick(&mut rng, &PURPOSES))
                    },
                    data_subject: rng.gen_bool(0.7),
                    at: *pick(&mut rng, &[50, 150, 250, 350, 449, 450, 550]),
                };
                let expected = reference(&agreements, &request, used);
                let decision = index.decide(&request, &|_: &QuotaKey<'_>| used);
                let got = match &decision {
                    Decision::Permit(p) => (
                        DenyReason::NoAgreement,
                        Some((p.agreement.to_string(), p.version, p.grant.to_owned())),
                    ),
                    Decision::Deny(d) => (
                        d.reason,
                        d.agreement.as_ref().and_then(|u| {
                            u.grant
                                .as_ref()
                                .map(|g| (u.agreement.to_string(), u.version, g.clone()))
                        }),
                    ),
                };
                assert_eq!(
                    got,
                    expected,
                    "{request:?}\n{agreements:#?}\n{}",
                    decision.explain()
                );
                *seen
                    .entry(decision.deny_reason().map_or("permit", |r| r.code()))
                    .or_insert(0) += 1;
            }
        }
        // The random universes reach every outcome.
        assert_eq!(seen.len(), 9, "{seen:?}");
    }
}
