//! What one request routes with: the snapshot, its backends and its settings.

use std::sync::{Arc, OnceLock};

use http::uri::Authority;

use crate::affinity::AffinityConfig;
use crate::config::{Config, HealthConfig, ProxyConfig};
use crate::health::BackendHealth;
use crate::ring::{Member, Ring, RingError};

/// Where a member came from; discovery replaces only its own members.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The config file, the state file or the admin API.
    Static,
    /// A `[[discovery]]` target, by its name (`dns:<name>`).
    Discovered(Arc<str>),
}

impl Origin {
    /// `"static"` or `"dns:<name>"`, as the state file and the admin API write it.
    pub fn label(&self) -> &str {
        match self {
            Origin::Static => "static",
            Origin::Discovered(name) => name,
        }
    }

    /// The inverse of [`Origin::label`].
    pub fn from_label(label: &str) -> Origin {
        if label == "static" {
            Origin::Static
        } else {
            Origin::Discovered(label.into())
        }
    }
}

/// One backend as the proxy uses it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Ring identity.
    pub id: Arc<str>,
    /// Where to connect (`host:port`).
    pub address: Arc<str>,
    /// Units of `vnodes` on the ring.
    pub weight: u32,
    /// `address` parsed once, so the request path only clones it.
    pub authority: Authority,
    /// Shared by every snapshot holding this backend: health changes never rebuild the ring.
    pub health: Arc<BackendHealth>,
    /// Who added it.
    pub origin: Origin,
}

/// The settings a config reload may change, read by each request from its snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `[proxy]`; `listen` and `workers` only take effect at start.
    pub proxy: ProxyConfig,
    /// `[admin] token`.
    pub token: Option<String>,
    /// `[affinity]`.
    pub affinity: AffinityConfig,
    /// `[health]`.
    pub health: HealthConfig,
}

impl Settings {
    /// The reloadable part of `config`.
    pub fn of(config: &Config) -> Settings {
        Settings {
            proxy: config.proxy.clone(),
            token: config.admin.token.clone(),
            affinity: config.affinity.clone(),
            health: config.health.clone(),
        }
    }
}

/// The latest membership change: the version it made and the share of the hash space (= of the
/// keys) whose owner it changed, measured exactly when the change was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastChange {
    /// The ring version the change made.
    pub version: u64,
    /// Share of the hash space that changed owner, 0.0 to 1.0.
    pub moved: f64,
}

/// Everything a request needs to route, as of one version.
#[derive(Debug)]
pub struct Snapshot {
    /// Bumped by every membership change.
    pub version: u64,
    /// The ring of `backends`.
    pub ring: Arc<Ring>,
    /// Indexed like `ring.members()`.
    pub backends: Vec<Backend>,
    /// The reloadable settings.
    pub settings: Arc<Settings>,
    /// `ring.fingerprint()`, computed once.
    pub fingerprint: String,
    /// The membership change that made this version; `None` for the ring the process started
    /// with. Settings-only changes keep the previous one.
    pub last_change: Option<LastChange>,
    /// `ring.shares()`, computed on first use.
    shares: OnceLock<Vec<(usize, f64)>>,
}

impl Snapshot {
    pub(crate) fn build(
        version: u64,
        vnodes: u32,
        mut backends: Vec<Backend>,
        settings: Arc<Settings>,
    ) -> Result<Snapshot, RingError> {
        backends.sort_by(|a, b| a.id.cmp(&b.id));
        let ring = Ring::new(
            backends.iter().map(|b| Member::new(b.id.clone(), b.weight)),
            vnodes,
        )?;
        Ok(Snapshot::with_ring(
            version,
            Arc::new(ring),
            backends,
            settings,
        ))
    }

    pub(crate) fn with_ring(
        version: u64,
        ring: Arc<Ring>,
        backends: Vec<Backend>,
        settings: Arc<Settings>,
    ) -> Snapshot {
        let fingerprint = ring.fingerprint();
        Snapshot {
            version,
            ring,
            backends,
            settings,
            fingerprint,
            last_change: None,
            shares: OnceLock::new(),
        }
    }

    /// Each member's points and share of the hash space ([`Ring::shares`]), computed once per
    /// snapshot: scrapes and status pages ask often, the ring changes rarely.
    pub fn shares(&self) -> &[(usize, f64)] {
        self.shares.get_or_init(|| self.ring.shares())
    }

    /// The backend owning `key` on the ring.
    pub fn owner(&self, key: &[u8]) -> Option<&Backend> {
        self.ring.lookup(key).map(|i| &self.backends[i])
    }

    /// The backend that would serve `key` now: the first usable candidate clockwise.
    pub fn serving(&self, key: &[u8], now: u64) -> Option<&Backend> {
        self.ring
            .candidates(key)
            .map(|i| &self.backends[i])
            .find(|b| b.health.usable(now))
    }

    /// The backend with this id.
    pub fn get(&self, id: &str) -> Option<&Backend> {
        self.ring.index_of(id).map(|i| &self.backends[i])
    }
}
