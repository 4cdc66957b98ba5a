//! `accord bench exchange` end to end, on the paths that need nothing
//! installed: direct, and path (d), two `accord bench relay` processes with
//! mutual TLS between them. A short run of two rounds must carry exchanges
//! on both paths in each round without an error and report the relays' CPU
//! time and peak memory.

use serde_json::Value;

use crate::support::{accord, stderr, stdout};

#[tokio::test]
async fn a_short_exchange_benchmark_runs_direct_and_through_the_bare_relays() {
    let output = accord(&[
        "--json",
        "bench",
        "exchange",
        "--paths",
        "direct,relay",
        "--sizes",
        "1KiB",
        "--connections",
        "4",
        "--duration",
        "300ms",
        "--latency-duration",
        "200ms",
        "--warmup",
        "100ms",
        "--rounds",
        "2",
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["valid"], true, "{report:#}");
    assert_eq!(report["errors"], 0);

    let results = report["results"].as_array().unwrap();
    let paths: Vec<&str> = results
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["direct", "relay"]);
    assert_eq!(report["settings"]["rounds"], 2);
    for r in results {
        assert_eq!(r["body_bytes"], 1024);
        // Both rounds measured, each with its own rate and latency.
        let rounds = r["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 2, "{r:#}");
        for round in rounds {
            assert!(round["requests_per_s"].as_f64().unwrap() > 0.0, "{r:#}");
            assert!(round["latency_p50_ms"].as_f64().unwrap() > 0.0, "{r:#}");
        }
        assert_eq!(r["errors"], 0, "{r:#}");
        for shape in ["throughput", "latency"] {
            let m = &r[shape];
            assert!(m["requests"].as_u64().unwrap() > 0, "{r:#}");
            assert_eq!(m["errors"], 0, "{r:#}");
        }
    }
    let relay = &results[1]["throughput"];
    assert_eq!(relay["connections"], 4);
    assert!(
        relay["server_cpu_us_per_request"].as_f64().unwrap() > 0.0,
        "the relays' CPU time is measured: {relay:#}"
    );

    let memory = report["memory"].as_array().unwrap();
    let relays: Vec<&Value> = memory.iter().filter(|m| m["path"] == "relay").collect();
    assert_eq!(relays.len(), 2, "{memory:#?}");
    for m in relays {
        assert!(m["peak_rss_bytes"].as_u64().unwrap() > 1024 * 1024, "{m:#}");
    }
    // Only path (c) is held to the targets.
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn the_exchange_benchmark_refuses_a_zero_round_run() {
    let output = accord(&["bench", "exchange", "--paths", "direct", "--rounds", "0"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--rounds must be between 1 and 100"),
        "{}",
        stderr(&output)
    );
}
