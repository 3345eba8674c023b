//! What one proxy worker's requests share: the cluster (snapshot per request), the traffic
//! counts, the metrics, and the worker's own upstream pools. Both server paths and the walk
//! read it; the hyper path's request handling is `service.rs`, the walk's `walk.rs`.

use std::sync::Arc;

use super::upstream::Upstream;
use crate::metrics::Metrics;
use crate::snapshot::Cluster;
use crate::traffic::Traffic;

/// Shared by every connection of one proxy worker.
pub struct Proxy {
    cluster: Arc<Cluster>,
    traffic: Arc<Traffic>,
    /// This worker's connections to the backends, for the hyper path (the relay's workers
    /// keep their own: `relay::Worker`).
    pool: Upstream,
    metrics: Arc<Metrics>,
}

impl Proxy {
    /// A proxy with its own upstream pool; [`Proxy::with_own_pool`] makes one per worker.
    /// Everything else it needs (settings included) comes from the cluster's snapshot, once
    /// per request.
    pub fn new(cluster: Arc<Cluster>, traffic: Arc<Traffic>, metrics: Arc<Metrics>) -> Proxy {
        Proxy {
            cluster,
            traffic,
            pool: Upstream::new(metrics.upstream_idle()),
            metrics,
        }
    }

    /// The same proxy with a connection pool of its own, for another worker thread: pooled
    /// connections are driven by tasks on the thread that opened them, so sharing a pool would
    /// hand requests across threads.
    pub fn with_own_pool(&self) -> Proxy {
        Proxy::new(
            self.cluster.clone(),
            self.traffic.clone(),
            self.metrics.clone(),
        )
    }

    /// The cluster whose snapshot each request loads.
    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// This worker's hyper connections to the backends (the hyper path).
    pub(crate) fn upstream(&self) -> &Upstream {
        &self.pool
    }

    /// Request counts the load bound and the hot-key sketch read.
    pub(crate) fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The metrics every request reports to.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}
