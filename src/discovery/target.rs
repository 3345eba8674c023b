//! What to discover ([`Target`]) and whom to ask ([`ResolverSettings`]). Plain data, filled in
//! by the config layer; [`Target::validate`] is there so that layer can reject a bad entry at
//! load time instead of it failing every interval at run time.

use std::net::SocketAddr;
use std::time::Duration;

use super::DiscoveryError;

/// Per-query timeout when the config does not set one.
pub const DEFAULT_RESOLVER_TIMEOUT: Duration = Duration::from_secs(2);

/// One DNS name to expand into ring members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A/AAAA name: one member per address, on `port`, with `weight`.
    pub name: Option<String>,
    /// SRV name: each record gives host, port and weight (0 counts as 1). Only the records with
    /// the lowest priority value are used: higher values are fallbacks (RFC 2782), and a hash
    /// ring has no "use only when the others are down" slot.
    pub srv: Option<String>,
    /// Required with `name`; must be absent with `srv`, whose records carry the port.
    pub port: Option<u16>,
    /// Weight of every member of a `name` target. Not used for `srv` (the records carry it).
    pub weight: u32,
    /// How often to re-resolve. Clamped up to [`super::MIN_INTERVAL`].
    pub interval: Duration,
}

impl Target {
    /// The DNS name this target queries, for messages.
    pub fn dns_name(&self) -> &str {
        self.name.as_deref().or(self.srv.as_deref()).unwrap_or("")
    }

    /// Checks the shape: exactly one of `name` / `srv`, `port` with `name` only, a non-zero
    /// weight for `name`, non-empty names.
    pub fn validate(&self) -> Result<(), DiscoveryError> {
        let invalid = |msg: String| Err(DiscoveryError::Invalid(msg));
        match (&self.name, &self.srv) {
            (Some(_), Some(_)) => invalid("set either `name` or `srv`, not both".into()),
            (None, None) => invalid("set `name` (A/AAAA) or `srv`".into()),
            (Some(name), None) => {
                if name.trim().is_empty() {
                    return invalid("`name` is empty".into());
                }
                if self.port.is_none() {
                    return invalid(format!("`port` is required with `name` ({name})"));
                }
                if self.weight == 0 {
                    return invalid(format!("`weight` must be at least 1 ({name})"));
                }
                Ok(())
            }
            (None, Some(srv)) => {
                if srv.trim().is_empty() {
                    return invalid("`srv` is empty".into());
                }
                if self.port.is_some() {
                    return invalid(format!(
                        "`port` can't be set with `srv` ({srv}): the SRV records give the port"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Which name servers discovery asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Empty: the system's `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Per query (one retry on top); a whole resolve is bounded by
    /// [`super::RESOLVE_BUDGET`] × this.
    pub timeout: Duration,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            nameservers: Vec::new(),
            timeout: DEFAULT_RESOLVER_TIMEOUT,
        }
    }
}
