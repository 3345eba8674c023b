//! The real `ringproxy` binary as a child process, driven the way an operator drives it: a
//! config file, real signals sent with `kill`, the admin API over HTTP, the exit code.
//!
//! Ports: the config listens on `127.0.0.1:0` and the binary logs the addresses it bound in its
//! JSON `"listening"` line, so no port is ever guessed, reserved or raced for. Every wait is a
//! bounded poll; a process still running when its handle drops is killed (SIGKILL) and reaped.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::client::{Http, Reply};
use super::suite::{apply_suite_settings_to_file, with_suite_settings};

/// The binary under test, built by cargo for the integration tests.
pub const RINGPROXY_BIN: &str = env!("CARGO_BIN_EXE_ringproxy");

/// How long a start may take (a debug build on a loaded 2-core machine).
pub const START_WITHIN: Duration = Duration::from_secs(20);

/// A signal for [`Process::signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Term,
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Stderr lines of a child, collected by a reader thread; `closed` once the pipe ends.
#[derive(Clone, Default)]
struct Lines {
    inner: Arc<Mutex<(Vec<String>, bool)>>,
}

/// A spawned `ringproxy` (not necessarily serving): its stderr, signals, exit status.
pub struct Process {
    child: std::process::Child,
    lines: Lines,
    status: Option<ExitStatus>,
    /// The `sh` waiting to send a signal ([`Process::spawn_signalling_on`]).
    helper: Option<std::process::Child>,
}

impl Process {
    /// Spawns `ringproxy --config PATH --log-format json` with `RUST_LOG=info`, stderr piped.
    /// The file gets the suite's HTTP/1 path first ([`apply_suite_settings_to_file`]).
    pub fn spawn(config: &Path) -> Process {
        apply_suite_settings_to_file(config);
        Process::spawn_args(&[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--log-format",
            "json",
        ])
    }

    /// Spawns the binary with these arguments (stdin and stdout closed, stderr collected).
    pub fn spawn_args(args: &[&str]) -> Process {
        Process::spawn_inner(args, None)
    }

    /// Like [`Process::spawn`], and sends `signal` the moment a stderr line containing `trigger`
    /// is read: the reader thread wakes an `sh` helper that is already waiting with `kill`, so
    /// the signal follows the line by microseconds (no poll interval, no fork in between).
    pub fn spawn_signalling_on(config: &Path, trigger: &str, signal: Signal) -> Process {
        apply_suite_settings_to_file(config);
        let args = [
            "--config",
            config.to_str().expect("utf-8 path"),
            "--log-format",
            "json",
        ];
        Process::spawn_inner(&args, Some((trigger.to_string(), signal)))
    }

    fn spawn_inner(args: &[&str], on_line: Option<(String, Signal)>) -> Process {
        let mut child = Command::new(RINGPROXY_BIN)
            .args(args)
            .env_remove("RINGPROXY_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringproxy");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut helper = None;
        let mut trigger = None;
        if let Some((needle, signal)) = on_line {
            let mut sh = Command::new("sh")
                .args([
                    "-c",
                    &format!("read go && kill -{} \"$1\"", signal.name()),
                    "sh",
                    &child.id().to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sh");
            trigger = Some((needle, sh.stdin.take().expect("piped stdin")));
            helper = Some(sh);
        }
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if trigger
                    .as_ref()
                    .is_some_and(|(needle, _)| line.contains(needle))
                {
                    if let Some((_, mut go)) = trigger.take() {
                        let _ = go.write_all(b"go\n");
                    }
                }
                sink.inner.lock().unwrap().0.push(line);
            }
            sink.inner.lock().unwrap().1 = true;
        });
        Process {
            child,
            lines,
            status: None,
            helper,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` with `kill(1)`, as an operator would.
    pub fn signal(&self, signal: Signal) {
        let ok = Command::new("kill")
            .args([format!("-{}", signal.name()), self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{} {} failed", signal.name(), self.pid());
    }

    /// Whether the process has not exited yet (reaps it if it has).
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status.is_none()
    }

    /// The exit status within `within`; panics (after killing it) if it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        while self.is_running() {
            if Instant::now() >= deadline {
                self.kill_now();
                panic!(
                    "ringproxy still running after {within:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.status.expect("exited")
    }

    /// The exit code within `within` (`None` when a signal ended it).
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        self.wait_exit(within).await.code()
    }

    /// Every stderr line so far, one per line.
    pub fn stderr(&self) -> String {
        self.lines.inner.lock().unwrap().0.join("\n")
    }

    /// Waits until the stderr pipe is closed (the process and its children are gone), bounded,
    /// so that [`Process::stderr`] holds everything it wrote.
    pub async fn wait_stderr_closed(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.lines.inner.lock().unwrap().1 {
            assert!(
                Instant::now() < deadline,
                "stderr still open after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The first stderr line at index `from` or later for which `pick` answers `Some`, waiting
    /// up to `within`; `None` if none came (or the process ended without one).
    pub async fn wait_line<T>(
        &mut self,
        from: usize,
        within: Duration,
        pick: impl Fn(&str) -> Option<T>,
    ) -> Option<(usize, T)> {
        let deadline = Instant::now() + within;
        let mut next = from;
        loop {
            let (new, closed): (Vec<String>, bool) = {
                let guard = self.lines.inner.lock().unwrap();
                (guard.0[next.min(guard.0.len())..].to_vec(), guard.1)
            };
            for line in new {
                if let Some(v) = pick(&line) {
                    return Some((next, v));
                }
                next += 1;
            }
            if closed || Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The number of stderr lines so far: a mark to wait for lines after.
    pub fn line_count(&self) -> usize {
        self.lines.inner.lock().unwrap().0.len()
    }

    /// Waits (bounded) for a JSON log line after `from` whose `fields.message` is `message`;
    /// its `fields` object.
    pub async fn wait_log(&mut self, from: usize, message: &str, within: Duration) -> Value {
        let found = self
            .wait_line(from, within, |line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["fields"]["message"] == message).then(|| v["fields"].clone())
            })
            .await;
        match found {
            Some((_, fields)) => fields,
            None => panic!(
                "no {message:?} log line within {within:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    fn kill_now(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_now();
        if let Some(mut sh) = self.helper.take() {
            let _ = sh.kill();
            let _ = sh.wait();
        }
    }
}

/// A serving `ringproxy` process: its addresses and an HTTP client for them.
pub struct Ringproxy {
    pub process: Process,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub http: Http,
    /// Sent as `Authorization: Bearer ...` on admin calls when set.
    pub token: Option<String>,
}

impl Ringproxy {
    /// Spawns the binary with `config` (which should listen on port 0), reads the bound
    /// addresses from the `"listening"` line, and waits until the admin `/healthz` answers.
    pub async fn start(config: &Path) -> Ringproxy {
        let mut process = Process::spawn(config);
        let found = process
            .wait_line(0, START_WITHIN, |line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let f = &v["fields"];
                if f["message"] != "listening" {
                    return None;
                }
                let addr = |k: &str| -> Option<SocketAddr> { f[k].as_str()?.parse().ok() };
                Some((addr("proxy")?, addr("admin")?))
            })
            .await;
        let Some((_, (proxy, admin))) = found else {
            let running = process.is_running();
            panic!(
                "ringproxy did not log \"listening\" (running: {running}); stderr:\n{}",
                process.stderr()
            );
        };
        let p = Ringproxy {
            process,
            proxy,
            admin,
            http: Http::new(),
            token: None,
        };
        p.wait_healthz(Duration::from_secs(5)).await;
        p
    }

    /// [`Ringproxy::start`], with admin calls carrying `token`.
    pub async fn start_with_token(config: &Path, token: &str) -> Ringproxy {
        let mut p = Ringproxy::start(config).await;
        p.token = Some(token.to_string());
        p
    }

    /// Polls `GET /healthz` on the admin listener until it answers 200 (bounded).
    pub async fn wait_healthz(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if healthz_ok(self.admin).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "admin /healthz on {} not ready within {within:?}; stderr:\n{}",
                self.admin,
                self.process.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// An admin call, with the bearer token when one is set.
    pub async fn admin_call(&self, method: Method, path: &str, body: &str) -> Reply {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.http
            .request(method, &self.admin_url(path), &headers, body.to_string())
            .await
    }

    /// `GET path` on the admin API, which must answer 200 with JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        let r = self.admin_call(Method::GET, path, "").await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.text());
        r.json()
    }

    pub async fn backends(&self) -> Value {
        self.admin_json("/backends").await
    }

    pub async fn ring(&self) -> Value {
        self.admin_json("/ring").await
    }

    pub async fn metrics(&self) -> String {
        let r = self.admin_call(Method::GET, "/metrics", "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.text()
    }

    /// `POST /reload`.
    pub async fn reload(&self) -> Reply {
        self.admin_call(Method::POST, "/reload", "").await
    }

    /// Polls `GET /backends` until `done` holds for it (bounded); that answer.
    pub async fn wait_backends(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let b = self.backends().await;
            if done(&b) {
                return b;
            }
            assert!(
                Instant::now() < deadline,
                "GET /backends did not reach the expected state within {within:?}: {b}\nstderr:\n{}",
                self.process.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The backend that served each key (`x-user-id: KEY`), by real requests, 16 at a time.
    /// Every answer must be 200 and, when the proxy adds its debug header, the header must name
    /// the backend that answered.
    pub async fn route(&self, keys: &[String]) -> Vec<String> {
        let mut out = vec![String::new(); keys.len()];
        let mut set = JoinSet::new();
        let mut next = 0;
        while next < keys.len() || !set.is_empty() {
            while next < keys.len() && set.len() < 16 {
                let (http, url, key, i) =
                    (self.http.clone(), self.url("/"), keys[next].clone(), next);
                set.spawn(async move {
                    let r = http.get(&url, &[("x-user-id", &key)]).await;
                    assert_eq!(r.status, StatusCode::OK, "key {key}: {}", r.text());
                    let backend = r.backend();
                    if let Some(debug) = r.headers.get("x-ringproxy-backend") {
                        assert_eq!(debug.to_str().unwrap(), backend, "key {key}");
                    }
                    (i, backend)
                });
                next += 1;
            }
            let (i, backend) = set.join_next().await.expect("a task").expect("no panic");
            out[i] = backend;
        }
        out
    }
}

/// One `GET /healthz` on a fresh connection, bounded: whether it answered 200. Never panics, so
/// it can poll a listener that is not up yet.
async fn healthz_ok(admin: SocketAddr) -> bool {
    let probe = async {
        let mut conn = TcpStream::connect(admin).await.ok()?;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = Vec::new();
        conn.read_to_end(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200 "))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), probe).await,
        Ok(Some(true))
    )
}

/// A directory under the temp dir, removed with its contents on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("ringproxy-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The `[[backends]]` tables for (id, address, weight).
pub fn weighted_backends_toml(list: &[(&str, SocketAddr, u32)]) -> String {
    list.iter()
        .map(|(id, addr, w)| {
            format!("[[backends]]\nid = \"{id}\"\naddress = \"{addr}\"\nweight = {w}\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A whole config for a process: both listeners on `127.0.0.1:0`, `proxy_lines` in `[proxy]`,
/// `admin_lines` in `[admin]`, `extra` sections, then the backends (and the suite's HTTP/1
/// path).
pub fn process_config(
    proxy_lines: &str,
    admin_lines: &str,
    extra: &str,
    backends: &[(&str, SocketAddr, u32)],
) -> String {
    with_suite_settings(&format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\n{proxy_lines}\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin_lines}\n\n{extra}\n{}",
        weighted_backends_toml(backends)
    ))
}

/// Whether the process that produced `status` was ended by `signal` (e.g. 9).
pub fn killed_by(status: ExitStatus, signal: i32) -> bool {
    status.signal() == Some(signal)
}
