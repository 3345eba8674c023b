//! The `[proxy]`, `[admin]` and `[ring]` sections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::fields::{duration, int_in, invalid, socket_addr, ConfigError};
use super::raw::{RawAdmin, RawProxy, RawRing};
use crate::ring::Placement;

/// Ring points per unit of weight when the config does not say. Chosen from the ring quality
/// report (`examples/ringstats.rs`): at 10 backends it keeps the busiest backend's share of the
/// hash space within 10% of the mean for ~99% of id sets (640: 94%, 160: 30%), at 16-20 bytes
/// per point.
pub const DEFAULT_VNODES: u32 = 1000;

/// `[proxy]`: the client listener and how requests are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// TCP connect to a backend.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections to backends are closed after this.
    pub upstream_idle_timeout: Duration,
    /// Until the backend's response headers.
    pub request_timeout: Duration,
    /// On shutdown, time for in-flight requests.
    pub shutdown_grace: Duration,
    /// Add `x-ringproxy-backend` to responses.
    pub debug_headers: bool,
    /// Backends one request may try (the ring owner, then the next candidates clockwise).
    pub max_attempts: u32,
    /// Retry idempotent requests with small bodies on the next candidate even after they were sent.
    pub retry_idempotent: bool,
    /// Threads serving proxy traffic, each with its own runtime and upstream pool.
    pub workers: usize,
    /// From accept to a complete first request head; a silent client is closed after it.
    pub client_header_timeout: Duration,
    /// HTTP/1 keep-alive: idle time allowed between two requests.
    pub client_keepalive_timeout: Duration,
    /// HTTP/2: time allowed without an open stream.
    pub client_idle_timeout: Duration,
    /// The largest HTTP/1 request head a client may send, in bytes (request line and header
    /// lines); a larger one is answered 431. It is HTTP/2's header-list limit too (431 on the
    /// stream).
    pub client_max_header_bytes: usize,
    /// Time a response may wait on a client that is not reading it; past it the client and
    /// its backend connection are closed.
    pub send_timeout: Duration,
    /// Client connections open at once (per process); past it, accepting waits.
    pub max_connections: usize,
    /// Which HTTP/1 server path serves client connections.
    pub http1: Http1,
    /// The relay's I/O: io_uring where the kernel allows it, or epoll.
    pub io: Io,
}

/// `[proxy] io`: how the relay's workers do their socket work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// io_uring (one system call submits a batch of sends and receives and collects their
    /// completions), falling back to epoll where the kernel or a seccomp profile refuses it.
    IoUring,
    /// epoll: readiness, then a system call per send and receive.
    Epoll,
}

/// `[proxy] http1`: how HTTP/1.1 client connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1 {
    /// The byte relay: heads parsed in place and relayed as bytes, bodies by their framing;
    /// what it does not handle (h2c, upgrades, CONNECT, absolute-form) is handed to hyper.
    Relay,
    /// hyper's HTTP/1 server and client for every request (the escape hatch).
    Hyper,
}

/// `[admin]`: the admin API listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin API listens.
    pub listen: SocketAddr,
    /// Bearer token every admin call but `/healthz` must carry, when set.
    pub token: Option<String>,
    /// Where membership changes are saved so they survive restarts, when set.
    pub state_file: Option<PathBuf>,
    /// Serve a non-loopback admin listener without a token, on purpose.
    pub insecure: bool,
}

impl TryFrom<RawProxy> for ProxyConfig {
    type Error = ConfigError;

    fn try_from(raw: RawProxy) -> Result<ProxyConfig, ConfigError> {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Ok(ProxyConfig {
            listen: socket_addr("proxy.listen", raw.listen, "0.0.0.0:8080")?,
            connect_timeout: duration(
                "proxy.connect_timeout",
                raw.connect_timeout,
                Duration::from_secs(1),
            )?,
            // Below the 75 s keep-alive timeout of common backends (nginx), so the proxy, not
            // the backend, is normally the side that closes an idle connection.
            upstream_idle_timeout: duration(
                "proxy.upstream_idle_timeout",
                raw.upstream_idle_timeout,
                Duration::from_secs(60),
            )?,
            request_timeout: duration(
                "proxy.request_timeout",
                raw.request_timeout,
                Duration::from_secs(30),
            )?,
            shutdown_grace: duration(
                "proxy.shutdown_grace",
                raw.shutdown_grace,
                Duration::from_secs(10),
            )?,
            debug_headers: raw.debug_headers.unwrap_or(false),
            max_attempts: int_in("proxy.max_attempts", raw.max_attempts, 1..=100, 3)?,
            retry_idempotent: raw.retry_idempotent.unwrap_or(false),
            workers: int_in("proxy.workers", raw.workers, 1..=1024, cpus)?,
            client_header_timeout: duration(
                "proxy.client_header_timeout",
                raw.client_header_timeout,
                Duration::from_secs(10),
            )?,
            client_keepalive_timeout: duration(
                "proxy.client_keepalive_timeout",
                raw.client_keepalive_timeout,
                Duration::from_secs(60),
            )?,
            client_idle_timeout: duration(
                "proxy.client_idle_timeout",
                raw.client_idle_timeout,
                Duration::from_secs(60),
            )?,
            // hyper's HTTP/1 server needs at least 8 KiB of buffer.
            client_max_header_bytes: int_in(
                "proxy.client_max_header_bytes",
                raw.client_max_header_bytes,
                8192..=1 << 20,
                64 * 1024,
            )?,
            send_timeout: duration(
                "proxy.send_timeout",
                raw.send_timeout,
                Duration::from_secs(60),
            )?,
            max_connections: int_in(
                "proxy.max_connections",
                raw.max_connections,
                1..=1_000_000,
                default_max_connections(),
            )?,
            http1: match raw.http1.as_deref() {
                None | Some("relay") => Http1::Relay,
                Some("hyper") => Http1::Hyper,
                Some(other) => {
                    return Err(invalid(
                        "proxy.http1",
                        format!("{other:?} is not a server path; use \"relay\" or \"hyper\""),
                    ))
                }
            },
            io: match raw.io.as_deref() {
                None | Some("io_uring") => Io::IoUring,
                Some("epoll") => Io::Epoll,
                Some(other) => {
                    return Err(invalid(
                        "proxy.io",
                        format!("{other:?} is not an I/O model; use \"io_uring\" or \"epoll\""),
                    ))
                }
            },
        })
    }
}

/// A quarter of the process's open-file limit, less a reserve for listeners, logs and health
/// checks: each client connection may hold a backend connection too, and the relay holds two
/// descriptors for each (its runtime's, and one for socket calls and the hand-over to hyper),
/// so the limit cannot be reached through client connections alone (nginx needs
/// `worker_connections` set by hand for this).
fn default_max_connections() -> usize {
    let soft = open_file_limit().unwrap_or(1024);
    (soft.saturating_sub(64) / 4).clamp(16, 1_000_000)
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl TryFrom<RawAdmin> for AdminConfig {
    type Error = ConfigError;

    fn try_from(raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
        if raw.token.as_ref().is_some_and(|t| t.trim().is_empty()) {
            return Err(invalid(
                "admin.token",
                "must not be empty; remove the field to disable auth",
            ));
        }
        if raw.state_file.as_ref().is_some_and(|p| p.trim().is_empty()) {
            return Err(invalid(
                "admin.state_file",
                "must not be empty; remove the field to keep no state file",
            ));
        }
        let listen = socket_addr("admin.listen", raw.listen, "127.0.0.1:9090")?;
        let insecure = raw.insecure.unwrap_or(false);
        if !listen.ip().is_loopback() && raw.token.is_none() && !insecure {
            return Err(invalid(
                "admin.token",
                format!(
                    "required when admin.listen ({listen}) is not a loopback address: anyone who reaches it could change the ring; set a token, or `insecure = true` in [admin] if that network is trusted"
                ),
            ));
        }
        Ok(AdminConfig {
            listen,
            token: raw.token,
            state_file: raw.state_file.map(PathBuf::from),
            insecure,
        })
    }
}

/// `[ring] compat`: which placement the ring uses. With `"nginx"`, `vnodes` is fixed by
/// nginx (160 per unit of weight) and may not be set.
pub(crate) fn placement(raw: &RawRing) -> Result<Placement, ConfigError> {
    match raw.compat.as_deref() {
        None => Ok(Placement::Ringproxy),
        Some("nginx") => {
            if raw.vnodes.is_some() {
                return Err(invalid(
                    "ring.vnodes",
                    "not allowed with compat = \"nginx\": nginx places 160 points per unit of weight",
                ));
            }
            Ok(Placement::Nginx)
        }
        Some(other) => Err(invalid(
            "ring.compat",
            format!("{other:?} is not a known placement; the one compat mode is \"nginx\""),
        )),
    }
}

/// `[ring] vnodes`.
pub(crate) fn vnodes(raw: &RawRing) -> Result<u32, ConfigError> {
    int_in("ring.vnodes", raw.vnodes, 1..=10_000, DEFAULT_VNODES).map_err(|e| match e {
        ConfigError::Invalid { field, message } => ConfigError::Invalid {
            field,
            message: format!("{message} (default {DEFAULT_VNODES})"),
        },
        other => other,
    })
}
