//! The `accord` binary, as an operator and a member's IT staff use it:
//! `registry init|serve` on each engine, then every catalogue command
//! against the served registry.

use serde_json::Value;

use crate::support::{
    accord, file_mode, on_both_engines, openapi_document, stderr, stdout, temp_file, Engine,
    Server, TestDb,
};

on_both_engines!(
    the_cli_runs_a_registry_from_init_to_revocation,
    registry_init_refuses_to_overwrite
);

async fn the_cli_runs_a_registry_from_init_to_revocation(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let mut storage = vec!["--data-dir", data_arg.as_str()];
    if let Some(url) = &db.url {
        storage.extend(["--database", url.as_str()]);
    }

    let mut init = vec![
        "registry",
        "init",
        "--instance",
        "EE",
        "--name",
        "Estonian federation",
    ];
    init.extend(&storage);
    let out = accord(&init).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("created federation EE"));
    let token_file = data.join("admin.token");
    assert_eq!(file_mode(&token_file), 0o600);
    for key in ["ca.key", "federation-signing.key"] {
        assert_eq!(file_mode(&data.join("keys").join(key)), 0o600, "{key}");
    }
    let token_file = token_file.to_str().unwrap().to_owned();

    let mut serve = vec!["registry", "serve", "--listen", "127.0.0.1:0"];
    serve.extend(&storage);
    let server = Server::start(&serve).await;
    let url = server.url.clone();
    let run = |args: Vec<String>| {
        let url = url.clone();
        let token_file = token_file.clone();
        async move {
            let mut full = vec![
                "--registry".to_owned(),
                url,
                "--token-file".to_owned(),
                token_file,
            ];
            full.extend(args);
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            accord(&refs).await
        }
    };
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    let out = run(args(&[
        "member",
        "add",
        "EE/GOV/70000001",
        "--name",
        "Population Register",
        "--level",
        "national",
        "--country",
        "EE",
        "--sector",
        "public",
        "--contact-email",
        "info@register.example",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("added member EE/GOV/70000001"));
    let out = run(args(&[
        "member",
        "add",
        "EE/MUN/75000001",
        "--name",
        "Tallinn",
        "--level",
        "local",
        "--country",
        "EE",
        "--sector",
        "public",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));

    // A refused change: non-zero exit, one clear message naming the field.
    let out = run(args(&[
        "member",
        "add",
        "EE/GOV/70000002",
        "--name",
        "Nowhere",
        "--level",
        "national",
        "--country",
        "Atlantis",
        "--sector",
        "public",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: country: "), "{err}");
    assert!(err.contains("422"), "{err}");

    let out = run(args(&[
        "subsystem",
        "add",
        "EE/GOV/70000001/population",
        "--name",
        "Population system",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = temp_file(
        dir.path(),
        "residence.json",
        &openapi_document("Residence").to_string(),
    );
    let out = run(args(&[
        "service",
        "add",
        "EE/GOV/70000001/population/residence/v1",
        "--title",
        "Residence of a person",
        "--description",
        "Address of residence",
        "--personal-data",
        "true",
        "--category",
        "identity",
        "--category",
        "address",
        "--openapi",
        doc.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = temp_file(dir.path(), "bad.json", "{\"openapi\": \"3.0.0\",");
    let out = run(args(&[
        "service",
        "add",
        "EE/GOV/70000001/population/broken",
        "--title",
        "Broken",
        "--description",
        "Broken",
        "--personal-data",
        "false",
        "--openapi",
        bad.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("openapi: is not valid JSON"),
        "{}",
        stderr(&out)
    );

    let out = run(args(&["member", "list", "--level", "national"])).await;
    assert!(out.status.success());
    let table = stdout(&out);
    assert!(
        table.contains("Population Register") && !table.contains("Tallinn"),
        "{table}"
    );
    assert!(table.contains("1 shown of 1"), "{table}");

    let out = run(args(&["--json", "member", "list", "--country", "EE"])).await;
    let page: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(page["total"], 2);

    let out = run(args(&["member", "show", "EE/GOV/70000001"])).await;
    assert!(
        stdout(&out).contains("EE/GOV/70000001/population"),
        "{}",
        stdout(&out)
    );
    let out = run(args(&["member", "show", "EE/GOV/404"])).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    let out = run(args(&["--json", "service", "list", "--q", "residence"])).await;
    let page: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        page["items"][0]["id"],
        "EE/GOV/70000001/population/residence/v1"
    );
    let out = run(args(&[
        "service",
        "show",
        "EE/GOV/70000001/population/residence/v1",
        "--openapi",
    ]))
    .await;
    let shown: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown, openapi_document("Residence"));
    let out = run(args(&[
        "service",
        "show",
        "EE/GOV/70000001/population/residence/v1",
    ]))
    .await;
    assert!(
        stdout(&out).contains("identity, address"),
        "{}",
        stdout(&out)
    );

    // Gateway certificates: key written owner-only, listed, revoked.
    let key = dir.path().join("gw1.key");
    let cert = dir.path().join("gw1.crt");
    let out = run(args(&[
        "gateway-cert",
        "issue",
        "--member",
        "EE/GOV/70000001",
        "--gateway",
        "gw1",
        "--address",
        "https://127.0.0.1:8443",
        "--key-out",
        key.to_str().unwrap(),
        "--cert-out",
        cert.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(file_mode(&key), 0o600);
    assert!(std::fs::read_to_string(&key)
        .unwrap()
        .contains("PRIVATE KEY"));
    assert!(std::fs::read_to_string(&cert)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let out = run(args(&["--json", "gateway-cert", "list"])).await;
    let certs: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let serial = certs[0]["serial"].as_str().unwrap().to_owned();
    let out = run(args(&[
        "gateway-cert",
        "revoke",
        &serial,
        "--reason",
        "gateway retired",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(args(&["gateway-cert", "list"])).await;
    assert!(stdout(&out).contains("revoked"), "{}", stdout(&out));

    // Tokens: a member administrator's token works for its member only.
    let out = run(args(&[
        "--json",
        "token",
        "create",
        "--role",
        "member-admin",
        "--member",
        "EE/MUN/75000001",
    ]))
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let town_token = created["token"].as_str().unwrap().to_owned();
    let town_id = created["id"].as_str().unwrap().to_owned();
    let as_town = |extra: &[&str]| {
        let mut a = vec![
            "--registry".to_owned(),
            url.clone(),
            "--token".to_owned(),
            town_token.clone(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let refs = as_town(&[
        "subsystem",
        "add",
        "EE/MUN/75000001/benefits",
        "--name",
        "Benefits",
    ]);
    let out = accord(&refs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let refs = as_town(&[
        "subsystem",
        "add",
        "EE/GOV/70000001/other",
        "--name",
        "Other",
    ]);
    let out = accord(&refs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));

    let out = run(args(&["token", "list"])).await;
    assert!(stdout(&out).contains(&town_id) && !stdout(&out).contains(&town_token));
    let out = run(args(&["token", "revoke", &town_id])).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let refs = as_town(&[
        "subsystem",
        "add",
        "EE/MUN/75000001/again",
        "--name",
        "Again",
    ]);
    let out = accord(&refs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));

    // Writing without any token says how to get one.
    let out = accord(&[
        "--registry",
        &url,
        "subsystem",
        "add",
        "EE/MUN/75000001/x",
        "--name",
        "X",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs a token"), "{}", stderr(&out));

    // The registry keeps it all across a restart.
    drop(server);
    let server = Server::start(&serve).await;
    let out = accord(&["--registry", &server.url, "--json", "service", "list"]).await;
    let page: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(page["total"], 1);
}

async fn registry_init_refuses_to_overwrite(engine: Engine) {
    let Some(db) = TestDb::new(engine).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let mut args = vec![
        "registry",
        "init",
        "--instance",
        "EE",
        "--name",
        "One",
        "--data-dir",
        data_arg.as_str(),
    ];
    if let Some(url) = &db.url {
        args.extend(["--database", url.as_str()]);
    }
    let out = accord(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let ca_before = std::fs::read(data.join("keys/ca.key")).unwrap();
    let out = accord(&args).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already holds federation EE"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(data.join("keys/ca.key")).unwrap(),
        ca_before,
        "the CA key is untouched"
    );

    let mut bad = vec![
        "registry",
        "init",
        "--instance",
        "E E",
        "--name",
        "Two",
        "--data-dir",
        "unused",
    ];
    if let Some(url) = &db.url {
        bad.extend(["--database", url.as_str()]);
    }
    let out = accord(&bad).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("instance code \"E E\" is not valid"),
        "{}",
        stderr(&out)
    );

    let out = accord(&[
        "registry",
        "serve",
        "--data-dir",
        dir.path().join("empty").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("accord registry init"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn help_and_completions_guide_a_newcomer() {
    let out = accord(&["--help"]).await;
    let help = stdout(&out);
    for command in [
        "registry",
        "member",
        "service",
        "gateway-cert",
        "token",
        "demo",
        "completions",
    ] {
        assert!(help.contains(command), "{command} missing from --help");
    }
    assert!(help.contains("accord demo"));
    let out = accord(&["completions", "bash"]).await;
    assert!(out.status.success());
    assert!(stdout(&out).contains("gateway-cert"));
    let out = accord(&["member", "show", "not-an-id"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a member id"),
        "{}",
        stderr(&out)
    );
    let out = accord(&["--registry", "http://127.0.0.1:9", "member", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the registry"),
        "{}",
        stderr(&out)
    );
}
