//! The running server: bind the proxy and admin sockets, start the proxy workers, serve until
//! the shutdown token fires, then drain.

mod activity;
mod checks;
mod connections;
mod discovery;
mod ramps;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use connections::{serve, Arrivals, Policies, Policy};

use crate::admin::Admin;
use crate::config::{Config, Http1};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::snapshot::{Cluster, StartError};
use crate::traffic::Traffic;

/// The admin API is for operators and scripts: a few connections at a time.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener (the config field).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The state file or the backends cannot be used.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A worker thread could not start.
    #[error("cannot start a proxy worker: {0}")]
    Worker(std::io::Error),
    /// A worker thread panicked.
    #[error("a proxy worker stopped unexpectedly")]
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
    reloader: Arc<Reloader>,
    discovery: Arc<discovery::Discovery>,
    discovery_stop: CancellationToken,
    config: Config,
    workers: usize,
    max_connections: usize,
}

impl Server {
    /// Binds the proxy and admin listeners and builds the cluster from `config`; reloads are
    /// refused (there is no file to read).
    pub async fn bind(config: &Config) -> Result<Server, ServeError> {
        Server::bind_with_reload(config, None).await
    }

    /// [`Server::bind`], reloading from `path` on [`Reloader::reload`] (`SIGHUP`,
    /// `POST /reload`).
    pub async fn bind_with_reload(
        config: &Config,
        path: Option<PathBuf>,
    ) -> Result<Server, ServeError> {
        let bind_error = |what: &'static str, addr: SocketAddr| {
            move |source| ServeError::Bind { what, addr, source }
        };
        // The state file first: a bad one must stop the start before anything listens.
        let cluster = Arc::new(Cluster::new(config)?);
        let addr = config.proxy.listen;
        let proxy_listener = TcpListener::bind(addr)
            .await
            .map_err(bind_error("proxy.listen", addr))?;
        let addr = config.admin.listen;
        let admin_listener = TcpListener::bind(addr)
            .await
            .map_err(bind_error("admin.listen", addr))?;
        let metrics = Arc::new(Metrics::new());
        let traffic = Arc::new(Traffic::default());
        let proxy = Proxy::new(cluster.clone(), traffic.clone(), metrics.clone());
        let discovery_stop = CancellationToken::new();
        let discovery = Arc::new(discovery::Discovery::new(
            cluster.clone(),
            metrics.clone(),
            discovery_stop.clone(),
        ));
        let mut reloader = Reloader::new(path, cluster.clone());
        let follow = discovery.clone();
        reloader.on_reload(move |config| follow.apply(config));
        let reloader = Arc::new(reloader);
        let admin = Arc::new(Admin::new(
            cluster.clone(),
            metrics.clone(),
            reloader.clone(),
            traffic,
        ));
        Ok(Server {
            proxy_listener,
            admin_listener,
            proxy,
            admin,
            metrics,
            cluster,
            reloader,
            discovery,
            discovery_stop,
            config: config.clone(),
            workers: config.proxy.workers,
            max_connections: config.proxy.max_connections,
        })
    }

    /// What reloads the config file; `SIGHUP` handlers call it.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
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
    /// in-flight requests. Proxy traffic runs on `proxy.workers` pairs of threads of its own
    /// (the relay's, the hyper path's); the admin API, active health checks and name lookups
    /// for the relay run on the caller's runtime.
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
        let cluster = self.cluster.clone();
        let policies: Policies = Arc::new(move || {
            let p = &cluster.load().settings.proxy;
            Policy {
                grace: p.shutdown_grace,
                header_timeout: p.client_header_timeout,
                keepalive_timeout: p.client_keepalive_timeout,
                idle_timeout: p.client_idle_timeout,
                send_timeout: p.send_timeout,
                max_head: p.client_max_header_bytes,
                relay: p.http1 == Http1::Relay,
            }
        });
        let (mut lanes, mut workers) = (Vec::new(), Vec::new());
        for index in 0..self.workers {
            let load = self.metrics.worker_connections(index);
            let (lane, done) = workers::spawn(
                index,
                &self.proxy,
                self.config.proxy.io,
                load,
                &shutdown,
                &policies,
            )?;
            lanes.push(lane);
            workers.extend(done);
        }
        let proxy_accept = workers::accept(
            self.proxy_listener,
            lanes,
            self.max_connections,
            policies.clone(),
            shutdown.clone(),
        );

        tokio::spawn(checks::run(self.cluster.clone(), shutdown.child_token()));
        tokio::spawn(ramps::run(self.cluster.clone(), shutdown.child_token()));
        self.discovery.apply(&self.config);
        let _stop_discovery = self.discovery_stop.clone().drop_guard();
        let admin = self.admin;
        let admin_done = serve(
            Arrivals::Listener(
                self.admin_listener,
                Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
            ),
            shutdown.clone(),
            policies,
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
