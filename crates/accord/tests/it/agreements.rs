//! Co-operation agreements through the API and the CLI, on both engines:
//! the lifecycle from draft to termination, every refusal rule, decisions,
//! and the ODRL export.

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use accord_domain::agreement::canonical;

use crate::support::{accord, on_both_engines, stderr, stdout, temp_file, Engine, TestRegistry};

on_both_engines!(
    an_agreement_lives_from_draft_to_termination,
    agreement_rules_are_refused_and_change_nothing,
    decisions_name_the_agreement_or_the_reason,
    a_user_runs_an_agreement_from_the_cli_alone,
    expiry_follows_the_validity_period,
    gateways_get_a_signed_configuration_that_follows_changes,
);

const PROVIDER: &str = "TEST/GOV/1";
const CONSUMER: &str = "TEST/MUN/2";
const OUTSIDER: &str = "TEST/NGO/3";
const RESIDENCE: &str = "TEST/GOV/1/pop/residence/v1";

/// A federation with a provider, a consumer and an outsider, each with a
/// member-admin token and a registered signing key.
struct Parties {
    t: TestRegistry,
    provider: (String, SigningKey),
    consumer: (String, SigningKey),
    outsider: (String, SigningKey),
}

async fn parties(engine: Engine) -> Option<Parties> {
    let t = TestRegistry::start(engine).await?;
    t.add_member(PROVIDER, "national", "EE", "public").await;
    t.add_member(CONSUMER, "local", "EE", "public").await;
    t.add_member(OUTSIDER, "national", "EE", "civil-society")
        .await;
    t.add_service(PROVIDER, "pop", "residence", "Residence")
        .await;
    t.add_service(PROVIDER, "pop", "family", "Family relations")
        .await;
    let (status, body) = t
        .post(
            &format!("/api/v1/members/{CONSUMER}/subsystems"),
            &t.admin_token,
            json!({"code": "benefits", "name": "Benefits"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = t
        .post(
            &format!("/api/v1/members/{OUTSIDER}/subsystems"),
            &t.admin_token,
            json!({"code": "intake", "name": "Intake"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut made = Vec::new();
    for (i, member) in [PROVIDER, CONSUMER, OUTSIDER].into_iter().enumerate() {
        let token = t.member_token(member).await;
        let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
        let (status, body) = t
            .post(
                &format!("/api/v1/members/{member}/signing-keys"),
                &token,
                json!({"public_key_pem": accord_ca::public_key_pem(&key.verifying_key())}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["key_id"], canonical::key_id(&key.verifying_key()));
        made.push((token, key));
    }
    let outsider = made.pop()?;
    let consumer = made.pop()?;
    let provider = made.pop()?;
    Some(Parties {
        t,
        provider,
        consumer,
        outsider,
    })
}

fn terms() -> Value {
    json!({
        "title": "Residence data for social benefits",
        "description": "The town reads residence from the register to decide benefits",
        "parties": [
            {"member": PROVIDER, "roles": ["provider"]},
            {"member": CONSUMER, "roles": ["consumer", "funder"]}
        ],
        "grants": [{
            "id": "residence",
            "services": {"services": [RESIDENCE]},
            "consumers": ["TEST/MUN/2/benefits"],
            "purposes": ["social-benefit-eligibility"],
            "operations": [{"methods": ["GET"], "path": "/persons/*/residence"}],
            "quotas": [{"limit": 1000, "per": "day"}],
            "data_subject_required": true
        }],
        "commitments": [{"party": CONSUMER, "contribution": {"type": "budget", "amount": 25000, "currency": "EUR"},
                         "period": {"from": "2026-01-01", "until": "2026-12-31"}}],
        "indicators": [{"id": "lookups", "name": "Look-ups", "definition": "Successful look-ups",
                        "source": {"metric": {"metric": "exchange-count"}}, "unit": "requests",
                        "baseline": 0, "target": 1000, "direction": "higher-is-better", "period": "month"}],
        "obligations": [{"id": "availability", "party": PROVIDER, "kind": {"type": "availability", "percent": 99.5},
                         "description": "Available 99.5% of the month"}],
        "conflict_resolution": [{"description": "Technical contacts talk", "deadline_days": 10,
                                 "decided_by": {"body": "Technical contacts"}}],
        "legal_basis": [{"reference": "Population Register Act § 46"}],
        "validity": {"start": "2026-01-01T00:00:00Z", "end": "2036-01-01T00:00:00Z"}
    })
}

fn signature(member: &str, key: &SigningKey, digest: &str) -> Value {
    json!({"member": member, "key_id": canonical::key_id(&key.verifying_key()), "signature": canonical::sign(key, digest)})
}

/// Drafts, proposes and fully signs `id` with `terms`; returns the digest.
async fn activate(p: &Parties, id: &str, terms: Value) -> String {
    let t = &p.t;
    let (status, body) = t
        .post(
            "/api/v1/agreements",
            &p.consumer.0,
            json!({"id": id, "terms": terms}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = t
        .post(
            &format!("/api/v1/agreements/{id}/versions/1/propose"),
            &p.consumer.0,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let digest = body["digest"].as_str().unwrap().to_owned();
    for (member, (token, key)) in [(CONSUMER, &p.consumer), (PROVIDER, &p.provider)] {
        let (status, body) = t
            .post(
                &format!("/api/v1/agreements/{id}/versions/1/signatures"),
                token,
                signature(member, key, &digest),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    digest
}

async fn decide(t: &TestRegistry, request: Value) -> Value {
    let (status, body) = t.post("/api/v1/decisions", "unused", request).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn residence_request() -> Value {
    json!({"client": "TEST/MUN/2/benefits", "service": RESIDENCE, "method": "GET",
           "path": "/persons/38001010000/residence", "purpose": "social-benefit-eligibility", "data_subject": true})
}

async fn an_agreement_lives_from_draft_to_termination(engine: Engine) {
    let Some(p) = parties(engine).await else {
        return;
    };
    let t = &p.t;
    let (status, draft) = t
        .post(
            "/api/v1/agreements",
            &p.consumer.0,
            json!({"id": "town-residence", "terms": terms()}),
        )
        .await;
    assert_eq!(status, 201, "{draft}");
    assert_eq!(
        (draft["state"].as_str(), draft["version"].as_u64()),
        (Some("draft"), Some(1))
    );
    assert!(draft["digest"].is_null());

    // A draft can be edited; proposing fixes the digest of the canonical form.
    let mut edited = terms();
    edited["title"] = json!("Residence data for municipal social benefits");
    let (status, _, body) = t
        .call(
            "PUT",
            "/api/v1/agreements/town-residence/versions/1",
            Some(&p.provider.0),
            Some(json!({"terms": edited})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, proposed) = t
        .post(
            "/api/v1/agreements/town-residence/versions/1/propose",
            &p.provider.0,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{proposed}");
    assert_eq!(proposed["state"], "proposed");
    let digest = proposed["digest"].as_str().unwrap().to_owned();
    let local: accord_domain::agreement::AgreementTerms =
        serde_json::from_value(proposed["terms"].clone()).unwrap();
    let id = "town-residence".parse().unwrap();
    assert_eq!(
        canonical::digest("TEST", &id, 1, None, &local).unwrap(),
        digest,
        "anyone can recompute the digest"
    );
    assert_eq!(proposed["awaiting"], json!([PROVIDER, CONSUMER]));

    let (status, one) = t
        .post(
            "/api/v1/agreements/town-residence/versions/1/signatures",
            &p.consumer.0,
            signature(CONSUMER, &p.consumer.1, &digest),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one["state"], "proposed",
        "one signature of two does not activate"
    );
    assert_eq!(one["awaiting"], json!([PROVIDER]));
    let denied = decide(t, residence_request()).await;
    assert_eq!(
        denied["decision"], "deny",
        "nothing flows before every party signed"
    );
    assert_eq!(denied["reason"], "no-agreement");

    let (status, active) = t
        .post(
            "/api/v1/agreements/town-residence/versions/1/signatures",
            &p.provider.0,
            signature(PROVIDER, &p.provider.1, &digest),
        )
        .await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(active["state"], "active");
    let permitted = decide(t, residence_request()).await;
    assert_eq!(permitted["decision"], "permit", "{permitted}");
    assert_eq!(
        (permitted["agreement"].as_str(), permitted["grant"].as_str()),
        (Some("town-residence"), Some("residence"))
    );

    let (status, verification) = t
        .get("/api/v1/agreements/town-residence/versions/1/verification")
        .await;
    assert_eq!(status, 200);
    assert_eq!(verification["valid"], true, "{verification}");

    // An amendment is a new version; the old one stays in force until the new one is signed.
    let mut amended = terms();
    amended["grants"][0]["quotas"][0]["limit"] = json!(2000);
    let (status, v2) = t
        .post(
            "/api/v1/agreements/town-residence/amend",
            &p.provider.0,
            json!({"terms": amended}),
        )
        .await;
    assert_eq!(status, 201, "{v2}");
    assert_eq!(
        (v2["version"].as_u64(), v2["supersedes"].as_u64()),
        (Some(2), Some(1))
    );
    let (status, again) = t
        .post(
            "/api/v1/agreements/town-residence/amend",
            &p.provider.0,
            json!({"terms": terms()}),
        )
        .await;
    assert_eq!(
        (status, again["rule"].as_str()),
        (409, Some("amendment-pending"))
    );
    let (_, view) = t.get("/api/v1/agreements/town-residence").await;
    assert_eq!(
        (view["in_force"].as_u64(), view["latest"].as_u64()),
        (Some(1), Some(2))
    );
    let (_, v2p) = t
        .post(
            "/api/v1/agreements/town-residence/versions/2/propose",
            &p.provider.0,
            json!({}),
        )
        .await;
    let digest2 = v2p["digest"].as_str().unwrap().to_owned();
    assert_ne!(digest2, digest);
    assert_eq!(
        decide(t, residence_request()).await["version"],
        1,
        "version 1 still decides"
    );
    for (member, (token, key)) in [(CONSUMER, &p.consumer), (PROVIDER, &p.provider)] {
        let (status, body) = t
            .post(
                "/api/v1/agreements/town-residence/versions/2/signatures",
                token,
                signature(member, key, &digest2),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, view) = t.get("/api/v1/agreements/town-residence").await;
    assert_eq!(view["in_force"], 2);
    assert_eq!(view["versions"][0]["state"], "superseded");
    assert_eq!(decide(t, residence_request()).await["version"], 2);

    // The federation administrator may suspend and resume, not terminate.
    let (status, suspended) = t
        .post(
            "/api/v1/agreements/town-residence/suspend",
            &t.admin_token,
            json!({"reason": "audit"}),
        )
        .await;
    assert_eq!(
        (status, suspended["state"].as_str()),
        (200, Some("suspended"))
    );
    let denied = decide(t, residence_request()).await;
    assert_eq!(denied["reason"], "agreement-suspended", "{denied}");
    let (status, _) = t
        .post(
            "/api/v1/agreements/town-residence/resume",
            &t.admin_token,
            json!({"reason": "audit passed"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = t
        .post(
            "/api/v1/agreements/town-residence/terminate",
            &t.admin_token,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(
        (status, problem["rule"].as_str()),
        (403, Some("not-a-party"))
    );
    let (status, terminated) = t
        .post(
            "/api/v1/agreements/town-residence/terminate",
            &p.consumer.0,
            json!({"reason": "service replaced"}),
        )
        .await;
    assert_eq!(
        (status, terminated["state"].as_str()),
        (200, Some("terminated"))
    );
    assert_eq!(terminated["state_reason"], "service replaced");
    assert_eq!(decide(t, residence_request()).await["decision"], "deny");

    // The full history: who did what, when.
    let (_, history) = t.get("/api/v1/agreements/town-residence/history").await;
    let actions: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "draft",
            "edit",
            "propose",
            "sign",
            "sign",
            "activate",
            "amend",
            "propose",
            "sign",
            "sign",
            "supersede",
            "activate",
            "suspend",
            "resume",
            "terminate"
        ]
    );
    let suspend = &history["events"][12];
    assert!(
        suspend["actor"]
            .as_str()
            .unwrap()
            .starts_with("federation-admin"),
        "{suspend}"
    );
    assert_eq!(
        (
            suspend["from_state"].as_str(),
            suspend["to_state"].as_str(),
            suspend["detail"].as_str()
        ),
        (Some("active"), Some("suspended"), Some("audit"))
    );

    // ODRL export of a version.
    let (status, content_type, odrl) = t
        .call(
            "GET",
            "/api/v1/agreements/town-residence/versions/2/odrl",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/ld+json");
    crate::odrl::assert_valid_odrl_agreement(&odrl);
}

struct Rule {
    what: &'static str,
    path: String,
    token: String,
    body: Value,
    status: u16,
    rule: &'static str,
}

async fn agreement_rules_are_refused_and_change_nothing(engine: Engine) {
    let Some(p) = parties(engine).await else {
        return;
    };
    let t = &p.t;
    let digest = activate(&p, "active-one", terms()).await;
    // A proposed agreement to sign, and a terminated one to amend.
    let (status, _) = t
        .post(
            "/api/v1/agreements",
            &p.consumer.0,
            json!({"id": "proposed-one", "terms": terms()}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, proposed) = t
        .post(
            "/api/v1/agreements/proposed-one/versions/1/propose",
            &p.consumer.0,
            json!({}),
        )
        .await;
    let pdigest = proposed["digest"].as_str().unwrap().to_owned();
    activate(&p, "ended-one", terms()).await;
    let (status, _) = t
        .post(
            "/api/v1/agreements/ended-one/terminate",
            &p.provider.0,
            json!({"reason": "done"}),
        )
        .await;
    assert_eq!(status, 200);
    // The outsider's key, and a key the consumer revoked.
    let revoked = SigningKey::from_bytes(&[42; 32]);
    let (status, _) = t
        .post(
            &format!("/api/v1/members/{CONSUMER}/signing-keys"),
            &p.consumer.0,
            json!({"public_key_pem": accord_ca::public_key_pem(&revoked.verifying_key())}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = t
        .post(
            &format!(
                "/api/v1/signing-keys/{}/revoke",
                canonical::key_id(&revoked.verifying_key())
            ),
            &p.consumer.0,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);

    let with = |patch: &dyn Fn(&mut Value)| {
        let mut v = terms();
        patch(&mut v);
        json!({"id": "new-one", "terms": v})
    };
    let sign_path = "/api/v1/agreements/proposed-one/versions/1/signatures".to_owned();
    let cases = vec![
        Rule {
            what: "signature by a non-party",
            path: sign_path.clone(),
            token: p.outsider.0.clone(),
            body: signature(OUTSIDER, &p.outsider.1, &pdigest),
            status: 403,
            rule: "signature-by-non-party",
        },
        Rule {
            what: "signature by a revoked key",
            path: sign_path.clone(),
            token: p.consumer.0.clone(),
            body: signature(CONSUMER, &revoked, &pdigest),
            status: 422,
            rule: "signature-by-revoked-key",
        },
        Rule {
            what: "signature over a different digest",
            path: sign_path.clone(),
            token: p.consumer.0.clone(),
            body: signature(CONSUMER, &p.consumer.1, &digest),
            status: 422,
            rule: "signature-invalid",
        },
        Rule {
            what: "another member's key",
            path: sign_path.clone(),
            token: p.consumer.0.clone(),
            body: json!({"member": CONSUMER, "key_id": canonical::key_id(&p.provider.1.verifying_key()), "signature": canonical::sign(&p.provider.1, &pdigest)}),
            status: 422,
            rule: "key-not-owned",
        },
        Rule {
            what: "a signature relayed with another party's token",
            path: sign_path.clone(),
            token: p.provider.0.clone(),
            body: signature(CONSUMER, &p.consumer.1, &pdigest),
            status: 403,
            rule: "signer-not-authorized",
        },
        Rule {
            what: "signing an active agreement",
            path: "/api/v1/agreements/active-one/versions/1/signatures".into(),
            token: p.consumer.0.clone(),
            body: signature(CONSUMER, &p.consumer.1, &digest),
            status: 409,
            rule: "transition-not-allowed",
        },
        Rule {
            what: "amending a terminated agreement",
            path: "/api/v1/agreements/ended-one/amend".into(),
            token: p.consumer.0.clone(),
            body: json!({"terms": terms()}),
            status: 409,
            rule: "transition-not-allowed",
        },
        Rule {
            what: "proposing an active agreement",
            path: "/api/v1/agreements/active-one/versions/1/propose".into(),
            token: p.consumer.0.clone(),
            body: json!({}),
            status: 409,
            rule: "transition-not-allowed",
        },
        Rule {
            what: "resuming an active agreement",
            path: "/api/v1/agreements/active-one/resume".into(),
            token: p.consumer.0.clone(),
            body: json!({"reason": "x"}),
            status: 409,
            rule: "transition-not-allowed",
        },
        Rule {
            what: "a grant naming an unknown service",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| {
                v["grants"][0]["services"]["services"][0] = json!("TEST/GOV/1/pop/nothing/v1")
            }),
            status: 422,
            rule: "unknown-service",
        },
        Rule {
            what: "an unknown party",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| {
                v["parties"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"member": "TEST/GOV/404", "roles": ["observer"]}))
            }),
            status: 422,
            rule: "unknown-party",
        },
        Rule {
            what: "a provider that offers no service",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| v["parties"][1]["roles"] = json!(["consumer", "provider"])),
            status: 422,
            rule: "provider-without-service",
        },
        Rule {
            what: "overlapping grants with conflicting limits",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| {
                let mut g = v["grants"][0].clone();
                g["id"] = json!("again");
                g["quotas"][0]["limit"] = json!(9);
                v["grants"].as_array_mut().unwrap().push(g);
            }),
            status: 422,
            rule: "conflicting-grants",
        },
        Rule {
            what: "validity ending before it starts",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| v["validity"]["end"] = json!("2025-01-01T00:00:00Z")),
            status: 422,
            rule: "validity-end-before-start",
        },
        Rule {
            what: "an unknown purpose",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| v["grants"][0]["purposes"][0] = json!("marketing")),
            status: 422,
            rule: "unknown-purpose",
        },
        Rule {
            what: "a zero quota",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| v["grants"][0]["quotas"][0]["limit"] = json!(0)),
            status: 422,
            rule: "quota-not-positive",
        },
        Rule {
            what: "a negative quota",
            path: "/api/v1/agreements".into(),
            token: p.consumer.0.clone(),
            body: with(&|v| v["grants"][0]["quotas"][0]["limit"] = json!(-10)),
            status: 422,
            rule: "quota-not-positive",
        },
        Rule {
            what: "a draft by a non-party",
            path: "/api/v1/agreements".into(),
            token: p.outsider.0.clone(),
            body: with(&|_| {}),
            status: 403,
            rule: "not-a-party",
        },
        Rule {
            what: "a draft by the federation administrator",
            path: "/api/v1/agreements".into(),
            token: t.admin_token.clone(),
            body: with(&|_| {}),
            status: 403,
            rule: "not-a-party",
        },
        Rule {
            what: "suspension by a non-party",
            path: "/api/v1/agreements/active-one/suspend".into(),
            token: p.outsider.0.clone(),
            body: json!({"reason": "x"}),
            status: 403,
            rule: "not-a-party",
        },
    ];
    let before = t.snapshot().await;
    for case in cases {
        let (status, body) = t.post(&case.path, &case.token, case.body).await;
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(body["rule"], case.rule, "{}: {body}", case.what);
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            case.what
        );
        assert_eq!(
            t.snapshot().await,
            before,
            "{} changed the database",
            case.what
        );
    }
    let (status, body) = t
        .post(
            "/api/v1/agreements",
            &p.consumer.0,
            json!({"id": "active-one", "terms": terms()}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = t
        .post(
            "/api/v1/agreements/active-one/suspend",
            &p.consumer.0,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("reason"))
    );

    // Terms changed behind the registry's back after proposal: the digest
    // no longer matches, so no signature is accepted and verification fails.
    crate::support::execute(
        &t.database_url(),
        "UPDATE agreement_versions SET terms = REPLACE(terms, '1000', '999999') WHERE agreement_id = 'proposed-one'",
    )
    .await;
    let (status, body) = t
        .post(
            &sign_path,
            &p.consumer.0,
            signature(CONSUMER, &p.consumer.1, &pdigest),
        )
        .await;
    assert_eq!(
        (status, body["rule"].as_str()),
        (409, Some("terms-changed-after-proposal")),
        "{body}"
    );
    crate::support::execute(
        &t.database_url(),
        "UPDATE agreement_versions SET terms = REPLACE(terms, '1000', '999999') WHERE agreement_id = 'active-one'",
    )
    .await;
    let (_, verification) = t
        .get("/api/v1/agreements/active-one/versions/1/verification")
        .await;
    assert_eq!(verification["valid"], false, "{verification}");
    assert_eq!(verification["digest_matches"], false);
    assert!(verification["parties"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["valid"] == false));
}

async fn decisions_name_the_agreement_or_the_reason(engine: Engine) {
    let Some(p) = parties(engine).await else {
        return;
    };
    let t = &p.t;
    let mut windowed = terms();
    windowed["grants"][0]["window"] =
        json!({"from": "2026-03-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"});
    activate(&p, "town-residence", windowed).await;
    let request = |patch: &dyn Fn(&mut Value)| {
        let mut r = residence_request();
        r["at"] = json!("2026-03-15T12:00:00Z");
        patch(&mut r);
        r
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("permitted", request(&|_| {}), "permit"),
        (
            "another service of the parties",
            request(&|r| r["service"] = json!("TEST/GOV/1/pop/family/v1")),
            "service-not-covered",
        ),
        (
            "a client with no agreement",
            request(&|r| r["client"] = json!("TEST/NGO/3/intake")),
            "no-agreement",
        ),
        (
            "another purpose",
            request(&|r| r["purpose"] = json!("tax-assessment")),
            "purpose-not-covered",
        ),
        (
            "no purpose",
            request(&|r| r["purpose"] = Value::Null),
            "purpose-not-covered",
        ),
        (
            "a write",
            request(&|r| r["method"] = json!("DELETE")),
            "operation-not-covered",
        ),
        (
            "another path",
            request(&|r| r["path"] = json!("/persons/1/income")),
            "operation-not-covered",
        ),
        (
            "outside the grant's window",
            request(&|r| r["at"] = json!("2026-05-01T00:00:00Z")),
            "outside-validity",
        ),
        (
            "before the agreement",
            request(&|r| r["at"] = json!("2025-06-01T00:00:00Z")),
            "outside-validity",
        ),
        (
            "no data subject",
            request(&|r| r["data_subject"] = json!(false)),
            "data-subject-required",
        ),
    ];
    for (what, req, expected) in cases {
        let d = decide(t, req).await;
        if expected == "permit" {
            assert_eq!(d["decision"], "permit", "{what}: {d}");
            assert_eq!(d["agreement"], "town-residence");
        } else {
            assert_eq!(d["decision"], "deny", "{what}: {d}");
            assert_eq!(d["reason"], expected, "{what}: {d}");
            assert!(d["explanation"].as_str().unwrap().len() > 10, "{what}");
        }
    }
    let (_, _) = t
        .post(
            "/api/v1/agreements/town-residence/suspend",
            &p.provider.0,
            json!({"reason": "incident"}),
        )
        .await;
    assert_eq!(
        decide(t, request(&|_| {})).await["reason"],
        "agreement-suspended"
    );
    let (status, problem) = t
        .post(
            "/api/v1/decisions",
            "unused",
            json!({"client": "nope", "service": RESIDENCE, "method": "GET"}),
        )
        .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("client"))
    );
}

async fn a_user_runs_an_agreement_from_the_cli_alone(engine: Engine) {
    let Some(p) = parties(engine).await else {
        return;
    };
    let t = &p.t;
    let dir = tempfile::tempdir().unwrap();
    let run = |token: &str, args: &[&str]| {
        let mut full = vec![
            "--registry".to_owned(),
            t.url.clone(),
            "--token".to_owned(),
            token.to_owned(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        async move {
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            accord(&refs).await
        }
    };
    // Each party makes and registers its own key.
    let mut keys = Vec::new();
    for (member, token) in [(PROVIDER, &p.provider.0), (CONSUMER, &p.consumer.0)] {
        let key = dir.path().join(format!("{}.key", member.replace('/', "_")));
        let out = accord(&["member", "key", "generate", "--out", key.to_str().unwrap()]).await;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(crate::support::file_mode(&key), 0o600);
        let out = run(
            token,
            &[
                "member",
                "key",
                "register",
                member,
                "--key",
                key.to_str().unwrap(),
            ],
        )
        .await;
        assert!(out.status.success(), "{}", stderr(&out));
        keys.push(key);
    }
    let terms_file = temp_file(dir.path(), "terms.json", &terms().to_string());
    let out = run(
        &p.consumer.0,
        &[
            "agreement",
            "draft",
            "cli-residence",
            "--terms",
            terms_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&p.consumer.0, &["agreement", "propose", "cli-residence"]).await;
    assert!(stdout(&out).contains("digest"), "{}", stdout(&out));
    let out = run(
        &p.consumer.0,
        &[
            "agreement",
            "sign",
            "cli-residence",
            "--member",
            CONSUMER,
            "--key",
            keys[1].to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("awaiting: {PROVIDER}")),
        "{}",
        stdout(&out)
    );
    let out = run(
        &p.provider.0,
        &[
            "agreement",
            "sign",
            "cli-residence",
            "--member",
            PROVIDER,
            "--key",
            keys[0].to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        stdout(&out).contains("the agreement is active"),
        "{}",
        stdout(&out)
    );
    let out = run(&p.provider.0, &["agreement", "show", "cli-residence"]).await;
    assert!(
        stdout(&out).contains("active") && stdout(&out).contains("social-benefit-eligibility"),
        "{}",
        stdout(&out)
    );
    let out = accord(&["--registry", &t.url, "agreement", "verify", "cli-residence"]).await;
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("every party signed"),
        "{}",
        stdout(&out)
    );

    let explain = |extra: &[&str]| {
        let mut args = vec![
            "--registry",
            &t.url,
            "agreement",
            "explain",
            "--client",
            "TEST/MUN/2/benefits",
            "--service",
            RESIDENCE,
            "--method",
            "GET",
            "--path",
            "/persons/38001010000/residence",
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move { accord(&args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let out = explain(&["--purpose", "social-benefit-eligibility", "--subject"]).await;
    assert!(
        stdout(&out)
            .starts_with("PERMIT: permitted by agreement cli-residence version 1, grant residence"),
        "{}",
        stdout(&out)
    );
    let out = explain(&["--purpose", "tax-assessment", "--subject"]).await;
    assert!(
        stdout(&out).starts_with("DENY (purpose-not-covered)"),
        "{}",
        stdout(&out)
    );

    let mut amended = terms();
    amended["grants"][0]["quotas"][0]["limit"] = json!(5000);
    let amended_file = temp_file(dir.path(), "amended.json", &amended.to_string());
    let out = run(
        &p.provider.0,
        &[
            "agreement",
            "amend",
            "cli-residence",
            "--terms",
            amended_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        stdout(&out).contains("drafted version 2"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = run(&p.provider.0, &["agreement", "history", "cli-residence"]).await;
    assert!(
        stdout(&out).contains("amend") && stdout(&out).contains("activate"),
        "{}",
        stdout(&out)
    );

    let out = accord(&[
        "--registry",
        &t.url,
        "agreement",
        "export",
        "cli-residence",
        "--format",
        "odrl",
        "--version",
        "1",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let odrl: Value = serde_json::from_str(&stdout(&out)).unwrap();
    crate::odrl::assert_valid_odrl_agreement(&odrl);

    // An ODRL Offer (here: the export, offered anew) imports as a draft.
    let mut offer = odrl.clone();
    offer["@type"] = json!("Offer");
    let offer_file = temp_file(dir.path(), "offer.json", &offer.to_string());
    let out = run(
        &p.consumer.0,
        &[
            "agreement",
            "import",
            "--offer",
            offer_file.to_str().unwrap(),
            "--id",
            "from-offer",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, imported) = t.get("/api/v1/agreements/from-offer").await;
    assert_eq!(imported["current"]["state"], "draft");
    assert_eq!(
        imported["current"]["terms"]["grants"],
        terms()["grants"],
        "the grants survive export and import"
    );

    // A refusal from the CLI names the rule.
    let out = run(
        &p.provider.0,
        &[
            "agreement",
            "sign",
            "cli-residence",
            "--member",
            PROVIDER,
            "--key",
            keys[0].to_str().unwrap(),
            "--version",
            "1",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("transition-not-allowed"),
        "{}",
        stderr(&out)
    );
}

async fn expiry_follows_the_validity_period(engine: Engine) {
    let Some(p) = parties(engine).await else {
        return;
    };
    let t = &p.t;
    let end = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let mut short = terms();
    short["validity"]["end"] = json!(end
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap());
    activate(&p, "short-lived", short).await;
    assert_eq!(decide(t, residence_request()).await["decision"], "permit");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let (_, view) = t.get("/api/v1/agreements/short-lived").await;
    assert_eq!(view["current"]["state"], "expired", "{view}");
    assert!(view["in_force"].is_null());
    let denied = decide(t, residence_request()).await;
    assert_eq!(denied["reason"], "no-agreement", "{denied}");
    let (_, history) = t.get("/api/v1/agreements/short-lived/history").await;
    let last = history["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("expire"), Some("registry"))
    );
    let (status, problem) = t
        .post(
            "/api/v1/agreements/short-lived/suspend",
            &p.provider.0,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(
        (status, problem["rule"].as_str()),
        (409, Some("transition-not-allowed"))
    );
}

async fn gateways_get_a_signed_configuration_that_follows_changes(engine: Engine) {
    use accord_domain::configuration::SignedConfiguration;
    let Some(p) = parties(engine).await else {
        return;
    };
    let t = &p.t;
    activate(&p, "town-residence", terms()).await;
    let (status, body) = t
        .post(
            "/api/v1/gateway-certificates",
            &t.admin_token,
            json!({"member": PROVIDER, "gateway": "gw1", "address": "https://127.0.0.1:9443"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let revoked_serial = body["certificate"]["serial"].as_str().unwrap().to_owned();
    let (status, body) = t
        .post(
            "/api/v1/gateway-certificates",
            &t.admin_token,
            json!({"member": PROVIDER, "gateway": "gw1", "address": "https://127.0.0.1:9443"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let valid_serial = body["certificate"]["serial"].as_str().unwrap().to_owned();
    let (status, _) = t
        .post(
            &format!("/api/v1/gateway-certificates/{revoked_serial}/revoke"),
            &t.admin_token,
            json!({"reason": "rotated"}),
        )
        .await;
    assert_eq!(status, 200);

    let (_, _, anchor) = t
        .call("GET", "/api/v1/federation/signing-key.pem", None, None)
        .await;
    let anchor = accord_ca::parse_public_key_pem(anchor.as_str().unwrap()).unwrap();
    let response = t
        .http
        .get(format!("{}/api/v1/federation/configuration", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let signed: SignedConfiguration = response.json().await.unwrap();
    signed
        .verify(&anchor, "TEST", None)
        .expect("the configuration verifies with the anchor");
    assert_eq!(etag, format!("\"{}\"", signed.digest));
    let c = &signed.payload;
    assert_eq!(c.agreements.len(), 1);
    assert_eq!(
        (c.agreements[0].id.as_str(), c.agreements[0].state.as_str()),
        ("town-residence", "active")
    );
    assert!(c
        .services
        .iter()
        .any(|s| s.id.to_string() == RESIDENCE && s.personal_data));
    let gateway = c
        .gateways
        .iter()
        .find(|g| g.member.to_string() == PROVIDER)
        .unwrap();
    assert_eq!(
        gateway
            .certificates
            .iter()
            .map(|c| c.serial.as_str())
            .collect::<Vec<_>>(),
        [valid_serial.as_str()]
    );
    assert_eq!(c.revoked_certificates.len(), 1);
    assert_eq!(c.revoked_certificates[0].serial, revoked_serial);
    assert!(c
        .purposes
        .contains(&"social-benefit-eligibility".to_owned()));

    // Unchanged: 304 at once.
    let response = t
        .http
        .get(format!("{}/api/v1/federation/configuration", t.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);

    // A long poll returns as soon as something changes: here a suspension.
    let suspender = {
        let http = t.http.clone();
        let url = format!("{}/api/v1/agreements/town-residence/suspend", t.url);
        let token = p.provider.0.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            http.post(url)
                .bearer_auth(token)
                .json(&json!({"reason": "incident"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let started = std::time::Instant::now();
    let response = t
        .http
        .get(format!("{}/api/v1/federation/configuration?wait=20", t.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the change arrived within seconds"
    );
    assert_eq!(suspender.await.unwrap(), 200);
    let newer: SignedConfiguration = response.json().await.unwrap();
    newer
        .verify(&anchor, "TEST", Some(&signed.payload.as_of))
        .expect("a newer configuration verifies");
    assert_eq!(newer.payload.agreements[0].state.as_str(), "suspended");
    assert!(
        signed
            .verify(&anchor, "TEST", Some(&newer.payload.as_of))
            .is_err(),
        "an older one is refused once a newer is held"
    );
}
