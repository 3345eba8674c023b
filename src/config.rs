//! Configuration: raw serde structs as they appear in the TOML file, turned into a validated
//! [`Config`] by `TryFrom`. Every error names the field and says what to change; unknown fields
//! are errors so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::affinity::{AffinityConfig, OnMissing, Source};
use crate::health::{HealthConfig, RawHealth};
use crate::ring::{Member, Ring};

/// Ring points per unit of weight when the config does not say. Chosen from the ring quality
/// report (`examples/ringstats.rs`): at 10 backends it keeps the busiest backend's share of the
/// hash space within 10% of the mean for ~99% of id sets (640: 94%, 160: 30%), at 16-20 bytes
/// per point.
pub const DEFAULT_VNODES: u32 = 1000;

/// A configuration problem: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub vnodes: u32,
    pub affinity: AffinityConfig,
    pub health: HealthConfig,
    pub backends: Vec<BackendConfig>,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub connect_timeout: Duration,
    /// Idle keep-alive connections to backends are closed after this.
    pub upstream_idle_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub debug_headers: bool,
    /// Backends one request may try (the ring owner, then the next candidates clockwise).
    pub max_attempts: u32,
    /// Retry idempotent requests with small bodies on the next candidate even after they were sent.
    pub retry_idempotent: bool,
    /// Threads serving proxy traffic, each with its own runtime and upstream pool.
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub id: String,
    pub address: String,
    pub weight: u32,
}

// ---- raw TOML shape -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    ring: RawRing,
    #[serde(default)]
    affinity: RawAffinity,
    #[serde(default)]
    health: RawHealth,
    backends: Option<Vec<RawBackend>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<String>,
    connect_timeout: Option<String>,
    upstream_idle_timeout: Option<String>,
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
    debug_headers: Option<bool>,
    max_attempts: Option<i64>,
    retry_idempotent: Option<bool>,
    workers: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRing {
    vnodes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAffinity {
    key: Option<Vec<String>>,
    on_missing: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    id: Option<String>,
    address: Option<String>,
    weight: Option<i64>,
}

// ---- loading --------------------------------------------------------------------------------

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(toml_message(&e)))?;
        Config::try_from(raw)
    }

    /// The ring the configured backends form.
    pub fn ring(&self) -> Ring {
        Ring::new(
            self.backends
                .iter()
                .map(|b| Member::new(b.id.as_str(), b.weight)),
            self.vnodes,
        )
        .expect("validated config forms a ring")
    }
}

/// toml's messages carry a multi-line source excerpt; keep it but put the gist first.
fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span() {
        Some(_) => format!("invalid config: {msg}\n{e}"),
        None => format!("invalid config: {msg}"),
    }
}

pub fn parse_duration(field: &str, value: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value).map_err(|e| {
        invalid(
            field,
            format!("{value:?} is not a duration ({e}); write e.g. \"500ms\" or \"10s\""),
        )
    })?;
    Ok(d)
}

fn positive_duration(
    field: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = parse_duration(field, &v)?;
            if d.is_zero() {
                return Err(invalid(field, "must be greater than zero"));
            }
            Ok(d)
        }
    }
}

fn socket_addr(
    field: &str,
    value: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    v.parse().map_err(|_| {
        invalid(
            field,
            format!("{v:?} is not an IP:port socket address (e.g. \"127.0.0.1:9090\")"),
        )
    })
}

/// Validates a backend address: `host:port`, where host is an IP or a DNS name.
pub fn validate_address(value: &str) -> Result<(), String> {
    let authority: http::uri::Authority = value
        .parse()
        .map_err(|_| format!("{value:?} is not a host:port address"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{value:?} must not contain user info"));
    }
    if authority.host().is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    match authority.port_u16() {
        Some(0) => Err(format!("{value:?} has port 0")),
        Some(_) => Ok(()),
        None => Err(format!("{value:?} needs a port (host:port)")),
    }
}

/// Validates a backend weight given as an integer from JSON or TOML.
pub fn validate_weight(weight: i64) -> Result<u32, String> {
    if weight < 1 {
        return Err(format!(
            "{weight} is not allowed; weights must be at least 1"
        ));
    }
    if weight > 10_000 {
        return Err(format!("{weight} is too large; weights go up to 10000"));
    }
    Ok(weight as u32)
}

/// Validates a backend id: non-empty, at most 128 chars, no whitespace or `/` (it is a URL path
/// segment in the admin API).
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > 128 {
        return Err("must be at most 128 bytes".into());
    }
    if let Some(c) = id.chars().find(|c| {
        c.is_whitespace() || c.is_control() || *c == '/' || *c == '?' || *c == '#' || *c == '%'
    }) {
        return Err(format!(
            "{id:?} contains {c:?}; use letters, digits, '-', '_', '.', ':'"
        ));
    }
    Ok(())
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let proxy = ProxyConfig {
            listen: socket_addr("proxy.listen", raw.proxy.listen, "0.0.0.0:8080")?,
            connect_timeout: positive_duration(
                "proxy.connect_timeout",
                raw.proxy.connect_timeout,
                Duration::from_secs(1),
            )?,
            // Below the 75 s keep-alive timeout of common backends (nginx), so the proxy, not
            // the backend, is normally the side that closes an idle connection.
            upstream_idle_timeout: positive_duration(
                "proxy.upstream_idle_timeout",
                raw.proxy.upstream_idle_timeout,
                Duration::from_secs(60),
            )?,
            request_timeout: positive_duration(
                "proxy.request_timeout",
                raw.proxy.request_timeout,
                Duration::from_secs(30),
            )?,
            shutdown_grace: positive_duration(
                "proxy.shutdown_grace",
                raw.proxy.shutdown_grace,
                Duration::from_secs(10),
            )?,
            debug_headers: raw.proxy.debug_headers.unwrap_or(false),
            max_attempts: match raw.proxy.max_attempts {
                None => 3,
                Some(n) if (1..=100).contains(&n) => n as u32,
                Some(n) => {
                    return Err(invalid(
                        "proxy.max_attempts",
                        format!("{n} is out of range; use 1 to 100"),
                    ))
                }
            },
            retry_idempotent: raw.proxy.retry_idempotent.unwrap_or(false),
            workers: match raw.proxy.workers {
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                Some(n) if (1..=1024).contains(&n) => n as usize,
                Some(n) => {
                    return Err(invalid(
                        "proxy.workers",
                        format!("{n} is out of range; use 1 to 1024"),
                    ))
                }
            },
        };

        let token = match raw.admin.token {
            Some(t) if t.trim().is_empty() => {
                return Err(invalid(
                    "admin.token",
                    "must not be empty; remove the field to disable auth",
                ))
            }
            other => other,
        };
        let admin = AdminConfig {
            listen: socket_addr("admin.listen", raw.admin.listen, "127.0.0.1:9090")?,
            token,
        };

        let vnodes = match raw.ring.vnodes {
            None => DEFAULT_VNODES,
            Some(v) if (1..=10_000).contains(&v) => v as u32,
            Some(v) => {
                return Err(invalid(
                    "ring.vnodes",
                    format!("{v} is out of range; use 1 to 10000 (default {DEFAULT_VNODES})"),
                ))
            }
        };

        let affinity = affinity_config(raw.affinity)?;
        let health = HealthConfig::try_from_raw(raw.health)?;

        let raw_backends = raw.backends.ok_or_else(|| {
            invalid("backends", "missing; add [[backends]] tables, or `backends = []` to start empty and join through the admin API")
        })?;
        let mut backends: Vec<BackendConfig> = Vec::with_capacity(raw_backends.len());
        for (i, b) in raw_backends.into_iter().enumerate() {
            let field = |name: &str| format!("backends[{i}].{name}");
            let id = b.id.ok_or_else(|| invalid(field("id"), "missing"))?;
            validate_id(&id).map_err(|m| invalid(field("id"), m))?;
            if backends.iter().any(|x| x.id == id) {
                return Err(invalid(
                    field("id"),
                    format!("duplicate id {id:?}; ids must be unique"),
                ));
            }
            let address = b
                .address
                .ok_or_else(|| invalid(field("address"), "missing"))?;
            validate_address(&address).map_err(|m| invalid(field("address"), m))?;
            let weight =
                validate_weight(b.weight.unwrap_or(1)).map_err(|m| invalid(field("weight"), m))?;
            backends.push(BackendConfig {
                id,
                address,
                weight,
            });
        }

        let config = Config {
            proxy,
            admin,
            vnodes,
            affinity,
            health,
            backends,
        };
        // Catch what only the whole set can get wrong (the point limit).
        Ring::new(
            config
                .backends
                .iter()
                .map(|b| Member::new(b.id.as_str(), b.weight)),
            vnodes,
        )
        .map_err(|e| invalid("ring.vnodes", e.to_string()))?;
        Ok(config)
    }
}

fn affinity_config(raw: RawAffinity) -> Result<AffinityConfig, ConfigError> {
    let keys = raw
        .key
        .unwrap_or_else(|| vec!["header:x-user-id".to_string()]);
    if keys.is_empty() {
        return Err(invalid(
            "affinity.key",
            "must list at least one source, e.g. [\"header:x-user-id\"]",
        ));
    }
    let mut sources = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let source: Source = k
            .parse()
            .map_err(|m: String| invalid(format!("affinity.key[{i}]"), m))?;
        sources.push(source);
    }
    let on_missing = match raw.on_missing.as_deref() {
        None | Some("random") => OnMissing::Random,
        Some("reject") => OnMissing::Reject,
        Some(other) => {
            return Err(invalid(
                "affinity.on_missing",
                format!("{other:?} is not one of \"random\", \"reject\""),
            ))
        }
    };
    Ok(AffinityConfig {
        sources,
        on_missing,
    })
}

#[cfg(test)]
mod tests;
