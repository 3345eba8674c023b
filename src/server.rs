//! Listeners and connection lifecycle: bind the proxy and admin sockets, serve connections with
//! hyper-util's auto (HTTP/1.1 + h2c) builder, and shut down gracefully when the token fires.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::Admin;
use crate::config::Config;
use crate::health::HealthConfig;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::snapshot::{ChangeError, Cluster};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid backends: {0}")]
    Backends(#[from] ChangeError),
    #[error("cannot start a proxy worker: {0}")]
    Worker(std::io::Error),
    #[error("a proxy worker stopped unexpectedly")]
    WorkerPanicked,
}

/// A bound, ready-to-run ringproxy.
pub struct Server {
    /// Not yet registered with any runtime: each worker registers its own clone.
    proxy_listener: std::net::TcpListener,
    admin_listener: TcpListener,
    proxy: Proxy,
    admin: Arc<Admin>,
    cluster: Arc<Cluster>,
    health: HealthConfig,
    grace: Duration,
    workers: usize,
}

impl Server {
    pub async fn bind(config: &Config) -> Result<Server, ServeError> {
        let bind_error = |what: &'static str, addr: SocketAddr| {
            move |source| ServeError::Bind { what, addr, source }
        };
        let addr = config.proxy.listen;
        let proxy_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
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
            metrics,
            config.admin.token.clone(),
        ));
        Ok(Server {
            proxy_listener,
            admin_listener,
            proxy,
            admin,
            cluster,
            health: config.health.clone(),
            grace: config.proxy.shutdown_grace,
            workers: config.proxy.workers,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_listener
            .local_addr()
            .expect("bound socket has an address")
    }

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
        let mut workers = Vec::with_capacity(self.workers);
        for index in 0..self.workers {
            let listener = self
                .proxy_listener
                .try_clone()
                .map_err(ServeError::Worker)?;
            let proxy = self.proxy.with_own_pool();
            workers.push(spawn_worker(
                index,
                listener,
                proxy,
                shutdown.clone(),
                self.grace,
            )?);
        }
        drop(self.proxy_listener);

        if let Some(active) = self.health.active.clone() {
            tracing::info!(path = %active.path, interval = ?active.interval, "active health checks on");
            tokio::spawn(crate::health::run_checks(
                self.cluster.clone(),
                active,
                shutdown.child_token(),
            ));
        }
        let admin = self.admin;
        let admin_done = serve(
            self.admin_listener,
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
        let ((), result) = tokio::join!(admin_done, workers_done);
        tracing::info!("stopped");
        result
    }
}

/// Starts one proxy worker: a thread with a single-threaded runtime that accepts on its clone
/// of the listener. Everything a connection needs (its task, the upstream pool and the upstream
/// connections' tasks) stays on that thread, so the request path never wakes another thread.
fn spawn_worker(
    index: usize,
    listener: std::net::TcpListener,
    proxy: Proxy,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<oneshot::Receiver<Result<(), ServeError>>, ServeError> {
    let (done, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("ringproxy-worker-{index}"))
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Worker)
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let listener =
                            TcpListener::from_std(listener).map_err(ServeError::Worker)?;
                        let proxy = Arc::new(proxy);
                        serve(listener, shutdown, grace, move |req, peer| {
                            let proxy = proxy.clone();
                            async move { proxy.handle(req, peer).await }
                        })
                        .await;
                        Ok(())
                    })
                });
            let _ = done.send(outcome);
        })
        .map_err(ServeError::Worker)?;
    Ok(done_rx)
}

/// The live connections: graceful shutdown first, then a hard stop when the grace runs out.
#[derive(Default)]
struct Connections {
    graceful: GracefulShutdown,
    tasks: TaskTracker,
    hard_stop: CancellationToken,
}

impl Connections {
    async fn shutdown(self, grace: Duration) {
        tracing::debug!(?grace, "stopped accepting; waiting for in-flight requests");
        match tokio::time::timeout(grace, self.graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
                self.hard_stop.cancel();
            }
        }
        // Connection tasks end promptly now: either finished or dropped by the hard stop.
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Accepts on `listener` until `shutdown` fires, serving each connection with `handler`; then
/// drains the connections within `grace`.
async fn serve<H, F, B>(
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conns = Connections::default();
    let mut accept_errors = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => { accept_errors = 0; conn }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning, keep serving.
                    accept_errors = (accept_errors + 1).min(10);
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(5 << accept_errors.min(6))).await;
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let fut = handler(req, peer);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = conns.graceful.watch(conn);
        let hard_stop = conns.hard_stop.clone();
        conns.tasks.spawn(async move {
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                // Dropping the connection closes it.
                _ = hard_stop.cancelled() => {}
            }
        });
    }
    // Closing our copy of the listening socket now (not when `serve` returns) refuses new
    // connections during the drain once every worker has let go of it.
    drop(listener);
    conns.shutdown(grace).await;
}
