//! The running server: bind the proxy and admin sockets, start the proxy workers, serve until
//! the shutdown token fires, then drain.

mod checks;
mod connections;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use connections::{serve, Arrivals};

use crate::admin::Admin;
use crate::config::Config;
use crate::config::HealthConfig;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::snapshot::{ChangeError, Cluster};

#[derive(Debug, thiserror::Error)]
/// Why the server could not start or run.
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    /// A listener could not be bound.
    Bind {
        /// Which listener (the config field).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    #[error("invalid backends: {0}")]
    /// The configured backends do not form a valid ring.
    Backends(#[from] ChangeError),
    #[error("cannot start a proxy worker: {0}")]
    /// A worker thread could not start.
    Worker(std::io::Error),
    #[error("a proxy worker stopped unexpectedly")]
    /// A worker thread panicked.
    WorkerPanicked,
}

/// A bound, ready-to-run ringproxy.
pub struct Server {
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
    proxy: Proxy,
    admin: Arc<Admin>,
    metrics: Arc<Metrics>,
    cluster: Arc<Cluster>,
    health: HealthConfig,
    grace: Duration,
    workers: usize,
}

impl Server {
    /// Binds the proxy and admin listeners and builds the cluster from `config`.
    pub async fn bind(config: &Config) -> Result<Server, ServeError> {
        let bind_error = |what: &'static str, addr: SocketAddr| {
            move |source| ServeError::Bind { what, addr, source }
        };
        let addr = config.proxy.listen;
        let proxy_listener = TcpListener::bind(addr)
            .await
            .map_err(bind_error("proxy.listen", addr))?;
        let addr = config.admin.listen;
        let admin_listener = TcpListener::bind(addr)
            .await
            .map_err(bind_error("admin.listen", addr))?;
        let cluster = Arc::new(Cluster::new(config.vnodes, &config.backends)?);
        let metrics = Arc::new(Metrics::new());
        let proxy = Proxy::new(
            cluster.clone(),
            config.affinity.clone(),
            config.proxy.clone(),
            config.health.clone(),
            metrics.clone(),
        );
        let admin = Arc::new(Admin::new(
            cluster.clone(),
            metrics.clone(),
            config.admin.token.clone(),
        ));
        Ok(Server {
            proxy_listener,
            admin_listener,
            proxy,
            admin,
            metrics,
            cluster,
            health: config.health.clone(),
            grace: config.proxy.shutdown_grace,
            workers: config.proxy.workers,
        })
    }

    /// The proxy listener's address.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_listener
            .local_addr()
            .expect("bound socket has an address")
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("bound socket has an address")
    }

    /// The membership and ring, shared with the admin API.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.clone()
    }

    /// Serves until `shutdown` fires, then stops accepting and waits up to the grace period for
    /// in-flight requests. Proxy traffic runs on `proxy.workers` threads of its own; the admin
    /// API and active health checks run on the caller's runtime.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        tracing::info!(
            proxy = %self.proxy_addr(),
            admin = %self.admin_addr(),
            workers = self.workers,
            backends = self.cluster.load().backends.len(),
            "listening"
        );
        // Also stops the workers if this future is dropped before `shutdown` fires.
        let shutdown = shutdown.child_token();
        let _stop_workers = shutdown.clone().drop_guard();
        let (mut lanes, mut workers) = (Vec::new(), Vec::new());
        for index in 0..self.workers {
            let proxy = self.proxy.with_own_pool();
            let load = self.metrics.worker_connections(index);
            let (lane, done) = workers::spawn(index, proxy, load, shutdown.clone(), self.grace)?;
            lanes.push(lane);
            workers.push(done);
        }
        let proxy_accept = workers::accept(self.proxy_listener, lanes, shutdown.clone());

        if let Some(active) = self.health.active.clone() {
            tracing::info!(path = %active.path, interval = ?active.interval, "active health checks on");
            tokio::spawn(checks::run(
                self.cluster.clone(),
                active,
                shutdown.child_token(),
            ));
        }
        let admin = self.admin;
        let admin_done = serve(
            Arrivals::Listener(self.admin_listener),
            shutdown.clone(),
            self.grace,
            move |req, _| {
                let admin = admin.clone();
                async move { admin.handle(req).await }
            },
        );
        let workers_done = async {
            let mut result = Ok(());
            for worker in workers {
                // A worker that could not start reports why; one that panicked drops its sender.
                let outcome = worker.await.unwrap_or(Err(ServeError::WorkerPanicked));
                if let Err(e) = outcome {
                    // The others cannot serve alone for long without this one; stop them all.
                    shutdown.cancel();
                    result = result.and(Err(e));
                }
            }
            result
        };
        let ((), (), result) = tokio::join!(proxy_accept, admin_done, workers_done);
        tracing::info!("stopped");
        result
    }
}
