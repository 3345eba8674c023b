//! An in-process ringproxy on port 0, config builders and routing helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use ringproxy::config::Config;
use ringproxy::server::Server;
use serde_json::Value;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::backend::TestBackend;
use super::client::{Http, Reply};
use super::suite::{apply_suite_settings_to_file, with_suite_settings};

/// A ringproxy serving in this process until `stop()` (or drop).
pub struct TestProxy {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub shutdown: CancellationToken,
    pub http: Http,
    task: JoinHandle<Result<(), ringproxy::server::ServeError>>,
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

    /// GET `path` through the proxy with `x-user-id: key`.
    pub async fn get_key(&self, path: &str, key: &str) -> Reply {
        self.get(path, &[("x-user-id", key)]).await
    }

    /// GET through the proxy with `x-user-id: key`; the backend that answered (which must
    /// answer 200).
    pub async fn owner_by_request(&self, key: &str) -> String {
        let r = self.get_key("/", key).await;
        if r.status != StatusCode::OK {
            panic!(
                "key {key}: {} {}; backends: {}",
                r.status,
                r.text(),
                self.backends().await
            );
        }
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

    /// The `GET /backends` entry of `id`.
    pub async fn backend_state(&self, id: &str) -> Value {
        let all = self.backends().await;
        all["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {all}"))
            .clone()
    }

    /// Polls `GET /backends` until `id` is in `state` (at most `within`); its entry then.
    pub async fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let s = self.backend_state(id).await;
            if s["state"] == state {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{id} not {state} within {within:?}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The `version` of `GET /ring`.
    pub async fn ring_version(&self) -> u64 {
        let r = self.admin(Method::GET, "/ring", "").await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()["version"].as_u64().unwrap()
    }

    /// Asserts that real requests route every key as `want`, naming the first few that do not.
    pub async fn assert_routing(&self, keys: &[String], want: &[String], what: &str) {
        let got = self.owners_by_request(keys).await;
        let wrong: Vec<String> = (0..keys.len())
            .filter(|&i| got[i] != want[i])
            .map(|i| format!("{} on {} (want {})", keys[i], got[i], want[i]))
            .collect();
        assert!(
            wrong.is_empty(),
            "{what}: {} keys misrouted, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
    }

    /// Fires the shutdown token and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops within 5s")
            .expect("server task")
            .expect("server ran");
    }
}

/// Starts a proxy from `toml_text` (with the suite's HTTP/1 path, see [`with_suite_settings`]).
pub async fn start_proxy(toml_text: &str) -> TestProxy {
    let config = Config::parse(&with_suite_settings(toml_text))
        .unwrap_or_else(|e| panic!("test config: {e}"));
    serve(Server::bind(&config).await.expect("bind"))
}

/// Like [`start_proxy`], from the config file at `path`, which `POST /reload` reads again.
/// The file gets the suite's HTTP/1 path first; rewrite it with [`write_config`] before a
/// reload so the path stays.
pub async fn start_proxy_from_file(path: &std::path::Path) -> TestProxy {
    apply_suite_settings_to_file(path);
    let config = Config::load(path).unwrap_or_else(|e| panic!("test config: {e}"));
    let server = Server::bind_with_reload(&config, Some(path.to_path_buf()))
        .await
        .expect("bind");
    serve(server)
}

fn serve(server: Server) -> TestProxy {
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
    let list: Vec<(&str, SocketAddr)> =
        backends.iter().map(|b| (b.name.as_str(), b.addr)).collect();
    backends_toml_addrs(&list)
}

/// The `[[backends]]` tables for (id, address) pairs, weight 1.
pub fn backends_toml_addrs(list: &[(&str, SocketAddr)]) -> String {
    list.iter()
        .map(|(id, addr)| format!("[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A config listening on port 0 with the default header key, `extra` sections and `backends`.
pub fn config_with(extra: &str, backends: &[&TestBackend]) -> String {
    config_proxy("", extra, backends)
}

/// Like [`config_with`], with `proxy_lines` added to the `[proxy]` table.
pub fn config_proxy(proxy_lines: &str, extra: &str, backends: &[&TestBackend]) -> String {
    config_text(proxy_lines, extra, &backends_toml(backends))
}

/// Like [`config_proxy`], for (id, address) pairs: backends that are not [`TestBackend`]s, or
/// dead addresses.
pub fn config_addrs(proxy_lines: &str, extra: &str, list: &[(&str, SocketAddr)]) -> String {
    config_text(proxy_lines, extra, &backends_toml_addrs(list))
}

fn config_text(proxy_lines: &str, extra: &str, backends: &str) -> String {
    with_suite_settings(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_lines}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n{backends}"
    ))
}

/// A `[health]` line for tests that look at an ejection after it happened: an ejection that
/// outlasts any run of a test, so it is still on when the test looks, however slow the machine.
pub const EJECT_FOR_LONG: &str = "eject_for = \"1h\"";

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
