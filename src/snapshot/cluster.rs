//! [`Cluster`]: the holder of the current snapshot, and the one build-and-swap path every
//! change goes through.
//!
//! Writers take a mutex first, so two concurrent changes cannot both start from the same old
//! snapshot and lose one of them. Under it a change edits a copy ([`Draft`]), the next snapshot
//! is built (the ring only when ids, weights or vnodes changed), the membership is saved to the
//! state file if there is one, and only then is the snapshot swapped in: what the file says
//! and what the proxy routes with never disagree.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::uri::Authority;

use super::view::{Backend, LastChange, Origin, Ramp, RampDirection, Settings, Snapshot};
use crate::clock::now_ms;
use crate::config::{validate_address, validate_id, validate_weight, BackendConfig, Config};
use crate::discovery::Found;
use crate::health::BackendHealth;
use crate::load::BackendLoad;
use crate::ring::{moved, Placement, RingError};
use crate::state_file::{SavedBackend, SavedDirection, SavedRamp, StateError, StateFile};
use crate::sync::lock;

/// Why a change was refused; the snapshot is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// The id is not acceptable.
    #[error("invalid backend id: {0}")]
    InvalidId(String),
    /// The address is not acceptable.
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    /// The weight is not acceptable.
    #[error("invalid weight: {0}")]
    InvalidWeight(String),
    /// No backend has this id.
    #[error("no backend with id {0:?}")]
    NotFound(String),
    /// The new member set cannot form a ring.
    #[error("{0}")]
    Ring(#[from] RingError),
    /// The state file could not be written, so nothing changed.
    #[error("{0}")]
    State(String),
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// A new backend joined.
    Created,
    /// An existing backend changed.
    Updated,
    /// The backend was already so.
    Unchanged,
}

/// The holder: the current snapshot and the lock that serializes writers.
pub struct Cluster {
    current: ArcSwap<Snapshot>,
    writer: Mutex<Writer>,
}

/// What only writers see, under the lock.
pub(super) struct Writer {
    pub vnodes: u32,
    pub placement: Placement,
    /// The `[[backends]]` of the config file last read: a reload changes membership only when
    /// this list changes, so admin changes survive reloads of an unchanged file.
    pub file_backends: Vec<BackendConfig>,
    pub state: Option<StateFile>,
    /// The config as started: listeners, workers and the state file cannot change on reload.
    pub started: Config,
}

/// A copy of the state that a change edits.
pub(super) struct Draft {
    pub backends: Vec<Backend>,
    /// The members as they were, to carry health over from.
    pub backends_before: Vec<Backend>,
    pub settings: Arc<Settings>,
    pub vnodes: u32,
    pub placement: Placement,
    /// A new config file's `[[backends]]`, remembered once the change is published.
    pub file_backends: Option<Vec<BackendConfig>>,
}

impl Cluster {
    /// The cluster `config` describes. With a state file configured and present, membership
    /// comes from the state file alone (the config's `[[backends]]` are ignored); a state file
    /// that exists but cannot be used is an error, never a fallback to a smaller ring.
    pub fn new(config: &Config) -> Result<Cluster, StartError> {
        let state = config.admin.state_file.as_ref().map(StateFile::new);
        let saved = match &state {
            Some(s) => s.load()?,
            None => None,
        };
        let backends = match &saved {
            Some(list) => {
                tracing::info!(
                    path = %state.as_ref().expect("loaded from it").path().display(),
                    backends = list.len(),
                    "membership from the state file; the config's [[backends]] are not used"
                );
                let now = now_ms();
                list.iter()
                    .map(|s| {
                        let b = backend(&s.id, &s.address, i64::from(s.weight))?;
                        b.health.set_draining(s.draining);
                        let mut b = Backend {
                            origin: Origin::from_label(&s.origin),
                            ..b
                        };
                        // Saved as it finished, it ends here as the driver ends one.
                        if let Some(r) = s.ramp {
                            ramp_to(&mut b, resumed(r, now), now, config.vnodes);
                        }
                        Ok(b)
                    })
                    .collect::<Result<Vec<_>, ChangeError>>()?
            }
            None => config
                .backends
                .iter()
                .map(|b| backend(&b.id, &b.address, i64::from(b.weight)))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let settings = Arc::new(Settings::of(config));
        let snapshot = Snapshot::build(1, config.vnodes, config.placement, backends, settings)?;
        Ok(Cluster {
            current: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(Writer {
                vnodes: config.vnodes,
                placement: config.placement,
                file_backends: config.backends.clone(),
                state,
                started: config.clone(),
            }),
        })
    }

    /// The current snapshot: one atomic load.
    #[inline]
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Adds a backend, or changes the address/weight of an existing one.
    pub fn upsert(&self, id: &str, address: &str, weight: i64) -> Result<Upsert, ChangeError> {
        self.upsert_snapshot(id, address, weight)
            .map(|(outcome, _)| outcome)
    }

    /// [`Cluster::upsert`], answering also the snapshot it published (the current one when
    /// nothing changed), whose `last_change` says what the change moved.
    pub fn upsert_snapshot(
        &self,
        id: &str,
        address: &str,
        weight: i64,
    ) -> Result<(Upsert, Arc<Snapshot>), ChangeError> {
        let new = backend(id, address, weight)?;
        self.change(|_, draft| {
            Ok(match draft.backends.iter_mut().find(|b| *b.id == *id) {
                Some(b) if b.address == new.address && b.weight == new.weight => Upsert::Unchanged,
                Some(b) => {
                    *b = carry(b, new);
                    Upsert::Updated
                }
                None => {
                    draft.backends.push(new);
                    Upsert::Created
                }
            })
        })
        .map(|(outcome, _, new)| (outcome, new))
    }

    /// Removes a backend from the ring.
    pub fn remove(&self, id: &str) -> Result<(), ChangeError> {
        self.change(|_, draft| {
            let before = draft.backends.len();
            draft.backends.retain(|b| *b.id != *id);
            if draft.backends.len() == before {
                return Err(ChangeError::NotFound(id.to_string()));
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// Removes the members of discovery origins not in `keep` (targets dropped from the
    /// config, or left over in the state file).
    pub fn retain_origins(&self, keep: &[Origin]) -> Result<(), ChangeError> {
        self.change(|_, draft| {
            draft
                .backends
                .retain(|b| b.origin == Origin::Static || keep.contains(&b.origin));
            Ok(())
        })
        .map(|_| ())
    }

    /// Moves every ramp on to `now`: warming backends gain points, ramping-down ones lose
    /// them; a finished warm-up ends as a plain member, a finished ramp-down as a drained one
    /// with all its points back (the same owners: drained, its keys go to the next candidate,
    /// exactly where they went as its points left).
    pub fn advance_ramps(&self, now: u64) -> Result<(), ChangeError> {
        if self.load().backends.iter().all(|b| b.ramp.is_none()) {
            return Ok(());
        }
        self.change(|_, draft| {
            for b in &mut draft.backends {
                if let Some(ramp) = b.ramp {
                    ramp_to(b, ramp, now, draft.vnodes);
                }
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Drains a backend gradually over `duration`: its points leave the ring a few at a time
    /// (each key moves once), then it is drained.
    pub fn ramp_down(
        &self,
        id: &str,
        duration: std::time::Duration,
    ) -> Result<Backend, ChangeError> {
        let now = now_ms();
        self.change(|_, draft| {
            let vnodes = draft.vnodes;
            let b = draft
                .backends
                .iter_mut()
                .find(|b| *b.id == *id)
                .ok_or_else(|| ChangeError::NotFound(id.to_string()))?;
            let points = b.ramp.map_or(vnodes.saturating_mul(b.weight), |r| r.points);
            b.ramp = Some(Ramp {
                direction: RampDirection::Down,
                started_ms: now,
                resumed_ms: 0,
                duration_ms: duration.as_millis() as u64,
                points,
            });
            Ok(b.clone())
        })
        .map(|(b, _, _)| b)
    }

    /// Drains or undrains a backend: it keeps its points, so undrain returns exactly its keys.
    /// Undrain also stops a ramp-down. Saved to the state file before it takes effect.
    pub fn set_draining(&self, id: &str, draining: bool) -> Result<Backend, ChangeError> {
        if !draining
            && self
                .load()
                .get(id)
                .is_some_and(|b| b.ramp.is_some_and(|r| r.direction == RampDirection::Down))
        {
            self.change(|_, draft| {
                if let Some(b) = draft.backends.iter_mut().find(|b| *b.id == *id) {
                    b.ramp = None;
                }
                Ok(())
            })?;
        }
        let w = lock(&self.writer);
        let snapshot = self.load();
        let b = snapshot
            .get(id)
            .ok_or_else(|| ChangeError::NotFound(id.to_string()))?;
        if b.health.is_draining() != draining {
            if let Some(state) = &w.state {
                state
                    .save(saved(&snapshot.backends, Some((id, draining)), now_ms()))
                    .map_err(|e| ChangeError::State(e.to_string()))?;
            }
            b.health.set_draining(draining);
        }
        Ok(b.clone())
    }

    /// Replaces the members discovery found for `origin` with `found`, keeping the health of
    /// those that stay. Ids already present with another origin are left to that origin.
    pub fn set_discovered(&self, origin: &Origin, found: &[Found]) -> Result<(), ChangeError> {
        let mut list = Vec::with_capacity(found.len());
        for f in found {
            list.push(Backend {
                origin: origin.clone(),
                ..backend(&f.id, &f.address, i64::from(f.weight))?
            });
        }
        self.change(|_, draft| {
            let mut next: Vec<Backend> = Vec::with_capacity(draft.backends.len() + list.len());
            for b in draft.backends.drain(..) {
                if b.origin != *origin {
                    next.push(b);
                }
            }
            for new in list {
                if let Some(other) = next.iter().find(|b| b.id == new.id) {
                    tracing::warn!(backend = %new.id, origin = %other.origin.label(), "discovered member already present; kept the existing one");
                    continue;
                }
                let old = find(&draft.backends_before, &new.id);
                next.push(match old {
                    Some(o) => carry(o, new),
                    None => new,
                });
            }
            draft.backends = next;
            Ok(())
        })
        .map(|_| ())
    }

    /// Runs `edit` on a copy under the writer lock and publishes the result as one swap:
    /// answers `edit`'s result with the snapshots before and after (the same one if nothing
    /// changed).
    pub(super) fn change<T>(
        &self,
        edit: impl FnOnce(&Writer, &mut Draft) -> Result<T, ChangeError>,
    ) -> Result<(T, Arc<Snapshot>, Arc<Snapshot>), ChangeError> {
        let mut w = lock(&self.writer);
        let old = self.current.load_full();
        let mut draft = Draft {
            backends: old.backends.clone(),
            backends_before: old.backends.clone(),
            settings: old.settings.clone(),
            vnodes: w.vnodes,
            placement: w.placement,
            file_backends: None,
        };
        let result = edit(&w, &mut draft)?;
        let new = self.commit(&mut w, &old, draft)?;
        Ok((result, old, new))
    }

    fn commit(
        &self,
        w: &mut Writer,
        old: &Arc<Snapshot>,
        mut draft: Draft,
    ) -> Result<Arc<Snapshot>, ChangeError> {
        if draft.placement == Placement::Ringproxy {
            draft.backends.sort_by(|a, b| a.id.cmp(&b.id));
        }
        // Joiners warm up when a warm-up is configured, whoever added them; the first members
        // of an empty ring have nobody to take keys from.
        if let Some(warmup) = draft.settings.balance.warmup {
            if !old.backends.is_empty() {
                let now = now_ms();
                for b in &mut draft.backends {
                    if b.ramp.is_none() && find(&old.backends, &b.id).is_none() {
                        b.ramp = Some(Ramp {
                            direction: RampDirection::Up,
                            started_ms: now,
                            resumed_ms: 0,
                            duration_ms: warmup.as_millis() as u64,
                            points: 0,
                        });
                    }
                }
            }
        }
        let points = |b: &Backend| b.ramp.map(|r| r.points);
        let same_ring = draft.vnodes == old.ring.vnodes()
            && draft.placement == old.ring.placement()
            && draft.backends.len() == old.backends.len()
            && draft
                .backends
                .iter()
                .zip(&old.backends)
                .all(|(a, b)| a.id == b.id && a.weight == b.weight && points(a) == points(b));
        let same_members = same_ring
            && draft
                .backends
                .iter()
                .zip(&old.backends)
                .all(|(a, b)| a.address == b.address && a.origin == b.origin);
        if let Some(list) = draft.file_backends.take() {
            w.file_backends = list;
        }
        if same_members && *draft.settings == *old.settings {
            return Ok(old.clone());
        }
        let mut next = if same_members {
            Snapshot::with_ring(
                old.version,
                old.ring.clone(),
                draft.backends,
                draft.settings,
            )
        } else if same_ring {
            Snapshot::with_ring(
                old.version + 1,
                old.ring.clone(),
                draft.backends,
                draft.settings,
            )
        } else {
            Snapshot::build(
                old.version + 1,
                draft.vnodes,
                draft.placement,
                draft.backends,
                draft.settings,
            )?
        };
        // Every membership change, whatever its source, reports what it moved (exactly).
        next.last_change = if same_members {
            old.last_change
        } else {
            let moved = if same_ring {
                0.0
            } else {
                moved(&old.ring, &next.ring).share
            };
            Some(LastChange {
                version: next.version,
                moved,
            })
        };
        if !same_members {
            if let Some(state) = &w.state {
                state
                    .save(saved(&next.backends, None, now_ms()))
                    .map_err(|e| ChangeError::State(e.to_string()))?;
            }
        }
        w.vnodes = draft.vnodes;
        w.placement = draft.placement;
        let next = Arc::new(next);
        self.current.store(next.clone());
        Ok(next)
    }
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state file exists but cannot be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The backends do not form a valid ring.
    #[error("invalid backends: {0}")]
    Backends(#[from] ChangeError),
}

impl From<RingError> for StartError {
    fn from(e: RingError) -> Self {
        StartError::Backends(e.into())
    }
}

pub(super) fn find<'a>(list: &'a [Backend], id: &str) -> Option<&'a Backend> {
    list.iter().find(|b| *b.id == *id)
}

/// `new` in place of `old` (same id): same address keeps its health history; a new address is
/// a new server and starts fresh, but an operator's drain stays.
pub(super) fn carry(old: &Backend, new: Backend) -> Backend {
    let health = if old.address == new.address {
        old.health.clone()
    } else {
        let h = Arc::new(BackendHealth::default());
        h.set_draining(old.health.is_draining());
        h
    };
    Backend {
        health,
        load: old.load.clone(),
        ramp: old.ramp,
        ..new
    }
}

/// Puts `ramp` on `b` as it stands at `now` (`vnodes` per unit of weight): its points, or,
/// once it is done, its end as [`Cluster::advance_ramps`] describes.
fn ramp_to(b: &mut Backend, mut ramp: Ramp, now: u64, vnodes: u32) {
    if ramp.progress(now) >= 1.0 {
        b.ramp = None;
        if ramp.direction == RampDirection::Down {
            // Before the commit, so the state file records the drain.
            b.health.set_draining(true);
        }
    } else {
        ramp.points = ramp.points_at(now, vnodes.saturating_mul(b.weight));
        b.ramp = Some(ramp);
    }
}

/// A saved ramp, going on at `now` from where it stood (its points set by [`ramp_to`]).
fn resumed(r: SavedRamp, now: u64) -> Ramp {
    Ramp {
        direction: match r.direction {
            SavedDirection::Up => RampDirection::Up,
            SavedDirection::Down => RampDirection::Down,
        },
        started_ms: now,
        resumed_ms: r.done_ms,
        duration_ms: r.duration_ms,
        points: 0,
    }
}

/// The membership as the state file stores it at `now`; `drain` overrides one backend's flag.
fn saved(backends: &[Backend], drain: Option<(&str, bool)>, now: u64) -> Vec<SavedBackend> {
    backends
        .iter()
        .map(|b| SavedBackend {
            id: b.id.to_string(),
            address: b.address.to_string(),
            weight: b.weight,
            draining: match drain {
                Some((id, d)) if id == &*b.id => d,
                _ => b.health.is_draining(),
            },
            origin: b.origin.label().to_string(),
            ramp: b.ramp.map(|r| SavedRamp {
                direction: match r.direction {
                    RampDirection::Up => SavedDirection::Up,
                    RampDirection::Down => SavedDirection::Down,
                },
                duration_ms: r.duration_ms,
                done_ms: r.done_ms(now),
            }),
        })
        .collect()
}

/// Validates and builds one static backend.
pub(super) fn backend(id: &str, address: &str, weight: i64) -> Result<Backend, ChangeError> {
    validate_id(id).map_err(ChangeError::InvalidId)?;
    validate_address(address).map_err(ChangeError::InvalidAddress)?;
    let weight = validate_weight(weight).map_err(ChangeError::InvalidWeight)?;
    let authority: Authority = address
        .parse()
        .map_err(|_| ChangeError::InvalidAddress(address.to_string()))?;
    Ok(Backend {
        id: id.into(),
        address: address.into(),
        weight,
        authority,
        health: Arc::new(BackendHealth::default()),
        origin: Origin::Static,
        load: Arc::new(BackendLoad::default()),
        ramp: None,
    })
}
