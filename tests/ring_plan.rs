//! Change previews and what real changes report, over real HTTP: `POST /ring/plan` changes
//! nothing and names the bad field of a bad request; its `moved` and `fingerprint` are what the
//! real change (PUT, DELETE, a reload) then reports in its answer, in `GET /ring`'s
//! `last_change` and in the metrics; the ring arcs and stats endpoints the status page reads.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn plan(p: &TestProxy, body: &Value) -> Value {
    let r = p.admin(Method::POST, "/ring/plan", &body.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text());
    r.json()
}

async fn ring(p: &TestProxy) -> Value {
    let r = p.admin(Method::GET, "/ring", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// The value of the sample `name` (with its labels, as printed) in `/metrics`.
async fn metric(p: &TestProxy, sample: &str) -> Option<f64> {
    let r = p.admin(Method::GET, "/metrics", "").await;
    let text = r.text();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// The planned `moved` is what the change reports afterwards, and the planned fingerprint is
/// the ring's.
async fn assert_change_matches(p: &TestProxy, planned: &Value, reported: f64) {
    let moved = planned["moved"].as_f64().unwrap();
    assert_eq!(reported, moved, "plan {planned}");
    let r = ring(p).await;
    assert_eq!(r["fingerprint"], planned["fingerprint"]);
    assert_eq!(r["last_change"]["version"], r["version"]);
    assert_eq!(r["last_change"]["moved"].as_f64(), Some(moved));
    let gauge = metric(p, "ringproxy_ring_moved_share").await.unwrap();
    assert!(
        (gauge - moved).abs() < 1e-12,
        "gauge of the last change: {gauge}"
    );
}

#[tokio::test]
async fn a_plan_changes_nothing_and_says_how_it_was_computed() {
    let b = start_backends(&["cache-a", "cache-b", "cache-c"]).await;
    let p = start_proxy(&config_with("[ring]\nvnodes = 200", &[&b[0], &b[1], &b[2]])).await;
    let before = ring(&p).await;
    assert_eq!(before["last_change"], Value::Null);

    let body = json!({
        "join": [{"id": "cache-e", "address": "10.0.0.5:80", "weight": 2}],
        "leave": ["cache-b"],
        "weight": {"cache-a": 3}
    });
    let planned = plan(&p, &body).await;
    assert_eq!(planned["exact"], true);
    assert!(planned["note"].as_str().unwrap().contains("point lists"));
    assert!(planned["note"]
        .as_str()
        .unwrap()
        .contains("not by sampling"));
    let moved = planned["moved"].as_f64().unwrap();
    assert!(moved > 0.0 && moved < 1.0, "{moved}");
    assert_eq!(planned["version"], before["version"]);
    assert_eq!(planned["fingerprint_before"], before["fingerprint"]);
    assert_ne!(planned["fingerprint"], before["fingerprint"]);
    assert_eq!(planned["points"], 200 * (3 + 1 + 2));

    let backends = planned["backends"].as_array().unwrap();
    let change = |id: &str| {
        backends.iter().find(|b| b["id"] == id).unwrap()["change"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(change("cache-a"), "reweighted");
    assert_eq!(change("cache-b"), "leaves");
    assert_eq!(change("cache-c"), "stays");
    assert_eq!(change("cache-e"), "joins");
    let after: f64 = backends.iter().map(|b| b["share"].as_f64().unwrap()).sum();
    assert!((after - 1.0).abs() < 1e-9);
    let flows: f64 = planned["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["share"].as_f64().unwrap())
        .sum();
    assert!((flows - moved).abs() < 1e-9);
    // The arcs that would move, for the page: within the circle, naming a listed backend.
    let arcs = planned["moved_arcs"]["arcs"].as_array().unwrap();
    assert!(!arcs.is_empty() && arcs.len() <= 2000);
    for a in arcs {
        let to = a[2].as_u64().unwrap() as usize;
        assert!(to < backends.len());
        assert_ne!(backends[to]["change"], "leaves");
    }

    // Nothing changed.
    let now = ring(&p).await;
    assert_eq!(now["version"], before["version"]);
    assert_eq!(now["fingerprint"], before["fingerprint"]);
    assert_eq!(p.backends().await["backends"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn bad_plans_are_refused_naming_the_field() {
    let b = start_backends(&["cache-a", "cache-b"]).await;
    let p = start_proxy(&config_with("", &[&b[0], &b[1]])).await;
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid JSON"),
        ("[]".into(), "body"),
        (r#"{"jion":[]}"#.into(), "jion"),
        (r#"{"leave":["cache-z"]}"#.into(), "leave[0]"),
        (r#"{"weight":{"cache-z":2}}"#.into(), "weight.cache-z"),
        (r#"{"weight":{"cache-a":0}}"#.into(), "weight.cache-a"),
        (
            r#"{"join":[{"id":"cache-e","address":"no port"}]}"#.into(),
            "join[0].address",
        ),
        (
            r#"{"join":[{"id":"cache-e","address":"h:1","weight":-1}]}"#.into(),
            "join[0].weight",
        ),
        (
            r#"{"join":[{"id":"cache-e","address":"h:1"},{"id":"cache-e","address":"h:2"}]}"#
                .into(),
            "join[1].id",
        ),
        (
            r#"{"join":[{"id":"cache-a","address":"h:1"}]}"#.into(),
            "join[0].id",
        ),
    ];
    for (body, field) in cases {
        let r = p.admin(Method::POST, "/ring/plan", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.starts_with(field), "{body}: {error}");
    }
    let r = p.admin(Method::GET, "/ring/plan", "").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = p.admin(Method::POST, "/ring/plan?max=0", "{}").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(ring(&p).await["version"], 1);
}

#[tokio::test]
async fn admin_changes_report_what_the_plan_said() {
    let b = start_backends(&["cache-a", "cache-b", "cache-c", "cache-d"]).await;
    let p = start_proxy(&config_with("[ring]\nvnodes = 300", &[&b[0], &b[1], &b[2]])).await;

    // A join.
    let join = json!({"join": [{"id": "cache-d", "address": b[3].addr.to_string()}]});
    let planned = plan(&p, &join).await;
    let r = p
        .admin(
            Method::PUT,
            "/backends/cache-d",
            &json!({"address": b[3].addr.to_string()}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["version"], 2);
    assert_change_matches(&p, &planned, answer["moved"].as_f64().unwrap()).await;

    // The same PUT again moves nothing, and says so.
    let r = p
        .admin(
            Method::PUT,
            "/backends/cache-d",
            &json!({"address": b[3].addr.to_string()}).to_string(),
        )
        .await;
    assert_eq!(r.json()["moved"].as_f64(), Some(0.0));

    // A re-weight.
    let planned = plan(&p, &json!({"weight": {"cache-a": 3}})).await;
    let r = p
        .admin(
            Method::PUT,
            "/backends/cache-a",
            &json!({"address": b[0].addr.to_string(), "weight": 3}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_change_matches(&p, &planned, r.json()["moved"].as_f64().unwrap()).await;

    // A leave: still 204 without a body; `GET /ring` reports it.
    let planned = plan(&p, &json!({"leave": ["cache-b"]})).await;
    let r = p.admin(Method::DELETE, "/backends/cache-b", "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    let reported = ring(&p).await["last_change"]["moved"].as_f64().unwrap();
    assert_change_matches(&p, &planned, reported).await;

    // Each backend's share, as a gauge.
    let r = ring(&p).await;
    for b in r["backends"].as_array().unwrap() {
        let sample = format!(
            "ringproxy_ring_share{{backend=\"{}\"}}",
            b["id"].as_str().unwrap()
        );
        let gauge = metric(&p, &sample).await.unwrap();
        assert!(
            (gauge - b["share"].as_f64().unwrap()).abs() < 1e-12,
            "{sample}"
        );
    }
    assert_eq!(
        metric(&p, "ringproxy_ring_share{backend=\"cache-b\"}").await,
        None,
        "a backend that left has no share"
    );
}

#[tokio::test]
async fn a_reload_reports_what_the_plan_said() {
    let b = start_backends(&["cache-a", "cache-b", "cache-c", "cache-e"]).await;
    let file = TempFile::new(
        "plan-reload",
        &config_with("[ring]\nvnodes = 250", &[&b[0], &b[1], &b[2]]),
    );
    let p = start_proxy_from_file(&file.path).await;

    // Several changes at once, as one reload applies them.
    let planned = plan(
        &p,
        &json!({
            "join": [{"id": "cache-e", "address": b[3].addr.to_string()}],
            "leave": ["cache-c"],
            "weight": {"cache-a": 2}
        }),
    )
    .await;
    let next = format!(
        "{}\n[[backends]]\nid = \"cache-a\"\naddress = \"{}\"\nweight = 2\n",
        config_addrs(
            "",
            "[ring]\nvnodes = 250",
            &[("cache-b", b[1].addr), ("cache-e", b[3].addr)]
        ),
        b[0].addr
    );
    write_config(&file.path, &next);
    let r = p.admin(Method::POST, "/reload", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let reloaded = r.json();
    assert_eq!(reloaded["fingerprint"], planned["fingerprint"]);
    assert_change_matches(&p, &planned, reloaded["moved"].as_f64().unwrap()).await;
}

#[tokio::test]
async fn arcs_cover_the_ring_in_order() {
    let b = start_backends(&["cache-a", "cache-b", "cache-c"]).await;
    let p = start_proxy(&config_with("[ring]\nvnodes = 20", &[&b[0], &b[1], &b[2]])).await;
    let r = p.admin(Method::GET, "/ring/arcs", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let arcs = r.json();
    assert_eq!(arcs["exact"], true, "60 points fit in 2000 arcs");
    assert_eq!(arcs["backends"], json!(["cache-a", "cache-b", "cache-c"]));
    let list = arcs["arcs"].as_array().unwrap();
    let ends: Vec<f64> = list.iter().map(|a| a[0].as_f64().unwrap()).collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "in ring order");
    assert!(ends.iter().all(|e| (0.0..=1.0).contains(e)));
    // Each backend's arcs add up to its share.
    let ring = ring(&p).await;
    for (i, b) in ring["backends"].as_array().unwrap().iter().enumerate() {
        let mut total = 0.0;
        for (k, a) in list.iter().enumerate() {
            if a[1].as_u64() == Some(i as u64) {
                let start = if k == 0 {
                    ends[ends.len() - 1] - 1.0
                } else {
                    ends[k - 1]
                };
                total += ends[k] - start;
            }
        }
        let share = b["share"].as_f64().unwrap();
        assert!(
            (total - share).abs() < 1e-5,
            "{}: {total} vs {share}",
            b["id"]
        );
    }

    let r = p.admin(Method::GET, "/ring/arcs?max=4", "").await;
    let few = r.json();
    assert_eq!(few["exact"], false);
    assert!(few["arcs"].as_array().unwrap().len() <= 4);
    for bad in ["max=0", "max=x", "max=1000000"] {
        let r = p.admin(Method::GET, &format!("/ring/arcs?{bad}"), "").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json()["error"].as_str().unwrap().starts_with("max"));
    }
}

/// `ringproxy plan` with `args` (after `--config FILE`).
fn plan_cli(config: &TempFile, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ringproxy"))
        .arg("plan")
        .arg("--config")
        .arg(&config.path)
        .args(args)
        .env_remove("RINGPROXY_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run ringproxy plan")
}

#[tokio::test]
async fn the_command_line_plans_like_the_admin_api() {
    let b = start_backends(&["cache-a", "cache-b", "cache-c"]).await;
    let text = config_with("[ring]\nvnodes = 150", &[&b[0], &b[1], &b[2]]);
    let file = TempFile::new("plan-cli", &text);
    let p = start_proxy(&text).await;
    let api = plan(
        &p,
        &json!({
            "join": [{"id": "cache-e", "address": "10.0.0.5:80", "weight": 2}],
            "leave": ["cache-b"],
            "weight": {"cache-a": 3}
        }),
    )
    .await;
    let args = [
        "--join",
        "cache-e=10.0.0.5:80:2",
        "--leave",
        "cache-b",
        "--weight",
        "cache-a=3",
    ];
    let out = plan_cli(&file, &[&args[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "moved",
        "fingerprint",
        "fingerprint_before",
        "backends",
        "flows",
        "exact",
    ] {
        assert_eq!(cli[field], api[field], "{field}");
    }

    // For people: the moved share, each backend, the flows.
    let out = plan_cli(&file, &args);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let pct = format!("{:.2}%", api["moved"].as_f64().unwrap() * 100.0);
    assert!(table.contains(&pct), "{table}");
    for needle in [
        "cache-a",
        "reweighted",
        "cache-b",
        "leaves",
        "cache-e",
        "joins",
        "flows",
        "not by sampling",
    ] {
        assert!(table.contains(needle), "{needle} in {table}");
    }

    // Bad arguments exit 2 naming the argument.
    for (bad, named) in [
        (vec!["--leave", "cache-z"], "--leave cache-z"),
        (vec!["--weight", "cache-z=2"], "--weight cache-z=2"),
        (vec!["--weight", "cache-a=0"], "--weight cache-a=0"),
        (vec!["--join", "cache-e"], "--join cache-e"),
        (vec!["--join", "cache-a=h:1"], "--join cache-a=h:1"),
    ] {
        let out = plan_cli(&file, &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{bad:?}: {stderr}");
    }
}
