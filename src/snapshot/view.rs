//! What one request routes with: the snapshot, its backends and its settings.

use std::sync::{Arc, OnceLock};

use http::uri::Authority;

use crate::affinity::AffinityConfig;
use crate::config::{BalanceConfig, Config, HealthConfig, ProxyConfig};
use crate::health::BackendHealth;
use crate::load::{over_bound, BackendLoad};
use crate::ring::{Member, Placement, Ring, RingError};

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
    /// Requests in flight; shared like `health`.
    pub load: Arc<BackendLoad>,
    /// A warm-up or ramp-down in progress.
    pub ramp: Option<Ramp>,
}

/// Which way a ramp goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampDirection {
    /// A joiner warming up: its points enter the ring.
    Up,
    /// A drain with a ramp: its points leave the ring, then it is drained.
    Down,
}

/// A backend entering or leaving the ring gradually: a growing (or shrinking) prefix of its
/// point sequence is on the ring, so every key moves at most once and never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ramp {
    /// Up or down.
    pub direction: RampDirection,
    /// When it started ([`crate::clock::now_ms`]), or resumed.
    pub started_ms: u64,
    /// How far it had gone before `started_ms`: a ramp resumed from the state file.
    pub resumed_ms: u64,
    /// How long it takes.
    pub duration_ms: u64,
    /// Points on the ring now.
    pub points: u32,
}

impl Ramp {
    /// Share of the way done at `now`, 0.0 to 1.0.
    pub fn progress(&self, now: u64) -> f64 {
        if self.duration_ms == 0 {
            return 1.0;
        }
        (self.done_ms(now) as f64 / self.duration_ms as f64).min(1.0)
    }

    /// Time done at `now`, at most the duration.
    pub fn done_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.started_ms)
            .saturating_add(self.resumed_ms)
            .min(self.duration_ms)
    }

    /// Points on the ring at `now` for a backend with `full` points when not ramping.
    pub fn points_at(&self, now: u64, full: u32) -> u32 {
        let done = (f64::from(full) * self.progress(now)).floor() as u32;
        match self.direction {
            RampDirection::Up => done.min(full),
            RampDirection::Down => full.saturating_sub(done),
        }
    }
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
    /// `[balance]`.
    pub balance: BalanceConfig,
}

impl Settings {
    /// The reloadable part of `config`.
    pub fn of(config: &Config) -> Settings {
        Settings {
            proxy: config.proxy.clone(),
            token: config.admin.token.clone(),
            affinity: config.affinity.clone(),
            health: config.health.clone(),
            balance: config.balance.clone(),
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
    /// Builds the ring for `backends`: sorted by id for ringproxy's placement; in the given
    /// (listing) order for nginx's, whose ties go to the member listed first.
    pub(crate) fn build(
        version: u64,
        vnodes: u32,
        placement: Placement,
        mut backends: Vec<Backend>,
        settings: Arc<Settings>,
    ) -> Result<Snapshot, RingError> {
        let members = |backends: &[Backend]| -> Vec<Member> {
            backends
                .iter()
                .map(|b| match &b.ramp {
                    Some(r) => Member::ramped(b.id.clone(), b.weight, r.points),
                    None => Member::new(b.id.clone(), b.weight),
                })
                .collect()
        };
        let ring = match placement {
            Placement::Ringproxy => {
                backends.sort_by(|a, b| a.id.cmp(&b.id));
                Ring::new(members(&backends), vnodes)?
            }
            Placement::Nginx => Ring::nginx(members(&backends))?,
        };
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

    /// The usable candidate from `position` on after passing `skip` usable ones (spilled past
    /// by the load bound); the first usable one when there are not that many.
    pub fn serving_after(&self, position: u64, now: u64, skip: usize) -> Option<&Backend> {
        let mut usable = self
            .ring
            .candidates_hash(position)
            .map(|i| &self.backends[i])
            .filter(|b| b.health.usable(now));
        let first = usable.next()?;
        if skip == 0 {
            return Some(first);
        }
        Some(usable.nth(skip - 1).unwrap_or(first))
    }

    /// The backend that would serve `key` now: the first usable candidate clockwise.
    pub fn serving(&self, key: &[u8], now: u64) -> Option<&Backend> {
        self.ring
            .candidates(key)
            .map(|i| &self.backends[i])
            .find(|b| b.health.usable(now))
    }

    /// How many usable candidates from `position` on are over the load bound before the first
    /// that is not; 0 when all are (then the owner serves, as the bound promises nothing better).
    pub fn spills(&self, position: u64, now: u64, bound: f64, total: usize) -> usize {
        let all = self.backends.len();
        // Cheap first: with every backend counted as usable the cap is lowest, so a backend not
        // over it is not over the real one either.
        let mut usable = None;
        let mut over = 0;
        for index in self.ring.candidates_hash(position) {
            let b = &self.backends[index];
            if !b.health.usable(now) {
                continue;
            }
            let in_flight = b.load.in_flight();
            if !over_bound(in_flight, total, all, bound) {
                return over;
            }
            let usable = *usable.get_or_insert_with(|| {
                self.backends
                    .iter()
                    .filter(|b| b.health.usable(now))
                    .count()
            });
            if !over_bound(in_flight, total, usable, bound) {
                return over;
            }
            over += 1;
        }
        0
    }

    /// The backend with this id.
    pub fn get(&self, id: &str) -> Option<&Backend> {
        self.ring.index_of(id).map(|i| &self.backends[i])
    }
}
