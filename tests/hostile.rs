//! Hostile clients (issue 13), black-box over raw sockets: a real proxy on port 0 in front of
//! recording backends, and clients that write exact bytes and read with a deadline on every
//! read. One test (or a few) per numbered problem of the issue, then the request-smuggling
//! cases that already failed closed and must keep doing so, and a WebSocket round trip.
//!
//! Timeouts in these configs are small (hundreds of ms) and every assertion on a close gives
//! both a lower bound (the timer, not something else, closed it) and an upper bound far below
//! the 5 s [`BOUND`] every wait has.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use http::Method;
use ringproxy::config::Config;
use serde_json::Value;
use tokio::task::JoinSet;

/// The longest any single wait in these tests may take.
const BOUND: Duration = Duration::from_secs(5);

const BIN: &str = env!("CARGO_BIN_EXE_ringproxy");

/// An empty HTTP/2 SETTINGS frame.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// A config for `backends` with one proxy worker and `proxy_lines` in `[proxy]`.
fn config(proxy_lines: &str, extra: &str, backends: &[&Recorder]) -> String {
    let list: Vec<(&str, SocketAddr)> =
        backends.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    config_addrs(&format!("workers = 1\n{proxy_lines}"), extra, &list)
}

/// A keep-alive `GET path` with `x-user-id: key`.
fn get(path: &str, key: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: {key}\r\n\r\n")
}

async fn metrics(p: &TestProxy) -> String {
    let r = p.admin(Method::GET, "/metrics", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// The value of the sample whose line starts with `series` (name and labels), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn body_text(r: &RawReply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Asserts `took` is at least `min` (the timer fired, not something earlier) and well below
/// `max`.
fn assert_between(what: &str, took: Duration, min: Duration, max: Duration) {
    assert!(
        took >= min && took < max,
        "{what}: took {took:?}, expected between {min:?} and {max:?}"
    );
}

// ---- 1. Silent connections are closed ----

#[tokio::test]
async fn p1_silent_connections_and_a_bare_h2_preface_are_closed_after_the_header_timeout() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("client_header_timeout = \"300ms\"", "", &[&b])).await;
    let mut waits = JoinSet::new();
    for i in 0..51 {
        let mut c = RawConn::connect(p.proxy).await;
        let at = Instant::now();
        if i == 50 {
            // Only the HTTP/2 preface: the connection is h2c from then on, but no request
            // (not even SETTINGS) ever comes.
            c.send(H2_PREFACE).await.unwrap();
        }
        waits.spawn(async move { (i, c.wait_closed(BOUND).await.map(|_| at.elapsed())) });
    }
    while let Some(done) = waits.join_next().await {
        let (i, closed) = done.unwrap();
        let what = if i == 50 {
            "h2 preface only".to_string()
        } else {
            format!("silent connection {i}")
        };
        let took = closed.unwrap_or_else(|| panic!("{what}: still open after {BOUND:?}"));
        assert_between(
            &what,
            took,
            Duration::from_millis(250),
            Duration::from_secs(3),
        );
    }
    assert_eq!(b.accepted(), 0, "silent clients reached the backend");
    // The proxy still serves.
    let r = raw_exchange(p.proxy, get("/", "k")).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
}

/// A `GET` whose head is `size` bytes, padded with one long header.
fn get_of_size(size: usize) -> String {
    let bare = get("/", "k");
    let pad = "x-pad: \r\n".len();
    let value = "v".repeat(size - bare.len() - pad);
    format!("GET / HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\nx-pad: {value}\r\n\r\n")
}

#[tokio::test]
async fn request_heads_over_the_configured_size_get_431() {
    let b = start_recorder("b1").await;
    for (limit, setting) in [
        (64 * 1024, ""),
        (16 * 1024, "client_max_header_bytes = 16384"),
    ] {
        let p = start_proxy(&config(setting, "", &[&b])).await;
        let fits = get_of_size(limit - 1024);
        assert_eq!(fits.len(), limit - 1024);
        let r = raw_exchange(p.proxy, &fits).await;
        assert_eq!(
            r.status,
            200,
            "a {}-byte head under a {limit}-byte limit",
            fits.len()
        );
        let before = b.seen().len();
        let mut c = RawConn::connect(p.proxy).await;
        c.send(get_of_size(limit + 1024)).await.unwrap();
        let r = c.read_response(BOUND).await;
        assert_eq!(r.status, 431, "a head 1 KiB over the {limit}-byte limit");
        assert!(
            c.wait_closed(BOUND).await.is_some(),
            "the connection stayed open after 431"
        );
        assert_eq!(
            b.seen().len(),
            before,
            "the oversized head reached the backend"
        );
    }
    // Below what hyper's HTTP/1 server can buffer: refused at load, naming the field.
    let err = Config::parse(&config("client_max_header_bytes = 4096", "", &[&b]))
        .expect_err("a 4 KiB limit was accepted");
    assert!(
        err.to_string().contains("proxy.client_max_header_bytes"),
        "{err}"
    );
}

#[tokio::test]
async fn http2_header_lists_over_the_configured_size_get_431() {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let b = start_recorder("b1").await;
    let p = start_proxy(&config("client_max_header_bytes = 8192", "", &[&b])).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<bytes::Bytes>>();
    // HPACK counts each field as name + value + 32: 10 lines are ~1.4 KB, 80 are ~11 KB.
    for (lines, want) in [(10, 200), (80, 431)] {
        let mut req = http::Request::get(format!("http://{}/", p.proxy)).header("x-user-id", "k");
        for i in 0..lines {
            req = req.header(format!("x-pad-{i}"), "v".repeat(100));
        }
        let sent = client.request(req.body(Empty::new()).unwrap());
        let res = tokio::time::timeout(BOUND, sent)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(res.status().as_u16(), want, "{lines} header lines over h2c");
        let _ = res.into_body().collect().await;
    }
    assert_eq!(
        b.seen().len(),
        1,
        "the oversized header list reached the backend"
    );
}

#[tokio::test]
async fn p1_idle_keepalive_connection_is_closed_after_the_keepalive_timeout() {
    let b = start_recorder("b1").await;
    // Keep-alive shorter than the header timeout: the keep-alive timer closes it.
    keepalive_closes_between(
        &b,
        "client_header_timeout = \"3s\"\nclient_keepalive_timeout = \"400ms\"",
        "keep-alive 400ms (header timeout 3s)",
        Duration::from_millis(350),
        Duration::from_millis(2500),
    )
    .await;
    // Keep-alive longer than the header timeout: the header timeout, which runs from accept
    // to the first head, does not cut the keep-alive period short.
    keepalive_closes_between(
        &b,
        "client_header_timeout = \"300ms\"\nclient_keepalive_timeout = \"1200ms\"",
        "keep-alive 1200ms (header timeout 300ms)",
        Duration::from_millis(1100),
        Duration::from_secs(4),
    )
    .await;
}

/// One request on a fresh connection to a proxy with `settings`; the idle connection must
/// then be closed between `min` and `max` after the response.
async fn keepalive_closes_between(
    b: &Recorder,
    settings: &str,
    what: &str,
    min: Duration,
    max: Duration,
) {
    let p = start_proxy(&config(settings, "", &[b])).await;
    let mut c = RawConn::connect(p.proxy).await;
    c.send(get("/", "k")).await.unwrap();
    assert_eq!(c.read_response(BOUND).await.status, 200);
    let took = c.wait_closed(BOUND).await.expect("idle keep-alive closed");
    assert_between(what, took, min, max);
}

#[tokio::test]
async fn p1_idle_h2c_connection_is_closed_after_the_idle_timeout() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config(
        "client_header_timeout = \"3s\"\nclient_keepalive_timeout = \"3s\"\n\
         client_idle_timeout = \"400ms\"",
        "",
        &[&b],
    ))
    .await;
    let mut c = RawConn::connect(p.proxy).await;
    c.send([H2_PREFACE, H2_SETTINGS].concat()).await.unwrap();
    c.send(h2_get(1, "/", "proxy.test", &[("x-user-id", "k")]))
        .await
        .unwrap();
    // Frames until stream 1 ends; its HEADERS carry :status 200 (static-table entry 0x88).
    let mut status = None;
    loop {
        let (kind, flags, stream, payload) = c.read_h2_frame(BOUND).await;
        if stream != 1 {
            continue;
        }
        if kind == 1 {
            status = payload.first().copied();
        }
        if (kind == 0 || kind == 1) && flags & 0x1 != 0 {
            break;
        }
    }
    assert_eq!(status, Some(0x88), "stream 1 did not answer 200");
    assert_eq!(b.seen().len(), 1);
    // No stream open now: closed after the idle timeout, long before the other two.
    let took = c
        .wait_closed(BOUND)
        .await
        .expect("idle h2c connection closed");
    assert_between(
        "h2c idle 400ms (header and keep-alive 3s)",
        took,
        Duration::from_millis(350),
        Duration::from_millis(2500),
    );
}

#[tokio::test]
async fn p1_connections_past_max_connections_wait_for_a_free_slot() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config(
        "max_connections = 5\nclient_header_timeout = \"10s\"\nclient_keepalive_timeout = \"10s\"",
        "",
        &[&b],
    ))
    .await;
    // Five keep-alive connections, each served once and then holding its slot.
    let mut first = Vec::new();
    for i in 0..5 {
        let mut c = RawConn::connect(p.proxy).await;
        c.send(get("/", &format!("k{i}"))).await.unwrap();
        assert_eq!(c.read_response(BOUND).await.status, 200, "connection {i}");
        first.push(c);
    }
    // The sixth is taken by the kernel's backlog, but not served.
    let mut sixth = RawConn::connect(p.proxy).await;
    sixth.send(get("/", "k6")).await.unwrap();
    assert_eq!(
        sixth.read_some(Duration::from_millis(600)).await,
        Read::TimedOut,
        "a sixth connection was served with max_connections = 5"
    );
    assert_eq!(b.seen().len(), 5);
    // One of the five leaves: the sixth gets its slot and its answer.
    drop(first.remove(0));
    let started = Instant::now();
    let r = sixth.read_response(BOUND).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(b.seen().len(), 6);
}

// ---- 2. A client that stops reading ----

/// Asks for `SIZE` bytes on `c` and then reads nothing past the head; asserts that the proxy
/// closes the backend connection after the send timeout (500 ms), then the client's, and that
/// the client got far less than the body.
async fn stop_reading(b: &Recorder, c: &mut RawConn, what: &str) {
    const SIZE: u64 = 64 << 20;
    let sent_at = Instant::now();
    c.send(get(&format!("/big/{SIZE}"), "k")).await.unwrap();
    let (status, _) = c.read_head(BOUND).await;
    assert_eq!(status, 200, "{what}");
    let head_at = Instant::now();
    assert_eq!(
        b.open(),
        1,
        "{what}: the backend connection serving the body"
    );
    // The client reads nothing more: the backend connection is closed after the send timeout.
    b.wait_no_connections(BOUND).await.unwrap_or_else(|| {
        panic!("{what}: backend connection still open: the proxy never gave up on the client")
    });
    // The stall began after the request was sent: from then, the close cannot come before the
    // send timeout.
    assert_between(
        &format!("{what}: backend connection closed after the request"),
        sent_at.elapsed(),
        Duration::from_millis(480),
        Duration::from_secs(4) + head_at.duration_since(sent_at),
    );
    // And the client's connection: what was in flight drains, then EOF, far short of the body.
    assert!(
        c.wait_closed(BOUND).await.is_some(),
        "{what}: client connection still open {:?} after its head",
        head_at.elapsed()
    );
    assert!(
        c.received < SIZE / 2,
        "{what}: the client got {} of {SIZE} bytes",
        c.received
    );
}

#[tokio::test]
async fn p2_client_that_stops_reading_is_cut_off_with_its_backend_connection() {
    let b = start_recorder("b1").await;
    // Header and keep-alive timeouts at their defaults (10 s, 60 s): only the send timeout
    // can end these connections within the test's bounds.
    let p = start_proxy(&config("send_timeout = \"500ms\"", "", &[&b])).await;

    // On the connection's first request.
    let mut c = RawConn::connect(p.proxy).await;
    stop_reading(&b, &mut c, "first request").await;
    // On a later request of a keep-alive connection.
    let mut c = RawConn::connect(p.proxy).await;
    c.send(get("/", "k")).await.unwrap();
    assert_eq!(c.read_response(BOUND).await.status, 200);
    // (The pooled backend connection of that request serves the next.)
    stop_reading(&b, &mut c, "second request").await;

    // The half-read backend connections were not pooled; the next request opens a new one.
    let m = metrics(&p).await;
    assert_eq!(
        sample(&m, "ringproxy_upstream_idle_connections"),
        Some(0.0),
        "{m}"
    );
    let opened = "ringproxy_upstream_connections_opened_total{backend=\"b1\"}";
    let before = sample(&m, opened).unwrap();
    let r = raw_exchange(p.proxy, get("/", "k")).await;
    assert_eq!(r.status, 200);
    assert_eq!(sample(&metrics(&p).await, opened), Some(before + 1.0));
}

// ---- 3. Client body errors are the client's ----

const BAD_BODY: &str = "Bad Request: the request body could not be read\n";

/// Asserts the metrics blame nothing on `backend` and that it is healthy without failures.
async fn assert_backend_not_blamed(p: &TestProxy, backend: &str) {
    let m = metrics(p).await;
    let series = format!("ringproxy_upstream_errors_total{{backend=\"{backend}\"");
    assert!(
        !m.lines().any(|l| l.starts_with(&series)),
        "client errors counted against {backend}:\n{m}"
    );
    let state = p.backend_state(backend).await;
    assert_eq!(state["state"], "healthy", "{state}");
    assert_eq!(state["consecutive_failures"], 0, "{state}");
    assert_eq!(state["failures"], 0, "{state}");
}

#[tokio::test]
async fn p3_broken_request_bodies_are_400s_blamed_on_the_client() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("", "", &[&b])).await;
    let rejected = "ringproxy_rejected_total{reason=\"BadRequestBody\"}";

    // Malformed chunking.
    let r = raw_exchange(
        p.proxy,
        "POST /upload HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Transfer-Encoding: chunked\r\n\r\ng\r\n",
    )
    .await;
    assert_eq!(r.status, 400, "{}", body_text(&r));
    assert_eq!(body_text(&r), BAD_BODY);
    assert_eq!(sample(&metrics(&p).await, rejected), Some(1.0));
    assert_backend_not_blamed(&p, "b1").await;

    // A client that stops sending mid-body (half-close): it can still read the 400.
    let mut c = RawConn::connect(p.proxy).await;
    let seen = b.seen().len();
    c.send(
        "POST /upload HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Content-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    b.wait_requests(seen + 1, BOUND).await;
    c.shutdown_write().await;
    let r = c.read_response(BOUND).await;
    assert_eq!(r.status, 400, "{}", body_text(&r));
    assert_eq!(body_text(&r), BAD_BODY);
    assert_eq!(sample(&metrics(&p).await, rejected), Some(2.0));
    assert_backend_not_blamed(&p, "b1").await;

    // A client that hangs up mid-body: nobody gets an answer, the backend's exchange is
    // abandoned, and nothing is blamed on it.
    let mut c = RawConn::connect(p.proxy).await;
    c.send(
        "POST /upload HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Content-Length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    b.wait_requests(seen + 2, BOUND).await;
    drop(c);
    b.wait_no_connections(BOUND)
        .await
        .expect("the abandoned upload's backend connection is closed");
    assert_backend_not_blamed(&p, "b1").await;

    // The backend still serves.
    let r = raw_exchange(p.proxy, get("/", "k")).await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let m = metrics(&p).await;
    assert!(
        !m.contains("ringproxy_upstream_errors_total{"),
        "upstream errors after client body errors:\n{m}"
    );
}

// ---- 4. CONNECT ----

#[tokio::test]
async fn p4_connect_is_405_with_allow_and_never_reaches_the_backend() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("", "", &[&b])).await;
    for request in [
        "CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example:443\r\nx-user-id: k\r\n\r\n",
        "CONNECT / HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\r\n",
    ] {
        let mut c = RawConn::connect(p.proxy).await;
        c.send(request).await.unwrap();
        let r = c.read_response(BOUND).await;
        assert_eq!(r.status, 405, "{request:?}: {}", body_text(&r));
        let allow = r.header("allow").expect("405 without Allow");
        assert!(allow.contains("GET"), "{allow}");
        assert!(!allow.contains("CONNECT"), "{allow}");
        assert_eq!(body_text(&r), "Method Not Allowed\n");
    }
    assert_eq!(
        b.accepted(),
        0,
        "CONNECT reached the backend: {:?}",
        b.seen()
    );
    let m = metrics(&p).await;
    assert_eq!(
        sample(&m, "ringproxy_rejected_total{reason=\"MethodNotAllowed\"}"),
        Some(2.0),
        "{m}"
    );
}

// ---- 5. Shutdown ----

#[tokio::test]
async fn p5_shutdown_closes_idle_and_half_read_connections_at_once() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config(
        "shutdown_grace = \"10s\"\nclient_header_timeout = \"30s\"\n\
         client_keepalive_timeout = \"30s\"\nclient_idle_timeout = \"30s\"",
        "",
        &[&b],
    ))
    .await;
    // An idle h2c connection, past its handshake (the proxy's SETTINGS arrived).
    let mut h2 = RawConn::connect(p.proxy).await;
    h2.send(H2_PREFACE).await.unwrap();
    h2.send(H2_SETTINGS).await.unwrap();
    assert!(
        matches!(h2.read_some(BOUND).await, Read::Data(_)),
        "no h2 SETTINGS from the proxy"
    );
    // Half a request head.
    let mut half = RawConn::connect(p.proxy).await;
    half.send("GET / HTTP/1.1\r\nHost: proxy.test\r\n")
        .await
        .unwrap();
    // An HTTP/1 keep-alive connection between requests.
    let mut idle = RawConn::connect(p.proxy).await;
    idle.send(get("/", "k")).await.unwrap();
    assert_eq!(idle.read_response(BOUND).await.status, 200);

    let started = Instant::now();
    p.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "shutdown took {took:?} with nothing in flight (grace 10s)"
    );
    for (what, c) in [
        ("h2c", &mut h2),
        ("half head", &mut half),
        ("idle", &mut idle),
    ] {
        assert!(
            c.wait_closed(Duration::from_secs(1)).await.is_some(),
            "{what} connection still open after the shutdown"
        );
    }
}

#[tokio::test]
async fn p5_shutdown_waits_for_an_in_flight_request() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("shutdown_grace = \"10s\"", "", &[&b])).await;
    let mut c = RawConn::connect(p.proxy).await;
    c.send(get("/slow/800", "k")).await.unwrap();
    b.wait_requests(1, BOUND).await;
    let reply = tokio::spawn(async move { c.read_response(BOUND).await });

    let started = Instant::now();
    p.stop().await;
    let took = started.elapsed();
    let r = reply.await.unwrap();
    assert_eq!(r.status, 200, "{}", body_text(&r));
    assert_eq!(body_text(&r), "b1");
    assert_between(
        "shutdown with a request in flight",
        took,
        Duration::from_millis(500),
        Duration::from_secs(4),
    );
}

// ---- 6. Admin paths and ids ----

/// An admin request over a raw socket (`Connection: close`); the reply and its JSON body.
async fn admin_raw(p: &TestProxy, method: &str, path: &str, body: &str) -> (u16, Value) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin.test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw_exchange(p.admin, request).await;
    let json = if r.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", body_text(&r)))
    };
    (r.status, json)
}

fn ids(backends: &Value) -> Vec<String> {
    backends["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn p6_admin_decodes_path_segments_and_refuses_unsafe_ids() {
    let (b1, cafe) = (
        start_recorder("b1").await,
        start_recorder("cafe-backend").await,
    );
    let p = start_proxy(&config("", "", &[&b1])).await;
    let put = format!("{{\"address\": \"{}\"}}", cafe.addr);

    let (status, v) = admin_raw(&p, "PUT", "/backends/caf%C3%A9", &put).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["id"], "café");
    let (_, all) = admin_raw(&p, "GET", "/backends", "").await;
    assert!(ids(&all).contains(&"café".to_string()), "{all}");
    // Lowercase percent-encoding is the same id.
    let (status, v) = admin_raw(&p, "GET", "/backends/caf%c3%a9", "").await;
    assert_eq!(status, 200, "{v}");

    let (status, v) = admin_raw(&p, "POST", "/backends/caf%C3%A9/drain", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "draining", "{v}");
    let (status, v) = admin_raw(&p, "DELETE", "/backends/caf%C3%A9", "").await;
    assert_eq!(status, 204, "{v}");
    let (_, all) = admin_raw(&p, "GET", "/backends", "").await;
    assert_eq!(ids(&all), ["b1"], "{all}");

    for (path, id) in [
        ("/backends/..", ".."),
        ("/backends/%2E%2E", ".."),
        ("/backends/a%2Fb", "a/b"),
        ("/backends/a%20b", "a b"),
    ] {
        let (status, v) = admin_raw(&p, "PUT", path, &put).await;
        assert_eq!(status, 400, "PUT {path}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{id:?}")),
            "PUT {path}: the error does not name {id:?}: {v}"
        );
    }
    let (_, all) = admin_raw(&p, "GET", "/backends", "").await;
    assert_eq!(ids(&all), ["b1"], "a refused id joined: {all}");
}

// ---- 7. Absolute-form and invalid targets ----

#[tokio::test]
async fn p7_absolute_form_authority_replaces_host_and_invalid_targets_are_400() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("", "", &[&b])).await;
    let r = raw_exchange(
        p.proxy,
        "GET http://a.example/x?y=1 HTTP/1.1\r\nHost: b\r\nx-user-id: k\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", body_text(&r));
    let seen = b.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/x?y=1", "{seen:?}");
    let hosts: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(k, _)| k == "host")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(hosts, ["a.example"], "{seen:?}");

    for target in ["evil", "evil.example:80", "ftp://a.example/x", "*"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: b\r\nx-user-id: k\r\n\r\n");
        let r = raw_exchange(p.proxy, request).await;
        assert_eq!(r.status, 400, "GET {target}: {}", body_text(&r));
        assert_eq!(
            body_text(&r),
            "Bad Request: invalid request target\n",
            "GET {target}"
        );
    }
    assert_eq!(
        b.seen().len(),
        1,
        "an invalid target reached the backend: {:?}",
        b.targets()
    );
}

// ---- 8. Quoted cookie values ----

#[tokio::test]
async fn p8_quoted_cookie_value_routes_like_the_same_value_in_a_header() {
    let backends = [
        start_recorder("b1").await,
        start_recorder("b2").await,
        start_recorder("b3").await,
    ];
    let refs: Vec<&Recorder> = backends.iter().collect();
    let p = start_proxy(&config(
        "",
        "[affinity]\nkey = [\"header:x-user-id\", \"cookie:session\"]\n",
        &refs,
    ))
    .await;
    let mut c = RawConn::connect(p.proxy).await;
    let mut used = std::collections::HashSet::new();
    for i in 0..24 {
        let user = format!("user-{i}");
        let mut owners = Vec::new();
        for request in [
            get("/", &user),
            format!("GET / HTTP/1.1\r\nHost: proxy.test\r\nCookie: session=\"{user}\"\r\n\r\n"),
            format!(
                "GET / HTTP/1.1\r\nHost: proxy.test\r\nCookie: a=1; session=\"{user}\"; b=2\r\n\r\n"
            ),
            format!("GET / HTTP/1.1\r\nHost: proxy.test\r\nCookie: session={user}\r\n\r\n"),
        ] {
            c.send(&request).await.unwrap();
            let r = c.read_response(BOUND).await;
            assert_eq!(r.status, 200, "{request:?}: {}", body_text(&r));
            owners.push(r.header("x-backend").unwrap().to_string());
        }
        assert!(
            owners.iter().all(|o| *o == owners[0]),
            "{user}: header, quoted cookie, quoted among others, bare cookie went to {owners:?}"
        );
        used.insert(owners[0].clone());
    }
    assert!(
        used.len() > 1,
        "every key on one backend: the test proves nothing"
    );
}

// ---- 9. Admin on a non-loopback address needs a token ----

const OPEN_ADMIN: &str =
    "backends = []\n[proxy]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"0.0.0.0:0\"\n";

/// Runs the binary with `args` (and `--config FILE`), killing it after `within`: its exit
/// code (`None` if it had to be killed) and stderr.
fn run_bounded(config: &str, args: &[&str], within: Duration) -> (Option<i32>, String) {
    let file = TempFile::new("hostile", &with_suite_settings(config));
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&file.path)
        .env_remove("RINGPROXY_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringproxy");
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (code, stderr)
}

#[test]
fn p9_non_loopback_admin_without_a_token_is_a_config_error() {
    let e = Config::parse(OPEN_ADMIN).expect_err("non-loopback admin without a token accepted");
    assert!(e.to_string().contains("admin.token"), "{e}");
    let insecure = format!("{OPEN_ADMIN}insecure = true\n");
    Config::parse(&insecure).unwrap_or_else(|e| panic!("insecure = true refused: {e}"));
    let token = format!("{OPEN_ADMIN}token = \"s3cret\"\n");
    Config::parse(&token).unwrap_or_else(|e| panic!("a token refused: {e}"));

    let (code, stderr) = run_bounded(OPEN_ADMIN, &["check"], BOUND);
    assert_eq!(code, Some(2), "check: {stderr}");
    assert!(stderr.contains("admin.token"), "check: {stderr}");
    // Starting refuses too, before listening anywhere.
    let (code, stderr) = run_bounded(OPEN_ADMIN, &[], BOUND);
    assert_eq!(code, Some(2), "start (None: it served): {stderr}");
    assert!(stderr.contains("admin.token"), "start: {stderr}");
    let (code, stderr) = run_bounded(&insecure, &["check"], BOUND);
    assert_eq!(code, Some(0), "check with insecure = true: {stderr}");
}

// ---- Request smuggling: must keep failing closed ----

/// A request that must never reach a backend on its own.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\r\n";

/// Sends `request` followed by [`SMUGGLED`] on one connection and asserts the proxy fails
/// closed: one answer with a status in `statuses`, then the connection closed with nothing
/// more; the backend saw at most the first request, never the smuggled one, and never a
/// request framed two ways.
async fn fails_closed(what: &str, request: &str, statuses: &[u16]) {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("", "", &[&b])).await;
    let mut c = RawConn::connect(p.proxy).await;
    c.send(format!("{request}{SMUGGLED}")).await.unwrap();
    let r = c.read_response(BOUND).await;
    assert!(
        statuses.contains(&r.status),
        "{what}: status {} (want one of {statuses:?}): {}",
        r.status,
        body_text(&r)
    );
    assert!(
        c.read_to_close(BOUND).await,
        "{what}: connection still open after {BOUND:?}"
    );
    assert!(
        c.buffered().is_empty(),
        "{what}: more after the first answer: {:?}",
        String::from_utf8_lossy(c.buffered())
    );
    let seen = b.seen();
    assert!(seen.len() <= 1, "{what}: backend saw {:?}", b.targets());
    for s in &seen {
        assert!(!s.target.contains("smuggled"), "{what}: smuggled through");
        assert!(
            s.header("content-length").is_none() || s.header("transfer-encoding").is_none(),
            "{what}: forwarded with both Content-Length and Transfer-Encoding: {s:?}"
        );
    }
}

#[tokio::test]
async fn smuggling_content_length_with_transfer_encoding() {
    // Chunked wins (RFC 9112 §6.1) and the connection closes after the answer.
    fails_closed(
        "CL then TE",
        "POST /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Content-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        &[200, 400],
    )
    .await;
    fails_closed(
        "TE then CL",
        "POST /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        &[200, 400],
    )
    .await;
}

#[tokio::test]
async fn smuggling_duplicate_differing_content_length() {
    fails_closed(
        "two Content-Length lines",
        "POST /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
        &[400],
    )
    .await;
    fails_closed(
        "a Content-Length list",
        "POST /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Content-Length: 0, 5\r\n\r\nhello",
        &[400],
    )
    .await;
}

#[tokio::test]
async fn smuggling_chunked_not_last_transfer_coding() {
    fails_closed(
        "chunked, identity",
        "POST /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        &[400],
    )
    .await;
}

#[tokio::test]
async fn smuggling_obs_fold_header_line() {
    fails_closed(
        "obs-fold",
        "GET /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         X-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n",
        &[400],
    )
    .await;
}

#[tokio::test]
async fn smuggling_bare_cr_in_a_header() {
    fails_closed(
        "bare CR",
        "GET /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         X-Bad: a\rTransfer-Encoding: chunked\r\n\r\n",
        &[400],
    )
    .await;
}

#[tokio::test]
async fn smuggling_nul_in_a_header_value() {
    fails_closed(
        "NUL",
        "GET /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\nX-Bad: a\0b\r\n\r\n",
        &[400],
    )
    .await;
}

#[tokio::test]
async fn smuggling_chunk_size_overflow() {
    fails_closed(
        "chunk size overflow",
        "POST /first HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
        &[400],
    )
    .await;
}

// ---- Upgrades keep working ----

#[tokio::test]
async fn websocket_upgrade_round_trips_through_the_proxy() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config("client_header_timeout = \"300ms\"", "", &[&b])).await;
    let mut c = RawConn::connect(p.proxy).await;
    c.send(
        "GET /chat HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, headers) = c.read_head(BOUND).await;
    assert_eq!(status, 101, "{headers:?}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    assert_eq!(
        header("upgrade").as_deref(),
        Some("websocket"),
        "{headers:?}"
    );
    assert_eq!(
        header("connection").as_deref(),
        Some("upgrade"),
        "{headers:?}"
    );
    let seen = b.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("upgrade"), Some("websocket"), "{seen:?}");
    assert_eq!(
        seen[0].header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );

    // Bytes both ways, and the tunnel outlives the header timeout: it is no silent client.
    for message in ["hello through the tunnel", "and once more"] {
        c.send(message).await.unwrap();
        let echoed = c.read_exact_within(message.len(), BOUND).await;
        assert_eq!(echoed, message.as_bytes());
        assert_eq!(
            c.read_some(Duration::from_millis(400)).await,
            Read::TimedOut,
            "the tunnel closed or sent something unasked"
        );
    }
    // The client leaves: the backend's side of the tunnel closes too.
    drop(c);
    b.wait_no_connections(BOUND)
        .await
        .expect("backend side of the tunnel still open after the client left");
}

#[tokio::test]
async fn a_tunnel_keeps_its_connection_slot_and_closes_when_idle() {
    let b = start_recorder("b1").await;
    let p = start_proxy(&config(
        "max_connections = 1\nclient_idle_timeout = \"600ms\"",
        "",
        &[&b],
    ))
    .await;
    let mut c = RawConn::connect(p.proxy).await;
    c.send(
        "GET /chat HTTP/1.1\r\nHost: proxy.test\r\nx-user-id: k\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, _) = c.read_head(BOUND).await;
    assert_eq!(status, 101);
    // The tunnel holds the only slot: a second client waits in the backlog.
    let mut second = RawConn::connect(p.proxy).await;
    second.send(&get("/", "k")).await.unwrap();
    assert_eq!(
        second.read_some(Duration::from_millis(300)).await,
        Read::TimedOut,
        "a second client was served while the tunnel held the only slot"
    );
    // Silent past the idle timeout: the tunnel closes, and the slot serves the second client.
    let closed_after = c.wait_closed(Duration::from_secs(5)).await;
    assert!(closed_after.is_some(), "the idle tunnel was never closed");
    let (status, _) = second.read_head(BOUND).await;
    assert_eq!(status, 200);
}

/// The requests the relay hands to hyper, one per reason, each on its own connection.
fn handover_cases() -> Vec<(&'static str, Vec<u8>)> {
    let key = "x-user-id: k\r\n";
    vec![
        ("h2c", [H2_PREFACE, H2_SETTINGS].concat()),
        ("webdav", format!("PROPFIND / HTTP/1.1\r\nHost: proxy.test\r\n{key}\r\n").into()),
        ("http10", format!("GET / HTTP/1.0\r\nHost: proxy.test\r\n{key}\r\n").into()),
        ("connect", b"CONNECT proxy.test:443 HTTP/1.1\r\nHost: proxy.test:443\r\n\r\n".to_vec()),
        (
            "upgrade",
            format!("GET / HTTP/1.1\r\nHost: proxy.test\r\nConnection: upgrade\r\nUpgrade: x-test\r\n{key}\r\n").into(),
        ),
        ("target", format!("GET http://proxy.test/ HTTP/1.1\r\nHost: proxy.test\r\n{key}\r\n").into()),
        ("no_host", format!("GET / HTTP/1.1\r\n{key}\r\n").into()),
    ]
}

#[tokio::test]
async fn handovers_to_hyper_are_counted_by_reason_on_the_relay_only() {
    let b = start_recorder("b1").await;
    for mode in ["relay", "hyper"] {
        let p = start_proxy(&config(&format!("http1 = \"{mode}\""), "", &[&b])).await;
        for (_, request) in handover_cases() {
            let mut c = RawConn::connect(p.proxy).await;
            c.send(&request).await.unwrap();
            // Answered (or refused) by hyper: some bytes come back, or the connection closes.
            assert_ne!(c.read_some(BOUND).await, Read::TimedOut, "{mode}");
        }
        // A request the relay serves itself, on a connection of its own.
        let r = raw_exchange(p.proxy, get("/", "k")).await;
        assert_eq!(r.status, 200, "{mode}");
        let m = metrics(&p).await;
        for (reason, _) in handover_cases() {
            let series = format!("ringproxy_http1_handovers_total{{reason=\"{reason}\"}}");
            let want = (mode == "relay").then_some(1.0);
            assert_eq!(sample(&m, &series), want, "{mode} {reason}:\n{m}");
        }
        assert_eq!(
            m.lines()
                .filter(|l| l.starts_with("ringproxy_http1_handovers_total{"))
                .count(),
            if mode == "relay" { 7 } else { 0 },
            "{mode}:\n{m}"
        );
    }
}
