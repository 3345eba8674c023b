//! Prometheus metrics, served as text on the admin listener's `GET /metrics`.
//!
//! Counters and gauges are prometheus-client families; the per-request latency histograms and
//! in-flight gauges are atomics of their own in `latency.rs`, encoded into the same output.

mod latency;
mod recent;

pub use latency::{BackendReading, Exchange, Latency, Reading, BUCKETS};

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;

use crate::snapshot::Snapshot;

// Backend labels are the snapshot's `Arc<str>` ids: counting a response clones a pointer
// instead of allocating a string.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    backend: Arc<str>,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    backend: Arc<str>,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    backend: Arc<str>,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiscoveryLabels {
    target: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RingLabels {
    fingerprint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IoLabels {
    io: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The registry and every metric family of one process.
pub struct Metrics {
    registry: Registry,
    responses: Family<ResponseLabels, Counter>,
    upstream_errors: Family<ErrorLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    handovers: Family<ReasonLabels, Counter>,
    retries: Family<BackendLabels, Counter>,
    ejections: Family<BackendLabels, Counter>,
    backend_state: Family<StateLabels, Gauge>,
    worker_connections: Family<WorkerLabels, Gauge>,
    relay_workers: Family<IoLabels, Gauge>,
    upstream_opened: Family<BackendLabels, Counter>,
    upstream_idle: Gauge,
    ring_version: Gauge<u64, AtomicU64>,
    ring_backends: Gauge,
    ring_info: Family<RingLabels, Gauge>,
    spills: Family<BackendLabels, Counter>,
    in_flight: Family<BackendLabels, Gauge>,
    hot_keys: Gauge,
    discovery_errors: Family<DiscoveryLabels, Counter>,
    ring_moved_share: Gauge<f64, AtomicU64>,
    ring_share: Family<BackendLabels, Gauge<f64, AtomicU64>>,
    latency: Arc<Latency>,
    /// This registry's number for the per-thread counter memo (`recent.rs`).
    serial: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All families, registered under the `ringproxy_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringproxy");
        let responses = Family::<ResponseLabels, Counter>::default();
        let upstream_errors = Family::<ErrorLabels, Counter>::default();
        let rejected = Family::<ReasonLabels, Counter>::default();
        let handovers = Family::<ReasonLabels, Counter>::default();
        let retries = Family::<BackendLabels, Counter>::default();
        let ejections = Family::<BackendLabels, Counter>::default();
        let backend_state = Family::<StateLabels, Gauge>::default();
        let worker_connections = Family::<WorkerLabels, Gauge>::default();
        let relay_workers = Family::<IoLabels, Gauge>::default();
        let upstream_opened = Family::<BackendLabels, Counter>::default();
        let upstream_idle = Gauge::default();
        let ring_version = Gauge::<u64, AtomicU64>::default();
        let ring_backends = Gauge::default();
        let ring_info = Family::<RingLabels, Gauge>::default();
        let spills = Family::<BackendLabels, Counter>::default();
        let in_flight = Family::<BackendLabels, Gauge>::default();
        let hot_keys = Gauge::default();
        let discovery_errors = Family::<DiscoveryLabels, Counter>::default();
        registry.register(
            "discovery_errors",
            "Failed DNS discovery rounds (the last good set was kept), by target and kind",
            discovery_errors.clone(),
        );
        registry.register(
            "bounded_spills",
            "Requests passed to a later candidate because this backend was over its load bound",
            spills.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests sent to a backend whose response has not ended yet",
            in_flight.clone(),
        );
        registry.register(
            "hot_keys",
            "Keys above balance.hot_share of recent requests",
            hot_keys.clone(),
        );
        let ring_moved_share = Gauge::<f64, AtomicU64>::default();
        let ring_share = Family::<BackendLabels, Gauge<f64, AtomicU64>>::default();
        let latency = Arc::new(Latency::default());
        registry.register(
            "responses",
            "Responses relayed from backends, by backend and status code",
            responses.clone(),
        );
        registry.register(
            "upstream_errors",
            "Requests that failed talking to a backend, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "rejected",
            "Requests answered without reaching a backend",
            rejected.clone(),
        );
        registry.register(
            "http1_handovers",
            "Client connections the HTTP/1 relay handed to the hyper path, by reason (h2c, webdav, http10, connect, upgrade, target, no_host)",
            handovers.clone(),
        );
        registry.register(
            "retries",
            "Attempts on a later candidate after an earlier one failed, by the backend retried on",
            retries.clone(),
        );
        registry.register(
            "ejections",
            "Passive ejections of a backend after consecutive failures",
            ejections.clone(),
        );
        registry.register(
            "backend_state",
            "1 for each backend's current state (healthy, ejected, unhealthy, draining)",
            backend_state.clone(),
        );
        registry.register(
            "worker_connections",
            "Open client connections per proxy worker thread",
            worker_connections.clone(),
        );
        registry.register(
            "relay_workers",
            "HTTP/1 relay worker threads running, by their I/O (io_uring, or epoll where io_uring is refused)",
            relay_workers.clone(),
        );
        registry.register(
            "upstream_connections_opened",
            "Connections opened to backends; few per backend when keep-alive works",
            upstream_opened.clone(),
        );
        registry.register(
            "upstream_idle_connections",
            "Idle keep-alive connections to backends held in the workers' pools",
            upstream_idle.clone(),
        );
        registry.register(
            "ring_version",
            "Version of the current ring snapshot",
            ring_version.clone(),
        );
        registry.register(
            "ring_backends",
            "Backends in the current ring",
            ring_backends.clone(),
        );
        registry.register(
            "ring_info",
            "1 for the current ring's fingerprint (placement, vnodes, members and weights): replicas with the same membership show the same one",
            ring_info.clone(),
        );
        registry.register(
            "ring_moved_share",
            "Share of the hash space (= of the keys) whose backend the last membership change changed, 0 to 1",
            ring_moved_share.clone(),
        );
        registry.register(
            "ring_share",
            "Each backend's share of the hash space on the current ring, 0 to 1",
            ring_share.clone(),
        );
        registry.register_collector(Box::new(latency.clone()));
        Metrics {
            registry,
            responses,
            upstream_errors,
            rejected,
            handovers,
            retries,
            ejections,
            backend_state,
            worker_connections,
            relay_workers,
            upstream_opened,
            upstream_idle,
            ring_version,
            ring_backends,
            ring_info,
            spills,
            in_flight,
            hot_keys,
            discovery_errors,
            ring_moved_share,
            ring_share,
            latency,
            serial: recent::registry_serial(),
        }
    }

    /// The latency histograms and in-flight gauges, per backend.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// A request is being sent to `backend`: in flight, and timed, until the returned exchange
    /// is dropped (see [`Exchange`]).
    #[inline]
    pub fn begin(&self, backend: &Arc<str>) -> Exchange {
        self.latency.begin(backend)
    }

    /// A new connection to `backend` took `took` to open.
    pub fn upstream_connected(&self, backend: &Arc<str>, took: Duration) {
        self.latency.connected(backend, took);
    }

    /// A backend answered with `code`.
    pub fn response(&self, backend: &Arc<str>, code: u16) {
        recent::count(self.serial, backend, code, || {
            self.responses
                .get_or_create(&ResponseLabels {
                    backend: backend.clone(),
                    code,
                })
                .clone()
        });
    }

    /// A request failed at `backend`; `kind` is the error's own label.
    pub fn upstream_error(&self, backend: &Arc<str>, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&ErrorLabels {
                backend: backend.clone(),
                kind,
            })
            .inc();
    }

    /// A request answered without a backend's response; `reason` is the error's own label.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The HTTP/1 relay handed a client connection to the hyper path, for `reason`.
    pub fn handover(&self, reason: &'static str) {
        self.handovers.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A request passed `backend` by because it was over its load bound.
    pub fn spill(&self, backend: &Arc<str>) {
        let labels = BackendLabels {
            backend: backend.clone(),
        };
        self.spills.get_or_create(&labels).inc();
    }

    /// A discovery round for `target` failed with `kind`.
    pub fn discovery_error(&self, target: &str, kind: &'static str) {
        self.discovery_errors
            .get_or_create(&DiscoveryLabels {
                target: target.to_string(),
                kind,
            })
            .inc();
    }

    /// A request was retried on `backend`.
    pub fn retry(&self, backend: &Arc<str>) {
        let labels = BackendLabels {
            backend: backend.clone(),
        };
        self.retries.get_or_create(&labels).inc();
    }

    /// `backend` was ejected.
    pub fn ejection(&self, backend: &Arc<str>) {
        let labels = BackendLabels {
            backend: backend.clone(),
        };
        self.ejections.get_or_create(&labels).inc();
    }

    /// A new connection to `backend` was opened.
    pub fn upstream_opened(&self, backend: &Arc<str>) {
        self.upstream_opened
            .get_or_create(&BackendLabels {
                backend: backend.clone(),
            })
            .inc();
    }

    /// The idle-connection gauge every worker's pool adds to.
    pub fn upstream_idle(&self) -> Gauge {
        self.upstream_idle.clone()
    }

    /// The count of relay workers running on `io` ("io_uring" or "epoll").
    pub fn relay_workers(&self, io: &'static str) -> Gauge {
        self.relay_workers.get_or_create(&IoLabels { io }).clone()
    }

    /// The open-connections gauge of proxy worker `index`.
    pub fn worker_connections(&self, index: usize) -> Gauge {
        let worker = u32::try_from(index).unwrap_or(u32::MAX);
        self.worker_connections
            .get_or_create(&WorkerLabels { worker })
            .clone()
    }

    /// The Prometheus text exposition, with the ring and load gauges read from `snapshot`
    /// and the hot-key count given.
    pub fn render(&self, snapshot: &Snapshot, hot_keys: usize) -> String {
        self.hot_keys.set(hot_keys as i64);
        self.in_flight.clear();
        for b in &snapshot.backends {
            self.in_flight
                .get_or_create(&BackendLabels {
                    backend: b.id.clone(),
                })
                .set(b.load.in_flight() as i64);
        }
        self.ring_version.set(snapshot.version);
        self.ring_backends.set(snapshot.backends.len() as i64);
        self.ring_info.clear();
        self.ring_info
            .get_or_create(&RingLabels {
                fingerprint: snapshot.fingerprint.clone(),
            })
            .set(1);
        self.ring_moved_share
            .set(snapshot.last_change.map_or(0.0, |c| c.moved));
        self.ring_share.clear();
        for (b, &(_, share)) in snapshot.backends.iter().zip(snapshot.shares()) {
            self.ring_share
                .get_or_create(&BackendLabels {
                    backend: b.id.clone(),
                })
                .set(share);
        }
        self.latency.retain(|id| snapshot.get(id).is_some());
        // Rebuilt from the snapshot so backends that left disappear from the output.
        self.backend_state.clear();
        let now = crate::clock::now_ms();
        for b in &snapshot.backends {
            let state = b.health.state(now).as_str();
            self.backend_state
                .get_or_create(&StateLabels {
                    backend: b.id.clone(),
                    state,
                })
                .set(1);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
