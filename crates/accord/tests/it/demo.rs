//! `accord demo`, as a newcomer runs it from the README: a whole federation
//! served from a fresh directory, browsable through the API and the CLI.

use serde_json::Value;

use crate::support::{accord, file_mode, stderr, stdout, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_a_browsable_federation() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let server = Server::start(&[
        "demo",
        "--dir",
        demo_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--gateway-ports",
        "0",
    ])
    .await;
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{url}{path}"));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };

    let federation = get("/api/v1/federation").await;
    assert_eq!(federation["instance"], "DEMO");
    assert!(federation["members"].as_i64().unwrap() >= 8);
    assert!(federation["services"].as_i64().unwrap() >= 10);

    // Every level of government, three sectors and a second country.
    for level in ["local", "regional", "national", "supranational"] {
        let page = get(&format!("/api/v1/members?level={level}")).await;
        assert!(page["total"].as_i64().unwrap() >= 1, "no {level} member");
    }
    for sector in ["public", "private", "civil-society"] {
        let page = get(&format!("/api/v1/members?sector={sector}")).await;
        assert!(page["total"].as_i64().unwrap() >= 1, "no {sector} member");
    }
    let finland = get("/api/v1/members?country=FI").await;
    assert_eq!(finland["total"], 1);
    let local = get("/api/v1/members?level=local").await;
    assert!(local["total"].as_i64().unwrap() >= 2, "two municipalities");

    // Every service's OpenAPI document is served and is OpenAPI 3.
    let services = get("/api/v1/services?per_page=200").await;
    for service in services["items"].as_array().unwrap() {
        let detail = get(&format!(
            "/api/v1/services/{}",
            service["id"].as_str().unwrap()
        ))
        .await;
        let doc = get(detail["openapi_url"].as_str().unwrap()).await;
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            service["id"]
        );
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
    let certs = get("/api/v1/gateway-certificates").await;
    assert!(!certs.as_array().unwrap().is_empty());

    // The banner's commands work as printed.
    let banner = server.banner.join("\n");
    assert!(banner.contains("accord --registry"), "{banner}");
    assert!(
        banner.contains("agreements  4 active, 1 proposed and awaiting a signature, 1 suspended"),
        "{banner}"
    );
    let out = accord(&[
        "--registry",
        &url,
        "member",
        "list",
        "--level",
        "local",
        "--country",
        "EE",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("DEMO/MUN/"), "{}", stdout(&out));
    let out = accord(&["--registry", &url, "service", "list", "--q", "health"]).await;
    assert!(
        out.status.success() && stdout(&out).contains("DEMO/"),
        "{}",
        stdout(&out)
    );

    // The scripted exchanges went through the gateways as the agreements
    // say, and the printed curl lines go through two gateways.
    assert!(
        banner.contains(
            "26 exchanges: 10 answered by the provider, 15 denied by the agreements, 1 failed"
        ),
        "{banner}"
    );
    assert!(!banner.contains("not as the script expects"), "{banner}");
    let examples: Vec<&str> = banner
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("http://") && l.contains("/r1/"))
        .collect();
    assert_eq!(examples.len(), 2, "{banner}");
    let call = |url: &str, purpose: bool| {
        let mut request = http
            .get(url)
            .header("X-Road-Client", "DEMO/MUN/75000001/social-benefits")
            .header("X-Accord-Subject", "38001010008");
        if purpose {
            request = request.header("X-Accord-Purpose", "social-benefit-eligibility");
        }
        request.send()
    };
    let permitted = call(examples[0], true).await.unwrap();
    assert_eq!(permitted.status(), 200);
    assert_eq!(
        permitted.headers()["x-accord-agreement"],
        "agreement=tallinn-residence-benefits; version=1; grant=residence-and-family"
    );
    let denied = call(examples[1], false).await.unwrap();
    assert_eq!(
        denied.headers()["x-road-error"],
        "Server.ServerProxy.AccessDenied.purpose-not-covered"
    );
    let verify = banner
        .lines()
        .find(|l| l.contains("audit verify --database"))
        .expect("the banner shows how to verify a log");
    let args: Vec<&str> = verify.split_whitespace().skip(1).collect();
    let out = accord(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("intact"), "{}", stdout(&out));

    // Secrets stay in owner-only files; a municipality's token is scoped.
    assert_eq!(file_mode(&demo_dir.join("admin.token")), 0o600);
    let town_token = demo_dir.join("tokens/DEMO_MUN_75000001.token");
    assert_eq!(file_mode(&town_token), 0o600);
    let token_arg = town_token.to_str().unwrap();
    let out = accord(&[
        "--registry",
        &url,
        "--token-file",
        token_arg,
        "subsystem",
        "add",
        "DEMO/MUN/75000001/open-data",
        "--name",
        "Open data",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = accord(&[
        "--registry",
        &url,
        "--token-file",
        token_arg,
        "subsystem",
        "add",
        "DEMO/GOV/70000002/open-data",
        "--name",
        "Open data",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));

    // Agreements across levels and borders, in every lifecycle state.
    let agreements = get("/api/v1/agreements").await;
    let states: Vec<(&str, &str)> = agreements
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert!(
        states.contains(&("food-bank-eligibility", "proposed")),
        "{states:?}"
    );
    assert!(
        states.contains(&("registered-letters-tax-notices", "suspended")),
        "{states:?}"
    );
    assert!(
        states.iter().filter(|(_, s)| *s == "active").count() >= 4,
        "{states:?}"
    );
    for (id, state) in &states {
        let view = get(&format!("/api/v1/agreements/{id}")).await;
        let version = view["current"]["version"].as_u64().unwrap();
        let odrl = get(&format!("/api/v1/agreements/{id}/versions/{version}/odrl")).await;
        crate::odrl::assert_valid_odrl_agreement(&odrl);
        let check = get(&format!(
            "/api/v1/agreements/{id}/versions/{version}/verification"
        ))
        .await;
        assert_eq!(check["valid"], *state != "proposed", "{id}: {check}");
    }
    let budgets = get("/api/v1/agreements/social-benefit-data-platform").await;
    let funders = budgets["current"]["terms"]["commitments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["contribution"]["type"] == "budget")
        .count();
    assert!(funders >= 3, "budget commitments from several parties");
    let out = accord(&[
        "--registry",
        &url,
        "agreement",
        "explain",
        "--client",
        "DEMO/MUN/75000001/social-benefits",
        "--service",
        "DEMO/GOV/70000002/population-register/residence/v1",
        "--path",
        "/persons/38001010000/residence",
        "--purpose",
        "social-benefit-eligibility",
        "--subject",
    ])
    .await;
    assert!(stdout(&out).starts_with("PERMIT"), "{}", stdout(&out));

    // The banner's signing command completes the food-bank agreement.
    let sign = banner
        .lines()
        .find(|l| l.contains("agreement sign food-bank-eligibility"))
        .expect("the banner shows how to sign");
    let args: Vec<&str> = sign.split_whitespace().skip(1).collect();
    let out = accord(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("active"), "{}", stdout(&out));

    // Running the demo again on the same directory reuses the federation.
    server.stop().await;
    let again = Server::start(&[
        "demo",
        "--dir",
        demo_dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--gateway-ports",
        "0",
    ])
    .await;
    assert!(
        again.banner.iter().any(|l| l.contains("reusing")),
        "{:?}",
        again.banner
    );
}
