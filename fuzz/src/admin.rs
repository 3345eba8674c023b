//! The admin API on arbitrary requests, served in-process.
//!
//! `Admin::handle` takes a hyper `Request<Incoming>`, which only hyper can build, and the parts
//! worth fuzzing (the `PUT /backends/{id}` body, path segments) are private to `src/admin.rs`.
//! So each request goes through hyper's real HTTP/1 server over `tokio::io::duplex`: the same
//! code path as the admin listener, minus the socket, at thousands of inputs a second.
//!
//! Input: up to [`MAX_REQUESTS`] requests separated by NUL bytes, each `METHOD PATH\nBODY`. The
//! path's bytes are sent as they are where a request target allows them and percent-encoded
//! elsewhere (`%` itself is kept, so the fuzzer can write its own escapes).

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ringproxy::admin::Admin;
use ringproxy::config::Config;
use ringproxy::metrics::Metrics;
use ringproxy::reload::Reloader;
use ringproxy::snapshot::Cluster;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests per input: enough for join, drain, read back, leave.
const MAX_REQUESTS: usize = 8;

/// The cluster each input starts from: three backends, few points so each input is cheap.
const CONFIG: &str = r#"
[ring]
vnodes = 20

[[backends]]
id = "cache-a"
address = "127.0.0.1:9001"

[[backends]]
id = "cache-b"
address = "127.0.0.1:9002"
weight = 2

[[backends]]
id = "cache-c"
address = "127.0.0.1:9003"
"#;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

/// Serves the requests in `data` in order against one fresh cluster and checks each answer and
/// the cluster after each change.
pub fn admin(data: &[u8]) {
    let requests: Vec<Vec<u8>> = data
        .split(|&b| b == 0)
        .take(MAX_REQUESTS)
        .filter_map(request)
        .collect();
    if requests.is_empty() {
        return;
    }
    static BASE: OnceLock<Config> = OnceLock::new();
    let config = BASE.get_or_init(|| Config::parse(CONFIG).expect("the harness config is valid"));
    let cluster = Arc::new(Cluster::new(config).expect("the harness cluster starts"));
    let reloader = Arc::new(Reloader::new(None, cluster.clone()));
    let admin = Arc::new(Admin::new(
        cluster.clone(),
        Arc::new(Metrics::new()),
        reloader,
        Arc::default(),
    ));
    RUNTIME.with(|rt| {
        rt.block_on(async {
            for raw in requests {
                serve_one(&admin, &raw).await;
                check_cluster(&cluster);
            }
        });
    });
}

/// One `METHOD PATH\nBODY` record as HTTP/1.1 bytes, or `None` if it has no valid method.
fn request(record: &[u8]) -> Option<Vec<u8>> {
    let (head, body) = match record.iter().position(|&b| b == b'\n') {
        Some(i) => (&record[..i], &record[i + 1..]),
        None => (record, &[][..]),
    };
    let space = head.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&head[..space]).ok()?;
    let path = &head[space + 1..];
    let mut out = format!("{method} ").into_bytes();
    if path.first() != Some(&b'/') {
        out.push(b'/');
    }
    for &b in path {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out.extend_from_slice(
        format!(
            " HTTP/1.1\r\nhost: admin\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body);
    Some(out)
}

/// Sends `raw` to `Admin::handle` through hyper's HTTP/1 server and reads the answer to its end.
async fn serve_one(admin: &Arc<Admin>, raw: &[u8]) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let admin = admin.clone();
    let service = service_fn(move |req| {
        let admin = admin.clone();
        async move {
            let (parts, body) = admin.handle(req).await.into_parts();
            let body = body.collect().await.expect("a full body").to_bytes();
            check_response(parts.status, parts.headers.get("content-type"), &body);
            Ok::<_, Infallible>(Response::from_parts(parts, Full::new(body)))
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service);
    let talk = async {
        // The server may answer and close before reading a body it does not want.
        let _ = client.write_all(raw).await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        answer
    };
    let (served, answer) = tokio::join!(conn, talk);
    let _ = served; // hyper's own refusal of a malformed request is not the admin API's concern
    assert!(
        answer.starts_with(b"HTTP/1.1 ") || answer.is_empty(),
        "not an HTTP answer: {}",
        String::from_utf8_lossy(&answer)
    );
}

/// Every answer is a status the API documents, with a body that says what it claims to be.
fn check_response(status: StatusCode, content_type: Option<&http::HeaderValue>, body: &Bytes) {
    assert!(
        !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}: {}",
        String::from_utf8_lossy(body)
    );
    let is_json = content_type.is_some_and(|v| v == "application/json");
    if is_json {
        let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "{status} body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        if status.is_client_error() || status.is_server_error() {
            let error = value["error"].as_str().unwrap_or_default();
            assert!(
                !error.is_empty(),
                "{status} without an error message: {value}"
            );
        }
    } else {
        assert!(
            status.is_success(),
            "{status} refusal without a JSON body: {}",
            String::from_utf8_lossy(body)
        );
    }
}

/// The snapshot's ring and backend list describe the same members, in the same order.
fn check_cluster(cluster: &Cluster) {
    let snapshot = cluster.load();
    let members = snapshot.ring.members();
    assert_eq!(members.len(), snapshot.backends.len());
    for (m, b) in members.iter().zip(&snapshot.backends) {
        assert_eq!(m.id, b.id, "ring member and backend differ");
        assert_eq!(m.weight, b.weight, "weights differ for {}", b.id);
    }
}
