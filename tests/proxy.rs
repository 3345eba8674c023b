//! Forwarding through real requests: large bodies both ways, status pass-through, dead and slow
//! backends (502/504), header rewriting, and no open-proxy behaviour.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

const TEN_MIB: u64 = 10 * 1024 * 1024;

#[tokio::test]
async fn ten_mib_request_body_streams_through_intact() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let p = start_proxy(&config_with("", &[&a, &b])).await;
    let body = Pattern::new(TEN_MIB)
        .map_err(|never| match never {})
        .boxed();
    let r = p
        .http
        .send(
            Method::POST,
            &p.url("/echo"),
            &[("x-user-id", "big-up")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len() as u64, TEN_MIB);
    assert!(r.body[..] == pattern(TEN_MIB)[..], "echoed bytes differ");
    assert_eq!(r.backend(), p.owner_by_admin("big-up").await["backend"]);
}

#[tokio::test]
async fn ten_mib_response_body_streams_through_intact() {
    let a = start_backend("cache-a").await;
    let p = start_proxy(&config_with("", &[&a])).await;
    let r = p
        .get(&format!("/big/{TEN_MIB}"), &[("x-user-id", "big-down")])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.backend(), "cache-a");
    assert_eq!(r.body.len() as u64, TEN_MIB);
    assert!(r.body[..] == pattern(TEN_MIB)[..], "streamed bytes differ");
}

#[tokio::test]
async fn backend_status_codes_pass_through() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let p = start_proxy(&config_with("", &[&a, &b])).await;
    for code in [200u16, 201, 204, 301, 404, 418, 500, 502, 503] {
        let key = format!("status-{code}");
        let r = p
            .get(&format!("/status/{code}"), &[("x-user-id", &key)])
            .await;
        assert_eq!(r.status.as_u16(), code);
        let owner = p.owner_by_admin(&key).await;
        assert_eq!(r.backend(), owner["backend"], "{code} came from elsewhere");
        if code != 204 {
            assert_eq!(r.text(), r.backend(), "body of {code}");
        }
    }
}

#[tokio::test]
async fn dead_backend_is_a_quick_502() {
    let dead = dead_addr().await;
    // Quick means the refusal is taken at once, not waited out like a connect timeout.
    let config = format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nconnect_timeout = \"10s\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[backends]]\nid = \"dead\"\naddress = \"{dead}\"\n"
    );
    let p = start_proxy(&config).await;
    let started = Instant::now();
    let r = p.get("/", &[("x-user-id", "k")]).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn slow_backend_is_a_504_after_request_timeout() {
    let a = start_backend("cache-a").await;
    // Long enough for the quick request below on any machine; the slow one answers far later.
    let p = start_proxy(&config_proxy("request_timeout = \"1s\"", "", &[&a])).await;
    let started = Instant::now();
    let r = p.get("/slow/8000", &[("x-user-id", "k")]).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.text());
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // A quick request on the same backend still works.
    let r = p.get("/slow/10", &[("x-user-id", "k")]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn request_timeout_holds_for_each_request_of_a_keepalive_connection() {
    let a = start_backend("cache-a").await;
    let p = start_proxy(&config_proxy("request_timeout = \"1s\"", "", &[&a])).await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\r\n");
    let mut c = RawConn::connect(p.proxy).await;
    // A 300 ms request first: the next one's timeout must run from its own start, not the
    // first one's (which would give a 504 some 700 ms into it).
    c.send(get("/slow/300")).await.unwrap();
    assert_eq!(c.read_response(Duration::from_secs(5)).await.status, 200);
    let started = Instant::now();
    c.send(get("/slow/8000")).await.unwrap();
    let r = c.read_response(Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(elapsed >= Duration::from_secs(1), "504 early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    // The connection goes on, and so does its timeout.
    c.send(get("/slow/10")).await.unwrap();
    assert_eq!(c.read_response(Duration::from_secs(5)).await.status, 200);
    let started = Instant::now();
    c.send(get("/slow/8000")).await.unwrap();
    assert_eq!(c.read_response(Duration::from_secs(10)).await.status, 504);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// The request headers the backend received, from its `/headers` JSON.
fn received(r: &RawReply) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarded_headers_set() {
    let a = start_backend("cache-a").await;
    let p = start_proxy(&config_with("", &[&a])).await;
    let r = raw_request(
        p.proxy,
        "GET /headers HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: 7\r\n\
         Connection: close, x-foo\r\nX-Foo: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         Proxy-Connection: keep-alive\r\nX-Forwarded-For: 203.0.113.9\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    let h = received(&r);
    for gone in ["x-foo", "keep-alive", "te", "proxy-connection"] {
        assert!(h.get(gone).is_none(), "{gone} reached the backend: {h}");
    }
    if let Some(c) = h.get("connection") {
        assert!(
            !c.to_string().contains("x-foo"),
            "connection forwarded: {c}"
        );
    }
    assert_eq!(h["x-kept"][0], "yes");
    assert_eq!(h["x-user-id"][0], "7");
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "http");

    // Without an earlier X-Forwarded-For, the client IP is the whole value.
    let r = raw_request(
        p.proxy,
        "GET /headers HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: 7\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(received(&r)["x-forwarded-for"][0], "127.0.0.1");
}

#[tokio::test]
async fn foreign_authority_still_goes_to_the_ring() {
    let (a, b) = (
        start_backend("cache-a").await,
        start_backend("cache-b").await,
    );
    let p = start_proxy(&config_with("", &[&a, &b])).await;
    let owner = p.owner_by_admin("1").await["backend"].clone();
    for request in [
        "GET http://example.invalid/headers HTTP/1.1\r\nHost: example.invalid\r\n\
         x-user-id: 1\r\nConnection: close\r\n\r\n",
        "GET /headers HTTP/1.1\r\nHost: example.invalid:80\r\nx-user-id: 1\r\n\
         Connection: close\r\n\r\n",
    ] {
        let r = raw_request(p.proxy, request).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("x-backend"), owner.as_str(), "{request:?}");
    }
    assert_eq!(a.hits() + b.hits(), 2);
}
