//! Latency histograms and in-flight gauges over real traffic: every relayed response is counted
//! once per phase, connects are timed per new connection, a slow backend shows in flight while
//! it thinks and in the slow buckets afterwards, and `GET /stats` agrees with `/metrics`.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;

async fn metrics(p: &TestProxy) -> String {
    let r = p.admin(Method::GET, "/metrics", "").await;
    assert_eq!(r.status, StatusCode::OK);
    r.text()
}

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

async fn stats(p: &TestProxy) -> Value {
    let r = p.admin(Method::GET, "/stats", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

#[tokio::test]
async fn every_response_is_timed_once_per_phase() {
    let b = start_backends(&["cache-a", "cache-b"]).await;
    let p = start_proxy(&config_with("", &[&b[0], &b[1]])).await;
    let served = p.owners_by_request(&keys(40)).await;
    let text = metrics(&p).await;
    for backend in ["cache-a", "cache-b"] {
        let n = served.iter().filter(|s| *s == backend).count() as f64;
        assert!(n > 0.0, "{backend} served nothing");
        let responses = sample(
            &text,
            &format!("ringproxy_responses_total{{backend=\"{backend}\",code=\"200\"}}"),
        );
        assert_eq!(responses, Some(n));
        for phase in ["first_byte", "total"] {
            let labels = format!("backend=\"{backend}\",phase=\"{phase}\"");
            let count = sample(
                &text,
                &format!("ringproxy_request_duration_seconds_count{{{labels}}}"),
            );
            assert_eq!(count, Some(n), "{labels}\n{text}");
            let inf = sample(
                &text,
                &format!("ringproxy_request_duration_seconds_bucket{{le=\"+Inf\",{labels}}}"),
            );
            assert_eq!(inf, Some(n), "{labels}");
            // The smallest bucket is there (100 µs), and the largest (10 s).
            for le in ["0.0001", "10.0"] {
                let name =
                    format!("ringproxy_request_duration_seconds_bucket{{le=\"{le}\",{labels}}}");
                assert!(sample(&text, &name).is_some(), "{name}\n{text}");
            }
        }
        let opened = sample(
            &text,
            &format!("ringproxy_upstream_connections_opened_total{{backend=\"{backend}\"}}"),
        );
        let connects = sample(
            &text,
            &format!("ringproxy_upstream_connect_duration_seconds_count{{backend=\"{backend}\"}}"),
        );
        assert_eq!(connects, opened, "one connect timing per new connection");
        assert_eq!(
            sample(
                &text,
                &format!("ringproxy_in_flight_requests{{backend=\"{backend}\"}}")
            ),
            Some(0.0)
        );
    }
    // The same figures as JSON.
    let s = stats(&p).await;
    for b in s["backends"].as_array().unwrap() {
        let id = b["id"].as_str().unwrap();
        let n = served.iter().filter(|s| *s == id).count() as u64;
        assert_eq!(b["requests"].as_u64(), Some(n));
        assert_eq!(b["first_byte"]["count"].as_u64(), Some(n));
        assert_eq!(b["first_byte"]["buckets"].as_array().unwrap().len(), 17);
        assert_eq!(b["in_flight"], 0);
        assert_eq!(b["state"], "healthy");
        assert!(b["p50"].as_f64().unwrap() <= b["p99"].as_f64().unwrap());
    }
    assert_eq!(s["buckets"].as_array().unwrap().len(), 16);
}

#[tokio::test]
async fn a_slow_backend_is_in_flight_then_in_the_slow_buckets() {
    let b = start_backends(&["cache-a"]).await;
    let p = start_proxy(&config_with("", &[&b[0]])).await;
    let slow = tokio::spawn({
        let (http, url) = (p.http.clone(), p.url("/slow/400"));
        async move { http.get(&url, &[("x-user-id", "k")]).await }
    });
    let mut seen = false;
    for _ in 0..100 {
        if stats(&p).await["backends"][0]["in_flight"] == 1 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the slow request shows in flight");
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    let text = metrics(&p).await;
    let labels = "backend=\"cache-a\",phase=\"first_byte\"";
    let fast = sample(
        &text,
        &format!("ringproxy_request_duration_seconds_bucket{{le=\"0.25\",{labels}}}"),
    );
    let slow = sample(
        &text,
        &format!("ringproxy_request_duration_seconds_bucket{{le=\"0.5\",{labels}}}"),
    );
    assert_eq!((fast, slow), (Some(0.0), Some(1.0)), "{text}");
    let sum = sample(
        &text,
        &format!("ringproxy_request_duration_seconds_sum{{{labels}}}"),
    );
    assert!(sum.unwrap() >= 0.4);
    assert_eq!(
        sample(&text, "ringproxy_in_flight_requests{backend=\"cache-a\"}"),
        Some(0.0)
    );
    let p50 = stats(&p).await["backends"][0]["p50"].as_f64().unwrap();
    assert!((0.25..=0.5).contains(&p50), "{p50}");
}
