//! `accord bench catalogue`: how fast the registry's catalogue search is
//! when the federation is large.
//!
//! A federation at every level of government grows to thousands of members
//! and a hundred thousand services, and the catalogue search is what every
//! portal page and every `accord service list` runs. This benchmark checks
//! that it stays fast on both engines Accord supports: it seeds a large,
//! realistic synthetic catalogue (a seeded RNG, so runs are comparable),
//! serves it with the real HTTP server, and times filtered, paged searches
//! over HTTP, one after the other on one kept-alive connection, as a client
//! would. The target is a p95 below 50 ms.
//!
//! Run it in release mode, or the figures mean nothing:
//!
//! ```text
//! cargo run --release -p accord -- bench catalogue
//! cargo run --release -p accord -- bench catalogue --members 500 --services 5000 --searches 200
//! cargo run --release -p accord -- bench catalogue --postgres none
//! ```
//!
//! SQLite runs in a temporary directory. PostgreSQL runs in a scratch schema
//! (`accord_bench_<hex>`) on the server `--postgres` names, dropped at the
//! end, also after an error or Ctrl-C. After seeding, PostgreSQL's tables are
//! analysed (as autovacuum would do on a live server); SQLite's are not,
//! since nothing runs `ANALYZE` on a deployed SQLite registry either.
//!
//! Seeding goes through the store directly (not the HTTP API) to be quick;
//! it is timed too, since it says how fast the store writes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use tokio::net::TcpListener;

use accord_domain::{Country, Level, MemberId, Sector, ServiceId, SubsystemId};
use accord_registry::{InitOptions, Registry, RegistryPaths, DEFAULT_MEMBER_CLASSES};
use accord_store::{redact_url, NewMember, NewService, NewSubsystem, Store};

use crate::cli::BenchCatalogueArgs;
use crate::client::query_string;
use crate::output;

/// Seed of every random choice, so two runs seed and search alike.
const SEED: u64 = 42;
/// Rows written per transaction while seeding.
const BATCH_ROWS: usize = 1_000;
/// Untimed requests before the timed ones.
const WARM_UP: usize = 50;
const PER_PAGE: u32 = 20;
/// The latency the catalogue search must stay under, at p95.
const TARGET_P95: Duration = Duration::from_millis(50);

/// Runs `accord bench catalogue`.
pub async fn catalogue(args: BenchCatalogueArgs) -> anyhow::Result<()> {
    if args.members == 0 {
        bail!("--members must be at least 1");
    }
    if args.searches == 0 {
        bail!("--searches must be at least 1");
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "machine: {cpus} CPUs, {profile} build; catalogue: {} members, {} services; \
         {} service and {} member searches per engine, {PER_PAGE} per page",
        args.members,
        args.services,
        args.searches,
        member_searches(&args)
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build: run with cargo run --release for real figures");
    }

    let catalogue = Vocabulary::new()?;
    let searches = plan_searches(&args, &catalogue);
    let mut results = Vec::new();

    results.push(interruptible(bench_sqlite(&args, &catalogue, &searches)).await?);
    if !args.postgres.eq_ignore_ascii_case("none") {
        match bench_postgres(&args, &catalogue, &searches).await {
            Ok(result) => results.push(result),
            Err(e) => {
                // Show what was measured before failing.
                print_results(&results);
                return Err(e);
            }
        }
    }
    print_results(&results);
    Ok(())
}

fn member_searches(args: &BenchCatalogueArgs) -> usize {
    (args.searches as usize / 4).max(1)
}

// ---------------------------------------------------------------------------
// Engines

/// What one engine measured.
struct EngineResult {
    engine: String,
    version: String,
    rows: u64,
    seeding: Duration,
    kinds: Vec<KindResult>,
}

struct KindResult {
    kind: Kind,
    summary: Summary,
    mean_total: f64,
}

async fn bench_sqlite(
    args: &BenchCatalogueArgs,
    vocabulary: &Vocabulary,
    searches: &Searches,
) -> anyhow::Result<EngineResult> {
    let dir = tempfile::tempdir().context("creating a temporary directory for SQLite")?;
    bench_engine(dir.path(), None, args, vocabulary, searches).await
}

async fn bench_postgres(
    args: &BenchCatalogueArgs,
    vocabulary: &Vocabulary,
    searches: &Searches,
) -> anyhow::Result<EngineResult> {
    let url = &args.postgres;
    let redacted = redact_url(url);
    let mut admin = connect_postgres(url).await?;
    let schema = format!("accord_bench_{:016x}", rand::thread_rng().gen::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating the scratch schema {schema} on {redacted}"))?;
    eprintln!("postgresql: scratch schema {schema} on {redacted}");

    let database = with_search_path(url, &schema);
    let result = async {
        let dir = tempfile::tempdir().context("creating a temporary directory for the keys")?;
        interruptible(bench_engine(
            dir.path(),
            Some(database),
            args,
            vocabulary,
            searches,
        ))
        .await
    }
    .await;

    let dropped = drop_schema(admin, url, &schema).await;
    match (result, dropped) {
        (Ok(result), Ok(())) => Ok(result),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), dropped) => {
            if let Err(drop_error) = dropped {
                eprintln!("warning: {drop_error:#}");
            }
            Err(e)
        }
    }
}

/// One connection to the PostgreSQL server, outside the scratch schema.
async fn connect_postgres(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    let redacted = redact_url(url);
    let advice = || {
        format!(
            "cannot reach PostgreSQL at {redacted}: start it, name another server with \
             --postgres URL, or bench SQLite only with --postgres none"
        )
    };
    match tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(url)).await {
        Ok(connected) => connected.with_context(advice),
        Err(_) => Err(anyhow!("no answer within 10 s")).with_context(advice),
    }
}

/// `url` with `search_path` set to `schema` for every connection.
fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

async fn drop_schema(mut admin: sqlx::PgConnection, url: &str, schema: &str) -> anyhow::Result<()> {
    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    let mut outcome = sqlx::query(&sql).execute(&mut admin).await.map(|_| ());
    if outcome.is_err() {
        // The connection may have been lost during a long run: try a new one.
        if let Ok(mut fresh) = connect_postgres(url).await {
            outcome = sqlx::query(&sql).execute(&mut fresh).await.map(|_| ());
            let _ = fresh.close().await;
        }
    } else {
        let _ = admin.close().await;
    }
    outcome.with_context(|| {
        format!(
            "dropping the scratch schema {schema} on {}: drop it by hand with `{sql}`",
            redact_url(url)
        )
    })
}

/// Runs `work` unless Ctrl-C or SIGTERM comes first; either way, what
/// `work` started is dropped (and so stopped) before this returns.
pub(crate) async fn interruptible<T>(
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = work => result,
        () = ctrl_c => Err(anyhow!("interrupted")),
        () = term => Err(anyhow!("terminated")),
    }
}

/// Creates a federation in `data_dir` (and `database`), seeds it, serves
/// it, and times the searches.
async fn bench_engine(
    data_dir: &std::path::Path,
    database: Option<String>,
    args: &BenchCatalogueArgs,
    vocabulary: &Vocabulary,
    searches: &Searches,
) -> anyhow::Result<EngineResult> {
    let paths = RegistryPaths::new(data_dir, database);
    let options = InitOptions {
        instance: "BENCH".into(),
        name: "Benchmark federation".into(),
        member_classes: DEFAULT_MEMBER_CLASSES
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
    };
    let (registry, _token) = Registry::init(&paths, &options).await.with_context(|| {
        format!(
            "creating the benchmark federation in {}",
            redact_url(&paths.database_url())
        )
    })?;
    let result = measure_engine(&registry, args, vocabulary, searches).await;
    registry.store.close().await;
    result
}

async fn measure_engine(
    registry: &Registry,
    args: &BenchCatalogueArgs,
    vocabulary: &Vocabulary,
    searches: &Searches,
) -> anyhow::Result<EngineResult> {
    let store = &registry.store;
    let engine = store.engine().name().to_owned();
    let version = engine_version(store).await?;
    eprintln!("{engine} {version}: seeding the catalogue");

    let plan = plan_catalogue(args, vocabulary)?;
    let started = Instant::now();
    let rows = seed(store, &plan, &engine).await?;
    let seeding = started.elapsed();
    check_counts(store, &plan).await?;
    if store.engine() == accord_store::Engine::Postgres {
        let mut conn = store.read().await?;
        sqlx::query("ANALYZE members, subsystems, services")
            .execute(&mut *conn)
            .await
            .context("analysing the seeded tables")?;
    }

    eprintln!("{engine}: timing the searches over HTTP");
    let samples = serve_and_search(registry, searches, &engine).await?;
    let kinds = Kind::ALL
        .iter()
        .filter_map(|&kind| {
            let mut latencies = Vec::new();
            let mut totals = 0i64;
            for s in samples.iter().filter(|s| s.kind == kind) {
                latencies.push(s.latency);
                totals += s.total;
            }
            let n = latencies.len();
            summarize(latencies).map(|summary| KindResult {
                kind,
                summary,
                mean_total: totals as f64 / n as f64,
            })
        })
        .collect();
    Ok(EngineResult {
        engine,
        version,
        rows,
        seeding,
        kinds,
    })
}

async fn engine_version(store: &Store) -> anyhow::Result<String> {
    let sql = match store.engine() {
        accord_store::Engine::Sqlite => "SELECT sqlite_version()",
        accord_store::Engine::Postgres => "SELECT current_setting('server_version')",
    };
    let mut conn = store.read().await?;
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(&mut *conn)
        .await
        .context("asking the database for its version")
}

async fn check_counts(store: &Store, plan: &[MemberPlan]) -> anyhow::Result<()> {
    let (members, subsystems, services) = store.counts().await?;
    let expected = (
        plan.len() as i64,
        plan.iter().map(|p| p.subsystems.len() as i64).sum::<i64>(),
        plan.iter().map(|p| i64::from(p.services)).sum::<i64>(),
    );
    if (members, subsystems, services) != expected {
        bail!(
            "seeding wrote {members} members, {subsystems} subsystems and {services} services, \
             expected {} / {} / {}",
            expected.0,
            expected.1,
            expected.2
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The synthetic catalogue

/// Countries members are in: ISO code, weight, and place names.
const COUNTRIES: &[(&str, u32, &[&str])] = &[
    (
        "EE",
        22,
        &["Tallinn", "Tartu", "Pärnu", "Narva", "Viljandi", "Rakvere"],
    ),
    (
        "FI",
        20,
        &["Helsinki", "Espoo", "Tampere", "Turku", "Oulu", "Jyväskylä"],
    ),
    (
        "LV",
        14,
        &["Riga", "Daugavpils", "Liepāja", "Jelgava", "Ventspils"],
    ),
    (
        "SE",
        14,
        &["Stockholm", "Göteborg", "Malmö", "Uppsala", "Umeå"],
    ),
    ("LT", 6, &["Vilnius", "Kaunas", "Klaipėda", "Šiauliai"]),
    ("DK", 5, &["Copenhagen", "Aarhus", "Odense", "Aalborg"]),
    ("NO", 5, &["Oslo", "Bergen", "Trondheim", "Stavanger"]),
    ("DE", 4, &["Berlin", "Hamburg", "Munich", "Cologne"]),
    ("PL", 3, &["Warsaw", "Gdańsk", "Kraków"]),
    ("NL", 3, &["Amsterdam", "Utrecht", "Rotterdam"]),
    ("IS", 2, &["Reykjavík", "Akureyri"]),
    ("FR", 2, &["Paris", "Lyon", "Strasbourg"]),
];

const LEVELS: &[(Level, u32)] = &[
    (Level::Local, 60),
    (Level::Regional, 20),
    (Level::National, 15),
    (Level::Supranational, 5),
];

const SECTORS: &[(Sector, u32)] = &[
    (Sector::Public, 75),
    (Sector::Private, 15),
    (Sector::CivilSociety, 10),
];

/// Syllables of made-up village names, for local governments.
const SYLLABLES: &[&str] = &[
    "ka", "la", "ru", "va", "mä", "sa", "to", "ne", "li", "jo", "ki", "pe", "ro", "ta", "ve", "ni",
    "ha", "mu", "se", "lo",
];
const AREAS: &[&str] = &[
    "Tax and Customs",
    "Social Insurance",
    "Health",
    "Education",
    "Transport",
    "Police and Border Guard",
    "Environment",
    "Rural Affairs",
    "Statistics",
    "Land",
    "Consumer Protection",
    "Labour",
    "Data Protection",
];
const MINISTRIES: &[&str] = &[
    "Finance",
    "Social Affairs",
    "Education and Research",
    "the Interior",
    "Justice",
    "Economic Affairs",
    "Culture",
    "Defence",
    "Climate",
];
const AGENCY_KINDS: &[&str] = &["Board", "Agency", "Authority", "Inspectorate", "Centre"];
const BUSINESSES: &[&str] = &[
    "Energy AS",
    "Logistics Ltd",
    "Telecom Oy",
    "Software AB",
    "Insurance AS",
    "Bank",
    "Water Utility",
    "Bus Lines",
];
const CAUSES: &[&str] = &[
    "Youth",
    "Pensioners'",
    "Disability",
    "Sports",
    "Heritage",
    "Nature",
    "Family",
];

/// Subsystem codes and names; a member has one to three of them.
const SUBSYSTEMS: &[(&str, &str)] = &[
    ("main", "Main information system"),
    ("portal", "Self-service portal"),
    ("records", "Records system"),
    ("backoffice", "Back office"),
    ("open-data", "Open data"),
    ("case-management", "Case management"),
];

/// Service topics: the word searched for, and how titles say it. Each
/// service names one or two, so a topic word finds a few per cent of them.
const TOPICS: &[(&str, &str)] = &[
    ("residence", "Residence"),
    ("income", "Income"),
    ("vaccination", "Vaccination"),
    ("school", "School enrolment"),
    ("benefit", "Family benefit"),
    ("permit", "Work permit"),
    ("vehicle", "Vehicle registration"),
    ("pension", "Pension"),
    ("tax", "Tax return"),
    ("registry", "Population registry"),
    ("property", "Property"),
    ("marriage", "Marriage"),
    ("birth", "Birth"),
    ("passport", "Passport"),
    ("licence", "Driving licence"),
    ("unemployment", "Unemployment"),
    ("housing", "Housing allowance"),
    ("parking", "Parking"),
    ("childcare", "Childcare"),
    ("disability", "Disability"),
    ("waste", "Waste collection"),
    ("building", "Building inspection"),
    ("business", "Business register"),
    ("customs", "Customs declaration"),
    ("court", "Court case"),
    ("library", "Library loan"),
    ("prescription", "Prescription"),
    ("election", "Election"),
    ("insurance", "Health insurance"),
];
/// What a service does with its topic: code part and title words.
const ACTIONS: &[(&str, &str)] = &[
    ("status", "status"),
    ("application", "application"),
    ("certificate", "certificate"),
    ("eligibility", "eligibility check"),
    ("extract", "register extract"),
    ("payments", "payment schedule"),
    ("decision", "decision"),
    ("notice", "notification"),
    ("history", "history"),
    ("appeal", "appeal"),
    ("renewal", "renewal"),
    ("lookup", "lookup"),
];
const VERBS: &[&str] = &[
    "Returns",
    "Checks",
    "Submits",
    "Lists",
    "Updates",
    "Verifies",
    "Publishes",
];
const AUDIENCES: &[&str] = &[
    "citizens",
    "case workers",
    "employers",
    "health care providers",
    "local governments",
    "social workers",
    "notaries",
    "banks",
];
const CHANNELS: &[&str] = &[
    "through the state portal",
    "in real time",
    "as a nightly batch",
    "on request",
    "over X-Road",
];
const PERSONAL_CATEGORIES: &[&str] = &[
    "identity",
    "contact",
    "health",
    "financial",
    "education",
    "employment",
    "location",
    "family",
];
const OTHER_CATEGORIES: &[&str] = &["statistics", "public-records", "geodata"];

/// Words member searches look for, besides a place in the searched country.
const MEMBER_WORDS: &[&str] = &[
    "municipality",
    "city",
    "school",
    "university",
    "ministry",
    "board",
    "agency",
    "council",
    "association",
    "foundation",
    "health",
    "transport",
];

/// The country table, parsed once.
struct Vocabulary {
    countries: Vec<(Country, u32, &'static [&'static str])>,
}

impl Vocabulary {
    fn new() -> anyhow::Result<Vocabulary> {
        let countries = COUNTRIES
            .iter()
            .map(|(code, weight, places)| {
                let country: Country = code
                    .parse()
                    .map_err(|e: String| anyhow!("benchmark country {code}: {e}"))?;
                Ok((country, *weight, *places))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Vocabulary { countries })
    }

    fn country(&self, rng: &mut StdRng) -> &(Country, u32, &'static [&'static str]) {
        let total: u32 = self.countries.iter().map(|c| c.1).sum();
        let mut x = rng.gen_range(0..total);
        for entry in &self.countries {
            if x < entry.1 {
                return entry;
            }
            x -= entry.1;
        }
        &self.countries[self.countries.len() - 1]
    }
}

/// Picks one of `items` (not empty).
fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Picks one of `items` (not empty) by weight.
fn pick_weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (item, weight) in items {
        if x < *weight {
            return *item;
        }
        x -= weight;
    }
    items[items.len() - 1].0
}

/// One member with its subsystems and how many services it offers.
struct MemberPlan {
    member: NewMember,
    subsystems: Vec<NewSubsystem>,
    services: u32,
}

/// Members and subsystems, drawn up front (they are small); the services
/// are drawn while seeding.
fn plan_catalogue(
    args: &BenchCatalogueArgs,
    vocabulary: &Vocabulary,
) -> anyhow::Result<Vec<MemberPlan>> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut ministries: HashMap<Country, Vec<MemberId>> = HashMap::new();
    let mut plans = Vec::with_capacity(args.members as usize);
    let mut weights = Vec::with_capacity(args.members as usize);
    for index in 0..args.members {
        let member = plan_member(&mut rng, vocabulary, index, &mut ministries)?;
        let subsystem_count = pick_weighted(&mut rng, &[(1usize, 50), (2, 35), (3, 15)]);
        let subsystems = SUBSYSTEMS
            .choose_multiple(&mut rng, subsystem_count)
            .map(|(code, name)| {
                Ok(NewSubsystem {
                    id: member.id.subsystem(code)?,
                    name: (*name).to_owned(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // National bodies offer more services than a parish does.
        let level_weight = match member.level {
            Level::Local => 1.0,
            Level::Regional => 1.5,
            Level::National => 3.0,
            Level::Supranational => 2.0,
        };
        weights.push(level_weight * rng.gen_range(0.3..1.7));
        plans.push(MemberPlan {
            member,
            subsystems,
            services: 0,
        });
    }
    for (plan, count) in plans
        .iter_mut()
        .zip(allocate(&mut rng, &weights, args.services))
    {
        plan.services = count;
    }
    Ok(plans)
}

/// Splits `total` in proportion to `weights`, the remainder at random.
fn allocate(rng: &mut StdRng, weights: &[f64], total: u32) -> Vec<u32> {
    let sum: f64 = weights.iter().sum();
    let mut counts: Vec<u32> = weights
        .iter()
        .map(|w| (w / sum * f64::from(total)).floor() as u32)
        .collect();
    let mut left = total.saturating_sub(counts.iter().sum());
    while left > 0 {
        let i = rng.gen_range(0..counts.len());
        counts[i] += 1;
        left -= 1;
    }
    counts
}

fn village(rng: &mut StdRng) -> String {
    let n = rng.gen_range(2..=3);
    let name: String = (0..n).map(|_| *pick(rng, SYLLABLES)).collect();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => name,
    }
}

fn plan_member(
    rng: &mut StdRng,
    vocabulary: &Vocabulary,
    index: u32,
    ministries: &mut HashMap<Country, Vec<MemberId>>,
) -> anyhow::Result<NewMember> {
    let level = pick_weighted(rng, LEVELS);
    let sector = pick_weighted(rng, SECTORS);
    let (country, _, places) = vocabulary.country(rng);
    let country = country.clone();
    let place = *pick(rng, places);
    let class = match (sector, level) {
        (Sector::Private, _) => "COM",
        (Sector::CivilSociety, _) => "NGO",
        (Sector::Public, Level::Local) => {
            if rng.gen_bool(0.1) {
                "EDU"
            } else {
                "MUN"
            }
        }
        (Sector::Public, Level::Regional) => {
            if rng.gen_bool(0.2) {
                "EDU"
            } else {
                "GOV"
            }
        }
        (Sector::Public, Level::National) => {
            if rng.gen_bool(0.1) {
                "EDU"
            } else {
                "GOV"
            }
        }
        (Sector::Public, Level::Supranational) => "GOV",
    };
    let id = MemberId::new("BENCH", class, &(70_000_000 + index).to_string())?;
    let mut parent = None;
    let name = match (class, level) {
        ("COM", _) => format!("{place} {}", pick(rng, BUSINESSES)),
        ("NGO", _) => format!(
            "{place} {} {}",
            pick(rng, CAUSES),
            pick(rng, &["Association", "Foundation", "Union"])
        ),
        ("EDU", Level::Local) => format!("{} Basic School", village(rng)),
        ("EDU", Level::Regional) => format!("{place} Gymnasium"),
        ("EDU", _) => format!("University of {place}"),
        ("MUN", _) => {
            if rng.gen_bool(0.25) {
                format!("{place} City Government")
            } else {
                format!("{} Rural Municipality", village(rng))
            }
        }
        (_, Level::Regional) => format!(
            "{place} {}",
            pick(
                rng,
                &["County Government", "Regional Council", "Regional Hospital"]
            )
        ),
        (_, Level::Supranational) => format!(
            "{} {} {}",
            pick(rng, &["Nordic", "Baltic", "European"]),
            pick(rng, AREAS),
            pick(rng, &["Council", "Agency", "Secretariat"])
        ),
        _ => {
            let known = ministries.entry(country.clone()).or_default();
            if known.len() < MINISTRIES.len() && rng.gen_bool(0.2) {
                let name = format!("Ministry of {}", MINISTRIES[known.len()]);
                known.push(id.clone());
                name
            } else {
                if !known.is_empty() && rng.gen_bool(0.7) {
                    parent = Some(pick(rng, known).clone());
                }
                format!("{} {}", pick(rng, AREAS), pick(rng, AGENCY_KINDS))
            }
        }
    };
    let (contact_name, contact_email) = if rng.gen_bool(0.7) {
        (
            Some("Service desk".to_owned()),
            Some(format!("info@{}.example", id.code().to_ascii_lowercase())),
        )
    } else {
        (None, None)
    };
    Ok(NewMember {
        id,
        name,
        level,
        country,
        sector,
        parent,
        contact_name,
        contact_email,
    })
}

/// A service of `subsystem` whose code is not in `used` yet.
fn plan_service(
    rng: &mut StdRng,
    subsystem: &SubsystemId,
    used: &mut HashSet<String>,
) -> anyhow::Result<NewService> {
    let (topic, phrase) = *pick(rng, TOPICS);
    let (action, action_text) = *pick(rng, ACTIONS);
    let base = format!("{topic}-{action}");
    let mut code = base.clone();
    let mut n = 2;
    while !used.insert(format!("{}/{code}", subsystem.code())) {
        code = format!("{base}-{n}");
        n += 1;
    }
    let version = pick_weighted(rng, &[(Some("v1"), 80), (Some("v2"), 10), (None, 10)]);
    let id = ServiceId::new(subsystem.clone(), &code, version)?;
    let title = format!("{phrase} {action_text}");
    let related = if rng.gen_bool(0.4) {
        let (_, other) = *pick(rng, TOPICS);
        format!(" and the related {} records", other.to_lowercase())
    } else {
        String::new()
    };
    let description = format!(
        "{} the {action_text} for {}{related}. Used by {} {}.",
        pick(rng, VERBS),
        phrase.to_lowercase(),
        pick(rng, AUDIENCES),
        pick(rng, CHANNELS)
    );
    let personal_data = rng.gen_bool(0.6);
    let data_categories: Vec<String> = if personal_data {
        let n = rng.gen_range(1..=3);
        PERSONAL_CATEGORIES
            .choose_multiple(rng, n)
            .map(|c| (*c).to_owned())
            .collect()
    } else if rng.gen_bool(0.5) {
        vec![(*pick(rng, OTHER_CATEGORIES)).to_owned()]
    } else {
        Vec::new()
    };
    Ok(NewService {
        openapi_document: openapi_document(&title, &description, &code),
        id,
        title,
        description,
        personal_data,
        data_categories,
        openapi_version: "3.0.3".into(),
    })
}

/// The small OpenAPI document every seeded service carries.
fn openapi_document(title: &str, description: &str, code: &str) -> String {
    serde_json::json!({
        "openapi": "3.0.3",
        "info": { "title": title, "version": "1.0.0", "description": description },
        "paths": {
            format!("/{code}/{{id}}"): {
                "get": {
                    "summary": title,
                    "operationId": format!("get-{code}"),
                    "parameters": [{
                        "name": "id", "in": "path", "required": true,
                        "schema": { "type": "string" }
                    }],
                    "responses": {
                        "200": {
                            "description": "Found",
                            "content": { "application/json": { "schema": { "type": "object" } } }
                        },
                        "404": { "description": "Not found" }
                    }
                }
            }
        }
    })
    .to_string()
}

/// Writes the planned catalogue in transactions of about [`BATCH_ROWS`]
/// rows; returns the number of rows written.
async fn seed(store: &Store, plan: &[MemberPlan], engine: &str) -> anyhow::Result<u64> {
    let total_rows: u64 = plan
        .iter()
        .map(|p| 1 + p.subsystems.len() as u64 + u64::from(p.services))
        .sum();
    let bar = ProgressBar::new(total_rows);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} seeding [{bar:40}] {human_pos}/{human_len} rows, {per_sec}, eta {eta}",
        )
        .context("the progress bar template")?
        .progress_chars("=> "),
    );
    bar.set_prefix(engine.to_owned());

    // Services are drawn here, from their own stream, as they are written.
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    let at = accord_store::now();
    let mut tx = store.begin().await?;
    let mut in_tx = 0usize;
    let mut rows = 0u64;
    for p in plan {
        tx.insert_member(&p.member, &at)
            .await
            .with_context(|| format!("seeding member {}", p.member.id))?;
        for s in &p.subsystems {
            tx.insert_subsystem(s, &at)
                .await
                .with_context(|| format!("seeding subsystem {}", s.id))?;
        }
        let mut used = HashSet::new();
        for _ in 0..p.services {
            let subsystem = &pick(&mut rng, &p.subsystems).id;
            let service = plan_service(&mut rng, subsystem, &mut used)?;
            tx.insert_service(&service, &at)
                .await
                .with_context(|| format!("seeding service {}", service.id))?;
        }
        let written = 1 + p.subsystems.len() + p.services as usize;
        in_tx += written;
        rows += written as u64;
        bar.inc(written as u64);
        if in_tx >= BATCH_ROWS {
            tx.commit().await.context("committing seeded rows")?;
            tx = store.begin().await?;
            in_tx = 0;
        }
    }
    tx.commit().await.context("committing seeded rows")?;
    bar.finish_and_clear();
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Searches

/// What a timed request searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Services by the provider's level and country (and sometimes sector).
    Services,
    /// The same, plus a word of text.
    ServicesText,
    Members,
    MembersText,
}

impl Kind {
    const ALL: &'static [Kind] = &[
        Kind::Services,
        Kind::ServicesText,
        Kind::Members,
        Kind::MembersText,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::Services => "services",
            Kind::ServicesText => "services+q",
            Kind::Members => "members",
            Kind::MembersText => "members+q",
        }
    }
}

struct Search {
    kind: Kind,
    /// Path and query, e.g. `/api/v1/services?level=local&...`.
    path: String,
}

/// The warm-up and the timed searches, the same for every engine.
struct Searches {
    warm_up: Vec<Search>,
    timed: Vec<Search>,
}

fn plan_searches(args: &BenchCatalogueArgs, vocabulary: &Vocabulary) -> Searches {
    let mut rng = StdRng::seed_from_u64(SEED + 2);
    let one = |rng: &mut StdRng, services: bool| {
        let level = pick_weighted(rng, LEVELS);
        let (country, _, places) = vocabulary.country(rng);
        let sector = rng
            .gen_bool(0.3)
            .then(|| pick_weighted(rng, SECTORS).as_str().to_owned());
        let word = rng.gen_bool(0.5).then(|| {
            if services {
                pick(rng, TOPICS).0.to_owned()
            } else if rng.gen_bool(0.5) {
                (*pick(rng, places)).to_owned()
            } else {
                (*pick(rng, MEMBER_WORDS)).to_owned()
            }
        });
        let kind = match (services, word.is_some()) {
            (true, false) => Kind::Services,
            (true, true) => Kind::ServicesText,
            (false, false) => Kind::Members,
            (false, true) => Kind::MembersText,
        };
        let query = query_string(&[
            ("level", Some(level.as_str().to_owned())),
            ("country", Some(country.as_str().to_owned())),
            ("sector", sector),
            ("q", word),
            ("per_page", Some(PER_PAGE.to_string())),
            ("page", Some(rng.gen_range(1..=5u32).to_string())),
        ]);
        let resource = if services { "services" } else { "members" };
        Search {
            kind,
            path: format!("/api/v1/{resource}{query}"),
        }
    };
    let warm_up = (0..WARM_UP).map(|i| one(&mut rng, i % 5 != 0)).collect();
    let mut timed: Vec<Search> = (0..args.searches as usize)
        .map(|_| one(&mut rng, true))
        .collect();
    for _ in 0..member_searches(args) {
        timed.push(one(&mut rng, false));
    }
    Searches { warm_up, timed }
}

/// One timed request.
struct Sample {
    kind: Kind,
    latency: Duration,
    /// Matches over all pages, as the response said.
    total: i64,
}

/// Serves `registry` on a free local port and runs `searches` against it.
async fn serve_and_search(
    registry: &Registry,
    searches: &Searches,
    engine: &str,
) -> anyhow::Result<Vec<Sample>> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a local port for the registry")?;
    let base = format!(
        "http://{}",
        listener.local_addr().context("the registry's address")?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
        })
    };

    let result = search(&base, searches, engine).await;

    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e).context("the registry's HTTP server failed"),
        Ok(Err(e)) => return Err(e).context("the registry's HTTP server task failed"),
        Err(_) => eprintln!("warning: the registry's HTTP server did not stop within 10 s"),
    }
    result
}

async fn search(base: &str, searches: &Searches, engine: &str) -> anyhow::Result<Vec<Sample>> {
    // One connection, kept alive, requests one after the other.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    for s in &searches.warm_up {
        get_page(&client, base, s).await?;
    }
    let bar = ProgressBar::new(searches.timed.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} searching [{bar:40}] {pos}/{len}, {per_sec}")
            .context("the progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(engine.to_owned());
    let mut samples = Vec::with_capacity(searches.timed.len());
    for s in &searches.timed {
        let started = Instant::now();
        let total = get_page(&client, base, s).await?;
        let latency = started.elapsed();
        samples.push(Sample {
            kind: s.kind,
            latency,
            total,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(samples)
}

/// GETs one page, checks it, and returns its `total`.
async fn get_page(client: &reqwest::Client, base: &str, s: &Search) -> anyhow::Result<i64> {
    let url = format!("{base}{}", s.path);
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer to GET {url}"))?;
    if status != reqwest::StatusCode::OK {
        bail!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let page: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("the answer to GET {url} is not JSON"))?;
    let items = page
        .get("items")
        .and_then(serde_json::Value::as_array)
        .with_context(|| format!("the answer to GET {url} has no items"))?;
    let total = page
        .get("total")
        .and_then(serde_json::Value::as_i64)
        .with_context(|| format!("the answer to GET {url} has no total"))?;
    if items.len() > PER_PAGE as usize || (items.len() as i64) > total {
        bail!(
            "GET {url} returned {} items of {total}, with {PER_PAGE} per page",
            items.len()
        );
    }
    Ok(total)
}

// ---------------------------------------------------------------------------
// Statistics and the report

/// Latency figures of one kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Summary {
    count: usize,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

/// The nearest-rank `percent` percentile of `sorted` (ascending): the
/// smallest value at least `percent`% of the values are less than or equal
/// to. `None` if there are no values.
fn percentile(sorted: &[Duration], percent: usize) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent.min(100) * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

fn summarize(mut latencies: Vec<Duration>) -> Option<Summary> {
    latencies.sort_unstable();
    let count = latencies.len();
    let sum: Duration = latencies.iter().sum();
    Some(Summary {
        count,
        p50: percentile(&latencies, 50)?,
        p95: percentile(&latencies, 95)?,
        p99: percentile(&latencies, 99)?,
        max: *latencies.last()?,
        mean: sum / u32::try_from(count).ok()?,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn print_results(results: &[EngineResult]) {
    if results.is_empty() {
        return;
    }
    let mut rows = Vec::new();
    for r in results {
        let secs = r.seeding.as_secs_f64();
        for k in &r.kinds {
            rows.push(vec![
                r.engine.clone(),
                format!("{secs:.1}"),
                format!("{:.0}", r.rows as f64 / secs.max(f64::EPSILON)),
                k.kind.label().to_owned(),
                k.summary.count.to_string(),
                format!("{:.0}", k.mean_total),
                ms(k.summary.p50),
                ms(k.summary.p95),
                ms(k.summary.p99),
                ms(k.summary.max),
                ms(k.summary.mean),
            ]);
        }
    }
    println!();
    output::table(
        &[
            "engine",
            "seed s",
            "rows/s",
            "query",
            "n",
            "avg total",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "mean ms",
        ],
        rows,
    );
    println!(
        "\nquery: level+country filters (+ sector 30% of the time), page 1-5 of {PER_PAGE}; \
         +q adds a text word. avg total: matches over all pages."
    );
    for r in results {
        let worst = r.kinds.iter().max_by_key(|k| k.summary.p95);
        let verdict = match worst {
            Some(w) if w.summary.p95 < TARGET_P95 => format!(
                "held (worst p95 {} ms, {})",
                ms(w.summary.p95),
                w.kind.label()
            ),
            Some(w) => format!(
                "NOT held (worst p95 {} ms, {})",
                ms(w.summary.p95),
                w.kind.label()
            ),
            None => "not measured".to_owned(),
        };
        println!(
            "p95 < {} ms on {} {}: {verdict}",
            TARGET_P95.as_millis(),
            r.engine,
            r.version
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let sorted = millis(&[15, 20, 35, 40, 50]);
        let p = |percent| percentile(&sorted, percent).map(|d| d.as_millis());
        assert_eq!(p(5), Some(15));
        assert_eq!(p(30), Some(20));
        assert_eq!(p(40), Some(20));
        assert_eq!(p(50), Some(35));
        assert_eq!(p(95), Some(50));
        assert_eq!(p(100), Some(50));

        let hundred: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&hundred, 95), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&hundred, 99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn summary_of_a_known_vector() {
        let s = summarize(millis(&[50, 15, 40, 20, 35])).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(s.p50, Duration::from_millis(35));
        assert_eq!(s.max, Duration::from_millis(50));
        assert_eq!(s.mean, Duration::from_millis(32));
        assert_eq!(summarize(Vec::new()), None);
    }

    #[test]
    fn seeded_services_have_valid_openapi_documents() {
        let member = MemberId::new("BENCH", "GOV", "70000001").unwrap();
        let subsystem = member.subsystem("main").unwrap();
        let mut rng = StdRng::seed_from_u64(SEED);
        let mut used = HashSet::new();
        for _ in 0..50 {
            let service = plan_service(&mut rng, &subsystem, &mut used).unwrap();
            let summary =
                accord_domain::catalogue::check_openapi(&service.openapi_document).unwrap();
            assert_eq!(summary.title, service.title);
        }
        assert_eq!(
            used.len(),
            50,
            "service codes are unique within a subsystem"
        );
    }

    #[test]
    fn search_path_joins_the_query() {
        assert_eq!(
            with_search_path("postgres://u@h/db", "s"),
            "postgres://u@h/db?options=-c%20search_path%3Ds"
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds"
        );
    }
}
