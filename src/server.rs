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
}

/// A bound, ready-to-run ringproxy.
pub struct Server {
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
    proxy: Arc<Proxy>,
    admin: Arc<Admin>,
    cluster: Arc<Cluster>,
    health: HealthConfig,
    grace: Duration,
}

impl Server {
    pub async fn bind(config: &Config) -> Result<Server, ServeError> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { what, addr, source })
        };
        let proxy_listener = bind("proxy.listen", config.proxy.listen).await?;
        let admin_listener = bind("admin.listen", config.admin.listen).await?;
        let cluster = Arc::new(Cluster::new(config.vnodes, &config.backends)?);
        let metrics = Arc::new(Metrics::new());
        let proxy = Arc::new(Proxy::new(
            cluster.clone(),
            config.affinity.clone(),
            config.proxy.clone(),
            config.health.clone(),
            metrics.clone(),
        ));
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
    /// in-flight requests.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            proxy = %self.proxy_addr(),
            admin = %self.admin_addr(),
            backends = self.cluster.load().backends.len(),
            "listening"
        );
        if let Some(active) = self.health.active.clone() {
            tracing::info!(path = %active.path, interval = ?active.interval, "active health checks on");
            tokio::spawn(crate::health::run_checks(
                self.cluster.clone(),
                active,
                shutdown.child_token(),
            ));
        }
        let conns = Connections::default();
        let proxy = self.proxy;
        let admin = self.admin;
        let proxy_loop = accept_loop(self.proxy_listener, &conns, &shutdown, move |req, peer| {
            let proxy = proxy.clone();
            async move { proxy.handle(req, peer).await }
        });
        let admin_loop = accept_loop(self.admin_listener, &conns, &shutdown, move |req, _| {
            let admin = admin.clone();
            async move { admin.handle(req).await }
        });
        tokio::join!(proxy_loop, admin_loop);

        tracing::info!(grace = ?self.grace, "shutting down: waiting for in-flight requests");
        conns.shutdown(self.grace).await;
    }
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

/// Accepts connections until `shutdown` fires, serving each with `handler`.
async fn accept_loop<H, F, B>(
    listener: TcpListener,
    conns: &Connections,
    shutdown: &CancellationToken,
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
    let mut accept_errors = 0u32;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
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
}
