//! Audit anchoring at the registry, on both engines: gateways register an
//! audit key, send signed checkpoints, and the registry keeps only
//! checkpoints that extend what it holds — a forked or rewritten log is
//! refused and named.

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use accord_audit::checkpoint::Checkpoint;
use accord_audit::merkle::{hash_leaf, Batch, CompactRange, Hash};

use crate::support::{on_both_engines, Engine, TestRegistry};

on_both_engines!(the_registry_anchors_checkpoints_and_refuses_forks);

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
