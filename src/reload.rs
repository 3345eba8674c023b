//! Re-reading the config file on `SIGHUP` or `POST /reload`: the new file is validated whole,
//! then applied as one snapshot swap ([`Cluster::reload`]); an invalid file changes nothing.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::snapshot::{ChangeError, Cluster, Reloaded};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The proxy was started without a config file (the demo).
    #[error("no config file to reload: the proxy was started without --config")]
    NoFile,
    /// The new file is invalid; the error names the field.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The new membership was refused.
    #[error("{0}")]
    Change(#[from] ChangeError),
}

type Hook = Box<dyn Fn(&Config) + Send + Sync>;

/// Reloads one config file into one cluster.
pub struct Reloader {
    path: Option<PathBuf>,
    cluster: Arc<Cluster>,
    /// Called with each config applied, for what lives outside the snapshot (discovery).
    hooks: Vec<Hook>,
}

impl Reloader {
    /// Reloads from `path`, or refuses every reload when there is none.
    pub fn new(path: Option<PathBuf>, cluster: Arc<Cluster>) -> Reloader {
        Reloader {
            path,
            cluster,
            hooks: Vec::new(),
        }
    }

    /// Also calls `hook` with every config applied.
    pub fn on_reload(&mut self, hook: impl Fn(&Config) + Send + Sync + 'static) {
        self.hooks.push(Box::new(hook));
    }

    /// Re-reads the file and applies it; logs what changed, or why nothing did.
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = self.apply();
        match &result {
            Ok(r) => {
                tracing::info!(
                    joined = ?r.joined, left = ?r.left, changed = ?r.changed,
                    settings = ?r.settings, moved = r.moved, version = r.version,
                    fingerprint = %r.fingerprint, "config reloaded"
                );
                for field in &r.ignored {
                    tracing::warn!(
                        field,
                        "config reload: {field} cannot change while running; restart to apply it (the rest was applied)"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "config reload failed; the running config stays"),
        }
        result
    }

    fn apply(&self) -> Result<Reloaded, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        let config = Config::load(path)?;
        let reloaded = self.cluster.reload(&config)?;
        for hook in &self.hooks {
            hook(&config);
        }
        Ok(reloaded)
    }
}
