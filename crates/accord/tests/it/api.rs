//! The registry's HTTP API, driven over real TCP on both engines.

use serde_json::{json, Value};

use crate::support::{on_both_engines, openapi_document, service_body, Engine, TestRegistry};

on_both_engines!(
    catalogue_is_written_and_read_back,
    catalogue_search_filters_and_pages,
    bad_input_is_refused_and_changes_nothing,
    member_administrators_are_scoped_to_their_member,
    gateway_certificates_are_issued_listed_and_revoked,
    tokens_are_created_used_and_revoked,
);

async fn catalogue_is_written_and_read_back(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    let admin = t.admin_token.clone();
    let (status, ministry) = t
        .post(
            "/api/v1/members",
            &admin,
            json!({"id": "TEST/GOV/100", "name": "Ministry of the Interior", "level": "national",
                   "country": "EE", "sector": "public"}),
        )
        .await;
    assert_eq!(status, 201, "{ministry}");
    let (status, _, body) = t
        .call(
            "POST",
            "/api/v1/members",
            Some(&admin),
            Some(json!({
                "id": "TEST/GOV/101", "name": "  Population Register  ", "level": "national",
                "country": "EE", "sector": "public", "parent": "TEST/GOV/100",
                "contact": {"name": "Mart Kask", "email": "mart@register.example"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "Population Register", "names are trimmed");
    assert_eq!(body["parent"], "TEST/GOV/100");

    let (status, sub) = t
        .post(
            "/api/v1/members/TEST/GOV/101/subsystems",
            &admin,
            json!({"code": "population", "name": "Population register system"}),
        )
        .await;
    assert_eq!(status, 201, "{sub}");
    assert_eq!(sub["id"], "TEST/GOV/101/population");

    let document = openapi_document("Residence");
    let (status, service) = t
        .post(
            "/api/v1/members/TEST/GOV/101/subsystems/population/services",
            &admin,
            json!({
                "code": "residence", "version": "v1", "title": "Residence of a person",
                "description": "Address of residence", "personal_data": true,
                "data_categories": ["identity", "address", "identity"],
                "openapi": document,
            }),
        )
        .await;
    assert_eq!(status, 201, "{service}");
    assert_eq!(service["id"], "TEST/GOV/101/population/residence/v1");
    assert_eq!(service["openapi_version"], "3.0.3");
    assert_eq!(service["data_categories"], json!(["identity", "address"]));

    let (status, member) = t.get("/api/v1/members/TEST/GOV/101").await;
    assert_eq!(status, 200);
    assert_eq!(member["contact_email"], "mart@register.example");
    assert_eq!(member["subsystems"][0]["id"], "TEST/GOV/101/population");

    let (status, fetched) = t
        .get("/api/v1/services/TEST/GOV/101/population/residence/v1")
        .await;
    assert_eq!(status, 200);
    assert_eq!(fetched["title"], "Residence of a person");
    let openapi_url = fetched["openapi_url"].as_str().unwrap().to_owned();
    let (status, content_type, stored) = t.call("GET", &openapi_url, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    assert_eq!(
        stored, document,
        "the OpenAPI document is served as registered"
    );

    let (status, missing) = t
        .get("/api/v1/services/TEST/GOV/101/population/residence/v2")
        .await;
    assert_eq!(status, 404);
    assert_eq!(missing["type"], "urn:accord:problem:not-found");

    let (status, fed) = t.get("/api/v1/federation").await;
    assert_eq!(status, 200);
    assert_eq!(
        (fed["members"].as_i64(), fed["services"].as_i64()),
        (Some(2), Some(1))
    );
    let (status, _, ca) = t.call("GET", "/api/v1/federation/ca.pem", None, None).await;
    assert_eq!(status, 200);
    assert!(ca
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}

async fn catalogue_search_filters_and_pages(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    let members = [
        ("TEST/MUN/1", "local", "EE", "public"),
        ("TEST/MUN/2", "local", "FI", "public"),
        ("TEST/GOV/3", "regional", "EE", "public"),
        ("TEST/GOV/4", "national", "EE", "public"),
        ("TEST/NGO/5", "national", "EE", "civil-society"),
        ("TEST/COM/6", "national", "LV", "private"),
    ];
    for (id, level, country, sector) in members {
        t.add_member(id, level, country, sector).await;
    }
    for (i, (id, ..)) in members.iter().enumerate() {
        for n in 0..3 {
            let title = if n == 0 {
                "School enrolment"
            } else {
                "Vaccination status"
            };
            t.add_service(id, "main", &format!("svc{i}{n}"), title)
                .await;
        }
    }
    let total = |v: &Value| v["total"].as_i64().unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, local) = t.get("/api/v1/members?level=local").await;
    assert_eq!(ids(&local), ["TEST/MUN/1", "TEST/MUN/2"]);
    let (_, ee_national) = t.get("/api/v1/members?level=national&country=EE").await;
    assert_eq!(ids(&ee_national), ["TEST/GOV/4", "TEST/NGO/5"]);
    let (_, civil) = t.get("/api/v1/members?sector=civil-society").await;
    assert_eq!(ids(&civil), ["TEST/NGO/5"]);
    let (_, by_text) = t.get("/api/v1/members?q=member%20test/com").await;
    assert_eq!(
        ids(&by_text),
        ["TEST/COM/6"],
        "text search is case-insensitive"
    );

    let (_, schools) = t.get("/api/v1/services?q=SCHOOL").await;
    assert_eq!(total(&schools), 6);
    let (_, local_vacc) = t.get("/api/v1/services?level=local&q=vaccination").await;
    assert_eq!(total(&local_vacc), 4);
    assert!(ids(&local_vacc)
        .iter()
        .all(|id| id.starts_with("TEST/MUN/")));
    let (_, of_member) = t.get("/api/v1/services?member=TEST/GOV/3").await;
    assert_eq!(total(&of_member), 3);
    let (_, no_personal) = t.get("/api/v1/services?personal_data=false").await;
    assert_eq!(total(&no_personal), 0);
    let (_, wildcard) = t.get("/api/v1/services?q=%25").await;
    assert_eq!(total(&wildcard), 0, "LIKE wildcards are matched literally");

    // Paging: 18 services, 5 per page, in id order, no overlaps.
    let mut seen = Vec::new();
    for page in 1..=4 {
        let (status, body) = t
            .get(&format!("/api/v1/services?per_page=5&page={page}"))
            .await;
        assert_eq!(status, 200);
        assert_eq!(total(&body), 18);
        assert_eq!(body["page"], page);
        seen.extend(ids(&body));
    }
    assert_eq!(seen.len(), 18);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    let (_, past_end) = t.get("/api/v1/services?per_page=5&page=9").await;
    assert_eq!(ids(&past_end).len(), 0);
}

/// One request that must be refused: what it sends and what it must get.
struct Refusal {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    token: Who,
    body: Value,
    status: u16,
    problem: &'static str,
    /// A field the problem must name, or text its detail must contain.
    mentions: &'static str,
}

#[derive(Clone, Copy)]
enum Who {
    Nobody,
    Admin,
    Garbage,
    UnknownId,
    WrongSecret,
    Revoked,
    TownAdmin,
}

async fn bad_input_is_refused_and_changes_nothing(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    t.add_member("TEST/GOV/1", "national", "EE", "public").await;
    t.add_member("TEST/MUN/2", "local", "EE", "public").await;
    t.add_service("TEST/GOV/1", "registry", "persons", "Persons")
        .await;
    let town = t.member_token("TEST/MUN/2").await;
    let revoked = t.member_token("TEST/MUN/2").await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    let (status, _, _) = t
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{revoked_id}"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let wrong_secret = format!(
        "{}_{}",
        &t.admin_token[..t.admin_token.rfind('_').unwrap()],
        "x".repeat(43)
    );

    let member = |patch: Value| {
        let mut m = json!({"id": "TEST/GOV/9", "name": "New agency", "level": "national",
                           "country": "EE", "sector": "public"});
        for (k, v) in patch.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let service = |patch: Value| {
        let mut s = service_body("newsvc", "New service");
        for (k, v) in patch.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    };
    let svc_path = "/api/v1/members/TEST/GOV/1/subsystems/registry/services";
    use Who::*;
    let cases = vec![
        Refusal {
            what: "malformed member id",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"id": "TEST/GOV"})),
            status: 422,
            problem: "invalid-input",
            mentions: "id",
        },
        Refusal {
            what: "bad character in code",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"id": "TEST/GOV/a b"})),
            status: 422,
            problem: "invalid-input",
            mentions: "member code",
        },
        Refusal {
            what: "another federation's instance",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"id": "EE/GOV/9"})),
            status: 422,
            problem: "invalid-input",
            mentions: "instance",
        },
        Refusal {
            what: "unknown member class",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"id": "TEST/XYZ/9"})),
            status: 422,
            problem: "invalid-input",
            mentions: "member class",
        },
        Refusal {
            what: "unknown parent",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"parent": "TEST/GOV/404"})),
            status: 422,
            problem: "invalid-input",
            mentions: "parent",
        },
        Refusal {
            what: "own parent",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"parent": "TEST/GOV/9"})),
            status: 422,
            problem: "invalid-input",
            mentions: "parent",
        },
        Refusal {
            what: "duplicate member",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"id": "TEST/GOV/1"})),
            status: 409,
            problem: "conflict",
            mentions: "TEST/GOV/1 already exists",
        },
        Refusal {
            what: "unknown country",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"country": "XX"})),
            status: 422,
            problem: "invalid-input",
            mentions: "country",
        },
        Refusal {
            what: "lower-case country",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"country": "ee"})),
            status: 422,
            problem: "invalid-input",
            mentions: "country",
        },
        Refusal {
            what: "unknown level",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"level": "federal"})),
            status: 422,
            problem: "invalid-input",
            mentions: "level",
        },
        Refusal {
            what: "oversized name",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"name": "x".repeat(201)})),
            status: 422,
            problem: "invalid-input",
            mentions: "name",
        },
        Refusal {
            what: "bad contact e-mail",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"contact": {"email": "nobody"}})),
            status: 422,
            problem: "invalid-input",
            mentions: "contact.email",
        },
        Refusal {
            what: "missing fields",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: json!({"id": "TEST/GOV/9"}),
            status: 422,
            problem: "invalid-input",
            mentions: "sector",
        },
        Refusal {
            what: "unknown field",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"budget": 3})),
            status: 422,
            problem: "invalid-input",
            mentions: "budget",
        },
        Refusal {
            what: "no token",
            method: "POST",
            path: "/api/v1/members",
            token: Nobody,
            body: member(json!({})),
            status: 401,
            problem: "unauthorized",
            mentions: "Bearer",
        },
        Refusal {
            what: "garbage token",
            method: "POST",
            path: "/api/v1/members",
            token: Garbage,
            body: member(json!({})),
            status: 401,
            problem: "unauthorized",
            mentions: "malformed",
        },
        Refusal {
            what: "unknown token",
            method: "POST",
            path: "/api/v1/members",
            token: UnknownId,
            body: member(json!({})),
            status: 401,
            problem: "unauthorized",
            mentions: "not known",
        },
        Refusal {
            what: "wrong secret",
            method: "POST",
            path: "/api/v1/members",
            token: WrongSecret,
            body: member(json!({})),
            status: 401,
            problem: "unauthorized",
            mentions: "secret",
        },
        Refusal {
            what: "revoked token",
            method: "POST",
            path: "/api/v1/members",
            token: Revoked,
            body: member(json!({})),
            status: 401,
            problem: "unauthorized",
            mentions: "revoked",
        },
        Refusal {
            what: "member admin adds a member",
            method: "POST",
            path: "/api/v1/members",
            token: TownAdmin,
            body: member(json!({})),
            status: 403,
            problem: "forbidden",
            mentions: "federation administrator",
        },
        Refusal {
            what: "member admin touches another member",
            method: "POST",
            path: "/api/v1/members/TEST/GOV/1/subsystems",
            token: TownAdmin,
            body: json!({"code": "x", "name": "X"}),
            status: 403,
            problem: "forbidden",
            mentions: "TEST/GOV/1",
        },
        Refusal {
            what: "member admin adds another member's service",
            method: "POST",
            path: svc_path,
            token: TownAdmin,
            body: service(json!({})),
            status: 403,
            problem: "forbidden",
            mentions: "TEST/GOV/1",
        },
        Refusal {
            what: "subsystem of unknown member",
            method: "POST",
            path: "/api/v1/members/TEST/GOV/404/subsystems",
            token: Admin,
            body: json!({"code": "x", "name": "X"}),
            status: 404,
            problem: "not-found",
            mentions: "TEST/GOV/404",
        },
        Refusal {
            what: "duplicate subsystem",
            method: "POST",
            path: "/api/v1/members/TEST/GOV/1/subsystems",
            token: Admin,
            body: json!({"code": "registry", "name": "X"}),
            status: 409,
            problem: "conflict",
            mentions: "already exists",
        },
        Refusal {
            what: "subsystem code with slash",
            method: "POST",
            path: "/api/v1/members/TEST/GOV/1/subsystems",
            token: Admin,
            body: json!({"code": "a/b", "name": "X"}),
            status: 422,
            problem: "invalid-input",
            mentions: "code",
        },
        Refusal {
            what: "service of unknown subsystem",
            method: "POST",
            path: "/api/v1/members/TEST/GOV/1/subsystems/nope/services",
            token: Admin,
            body: service(json!({})),
            status: 404,
            problem: "not-found",
            mentions: "nope",
        },
        Refusal {
            what: "duplicate service",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(json!({"code": "persons"})),
            status: 409,
            problem: "conflict",
            mentions: "already exists",
        },
        Refusal {
            what: "OpenAPI that is not JSON",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(json!({"openapi": "{not json"})),
            status: 422,
            problem: "invalid-input",
            mentions: "openapi",
        },
        Refusal {
            what: "Swagger 2 document",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(json!({"openapi": {"swagger": "2.0", "info": {}}})),
            status: 422,
            problem: "invalid-input",
            mentions: "openapi",
        },
        Refusal {
            what: "OpenAPI without paths",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(
                json!({"openapi": {"openapi": "3.0.0", "info": {"title": "t", "version": "1"}}}),
            ),
            status: 422,
            problem: "invalid-input",
            mentions: "openapi",
        },
        Refusal {
            what: "bad data category",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(json!({"data_categories": ["Health Data"]})),
            status: 422,
            problem: "invalid-input",
            mentions: "data_categories[0]",
        },
        Refusal {
            what: "oversized description",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(json!({"description": "d".repeat(4001)})),
            status: 422,
            problem: "invalid-input",
            mentions: "description",
        },
        Refusal {
            what: "missing personal_data",
            method: "POST",
            path: svc_path,
            token: Admin,
            body: service(json!({"personal_data": null})),
            status: 422,
            problem: "invalid-input",
            mentions: "personal_data",
        },
        Refusal {
            what: "body over the size limit",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: member(json!({"name": "x".repeat(3 * 1024 * 1024)})),
            status: 413,
            problem: "payload-too-large",
            mentions: "",
        },
        Refusal {
            what: "malformed JSON body",
            method: "POST",
            path: "/api/v1/members",
            token: Admin,
            body: Value::Null,
            status: 400,
            problem: "malformed-request",
            mentions: "",
        },
        Refusal {
            what: "bad search filter",
            method: "GET",
            path: "/api/v1/services?country=Estonia&per_page=500",
            token: Nobody,
            body: Value::Null,
            status: 422,
            problem: "invalid-input",
            mentions: "per_page",
        },
        Refusal {
            what: "non-numeric page",
            method: "GET",
            path: "/api/v1/members?page=first",
            token: Nobody,
            body: Value::Null,
            status: 400,
            problem: "malformed-request",
            mentions: "page",
        },
        Refusal {
            what: "unknown route",
            method: "GET",
            path: "/api/v1/agencies",
            token: Nobody,
            body: Value::Null,
            status: 404,
            problem: "not-found",
            mentions: "openapi.json",
        },
        Refusal {
            what: "token for unknown member",
            method: "POST",
            path: "/api/v1/tokens",
            token: Admin,
            body: json!({"role": "member-admin", "member": "TEST/GOV/404"}),
            status: 422,
            problem: "invalid-input",
            mentions: "member",
        },
        Refusal {
            what: "token with unknown role",
            method: "POST",
            path: "/api/v1/tokens",
            token: Admin,
            body: json!({"role": "root"}),
            status: 422,
            problem: "invalid-input",
            mentions: "role",
        },
        Refusal {
            what: "member admin creates a token",
            method: "POST",
            path: "/api/v1/tokens",
            token: TownAdmin,
            body: json!({"role": "federation-admin"}),
            status: 403,
            problem: "forbidden",
            mentions: "federation administrator",
        },
    ];
    let before = t.snapshot().await;
    for case in cases {
        let token = match case.token {
            Nobody => None,
            Admin => Some(t.admin_token.clone()),
            Garbage => Some("let-me-in".to_owned()),
            UnknownId => Some(format!("accord_{}_{}", "0".repeat(16), "s".repeat(43))),
            WrongSecret => Some(wrong_secret.clone()),
            Revoked => Some(revoked.clone()),
            TownAdmin => Some(town.clone()),
        };
        let mut request = t.http.request(
            case.method.parse().unwrap(),
            format!("{}{}", t.url, case.path),
        );
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        if case.method == "POST" {
            request = if case.body.is_null() {
                request
                    .header("content-type", "application/json")
                    .body("{\"id\": ")
            } else {
                request.json(&case.body)
            };
        }
        let response = request.send().await.unwrap();
        let (status, content_type, body) = crate::support::read(response).await;
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(content_type, "application/problem+json", "{}", case.what);
        assert_eq!(
            body["type"],
            format!("urn:accord:problem:{}", case.problem),
            "{}: {body}",
            case.what
        );
        assert_eq!(body["status"], case.status, "{}", case.what);
        assert!(body["title"].is_string(), "{}", case.what);
        let detail = body["detail"].as_str().unwrap_or_default();
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|f| f["field"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            fields.contains(&case.mentions) || detail.contains(case.mentions),
            "{}: expected {:?} in {body}",
            case.what,
            case.mentions
        );
        if status == 401 {
            assert!(
                !detail.contains(token.as_deref().unwrap_or("\u{0}")),
                "a token leaked into the error"
            );
        }
        assert_eq!(
            t.snapshot().await,
            before,
            "{} changed the database",
            case.what
        );
    }
}

async fn member_administrators_are_scoped_to_their_member(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    t.add_member("TEST/MUN/1", "local", "EE", "public").await;
    t.add_member("TEST/MUN/2", "local", "EE", "public").await;
    let town = t.member_token("TEST/MUN/1").await;
    let (status, body) = t
        .post(
            "/api/v1/members/TEST/MUN/1/subsystems",
            &town,
            json!({"code": "benefits", "name": "Benefits"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = t
        .post(
            "/api/v1/members/TEST/MUN/1/subsystems/benefits/services",
            &town,
            service_body("decisions", "Benefit decisions"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = t
        .post(
            "/api/v1/members/TEST/MUN/2/subsystems",
            &town,
            json!({"code": "benefits", "name": "Benefits"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = t
        .post(
            "/api/v1/gateway-certificates",
            &town,
            json!({"member": "TEST/MUN/2", "gateway": "gw1", "address": "https://127.0.0.1:9443"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = t
        .post(
            "/api/v1/gateway-certificates",
            &town,
            json!({"member": "TEST/MUN/1", "gateway": "gw1", "address": "https://127.0.0.1:9443"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, listed) = t.get("/api/v1/services?member=TEST/MUN/1").await;
    assert_eq!(listed["total"], 1);
}

async fn gateway_certificates_are_issued_listed_and_revoked(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    t.add_member("TEST/GOV/1", "national", "EE", "public").await;
    let admin = t.admin_token.clone();

    // The registry makes the key pair: the key is returned once.
    let (status, issued) = t
        .post(
            "/api/v1/gateway-certificates",
            &admin,
            json!({"member": "TEST/GOV/1", "gateway": "gw1", "address": "https://gw1.register.example:8443", "validity_days": 30}),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let cert = &issued["certificate"];
    assert!(issued["private_key_pem"]
        .as_str()
        .unwrap()
        .contains("PRIVATE KEY"));
    let pem = cert["certificate_pem"].as_str().unwrap();
    assert_eq!(
        accord_ca::certificate_fingerprint_sha256(pem).unwrap(),
        cert["fingerprint_sha256"].as_str().unwrap()
    );
    let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1;
    let x509 = der.parse_x509().unwrap();
    let ca_pem = t.registry.federation.ca_certificate_pem.clone();
    let ca_der = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .unwrap()
        .1;
    let ca = ca_der.parse_x509().unwrap();
    assert_eq!(x509.issuer(), ca.subject(), "issued by the federation CA");
    assert!(x509.verify_signature(Some(ca.public_key())).is_ok());
    assert!(format!("{:?}", x509.subject_alternative_name()).contains("gw1.register.example"));
    // The key is not kept: no private key anywhere in the database.
    assert!(t
        .snapshot()
        .await
        .iter()
        .all(|row| !row.contains("PRIVATE KEY")));

    // From a CSR: the member keeps its key.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["gw2.register.example".into()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let (status, from_csr) = t
        .post(
            "/api/v1/gateway-certificates",
            &admin,
            json!({"member": "TEST/GOV/1", "gateway": "gw2", "address": "https://gw2.register.example:8443", "csr_pem": csr}),
        )
        .await;
    assert_eq!(status, 201, "{from_csr}");
    assert!(from_csr["private_key_pem"].is_null());
    let issued_der = x509_parser::pem::parse_x509_pem(
        from_csr["certificate"]["certificate_pem"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .unwrap()
    .1;
    let issued_cert = issued_der.parse_x509().unwrap();
    assert_eq!(
        issued_cert.public_key().raw,
        key.public_key_der().as_slice(),
        "the CSR's key is certified"
    );

    let before = t.snapshot().await;
    for (body, field) in [
        (
            json!({"member": "TEST/GOV/1", "gateway": "gw3", "address": "https://gw3.example:1", "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
            "csr_pem",
        ),
        (
            json!({"member": "TEST/GOV/1", "gateway": "gw3", "address": "http://gw3.example:1"}),
            "address",
        ),
        (
            json!({"member": "TEST/GOV/1", "gateway": "gw3", "address": "https://gw3.example:1", "validity_days": 0}),
            "validity_days",
        ),
        (
            json!({"member": "TEST/GOV/404", "gateway": "gw3", "address": "https://gw3.example:1"}),
            "member",
        ),
        (
            json!({"member": "TEST/GOV/1", "gateway": "g w", "address": "https://gw3.example:1"}),
            "gateway",
        ),
    ] {
        let (status, problem) = t.post("/api/v1/gateway-certificates", &admin, body).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_eq!(
        t.snapshot().await,
        before,
        "refused certificate requests changed nothing"
    );

    let (_, gateways) = t.get("/api/v1/gateways?member=TEST/GOV/1").await;
    assert_eq!(gateways.as_array().unwrap().len(), 2);
    let (_, listed) = t
        .get("/api/v1/gateway-certificates?member=TEST/GOV/1")
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);

    let serial = cert["serial"].as_str().unwrap();
    let path = format!("/api/v1/gateway-certificates/{serial}/revoke");
    let (status, problem) = t.post(&path, &admin, json!({})).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("reason"))
    );
    let (status, revoked) = t
        .post(&path, &admin, json!({"reason": "key compromised"}))
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revocation_reason"], "key compromised");
    assert!(revoked["revoked_at"].is_string());
    let (status, again) = t.post(&path, &admin, json!({"reason": "again"})).await;
    assert_eq!(status, 409, "{again}");
    let (_, one) = t
        .get(&format!("/api/v1/gateway-certificates/{serial}"))
        .await;
    assert_eq!(one["revocation_reason"], "key compromised");
    let (status, _) = t
        .post(
            "/api/v1/gateway-certificates/ffffffffffffffff/revoke",
            &admin,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 404);
}

async fn tokens_are_created_used_and_revoked(engine: Engine) {
    let Some(t) = TestRegistry::start(engine).await else {
        return;
    };
    t.add_member("TEST/NGO/1", "national", "EE", "civil-society")
        .await;
    let (status, created) = t
        .post(
            "/api/v1/tokens",
            &t.admin_token,
            json!({"role": "member-admin", "member": "TEST/NGO/1", "label": "food bank CI"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&format!("accord_{id}_")));

    let (status, _) = t
        .post(
            "/api/v1/members/TEST/NGO/1/subsystems",
            &token,
            json!({"code": "aid", "name": "Aid"}),
        )
        .await;
    assert_eq!(status, 201);

    let (status, _, listed) = t
        .call("GET", "/api/v1/tokens", Some(&t.admin_token), None)
        .await;
    assert_eq!(status, 200);
    // The secret is base64url, which may itself contain '_'.
    let secret = token.strip_prefix(&format!("accord_{id}_")).unwrap();
    assert!(
        !listed.to_string().contains(secret),
        "listings never show secrets"
    );
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str() && t["label"] == "food bank CI"));
    assert!(
        t.snapshot().await.iter().all(|row| !row.contains(secret)),
        "secrets are stored hashed"
    );
    let (status, _, _) = t.call("GET", "/api/v1/tokens", Some(&token), None).await;
    assert_eq!(
        status, 403,
        "only the federation administrator lists tokens"
    );

    let (status, _, revoked) = t
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_string());
    let (status, problem) = t
        .post(
            "/api/v1/members/TEST/NGO/1/subsystems",
            &token,
            json!({"code": "aid2", "name": "Aid"}),
        )
        .await;
    assert_eq!(status, 401);
    assert!(problem["detail"].as_str().unwrap().contains("revoked"));
    let (status, _, _) = t
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{id}"),
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_real_routes() {
    let t = TestRegistry::start(Engine::Sqlite).await.unwrap();
    let (status, doc) = t.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/members",
        "/api/v1/members/{instance}/{class}/{code}",
        "/api/v1/members/{instance}/{class}/{code}/subsystems",
        "/api/v1/services",
        "/api/v1/gateway-certificates",
        "/api/v1/tokens",
        "/api/v1/federation",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every documented operation is routed: no "no such route" 404 and no
    // 405 for any of them.
    for (path, ops) in paths {
        let concrete = path
            .replace("{instance}", "TEST")
            .replace("{class}", "GOV")
            .replace("{code}", "1")
            .replace("{subsystem}", "s")
            .replace("{service}", "x")
            .replace("{version}", "v1")
            .replace("{serial}", "00")
            .replace("{id}", "0");
        for method in ops.as_object().unwrap().keys() {
            let (status, _, body) = t
                .call(
                    &method.to_uppercase(),
                    &concrete,
                    Some(&t.admin_token),
                    Some(json!({})),
                )
                .await;
            assert_ne!(status, 405, "{method} {path}");
            let unrouted = body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("no such route");
            assert!(!unrouted, "{method} {path} is documented but not routed");
        }
    }
}
