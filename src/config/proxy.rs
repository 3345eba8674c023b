//! The `[proxy]`, `[admin]` and `[ring]` sections.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::fields::{duration, int_in, invalid, socket_addr, ConfigError};
use super::raw::{RawAdmin, RawProxy, RawRing};

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
        })
    }
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
        Ok(AdminConfig {
            listen: socket_addr("admin.listen", raw.listen, "127.0.0.1:9090")?,
            token: raw.token,
            state_file: raw.state_file.map(PathBuf::from),
        })
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
