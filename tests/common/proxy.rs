//! An in-process ringproxy on port 0, config builders and routing helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use ringproxy::config::Config;
use ringproxy::server::Server;
use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::backend::TestBackend;
use super::client::{Http, Reply};

/// A ringproxy serving in this process until `stop()` (or drop).
pub struct TestProxy {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub http: Http,
    task: JoinHandle<()>,
}

impl TestProxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// GET through the proxy with the given headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.http.get(&self.url(path), headers).await
    }

    /// GET through the proxy with `x-user-id: key`; the backend that answered.
    pub async fn owner_by_request(&self, key: &str) -> String {
        let r = self.get("/", &[("x-user-id", key)]).await;
        assert_eq!(r.status, StatusCode::OK, "key {key}: {}", r.text());
        r.backend()
    }

    /// The serving backend of each key, by real requests (a few in parallel).
    pub async fn owners_by_request(&self, keys: &[String]) -> Vec<String> {
        let mut out = vec![String::new(); keys.len()];
        for (chunk_no, chunk) in keys.chunks(8).enumerate() {
            let mut set = JoinSet::new();
            for (i, key) in chunk.iter().enumerate() {
                let (http, url, key) = (self.http.clone(), self.url("/"), key.clone());
                set.spawn(async move {
                    let r = http.get(&url, &[("x-user-id", &key)]).await;
                    assert_eq!(r.status, StatusCode::OK, "key {key}: {}", r.text());
                    (i, r.backend())
                });
            }
            while let Some(done) = set.join_next().await {
                let (i, backend) = done.unwrap();
                out[chunk_no * 8 + i] = backend;
            }
        }
        out
    }

    /// The owner of `key` according to the admin `GET /route`.
    pub async fn owner_by_admin(&self, key: &str) -> Value {
        let url = self.admin_url(&format!("/route?key={}", encode(key)));
        let r = self.http.get(&url, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }

    pub async fn admin(&self, method: Method, path: &str, body: &str) -> Reply {
        self.http
            .request(method, &self.admin_url(path), &[], body.to_string())
            .await
    }

    pub async fn backends(&self) -> Value {
        let r = self.admin(Method::GET, "/backends", "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }

    /// Fires the shutdown token and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops within 5s")
            .unwrap();
    }
}

pub async fn start_proxy(toml_text: &str) -> TestProxy {
    let config = Config::parse(toml_text).unwrap_or_else(|e| panic!("test config: {e}"));
    let server = Server::bind(&config).await.expect("bind");
    let (proxy, admin) = (server.proxy_addr(), server.admin_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    TestProxy {
        proxy,
        admin,
        shutdown,
        http: Http::new(),
        task,
    }
}

/// The `[[backends]]` tables for these backends, ids = names, weight 1.
pub fn backends_toml(backends: &[&TestBackend]) -> String {
    backends
        .iter()
        .map(|b| {
            format!(
                "[[backends]]\nid = \"{}\"\naddress = \"{}\"\n",
                b.name, b.addr
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A config listening on port 0 with the default header key, `extra` sections and `backends`.
pub fn config_with(extra: &str, backends: &[&TestBackend]) -> String {
    config_proxy("", extra, backends)
}

/// Like [`config_with`], with `proxy_lines` added to the `[proxy]` table.
pub fn config_proxy(proxy_lines: &str, extra: &str, backends: &[&TestBackend]) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_lines}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n{}",
        backends_toml(backends)
    )
}

pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// Percent-encodes everything but unreserved characters, for query values.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn count<'a>(items: impl IntoIterator<Item = &'a String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item.clone()).or_insert(0) += 1;
    }
    counts
}
