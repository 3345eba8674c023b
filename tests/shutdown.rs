//! Graceful shutdown: SIGTERM to the real binary and the library's cancellation token both stop
//! new connections at once, let in-flight requests finish, and respect the grace period.
//!
//! The in-flight request is held by the backend until the test releases it (or forever), so
//! "still in flight when shutdown began" and "cut off by the grace period" hold however slow
//! the machine is; every wait is a bounded poll for a condition.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_ringproxy");

/// Waits (bounded) until `backend` has received `n` requests.
async fn wait_for_hits(backend: &TestBackend, n: usize) {
    wait_until(
        Duration::from_secs(10),
        "backend never got the request",
        || backend.hits() >= n,
    )
    .await;
}

/// Waits (bounded) until connecting to `addr` is refused; panics if it never is.
async fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    /// The next stderr line within `timeout`, if any.
    async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.try_recv() {
                Ok(l) => {
                    self.seen.push(l.clone());
                    return Some(l);
                }
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
            }
        }
        None
    }

    /// Collects the rest of stderr, up to the end the process's exit gives it (at most
    /// `within`).
    async fn drain_stderr(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.try_recv() {
                Ok(l) => self.seen.push(l),
                Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "stderr still open after {within:?}: {:?}",
                        self.seen
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// The exit code within `timeout`; kills the process and panics if it is still running.
    async fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "ringproxy still running after {timeout:?}; stderr: {:?}",
                    self.seen
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_ringproxy(config: &TempFile) -> Running {
    let mut child = Command::new(BIN)
        .args([
            "--config",
            config.path.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env_remove("RINGPROXY_CONFIG")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringproxy");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Running {
        child,
        lines,
        seen: Vec::new(),
    }
}

/// Spawns the binary and learns its ports from the JSON "listening" line on stderr.
async fn start_ringproxy(config: &TempFile) -> (Running, SocketAddr, SocketAddr) {
    let mut ringproxy = spawn_ringproxy(config);
    loop {
        let line = ringproxy
            .next_line(Duration::from_secs(10))
            .await
            .expect("a listening line on stderr");
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["fields"]["message"] == "listening" {
            let addr =
                |k: &str| -> SocketAddr { v["fields"][k].as_str().unwrap().parse().unwrap() };
            let (proxy, admin) = (addr("proxy"), addr("admin"));
            return (ringproxy, proxy, admin);
        }
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
}

/// Sends a request on a fresh connection and returns it, unread.
async fn send_raw(addr: SocketAddr, request: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    conn
}

/// Reads until the server closes `conn` (bounded); what it sent.
async fn read_until_closed(mut conn: TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut data))
        .await
        .expect("connection still open 5s after the grace period")
        .unwrap_or_default();
    data
}

/// A grace period no test outlasts.
const LONG_GRACE: &str = "shutdown_grace = \"1h\"";

const REQUEST: &str = "GET /held HTTP/1.1\r\nHost: p\r\nx-user-id: k\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let (backend, release) = start_held_backend("cache-a").await;
    // A grace period that outlasts the test: the request ends when the backend answers it.
    let text = config_proxy(LONG_GRACE, "", &[&backend]);
    let config = TempFile::new("sigterm", &text);
    let (mut ringproxy, proxy, admin) = start_ringproxy(&config).await;

    let http = Http::new();
    let url = format!("http://{proxy}/held");
    let held = tokio::spawn(async move { http.get(&url, &[("x-user-id", "k")]).await });
    wait_for_hits(&backend, 1).await;

    sigterm(&ringproxy.child);

    wait_until_refused(proxy).await;
    wait_until_refused(admin).await;
    assert!(
        !held.is_finished(),
        "the held request ended before its answer"
    );

    release.send(true).unwrap();
    let r = held.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "cache-a");
    assert_eq!(ringproxy.exit_code(Duration::from_secs(10)).await, Some(0));
    ringproxy.drain_stderr(Duration::from_secs(10)).await;
    assert!(
        ringproxy.seen.iter().any(|l| l.contains("SIGTERM")),
        "{:?}",
        ringproxy.seen
    );
}

#[tokio::test]
async fn token_shutdown_lets_in_flight_requests_finish() {
    let (backend, release) = start_held_backend("cache-a").await;
    let p = start_proxy(&config_proxy(LONG_GRACE, "", &[&backend])).await;
    let (http, url) = (p.http.clone(), p.url("/held"));
    let held = tokio::spawn(async move { http.get(&url, &[("x-user-id", "k")]).await });
    wait_for_hits(&backend, 1).await;

    let (proxy, admin) = (p.proxy, p.admin);
    let stopped = tokio::spawn(p.stop());
    wait_until_refused(proxy).await;
    wait_until_refused(admin).await;
    assert!(
        !held.is_finished(),
        "the held request ended before its answer"
    );
    assert!(
        !stopped.is_finished(),
        "run returned with a request in flight"
    );

    release.send(true).unwrap();
    let r = held.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "cache-a");
    stopped.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_grace_period_bounds_the_wait() {
    // The request is never answered: only the grace period can end the wait.
    let (backend, _release) = start_held_backend("cache-a").await;
    let text = config_proxy("shutdown_grace = \"300ms\"", "", &[&backend]);
    let config = TempFile::new("grace", &text);
    let (mut ringproxy, proxy, _) = start_ringproxy(&config).await;
    let conn = send_raw(proxy, REQUEST).await;
    wait_for_hits(&backend, 1).await;

    let started = Instant::now();
    sigterm(&ringproxy.child);
    assert_eq!(ringproxy.exit_code(Duration::from_secs(10)).await, Some(0));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // The unfinished request's connection is dropped without a response.
    let data = read_until_closed(conn).await;
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
}

#[tokio::test]
async fn token_shutdown_grace_period_bounds_the_wait() {
    // The request is never answered: only the grace period can end the wait (`stop` fails
    // if `run` has not returned within 5 s).
    let (backend, _release) = start_held_backend("cache-a").await;
    let p = start_proxy(&config_proxy("shutdown_grace = \"300ms\"", "", &[&backend])).await;
    let conn = send_raw(p.proxy, REQUEST).await;
    wait_for_hits(&backend, 1).await;

    let started = Instant::now();
    p.stop().await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // `run` has returned after the grace period: the leftover connection must be gone too.
    let data = read_until_closed(conn).await;
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
}
