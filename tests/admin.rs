//! The admin API over real HTTP: refusals of bad input (4xx JSON, state unchanged), the bearer
//! token, and the `/metrics` and `/ring` read endpoints.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;

/// Asserts `r` is a refusal with `status` and a non-empty JSON `error`.
fn assert_refused(r: &Reply, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let ct = r.headers.get("content-type").map(|v| v.to_str().unwrap());
    assert_eq!(ct, Some("application/json"), "{what}");
    let body = r.json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{what}: no error message in {body}");
}

#[tokio::test]
async fn bad_admin_input_is_refused_and_changes_nothing() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let p = start_proxy(&config_with("", &[&a, &b])).await;
    // One successful change first, so the version is not just the initial one.
    let r = p
        .admin(
            Method::PUT,
            "/backends/cache-b",
            &format!(r#"{{"address":"{}","weight":2}}"#, b.addr),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let before = p.backends().await;
    assert_eq!(before["version"], 2);

    let addr = a.addr.to_string();
    let with = |fields: &str| format!("{{{fields}}}");
    let bad_puts: Vec<(String, String)> = vec![
        ("invalid JSON".into(), "{not json".into()),
        ("empty body".into(), String::new()),
        ("JSON array".into(), "[]".into()),
        (
            "unknown field".into(),
            with(&format!(r#""address":"{addr}","wieght":1"#)),
        ),
        ("missing address".into(), with(r#""weight":1"#)),
        ("bad address".into(), with(r#""address":"not an address""#)),
        (
            "address without port".into(),
            with(r#""address":"127.0.0.1""#),
        ),
        ("port 0".into(), with(r#""address":"127.0.0.1:0""#)),
        (
            "weight 0".into(),
            with(&format!(r#""address":"{addr}","weight":0"#)),
        ),
        (
            "weight -1".into(),
            with(&format!(r#""address":"{addr}","weight":-1"#)),
        ),
        (
            "weight \"x\"".into(),
            with(&format!(r#""address":"{addr}","weight":"x""#)),
        ),
        (
            "weight 1.5".into(),
            with(&format!(r#""address":"{addr}","weight":1.5"#)),
        ),
        (
            "weight too big".into(),
            with(&format!(r#""address":"{addr}","weight":10001"#)),
        ),
    ];
    // Each bad body, both as a join of a new id and as an update of an existing one.
    for id in ["cache-new", "cache-a"] {
        for (what, body) in &bad_puts {
            let r = p.admin(Method::PUT, &format!("/backends/{id}"), body).await;
            assert_refused(&r, StatusCode::BAD_REQUEST, &format!("{what} on {id}"));
        }
    }
    let good = with(&format!(r#""address":"{addr}""#));
    let r = p.admin(Method::PUT, "/backends/a%20b", &good).await;
    assert_refused(&r, StatusCode::BAD_REQUEST, "id with %");
    let big = format!(
        r#"{{"address":"{addr}","pad":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let r = p.admin(Method::PUT, "/backends/cache-new", &big).await;
    assert_refused(&r, StatusCode::PAYLOAD_TOO_LARGE, "oversized body");

    let r = p.admin(Method::DELETE, "/backends/nobody", "").await;
    assert_refused(&r, StatusCode::NOT_FOUND, "DELETE unknown id");
    let r = p.admin(Method::GET, "/backends/nobody", "").await;
    assert_refused(&r, StatusCode::NOT_FOUND, "GET unknown id");
    for path in ["/route", "/route?key=", "/route?other=1"] {
        let r = p.admin(Method::GET, path, "").await;
        assert_refused(&r, StatusCode::BAD_REQUEST, path);
    }
    for path in ["/nope", "/backends/a/b", "/status/x", "/ring/nope"] {
        let r = p.admin(Method::GET, path, "").await;
        assert_refused(&r, StatusCode::NOT_FOUND, path);
    }
    for (method, path) in [
        (Method::POST, "/backends"),
        (Method::DELETE, "/backends"),
        (Method::POST, "/backends/cache-a"),
        (Method::POST, "/route?key=a"),
        (Method::DELETE, "/ring"),
        (Method::PUT, "/metrics"),
        (Method::POST, "/healthz"),
        (Method::POST, "/"),
        (Method::DELETE, "/status"),
        (Method::GET, "/ring/plan"),
        (Method::POST, "/ring/arcs"),
        (Method::POST, "/stats"),
    ] {
        let r = p.admin(method.clone(), path, "{}").await;
        let what = format!("{method} {path}");
        assert_refused(&r, StatusCode::METHOD_NOT_ALLOWED, &what);
        assert!(r.headers.contains_key("allow"), "{what}: no Allow header");
    }

    assert_eq!(
        p.backends().await,
        before,
        "a refused request changed the state"
    );
    // Routing still uses the old membership.
    let r = p.get("/", &[("x-user-id", "k")]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_token_guards_everything_but_healthz() {
    let a = start_backend("cache-a").await;
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"\n{}",
        backends_toml(&[&a])
    );
    let p = start_proxy(&config).await;
    let put = format!(r#"{{"address":"{}"}}"#, a.addr);
    let calls: Vec<(Method, &str, String)> = vec![
        (Method::GET, "/backends", String::new()),
        (Method::GET, "/backends/cache-a", String::new()),
        (Method::PUT, "/backends/cache-x", put.clone()),
        (Method::DELETE, "/backends/cache-a", String::new()),
        (Method::GET, "/route?key=k", String::new()),
        (Method::GET, "/ring", String::new()),
        (Method::GET, "/metrics", String::new()),
        (Method::GET, "/stats", String::new()),
        (Method::GET, "/ring/arcs", String::new()),
        (Method::POST, "/ring/plan", "{}".to_string()),
    ];
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("Bearer s3crett"),
        Some("Basic s3cret"),
        Some("s3cret"),
        Some("bearer"),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|v| ("authorization", *v)).collect();
        for (method, path, body) in &calls {
            let url = p.admin_url(path);
            let r = p
                .http
                .request(method.clone(), &url, &headers, body.clone())
                .await;
            assert_refused(
                &r,
                StatusCode::UNAUTHORIZED,
                &format!("{method} {path} with {auth:?}"),
            );
        }
    }
    let r = p.http.get(&p.admin_url("/healthz"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // The status page itself holds nothing sensitive: served without the token.
    for path in ["/", "/status"] {
        let r = p.http.get(&p.admin_url(path), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let ct = r.headers.get("content-type").unwrap().to_str().unwrap();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(r.headers.contains_key("content-security-policy"));
        assert!(
            !r.text().contains("cache-a"),
            "{path} shows no backend by itself"
        );
    }

    // With the token every call works, and the refused ones above changed nothing.
    let ok = [("authorization", "Bearer s3cret")];
    let r = p.http.get(&p.admin_url("/backends"), &ok).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.json()["backends"].as_array().unwrap().len(), 1);
    let expected = [200, 200, 201, 204, 200, 200, 200, 200, 200, 200];
    for ((method, path, body), status) in calls.iter().zip(expected) {
        let r = p
            .http
            .request(method.clone(), &p.admin_url(path), &ok, body.clone())
            .await;
        assert_eq!(r.status.as_u16(), status, "{method} {path}: {}", r.text());
    }
}

/// The sum of a Prometheus counter's samples whose labels contain every one of `labels`.
fn counter_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn metrics_count_the_traffic() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let extra = "[affinity]\nkey = [\"header:x-user-id\"]\non_missing = \"reject\"";
    let p = start_proxy(&config_with(extra, &[&a, &b])).await;
    for i in 0..10 {
        let r = p.get("/", &[("x-user-id", &format!("k{i}"))]).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    for i in 0..3 {
        let r = p
            .get("/status/404", &[("x-user-id", &format!("k{i}"))])
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = p.get("/", &[]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = p.admin(Method::GET, "/metrics", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.text();
    let total = "ringproxy_responses_total";
    assert!(text.contains(total), "{text}");
    assert_eq!(counter_sum(&text, total, &["code=\"200\""]), 10.0, "{text}");
    assert_eq!(counter_sum(&text, total, &["code=\"404\""]), 3.0, "{text}");
    let per_backend = counter_sum(&text, total, &["backend=\"cache-a\""])
        + counter_sum(&text, total, &["backend=\"cache-b\""]);
    assert_eq!(per_backend, 13.0, "{text}");
    assert_eq!((a.hits() + b.hits()) as f64, per_backend);
}

#[tokio::test]
async fn ring_reports_points_and_shares() {
    let (a, b, c) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
        start_backend("cache-c").await,
    );
    let p = start_proxy(&config_with("[ring]\nvnodes = 100", &[&a, &b, &c])).await;
    let r = p
        .admin(
            Method::PUT,
            "/backends/cache-c",
            &format!(r#"{{"address":"{}","weight":2}}"#, c.addr),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = p.admin(Method::GET, "/ring", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let ring: Value = r.json();
    assert_eq!(ring["vnodes"], 100);
    assert_eq!(ring["version"], 2);
    let list = ring["backends"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cache-a", "cache-b", "cache-c"]);
    let points: Vec<u64> = list.iter().map(|b| b["points"].as_u64().unwrap()).collect();
    assert_eq!(points, [100, 100, 200]);
    assert_eq!(ring["points"], 400);
    let shares: Vec<f64> = list.iter().map(|b| b["share"].as_f64().unwrap()).collect();
    let sum: f64 = shares.iter().sum();
    assert!((sum - 1.0).abs() < 1e-9, "shares sum to {sum}");
    assert!(shares[2] > shares[0] && shares[2] > shares[1], "{shares:?}");
}
