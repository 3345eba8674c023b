//! A config reload as one change: new settings, and a new membership when the file's
//! `[[backends]]` changed, published in a single swap.

use std::sync::Arc;

use super::cluster::{backend, carry, find, ChangeError, Cluster};
use super::view::{Origin, Settings};
use crate::config::{BackendConfig, Config};
use crate::ring::moved;

/// What a reload changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloaded {
    /// Backends that joined.
    pub joined: Vec<String>,
    /// Backends that left.
    pub left: Vec<String>,
    /// Backends whose address or weight changed.
    pub changed: Vec<String>,
    /// Share of the hash space that changed owner.
    pub moved: f64,
    /// Config sections whose settings changed (`proxy`, `affinity`, `health`, `admin.token`).
    pub settings: Vec<&'static str>,
    /// Fields that differ from the running config but only take effect on restart.
    pub ignored: Vec<&'static str>,
    /// The ring version after the reload.
    pub version: u64,
    /// The ring fingerprint after the reload.
    pub fingerprint: String,
}

impl Cluster {
    /// Applies `config` (validated whole) as one change. Membership follows the file only when
    /// its `[[backends]]` differ from the file last read, so an unchanged file keeps what the
    /// admin API did; members found by discovery stay either way. Health of backends that stay
    /// (ejection, drain) is kept.
    pub fn reload(&self, config: &Config) -> Result<Reloaded, ChangeError> {
        let ((settings, ignored), old, new) = self.change(|w, draft| {
            let started = &w.started;
            let mut ignored = Vec::new();
            for (field, differs) in [
                ("proxy.listen", config.proxy.listen != started.proxy.listen),
                (
                    "proxy.workers",
                    config.proxy.workers != started.proxy.workers,
                ),
                ("proxy.io", config.proxy.io != started.proxy.io),
                ("admin.listen", config.admin.listen != started.admin.listen),
                (
                    "admin.state_file",
                    config.admin.state_file != started.admin.state_file,
                ),
            ] {
                if differs {
                    ignored.push(field);
                }
            }
            let mut next = Settings::of(config);
            next.proxy.listen = started.proxy.listen;
            next.proxy.workers = started.proxy.workers;
            next.proxy.io = started.proxy.io;
            next.proxy.max_connections = started.proxy.max_connections;
            let old = &draft.settings;
            let mut sections = Vec::new();
            if next.proxy != old.proxy {
                sections.push("proxy");
            }
            if next.affinity != old.affinity {
                sections.push("affinity");
            }
            if next.health != old.health {
                sections.push("health");
            }
            if next.token != old.token {
                sections.push("admin.token");
            }
            if config.vnodes != draft.vnodes {
                sections.push("ring");
            }
            draft.settings = Arc::new(next);
            draft.vnodes = config.vnodes;
            draft.placement = config.placement;

            if !same_set(&config.backends, &w.file_backends) {
                let mut members: Vec<_> = draft
                    .backends
                    .drain(..)
                    .filter(|b| b.origin != Origin::Static)
                    .filter(|b| !config.backends.iter().any(|c| *c.id == *b.id))
                    .collect();
                for c in &config.backends {
                    let new = backend(&c.id, &c.address, i64::from(c.weight))?;
                    members.push(match find(&draft.backends_before, &c.id) {
                        Some(old) => carry(old, new),
                        None => new,
                    });
                }
                draft.backends = members;
                draft.file_backends = Some(config.backends.clone());
            }
            Ok((sections, ignored))
        })?;
        let has = |list: &[crate::snapshot::Backend], id: &str| list.iter().any(|b| *b.id == *id);
        let joined = new
            .backends
            .iter()
            .filter(|b| !has(&old.backends, &b.id))
            .map(|b| b.id.to_string())
            .collect();
        let left = old
            .backends
            .iter()
            .filter(|b| !has(&new.backends, &b.id))
            .map(|b| b.id.to_string())
            .collect();
        let changed = new
            .backends
            .iter()
            .filter(|b| {
                find(&old.backends, &b.id)
                    .is_some_and(|o| o.address != b.address || o.weight != b.weight)
            })
            .map(|b| b.id.to_string())
            .collect();
        Ok(Reloaded {
            joined,
            left,
            changed,
            moved: moved(&old.ring, &new.ring).share,
            settings,
            ignored,
            version: new.version,
            fingerprint: new.fingerprint.clone(),
        })
    }
}

/// The same backends, whatever their order.
fn same_set(a: &[BackendConfig], b: &[BackendConfig]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
