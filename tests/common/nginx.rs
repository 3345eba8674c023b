//! A real nginx for compatibility tests: find the binary, run it as a child process on a free
//! 127.0.0.1 port with everything (config, pid, logs, temp dirs) in its own temp dir, reload it
//! with a new upstream, and collect which backend answered each key.
//!
//! nginx runs with `daemon off` and a master process, so `nginx -s reload` works; the master
//! is our child, and dropping [`Nginx`] stops it (SIGTERM, then a kill) so no worker outlives
//! the test. Every wait is bounded.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::{serve_backend, Http};

/// The nginx binary: `nginx` on PATH, else `/usr/sbin/nginx` (where Debian puts it, often
/// outside a non-root PATH).
pub fn find_nginx() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/nginx");
        sbin.is_file().then_some(sbin)
    })
}

/// One `server` line of an upstream block.
#[derive(Debug, Clone)]
pub struct UpstreamServer {
    /// The address as written in nginx: `host:port`, `unix:/path`.
    pub address: String,
    pub weight: u32,
}

impl UpstreamServer {
    pub fn new(address: impl Into<String>, weight: u32) -> UpstreamServer {
        UpstreamServer {
            address: address.into(),
            weight,
        }
    }
}

/// A scripted backend (see `TestBackend`) named by its nginx address string, possibly
/// listening on several sockets (a host name that resolves to several addresses).
pub struct NamedBackend {
    /// The address as nginx's upstream lists it, and what the backend answers in `x-backend`.
    pub name: String,
    accept: Vec<JoinHandle<()>>,
}

impl Drop for NamedBackend {
    fn drop(&mut self) {
        for task in &self.accept {
            task.abort();
        }
    }
}

/// A backend on 127.0.0.1 (a free port), named `127.0.0.1:PORT`.
pub async fn ip_backend() -> NamedBackend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let name = listener.local_addr().expect("local addr").to_string();
    named_backend(name, vec![listener])
}

/// A backend on exactly `addr` (`ip:port`), or `None` if that address cannot be bound.
pub async fn backend_at(addr: &str) -> Option<NamedBackend> {
    let listener = TcpListener::bind(addr).await.ok()?;
    Some(named_backend(addr.to_string(), vec![listener]))
}

/// A backend named `localhost:PORT`, listening on that port at every address `localhost`
/// resolves to here. nginx resolves a host name when it loads the config and makes one peer
/// per address, all named `localhost:PORT`: the ring point is the name's, and nginx spreads
/// that name's requests over its peers, so every one of them must be this backend. (An address
/// that cannot be bound, e.g. `::1` without IPv6, is skipped: nginx's connect to it fails and
/// it tries the name's next peer, the same backend.) Also returns the addresses bound.
pub async fn localhost_backend() -> (NamedBackend, Vec<SocketAddr>) {
    for _attempt in 0..20 {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host("localhost:0")
            .await
            .expect("resolve localhost")
            .collect();
        let first = TcpListener::bind(addrs[0]).await.expect("bind localhost:0");
        let port = first.local_addr().expect("local addr").port();
        let mut listeners = vec![first];
        let mut bound = vec![SocketAddr::new(addrs[0].ip(), port)];
        let mut clash = false;
        for a in addrs.iter().skip(1) {
            let at = SocketAddr::new(a.ip(), port);
            if bound.contains(&at) {
                continue;
            }
            match TcpListener::bind(at).await {
                Ok(l) => {
                    listeners.push(l);
                    bound.push(at);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => clash = true,
                Err(_) => {}
            }
        }
        if !clash {
            return (named_backend(format!("localhost:{port}"), listeners), bound);
        }
    }
    panic!("no port free at every address of localhost in 20 attempts");
}

fn named_backend(name: String, listeners: Vec<TcpListener>) -> NamedBackend {
    let hits = Arc::new(AtomicUsize::new(0));
    let accept = listeners
        .into_iter()
        .map(|l| serve_backend(l, &name, hits.clone(), Arc::default()))
        .collect();
    NamedBackend { name, accept }
}

/// One request to send through nginx: a path (with query) and extra headers.
#[derive(Debug, Clone)]
pub struct Probe {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Probe {
    pub fn get(path: impl Into<String>, headers: &[(&str, &str)]) -> Probe {
        Probe {
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }
}

/// A running nginx proxying `/` to one `hash KEY consistent` upstream.
pub struct Nginx {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    child: Child,
    /// Bumped on every (re)load; `/__generation` answers it, so a poll can tell when the
    /// workers of the new configuration are the ones answering.
    generation: u64,
}

const START_TIMEOUT: Duration = Duration::from_secs(15);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Nginx {
    /// Starts nginx with `hash <hash_key> consistent` over `servers`, in listing order.
    /// `extra_location` lines go into the proxied `location /`.
    pub async fn start(
        bin: &Path,
        hash_key: &str,
        servers: &[UpstreamServer],
        extra_location: &str,
    ) -> Nginx {
        // The port is free when picked; if another process takes it before nginx binds,
        // nginx exits and we try again (a bounded number of times).
        for _attempt in 0..5 {
            let dir = fresh_dir();
            let port = free_port();
            write_conf(&dir, port, 1, hash_key, servers, extra_location);
            let child = command(bin, &dir, &[]).spawn().expect("spawn nginx");
            let mut n = Nginx {
                bin: bin.to_path_buf(),
                dir,
                port,
                child,
                generation: 1,
            };
            if n.wait_generation(START_TIMEOUT).await {
                return n;
            }
            let log = n.error_log();
            if !log.contains("Address already in use") {
                panic!("nginx did not come up within {START_TIMEOUT:?}; error.log:\n{log}");
            }
        }
        panic!("nginx could not bind a free port in 5 attempts");
    }

    /// Rewrites the upstream and reloads nginx (`nginx -s reload`); returns once the new
    /// configuration's workers answer.
    pub async fn reload(&mut self, hash_key: &str, servers: &[UpstreamServer], extra: &str) {
        self.generation += 1;
        write_conf(
            &self.dir,
            self.port,
            self.generation,
            hash_key,
            servers,
            extra,
        );
        let out = command(&self.bin, &self.dir, &["-s", "reload"])
            .output()
            .expect("run nginx -s reload");
        assert!(
            out.status.success(),
            "nginx -s reload failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.error_log()
        );
        if !self.wait_generation(START_TIMEOUT).await {
            panic!(
                "nginx did not switch to generation {} within {START_TIMEOUT:?}; error.log:\n{}",
                self.generation,
                self.error_log()
            );
        }
        // The new worker answering is not enough: until the old one handles its SIGQUIT, both
        // accept on the shared socket. The old worker logs "gracefully shutting down" right
        // before it closes its listening sockets; one per reload so far.
        let retired = (self.generation - 1) as usize;
        let deadline = Instant::now() + START_TIMEOUT;
        while self.error_log().matches("gracefully shutting down").count() < retired {
            assert!(
                Instant::now() < deadline,
                "the old nginx worker did not stop accepting within {START_TIMEOUT:?}; error.log:\n{}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// For each key, the `x-backend` of the backend nginx sent `/?k=KEY` to. Keys are sent
    /// as they are: use keys that need no percent-encoding, since nginx hashes `$arg_k` raw.
    pub async fn owners(&self, keys: &[String]) -> Vec<String> {
        let probes: Vec<Probe> = keys
            .iter()
            .map(|k| Probe::get(format!("/?k={k}"), &[]))
            .collect();
        self.owners_of(&probes).await
    }

    /// For each request, the `x-backend` of the backend nginx sent it to (a few in flight at
    /// once, on fresh connections so no pre-reload worker answers). Each must answer 200.
    pub async fn owners_of(&self, probes: &[Probe]) -> Vec<String> {
        let http = Http::new();
        let mut out = vec![String::new(); probes.len()];
        for (chunk_no, chunk) in probes.chunks(16).enumerate() {
            let mut set = JoinSet::new();
            for (i, probe) in chunk.iter().enumerate() {
                let (http, url, probe) = (http.clone(), self.url(&probe.path), probe.clone());
                set.spawn(async move {
                    let headers: Vec<(&str, &str)> = probe
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let r = tokio::time::timeout(Duration::from_secs(10), http.get(&url, &headers))
                        .await
                        .unwrap_or_else(|_| panic!("{probe:?}: no answer from nginx in 10s"));
                    assert_eq!(
                        r.status,
                        StatusCode::OK,
                        "{probe:?}: nginx answered {} {}",
                        r.status,
                        r.text()
                    );
                    (i, r.backend())
                });
            }
            while let Some(done) = set.join_next().await {
                let (i, backend) = done.expect("request task");
                out[chunk_no * 16 + i] = backend;
            }
        }
        out
    }

    /// The configuration file nginx runs with (rewritten by [`Nginx::reload`]).
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    /// Polls `/__generation` (a new connection each time) until it answers the current
    /// generation, or `within` passes, or nginx exits.
    async fn wait_generation(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let want = self.generation.to_string();
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            let probe = generation_at(self.port);
            if let Ok(Some(generation)) = tokio::time::timeout(Duration::from_secs(1), probe).await
            {
                if generation == want {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master (our child) is nginx's fast shutdown: it takes its workers
        // down with it. A SIGKILL would orphan them, so it is only the last resort. The pid
        // file is no help here: a master killed right after start may not have written it.
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        if !signalled {
            let _ = command(&self.bin, &self.dir, &["-s", "stop"]).output();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What `/__generation` answers on a new connection, `None` if anything fails (nginx not up
/// yet is normal while polling).
async fn generation_at(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = "GET /__generation HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut data = Vec::new();
    stream.read_to_end(&mut data).await.ok()?;
    let text = String::from_utf8(data).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200 ").then(|| body.to_string())
}

/// A 127.0.0.1 port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `nginx` with the prefix, config and early error log of the temp dir `dir`, plus `args`.
fn command(bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    // -e: where errors go before the config is read (else /var/log/nginx/error.log).
    c.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Writes `dir/nginx.conf`: `/` proxied to `hash <hash_key> consistent` over `servers` (in
/// listing order), `/__generation` answering `generation`.
fn write_conf(
    dir: &Path,
    port: u16,
    generation: u64,
    hash_key: &str,
    servers: &[UpstreamServer],
    extra_location: &str,
) {
    let d = dir.display();
    let mut upstream = String::new();
    for s in servers {
        // max_fails=0: a hiccup never takes a server out, which would reroute its keys.
        writeln!(
            upstream,
            "        server {} weight={} max_fails=0;",
            s.address, s.weight
        )
        .unwrap();
    }
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream backends {{
        hash {hash_key} consistent;
{upstream}    }}
    server {{
        listen 127.0.0.1:{port};
        location = /__generation {{ return 200 "{generation}"; }}
        location / {{
            proxy_pass http://backends;
            add_header x-upstream-addr $upstream_addr always;
{extra_location}
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
}

/// A new empty directory under the temp dir.
fn fresh_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ringproxy-nginx-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the nginx temp dir");
    dir
}
