//! The `[balance]` section: bounded loads for hot keys, and warm-up ramps for joiners.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use super::fields::{duration, invalid, ConfigError};
use super::raw::RawBalance;

/// Which keys may leave an owner that is over its load bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// Only keys hot right now (above `hot_share` of recent requests): cold keys always
    /// reach their owner, so their cache stays warm.
    Hot,
    /// Any key (HAProxy's `hash-balance-factor`, Envoy's `hash_balance_factor`).
    Any,
}

/// `[balance]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceConfig {
    /// A backend is over its bound when its in-flight requests reach
    /// `ceil(bound × (total in flight + 1) / usable backends)`; `None`: no bound.
    pub bound: Option<f64>,
    /// Which keys may spill past an over-bound owner.
    pub spread: Spread,
    /// A key is hot above this share of recent requests.
    pub hot_share: f64,
    /// A joining backend's points enter the ring over this long; `None`: at once.
    pub warmup: Option<Duration>,
    /// Statuses from a warming backend that mean "not cached here": the request is re-sent
    /// to the key's previous owner. Empty with no `warmup_miss_header`: no fallback.
    pub warmup_miss_status: Vec<u16>,
    /// A response header (`name: value`) that means the same.
    pub warmup_miss_header: Option<(HeaderName, HeaderValue)>,
}

impl Eq for BalanceConfig {}

impl Default for BalanceConfig {
    fn default() -> Self {
        BalanceConfig {
            bound: None,
            spread: Spread::Hot,
            hot_share: 0.01,
            warmup: None,
            warmup_miss_status: Vec::new(),
            warmup_miss_header: None,
        }
    }
}

impl BalanceConfig {
    /// Is the look-aside fallback on?
    pub fn fallback(&self) -> bool {
        !self.warmup_miss_status.is_empty() || self.warmup_miss_header.is_some()
    }
}

impl TryFrom<RawBalance> for BalanceConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBalance) -> Result<BalanceConfig, ConfigError> {
        let d = BalanceConfig::default();
        let bound = match raw.bound {
            None => None,
            Some(b) if b.is_finite() && (1.0..=100.0).contains(&b) => Some(b),
            Some(b) => {
                return Err(invalid(
                    "balance.bound",
                    format!("{b} is out of range; use 1.0 to 100 (e.g. 1.25: at most 25% above the mean load)"),
                ))
            }
        };
        let spread = match raw.spread.as_deref() {
            None | Some("hot") => Spread::Hot,
            Some("any") => Spread::Any,
            Some(other) => {
                return Err(invalid(
                    "balance.spread",
                    format!("{other:?} is not one of \"hot\", \"any\""),
                ))
            }
        };
        let hot_share = match raw.hot_share {
            None => d.hot_share,
            Some(h) if h.is_finite() && h > 0.0 && h < 1.0 => h,
            Some(h) => {
                return Err(invalid(
                    "balance.hot_share",
                    format!("{h} is out of range; use a share between 0 and 1, e.g. 0.01"),
                ))
            }
        };
        let warmup = match raw.warmup {
            None => None,
            Some(v) => Some(duration("balance.warmup", Some(v), Duration::ZERO)?),
        };
        let mut warmup_miss_status = Vec::new();
        for (i, s) in raw
            .warmup_miss_status
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if !(100..=599).contains(&s) {
                return Err(invalid(
                    format!("balance.warmup_miss_status[{i}]"),
                    format!("{s} is not an HTTP status"),
                ));
            }
            warmup_miss_status.push(s as u16);
        }
        let warmup_miss_header = match raw.warmup_miss_header {
            None => None,
            Some(h) => {
                let bad = || {
                    invalid(
                        "balance.warmup_miss_header",
                        format!("{h:?} is not `name: value`, e.g. \"x-cache: MISS\""),
                    )
                };
                let (name, value) = h.split_once(':').ok_or_else(bad)?;
                let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
                let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
                Some((name, value))
            }
        };
        let config = BalanceConfig {
            bound,
            spread,
            hot_share,
            warmup,
            warmup_miss_status,
            warmup_miss_header,
        };
        if config.fallback() && config.warmup.is_none() {
            return Err(invalid(
                "balance.warmup",
                "warmup_miss_status / warmup_miss_header need a warmup period",
            ));
        }
        Ok(config)
    }
}
