//! The `[health]` section: passive ejection and optional active checks.

use std::time::Duration;

use super::fields::{duration, int_in, invalid, ConfigError};
use super::raw::{RawActive, RawHealth};

/// `[health]`: when a backend stops taking requests, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Consecutive failures that eject a backend.
    pub fail_threshold: u32,
    /// First ejection's length; doubles per repeated ejection.
    pub eject_for: Duration,
    /// Cap on the doubling.
    pub max_eject_for: Duration,
    /// Count 5xx answers as failures.
    pub fail_on_5xx: bool,
    /// `[health.active]`, when configured.
    pub active: Option<ActiveConfig>,
}

/// `[health.active]`: periodic `GET path` on every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveConfig {
    /// Path (and query) to request.
    pub path: String,
    /// Time between two rounds of checks.
    pub interval: Duration,
    /// Bound on one check, connect included.
    pub timeout: Duration,
    /// Failed checks in a row that mark a backend unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that mark it healthy again.
    pub healthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            fail_threshold: 3,
            eject_for: Duration::from_secs(10),
            max_eject_for: Duration::from_secs(300),
            fail_on_5xx: false,
            active: None,
        }
    }
}

impl TryFrom<RawHealth> for HealthConfig {
    type Error = ConfigError;

    fn try_from(raw: RawHealth) -> Result<HealthConfig, ConfigError> {
        let d = HealthConfig::default();
        let eject_for = duration("health.eject_for", raw.eject_for, d.eject_for)?;
        let max_eject_for = duration(
            "health.max_eject_for",
            raw.max_eject_for,
            d.max_eject_for.max(eject_for),
        )?;
        if max_eject_for < eject_for {
            return Err(invalid(
                "health.max_eject_for",
                "must not be shorter than health.eject_for",
            ));
        }
        Ok(HealthConfig {
            fail_threshold: int_in(
                "health.fail_threshold",
                raw.fail_threshold,
                1..=1000,
                d.fail_threshold,
            )?,
            eject_for,
            max_eject_for,
            fail_on_5xx: raw.fail_on_5xx.unwrap_or(false),
            active: raw.active.map(ActiveConfig::try_from).transpose()?,
        })
    }
}

impl TryFrom<RawActive> for ActiveConfig {
    type Error = ConfigError;

    fn try_from(raw: RawActive) -> Result<ActiveConfig, ConfigError> {
        let path = raw.path.unwrap_or_else(|| "/health".into());
        if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(invalid(
                "health.active.path",
                format!("{path:?} is not a path starting with '/'"),
            ));
        }
        let interval = duration(
            "health.active.interval",
            raw.interval,
            Duration::from_secs(5),
        )?;
        let timeout = duration("health.active.timeout", raw.timeout, Duration::from_secs(1))?;
        if timeout > interval {
            return Err(invalid(
                "health.active.timeout",
                "must not be longer than health.active.interval",
            ));
        }
        Ok(ActiveConfig {
            path,
            interval,
            timeout,
            unhealthy_threshold: int_in(
                "health.active.unhealthy_threshold",
                raw.unhealthy_threshold,
                1..=1000,
                3,
            )?,
            healthy_threshold: int_in(
                "health.active.healthy_threshold",
                raw.healthy_threshold,
                1..=1000,
                2,
            )?,
        })
    }
}
