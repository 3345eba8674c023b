//! The whole file: read, parse, validate every section into one [`Config`], then check what
//! only the whole can get wrong.

use std::path::Path;

use super::backends::{backends, BackendConfig};
use super::balance::BalanceConfig;
use super::discovery;
use super::fields::{invalid, toml_message, ConfigError};
use super::health::HealthConfig;
use super::proxy::{placement, vnodes, AdminConfig, ProxyConfig};
use super::raw::RawConfig;
use crate::affinity::AffinityConfig;
use crate::discovery::{ResolverSettings, Target};
use crate::ring::{Member, Placement, Ring, RingError, MAX_POINTS, NGINX_VNODES};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[proxy]`
    pub proxy: ProxyConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[ring] vnodes` ([`crate::ring::NGINX_VNODES`] with `compat = "nginx"`)
    pub vnodes: u32,
    /// `[ring] compat`: the ring's placement.
    pub placement: Placement,
    /// `[affinity]`
    pub affinity: AffinityConfig,
    /// `[health]`
    pub health: HealthConfig,
    /// `[balance]`
    pub balance: BalanceConfig,
    /// `[[backends]]`
    pub backends: Vec<BackendConfig>,
    /// `[[discovery]]`
    pub discovery: Vec<Target>,
    /// `[discovery_resolver]`
    pub discovery_resolver: ResolverSettings,
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::parse(&text)
    }

    /// Validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(toml_message(&e)))?;
        Config::try_from(raw)
    }

    /// The ring the configured backends form.
    pub fn ring(&self) -> Ring {
        let members = self
            .backends
            .iter()
            .map(|b| Member::new(b.id.as_str(), b.weight));
        match self.placement {
            Placement::Ringproxy => Ring::new(members, self.vnodes),
            Placement::Nginx => Ring::nginx(members),
        }
        .expect("validated config forms a ring")
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let config = Config {
            proxy: raw.proxy.try_into()?,
            admin: raw.admin.try_into()?,
            vnodes: match placement(&raw.ring)? {
                Placement::Nginx => NGINX_VNODES,
                Placement::Ringproxy => vnodes(&raw.ring)?,
            },
            placement: placement(&raw.ring)?,
            affinity: raw.affinity.try_into()?,
            health: raw.health.try_into()?,
            balance: raw.balance.try_into()?,
            backends: backends(
                raw.backends,
                raw.discovery.as_ref().is_some_and(|d| !d.is_empty()),
            )?,
            discovery: discovery::targets(raw.discovery)?,
            discovery_resolver: discovery::resolver(raw.discovery_resolver)?,
        };
        // Catch what only the whole set can get wrong (the point limit), without building the
        // ring: at 1,000 backends that would be most of a reload's time.
        let points: u64 = config
            .backends
            .iter()
            .map(|b| u64::from(config.vnodes) * u64::from(b.weight))
            .sum();
        if points > MAX_POINTS {
            return Err(invalid(
                "ring.vnodes",
                RingError::TooManyPoints(points).to_string(),
            ));
        }
        Ok(config)
    }
}
