//! Runs DNS discovery for the configured `[[discovery]]` targets and feeds what it finds into
//! the cluster's one change path; restarts it when a reload changes the targets.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::discovery::{self, ResolverSettings, Target};
use crate::metrics::Metrics;
use crate::snapshot::{Cluster, Origin};
use crate::sync::lock;

/// The origin label of a target's members: `dns:<name>:<port>` or `dns:srv:<name>`.
pub fn origin(target: &Target) -> Origin {
    let label = match (&target.name, target.port) {
        (Some(name), Some(port)) => format!("dns:{name}:{port}"),
        _ => format!("dns:srv:{}", target.dns_name()),
    };
    Origin::Discovered(label.into())
}

/// The running discovery, if any, and what it runs for.
pub struct Discovery {
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    running: Mutex<Option<Running>>,
}

struct Running {
    targets: Vec<Target>,
    resolver: ResolverSettings,
    stop: CancellationToken,
}

impl Discovery {
    /// Discovery for `cluster`, stopped by `shutdown`; nothing runs until [`Discovery::apply`].
    pub fn new(cluster: Arc<Cluster>, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        Discovery {
            cluster,
            metrics,
            shutdown,
            running: Mutex::new(None),
        }
    }

    /// Runs discovery for `config`'s targets: starts it, restarts it if the targets or the
    /// resolver changed, and removes the members of targets that are gone. Must be called on
    /// the runtime that should drive it.
    pub fn apply(&self, config: &Config) {
        let mut running = lock(&self.running);
        if let Some(r) = running.as_ref() {
            if r.targets == config.discovery && r.resolver == config.discovery_resolver {
                return;
            }
            r.stop.cancel();
        }
        let keep: Vec<Origin> = config.discovery.iter().map(origin).collect();
        if let Err(e) = self.cluster.retain_origins(&keep) {
            tracing::error!(error = %e, "cannot remove the members of dropped discovery targets");
        }
        *running = None;
        if config.discovery.is_empty() {
            return;
        }
        let stop = self.shutdown.child_token();
        let targets = config.discovery.clone();
        let origins: Arc<Vec<Origin>> = Arc::new(keep);
        let (cluster, names) = (self.cluster.clone(), origins.clone());
        let on_change = move |i: usize, found: Vec<discovery::Found>| {
            let origin = &names[i];
            match cluster.set_discovered(origin, &found) {
                Ok(()) => tracing::info!(
                    target = origin.label(),
                    members = found.len(),
                    "discovery: membership changed"
                ),
                Err(e) => tracing::error!(
                    target = origin.label(), error = %e,
                    "discovery: the new members were refused; the last good set stays"
                ),
            }
        };
        let (metrics, names) = (self.metrics.clone(), origins);
        let on_error = move |i: usize, e: &discovery::DiscoveryError| {
            let origin = &names[i];
            metrics.discovery_error(origin.label(), e.label());
            tracing::warn!(target = origin.label(), error = %e, "discovery failed; keeping the last good set");
        };
        tracing::info!(targets = targets.len(), "DNS discovery on");
        tokio::spawn(discovery::run(
            targets.clone(),
            config.discovery_resolver.clone(),
            on_change,
            on_error,
            stop.clone(),
        ));
        *running = Some(Running {
            targets,
            resolver: config.discovery_resolver.clone(),
            stop,
        });
    }
}
