//! The TOML file's shape, as serde reads it: every field optional so that defaults and
//! messages are ours, unknown fields refused so a typo never falls back to a default.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub ring: RawRing,
    #[serde(default)]
    pub affinity: RawAffinity,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub balance: RawBalance,
    pub backends: Option<Vec<RawBackend>>,
    pub discovery: Option<Vec<RawDiscovery>>,
    #[serde(default)]
    pub discovery_resolver: RawResolver,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    pub listen: Option<String>,
    pub connect_timeout: Option<String>,
    pub upstream_idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
    pub debug_headers: Option<bool>,
    pub max_attempts: Option<i64>,
    pub retry_idempotent: Option<bool>,
    pub workers: Option<i64>,
    pub client_header_timeout: Option<String>,
    pub client_keepalive_timeout: Option<String>,
    pub client_idle_timeout: Option<String>,
    pub client_max_header_bytes: Option<i64>,
    pub send_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub http1: Option<String>,
    pub io: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub state_file: Option<String>,
    pub insecure: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRing {
    pub vnodes: Option<i64>,
    pub compat: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAffinity {
    pub key: Option<Vec<String>>,
    pub on_missing: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    pub fail_threshold: Option<i64>,
    pub eject_for: Option<String>,
    pub max_eject_for: Option<String>,
    pub fail_on_5xx: Option<bool>,
    pub active: Option<RawActive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawActive {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub unhealthy_threshold: Option<i64>,
    pub healthy_threshold: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub id: Option<String>,
    pub address: Option<String>,
    pub weight: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBalance {
    pub bound: Option<f64>,
    pub spread: Option<String>,
    pub hot_share: Option<f64>,
    pub warmup: Option<String>,
    pub warmup_miss_status: Option<Vec<i64>>,
    pub warmup_miss_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscovery {
    pub name: Option<String>,
    pub srv: Option<String>,
    pub port: Option<i64>,
    pub weight: Option<i64>,
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResolver {
    pub nameservers: Option<Vec<String>>,
    pub timeout: Option<String>,
}
