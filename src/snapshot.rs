//! The routing state: one immutable [`Snapshot`] behind one `ArcSwap`.
//!
//! A request loads the snapshot once and routes with it to the end; a membership change builds a
//! whole new snapshot and swaps it in, so readers never block and never see half an update.
//! Writers take a mutex first, so two concurrent admin calls cannot both start from the same old
//! snapshot and lose one of the changes.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::uri::Authority;

use crate::config::{validate_address, validate_id, validate_weight, BackendConfig};
use crate::health::BackendHealth;
use crate::ring::{Member, Ring, RingError};
use crate::sync::lock;

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
}

/// Everything a request needs to route, as of one version.
#[derive(Debug)]
pub struct Snapshot {
    /// Bumped by every membership change.
    pub version: u64,
    /// The ring of `backends`.
    pub ring: Ring,
    /// Indexed like `ring.members()` (sorted by id).
    pub backends: Vec<Backend>,
}

impl Snapshot {
    fn build(version: u64, vnodes: u32, mut backends: Vec<Backend>) -> Result<Snapshot, RingError> {
        backends.sort_by(|a, b| a.id.cmp(&b.id));
        let ring = Ring::new(
            backends.iter().map(|b| Member::new(b.id.clone(), b.weight)),
            vnodes,
        )?;
        Ok(Snapshot {
            version,
            ring,
            backends,
        })
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

/// Why a membership change was refused; the snapshot is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("invalid backend id: {0}")]
    /// The id is not acceptable.
    InvalidId(String),
    #[error("invalid address: {0}")]
    /// The address is not acceptable.
    InvalidAddress(String),
    #[error("invalid weight: {0}")]
    /// The weight is not acceptable.
    InvalidWeight(String),
    #[error("no backend with id {0:?}")]
    /// No backend has this id.
    NotFound(String),
    #[error("{0}")]
    /// The new member set cannot form a ring.
    Ring(#[from] RingError),
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
    writer: Mutex<()>,
    vnodes: u32,
}

impl Cluster {
    /// A cluster whose first snapshot holds `backends`.
    pub fn new(vnodes: u32, backends: &[BackendConfig]) -> Result<Cluster, ChangeError> {
        let list = backends
            .iter()
            .map(|b| backend(&b.id, &b.address, i64::from(b.weight)))
            .collect::<Result<Vec<_>, _>>()?;
        let snapshot = Snapshot::build(1, vnodes, list)?;
        Ok(Cluster {
            current: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(()),
            vnodes,
        })
    }

    /// The current snapshot: one atomic load.
    #[inline]
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Adds a backend, or changes the address/weight of an existing one.
    pub fn upsert(&self, id: &str, address: &str, weight: i64) -> Result<Upsert, ChangeError> {
        let new = backend(id, address, weight)?;
        self.change(|list| {
            Ok(match list.iter_mut().find(|b| *b.id == *id) {
                Some(b) if b.address == new.address && b.weight == new.weight => {
                    (Upsert::Unchanged, false)
                }
                Some(b) => {
                    // Same place: keep its health history. A new address is a new server: start
                    // fresh, but an operator's drain stays.
                    let health = if b.address == new.address {
                        b.health.clone()
                    } else {
                        let h = Arc::new(BackendHealth::default());
                        h.set_draining(b.health.is_draining());
                        h
                    };
                    *b = Backend { health, ..new };
                    (Upsert::Updated, true)
                }
                None => {
                    list.push(new);
                    (Upsert::Created, true)
                }
            })
        })
    }

    /// Removes a backend from the ring.
    pub fn remove(&self, id: &str) -> Result<(), ChangeError> {
        self.change(|list| {
            let before = list.len();
            list.retain(|b| *b.id != *id);
            if list.len() == before {
                return Err(ChangeError::NotFound(id.to_string()));
            }
            Ok(((), true))
        })
    }

    /// Runs `edit` on a copy of the backend list under the writer lock; when it succeeds and
    /// reports a change, publishes a new snapshot with the next version.
    fn change<T>(
        &self,
        edit: impl FnOnce(&mut Vec<Backend>) -> Result<(T, bool), ChangeError>,
    ) -> Result<T, ChangeError> {
        // A poisoned lock only means a writer panicked; the snapshot itself is immutable and fine.
        let _guard = lock(&self.writer);
        let old = self.current.load_full();
        let mut list = old.backends.clone();
        let (result, changed) = edit(&mut list)?;
        if !changed {
            return Ok(result);
        }
        let next = Snapshot::build(old.version + 1, self.vnodes, list)?;
        self.current.store(Arc::new(next));
        Ok(result)
    }
}

/// Validates and builds one backend.
fn backend(id: &str, address: &str, weight: i64) -> Result<Backend, ChangeError> {
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let b = |id: &str, port: u16| BackendConfig {
            id: id.into(),
            address: format!("127.0.0.1:{port}"),
            weight: 1,
        };
        Cluster::new(40, &[b("c", 3), b("a", 1), b("b", 2)]).unwrap()
    }

    #[test]
    fn backends_line_up_with_ring_members() {
        let c = cluster();
        let s = c.load();
        assert_eq!(s.version, 1);
        for (i, m) in s.ring.members().iter().enumerate() {
            assert_eq!(m.id, s.backends[i].id);
        }
    }

    #[test]
    fn changes_bump_the_version_and_refusals_change_nothing() {
        let c = cluster();
        assert_eq!(c.upsert("d", "127.0.0.1:4", 1), Ok(Upsert::Created));
        assert_eq!(c.load().version, 2);
        assert_eq!(c.upsert("d", "127.0.0.1:4", 1), Ok(Upsert::Unchanged));
        assert_eq!(c.load().version, 2);
        assert_eq!(c.upsert("d", "127.0.0.1:5", 2), Ok(Upsert::Updated));
        assert_eq!(c.load().get("d").unwrap().weight, 2);
        assert!(matches!(
            c.upsert("e", "nope", 1),
            Err(ChangeError::InvalidAddress(_))
        ));
        assert!(matches!(
            c.upsert("e", "127.0.0.1:1", 0),
            Err(ChangeError::InvalidWeight(_))
        ));
        assert!(matches!(c.remove("zz"), Err(ChangeError::NotFound(_))));
        assert_eq!(c.load().version, 3);
        c.remove("d").unwrap();
        assert_eq!(c.load().version, 4);
        assert!(c.load().get("d").is_none());
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let c = Arc::new(cluster());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        c.upsert(&format!("n{t}-{i}"), "127.0.0.1:9", 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = c.load();
        assert_eq!(s.backends.len(), 3 + 200);
        assert_eq!(s.version, 1 + 200);
    }
}
