//! The `[[discovery]]` and `[discovery_resolver]` sections: backends found in DNS.

use std::net::SocketAddr;
use std::time::Duration;

use super::fields::{duration, int_in, invalid, ConfigError};
use super::raw::{RawDiscovery, RawResolver};
use crate::discovery::{ResolverSettings, Target, DEFAULT_RESOLVER_TIMEOUT};

/// `[[discovery]]`, each entry validated.
pub(crate) fn targets(raw: Option<Vec<RawDiscovery>>) -> Result<Vec<Target>, ConfigError> {
    let mut targets: Vec<Target> = Vec::new();
    for (i, d) in raw.unwrap_or_default().into_iter().enumerate() {
        let field = |name: &str| format!("discovery[{i}].{name}");
        let port = match d.port {
            None => None,
            Some(p) => Some(int_in(&field("port"), Some(p), 1..=65_535, 0u16)?),
        };
        let target = Target {
            name: d.name,
            srv: d.srv,
            port,
            weight: int_in(&field("weight"), d.weight, 1..=10_000, 1u32)?,
            interval: duration(&field("interval"), d.interval, Duration::from_secs(5))?,
        };
        target
            .validate()
            .map_err(|e| invalid(format!("discovery[{i}]"), e.to_string()))?;
        if targets.contains(&target) {
            return Err(invalid(format!("discovery[{i}]"), "listed twice"));
        }
        targets.push(target);
    }
    Ok(targets)
}

/// `[discovery_resolver]`.
pub(crate) fn resolver(raw: RawResolver) -> Result<ResolverSettings, ConfigError> {
    let mut nameservers = Vec::new();
    for (i, s) in raw.nameservers.unwrap_or_default().iter().enumerate() {
        let addr: SocketAddr = s.parse().map_err(|_| {
            invalid(
                format!("discovery_resolver.nameservers[{i}]"),
                format!("{s:?} is not an IP:port address (e.g. \"10.0.0.10:53\")"),
            )
        })?;
        nameservers.push(addr);
    }
    Ok(ResolverSettings {
        nameservers,
        timeout: duration(
            "discovery_resolver.timeout",
            raw.timeout,
            DEFAULT_RESOLVER_TIMEOUT,
        )?,
    })
}
