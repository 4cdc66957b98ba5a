//! Audit anchoring at the registry, on both engines: gateways register an
//! audit key, send signed checkpoints, and the registry keeps only
//! checkpoints that extend what it holds — a forked or rewritten log is
//! refused and named.

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use accord_audit::checkpoint::Checkpoint;
use accord_audit::merkle::{hash_leaf, Batch, CompactRange, Hash};

use crate::support::{accord, on_both_engines, stderr, stdout, Engine, TestDb, TestRegistry};

on_both_engines!(
    the_registry_anchors_checkpoints_and_refuses_forks,
    an_auditor_verifies_a_gateway_log_offline,
    gateways_report_operational_records_once,
);

const LOG: &str = "TEST/GOV/1/gw1";

fn leaves(from: u32, to: u32, fork_at: Option<u32>) -> Vec<Hash> {
    (from..to)
        .map(|i| {
            let text = if Some(i) == fork_at {
                format!("forged {i}")
            } else {
                format!("exchange {i}")
            };
            hash_leaf(text.as_bytes())
        })
        .collect()
}

/// A signed checkpoint of `range` with the proof from `anchored`.
/// A record batch receipt's `(accepted, duplicates)`.
fn counts(receipt: &Value) -> (Option<u64>, Option<u64>) {
    (receipt["accepted"].as_u64(), receipt["duplicates"].as_u64())
}

fn submission(key: &SigningKey, anchored: &CompactRange, added: &[Hash]) -> (Value, CompactRange) {
    let batch = Batch::new(anchored, added);
    let signed = Checkpoint {
        log_id: LOG.into(),
        size: batch.new_size(),
        root: batch.root(),
        at: time::OffsetDateTime::now_utc(),
    }
    .sign(key);
    let proof: Vec<String> = if anchored.size() == 0 {
        Vec::new()
    } else {
        batch
            .consistency_proof()
            .unwrap()
            .iter()
            .map(hex::encode)
            .collect()
    };
    (
        json!({"checkpoint": signed, "consistency_proof": proof}),
        batch.after(),
    )
}

async fn the_registry_anchors_checkpoints_and_refuses_forks(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    t.add_member("TEST/GOV/1", "national", "EE", "public").await;
    t.add_member("TEST/GOV/2", "national", "EE", "public").await;
    let owner = t.member_token("TEST/GOV/1").await;
    let stranger = t.member_token("TEST/GOV/2").await;
    let (status, _) = t
        .post(
            "/api/v1/gateway-certificates",
            &owner,
            json!({"member": "TEST/GOV/1", "gateway": "gw1", "address": "https://127.0.0.1:9443"}),
        )
        .await;
    assert_eq!(status, 201);
    let key = SigningKey::from_bytes(&[5; 32]);
    let pem = accord_ca::public_key_pem(&key.verifying_key());

    // Before a key is registered, checkpoints have nothing to verify against.
    let (first, _) = submission(&key, &CompactRange::new(), &leaves(0, 10, None));
    let (status, body) = t
        .post("/api/v1/audit/checkpoints", "unused", first.clone())
        .await;
    assert_eq!(
        (status, body["rule"].as_str()),
        (422, Some("no-audit-key")),
        "{body}"
    );
    let path = "/api/v1/gateways/TEST/GOV/1/gw1/audit-key";
    let (status, _, _) = t
        .call(
            "PUT",
            path,
            Some(&stranger),
            Some(json!({"public_key_pem": pem})),
        )
        .await;
    assert_eq!(
        status, 403,
        "only the member's administrator sets its gateway's key"
    );
    let (status, _, body) = t
        .call(
            "PUT",
            path,
            Some(&owner),
            Some(json!({"public_key_pem": pem})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["audit_key_pem"], json!(pem));

    // The first checkpoint, then the same again (idempotent), then an extension.
    let (status, body) = t
        .post("/api/v1/audit/checkpoints", "unused", first.clone())
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = t.post("/api/v1/audit/checkpoints", "unused", first).await;
    assert_eq!(status, 200);
    let at_10 = CompactRange::from_leaves(&leaves(0, 10, None));
    let (second, _) = submission(&key, &at_10, &leaves(10, 15, None));
    let (status, body) = t.post("/api/v1/audit/checkpoints", "unused", second).await;
    assert_eq!(status, 201, "{body}");

    let before = t.snapshot().await;
    let at_15 = CompactRange::from_leaves(&leaves(0, 15, None));
    let forked_10 = CompactRange::from_leaves(&leaves(0, 10, None));
    let (fork, forked_15) = submission(&key, &forked_10, &leaves(10, 15, Some(12)));
    let (rewrite, _) = submission(&key, &forked_15, &leaves(15, 20, None));
    let (older, _) = submission(&key, &at_10, &leaves(10, 12, None));
    let (impostor, _) = submission(
        &SigningKey::from_bytes(&[6; 32]),
        &at_15,
        &leaves(15, 20, None),
    );
    let mut unknown = submission(&key, &CompactRange::new(), &leaves(0, 3, None)).0;
    unknown["checkpoint"]["log_id"] = json!("TEST/GOV/1/gw9");
    let cases = [
        (
            "a different root for an anchored size",
            fork,
            409,
            "fork-detected",
        ),
        (
            "a larger log that does not extend the anchored one",
            rewrite,
            409,
            "not-an-extension",
        ),
        ("a smaller log", older, 409, "older-than-anchored"),
        (
            "a checkpoint signed with another key",
            impostor,
            422,
            "checkpoint-signature-invalid",
        ),
        ("an unknown gateway", unknown, 422, "unknown-log"),
    ];
    for (what, body, status, rule) in cases {
        let (got, problem) = t.post("/api/v1/audit/checkpoints", "unused", body).await;
        assert_eq!(
            (got, problem["rule"].as_str()),
            (status, Some(rule)),
            "{what}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap().contains(LOG)
                || rule == "unknown-log"
                || rule == "checkpoint-signature-invalid",
            "{what}: {problem}"
        );
        assert_eq!(t.snapshot().await, before, "{what} changed the database");
    }

    let (status, held) = t.get(&format!("/api/v1/audit/checkpoints?log={LOG}")).await;
    assert_eq!(status, 200);
    let sizes: Vec<i64> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_i64().unwrap())
        .collect();
    assert_eq!(sizes, [10, 15]);

    // Gateways learn each other's audit keys from the signed configuration.
    let (_, config) = t.get("/api/v1/federation/configuration").await;
    let gateway = config["payload"]["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "gw1")
        .unwrap()
        .clone();
    assert_eq!(gateway["audit_key_pem"], json!(pem));
}

/// Member TEST/GOV/1 with gateway gw1 and its registered audit key:
/// the member administrator's token and the key.
async fn gateway_with_audit_key(t: &TestRegistry, seed: u8) -> (String, SigningKey) {
    t.add_member("TEST/GOV/1", "national", "EE", "public").await;
    let owner = t.member_token("TEST/GOV/1").await;
    let (status, _) = t
        .post(
            "/api/v1/gateway-certificates",
            &owner,
            json!({"member": "TEST/GOV/1", "gateway": "gw1", "address": "https://127.0.0.1:9443"}),
        )
        .await;
    assert_eq!(status, 201);
    let key = SigningKey::from_bytes(&[seed; 32]);
    let pem = accord_ca::public_key_pem(&key.verifying_key());
    let (status, _, _) = t
        .call(
            "PUT",
            "/api/v1/gateways/TEST/GOV/1/gw1/audit-key",
            Some(&owner),
            Some(json!({"public_key_pem": pem})),
        )
        .await;
    assert_eq!(status, 200);
    (owner, key)
}

fn exchange(n: u64) -> accord_audit::entry::AuditEntry {
    use accord_audit::entry::{AuditDecision, AuditEntry, Side};
    AuditEntry {
        exchange_id: format!("exchange-{n:08}"),
        request_id: format!("request-{n}"),
        at: time::OffsetDateTime::now_utc(),
        side: Side::Provider,
        client: "TEST/MUN/2/benefits".into(),
        service: "TEST/GOV/1/pop/residence/v1".into(),
        method: "GET".into(),
        path: format!("/persons/{n}/residence"),
        purpose: Some("social-benefit-eligibility".into()),
        agreement: None,
        grant: None,
        decision: AuditDecision::Permit,
        status: 200,
        error_type: None,
        request_body_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .into(),
        response_body_sha256: format!("{n:064x}"),
        request_size: 0,
        response_size: 120,
        total_us: 1_500,
        backend_us: Some(900),
        data_subject_pseudonym: Some(accord_audit::entry::pseudonymize(
            &[7; 32],
            &format!("3800101{n:04}"),
        )),
    }
}

async fn an_auditor_verifies_a_gateway_log_offline(engine: Engine) {
    use accord_gateway::audit_store::{AuditLog, AuditLogSettings};
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    let (_, key) = gateway_with_audit_key(&t, 8).await;

    // The gateway's own log, in its own database.
    let log_db = TestDb::new(engine).await.expect("a second database");
    let dir = tempfile::tempdir().unwrap();
    let url = log_db
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("audit.db").display()));
    let settings = AuditLogSettings {
        database_url: url.clone(),
        log_id: LOG.into(),
        max_batch: 64,
        max_wait: std::time::Duration::ZERO,
    };
    let log = AuditLog::open(settings, key.clone()).await.unwrap();
    let mut appends = Vec::new();
    for n in 0..300 {
        let log = log.clone();
        appends.push(tokio::spawn(async move { log.append(&exchange(n)).await }));
    }
    for a in appends {
        assert!(a.await.unwrap().is_ok());
    }
    let latest = log.latest_checkpoint().await.unwrap();
    let (status, body) = t
        .post(
            "/api/v1/audit/checkpoints",
            "unused",
            json!({"checkpoint": latest, "consistency_proof": []}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    log.close().await;

    let verify = |extra: &[&str]| {
        let mut args = vec![
            "--registry".to_owned(),
            t.url.clone(),
            "audit".into(),
            "verify".into(),
            "--database".into(),
            url.clone(),
            "--log".into(),
            LOG.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        async move { accord(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let out = verify(&[]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("the audit log is intact"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("anchored up to  300 (1 registry"),
        "{}",
        stdout(&out)
    );

    // An entry edited in the database is found, at its position.
    crate::support::execute(&url, r#"UPDATE audit_entries SET entry = REPLACE(entry, '"status":200', '"status":201') WHERE leaf_index = 7"#).await;
    let out = verify(&[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("entry 7 was altered"),
        "{}",
        stderr(&out)
    );

    // A truncated log falls short of what the registry anchored.
    crate::support::execute(&url, r#"UPDATE audit_entries SET entry = REPLACE(entry, '"status":201', '"status":200') WHERE leaf_index = 7"#).await;
    crate::support::execute(&url, "DELETE FROM audit_entries WHERE leaf_index >= 250").await;
    crate::support::execute(&url, "DELETE FROM audit_checkpoints WHERE size > 250").await;
    let out = verify(&["--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["intact"], false);
    assert!(
        report["problem"].as_str().unwrap().contains("300"),
        "{report}"
    );
}

fn record(n: u32, agreement: &str) -> accord_domain::monitoring::OperationalRecord {
    accord_domain::monitoring::OperationalRecord {
        record_id: format!("exchange-{n}/provider"),
        side: "provider".into(),
        client: "TEST/MUN/2/benefits".into(),
        service: "TEST/GOV/1/pop/residence/v1".into(),
        method: "GET".into(),
        path: format!("/persons/{n}/residence"),
        purpose: Some("social-benefit-eligibility".into()),
        agreement: Some(agreement.into()),
        agreement_version: Some(1),
        grant: Some("residence".into()),
        deny_reason: None,
        status: 200,
        success: true,
        error_type: None,
        request_in_ms: 1_700_000_000_000 + i64::from(n),
        request_out_ms: Some(1_700_000_000_001 + i64::from(n)),
        response_in_ms: Some(1_700_000_000_009 + i64::from(n)),
        response_out_ms: 1_700_000_000_010 + i64::from(n),
        request_size: 0,
        response_size: 128,
        data_subject_pseudonym: Some(accord_audit::entry::pseudonymize(
            &[7; 32],
            &format!("subject-{n}"),
        )),
    }
}

async fn gateways_report_operational_records_once(engine: Engine) {
    use accord_domain::monitoring::RecordBatch;
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    let (owner, key) = gateway_with_audit_key(&t, 9).await;

    let batch =
        |records| serde_json::to_value(RecordBatch::sign(LOG, records, &key).unwrap()).unwrap();
    let first = batch(vec![
        record(1, "town-residence"),
        record(2, "town-residence"),
        record(3, "health-stats"),
    ]);
    let (status, receipt) = t
        .post("/api/v1/monitoring/records", "unused", first.clone())
        .await;
    assert_eq!(
        (status, counts(&receipt)),
        (200, (Some(3), Some(0))),
        "{receipt}"
    );
    let (_, receipt) = t.post("/api/v1/monitoring/records", "unused", first).await;
    assert_eq!(
        counts(&receipt),
        (Some(0), Some(3)),
        "a retried batch is stored once"
    );
    let (_, receipt) = t
        .post(
            "/api/v1/monitoring/records",
            "unused",
            batch(vec![record(3, "health-stats"), record(4, "town-residence")]),
        )
        .await;
    assert_eq!(counts(&receipt), (Some(1), Some(1)));

    let before = t.snapshot().await;
    let mut tampered = batch(vec![record(5, "town-residence")]);
    tampered["records"][0]["status"] = json!(500);
    let mut unknown = batch(vec![record(6, "town-residence")]);
    unknown["gateway"] = json!("TEST/GOV/1/gw9");
    let mut invalid_record = record(7, "town-residence");
    invalid_record.side = "sideways".into();
    let invalid = batch(vec![invalid_record]);
    for (what, body, rule_or_field) in [
        (
            "a batch changed after signing",
            tampered,
            "batch-signature-invalid",
        ),
        ("an unknown gateway", unknown, "unknown-log"),
        ("an invalid record", invalid, "records[0].side"),
    ] {
        let (status, problem) = t.post("/api/v1/monitoring/records", "unused", body).await;
        assert_eq!(status, 422, "{what}: {problem}");
        let named =
            problem["rule"] == rule_or_field || problem["errors"][0]["field"] == rule_or_field;
        assert!(named, "{what}: {problem}");
        assert_eq!(t.snapshot().await, before, "{what} changed the database");
    }

    let (status, _, all) = t
        .call(
            "GET",
            "/api/v1/monitoring/records",
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 4);
    assert!(all.as_array().unwrap().iter().all(|r| r["gateway"] == LOG));
    let (_, _, town) = t
        .call(
            "GET",
            "/api/v1/monitoring/records?agreement=town-residence",
            Some(&t.admin_token),
            None,
        )
        .await;
    let paths: Vec<&str> = town
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/persons/1/residence",
            "/persons/2/residence",
            "/persons/4/residence"
        ]
    );
    let (status, _, _) = t
        .call("GET", "/api/v1/monitoring/records", Some(&owner), None)
        .await;
    assert_eq!(status, 403);

    // A full batch (as a busy gateway sends them) goes in as a few large
    // statements: each record once, field for field, and a retry is all
    // duplicates.
    let many: Vec<_> = (100..351)
        .map(|n| {
            let mut r = record(n, "bulk");
            if n % 3 == 0 {
                r.deny_reason = Some("purpose-not-covered".to_owned());
                r.success = false;
                r.status = 403;
                r.error_type = Some("Server.ServerProxy.AccessDenied".to_owned());
            }
            r.request_out_ms = (n % 5 != 0).then_some(r.request_in_ms + 1);
            r.request_size = u64::from(n) * 7;
            r
        })
        .collect();
    let (status, receipt) = t
        .post("/api/v1/monitoring/records", "unused", batch(many.clone()))
        .await;
    assert_eq!(
        (status, counts(&receipt)),
        (200, (Some(251), Some(0))),
        "{receipt}"
    );
    let (_, receipt) = t
        .post("/api/v1/monitoring/records", "unused", batch(many.clone()))
        .await;
    assert_eq!(counts(&receipt), (Some(0), Some(251)));
    let (_, _, bulk) = t
        .call(
            "GET",
            "/api/v1/monitoring/records?agreement=bulk",
            Some(&t.admin_token),
            None,
        )
        .await;
    let stored: Vec<accord_domain::monitoring::OperationalRecord> = bulk
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["gateway"], LOG);
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("gateway");
            serde_json::from_value(r).unwrap()
        })
        .collect();
    assert_eq!(stored, many);
}
