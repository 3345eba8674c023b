//! The `[health]` config section.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{parse_duration, ConfigError};

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub fail_threshold: u32,
    pub eject_for: Duration,
    pub max_eject_for: Duration,
    pub fail_on_5xx: bool,
    pub active: Option<ActiveConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActiveConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    fail_threshold: Option<i64>,
    eject_for: Option<String>,
    max_eject_for: Option<String>,
    fail_on_5xx: Option<bool>,
    active: Option<RawActive>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActive {
    path: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    unhealthy_threshold: Option<i64>,
    healthy_threshold: Option<i64>,
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn count(field: &str, value: Option<i64>, default: u32) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if (1..=1000).contains(&v) => Ok(v as u32),
        Some(v) => Err(invalid(
            field,
            format!("{v} is out of range; use 1 to 1000"),
        )),
    }
}

fn duration(
    field: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    let d = parse_duration(field, &v)?;
    if d < Duration::from_millis(1) {
        return Err(invalid(field, "must be at least 1ms"));
    }
    Ok(d)
}

impl HealthConfig {
    pub fn try_from_raw(raw: RawHealth) -> Result<HealthConfig, ConfigError> {
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
        let active = match raw.active {
            None => None,
            Some(a) => {
                let path = a.path.unwrap_or_else(|| "/health".into());
                if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
                    return Err(invalid(
                        "health.active.path",
                        format!("{path:?} is not a path starting with '/'"),
                    ));
                }
                let interval =
                    duration("health.active.interval", a.interval, Duration::from_secs(5))?;
                let timeout = duration("health.active.timeout", a.timeout, Duration::from_secs(1))?;
                if timeout > interval {
                    return Err(invalid(
                        "health.active.timeout",
                        "must not be longer than health.active.interval",
                    ));
                }
                Some(ActiveConfig {
                    path,
                    interval,
                    timeout,
                    unhealthy_threshold: count(
                        "health.active.unhealthy_threshold",
                        a.unhealthy_threshold,
                        3,
                    )?,
                    healthy_threshold: count(
                        "health.active.healthy_threshold",
                        a.healthy_threshold,
                        2,
                    )?,
                })
            }
        };
        Ok(HealthConfig {
            fail_threshold: count(
                "health.fail_threshold",
                raw.fail_threshold,
                d.fail_threshold,
            )?,
            eject_for,
            max_eject_for,
            fail_on_5xx: raw.fail_on_5xx.unwrap_or(false),
            active,
        })
    }
}
