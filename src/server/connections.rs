//! Serving accepted connections with hyper-util's auto (HTTP/1.1 + h2c) builder, and draining
//! them on shutdown: graceful first, then a hard stop when the grace period runs out.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A connection handed to a worker: the socket, its peer, and the worker's load counter, which
/// the acceptor raised and which drops back when the connection ends.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub live: Live,
}

/// One live connection counted against a worker; the count drops when this does.
pub struct Live(Gauge);

impl Live {
    pub fn new(load: &Gauge) -> Live {
        load.inc();
        Live(load.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a `serve` loop's connections come from.
pub enum Arrivals {
    /// Accept them here (the admin listener).
    Listener(TcpListener),
    /// Receive them from the acceptor (a proxy worker).
    Handoffs(mpsc::UnboundedReceiver<Handoff>),
}

impl Arrivals {
    /// The next connection; `None` when no more will come.
    async fn next(&mut self) -> Option<io::Result<(TcpStream, SocketAddr, Option<Live>)>> {
        match self {
            Arrivals::Listener(l) => Some(l.accept().await.map(|(s, peer)| (s, peer, None))),
            Arrivals::Handoffs(rx) => {
                let h = rx.recv().await?;
                Some(TcpStream::from_std(h.stream).map(|s| (s, h.peer, Some(h.live))))
            }
        }
    }
}

/// Serves connections from `source` until `shutdown` fires or the source ends, each with
/// `handler`; then drains them within the grace period `grace` answers at that moment (the
/// setting can change on reload).
pub async fn serve<H, F, B>(
    mut source: Arrivals,
    shutdown: CancellationToken,
    grace: Grace,
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
    let mut backoff = AcceptBackoff::default();
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = source.next() => next,
        };
        let (stream, peer, live) = match next {
            None => break,
            Some(accepted) => match backoff.check(accepted).await {
                Some(conn) => conn,
                None => continue,
            },
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
            let _live = live;
            tokio::select! {
                result = conn => if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                // Dropping the connection closes it.
                _ = hard_stop.cancelled() => {}
            }
        });
    }
    // Let go of the listening socket now, not when `serve` returns: new connections are
    // refused during the drain.
    drop(source);
    conns.shutdown(grace()).await;
}

/// The shutdown grace period, read when the shutdown starts.
pub type Grace = std::sync::Arc<dyn Fn() -> Duration + Send + Sync>;

/// Backs off after failed accepts instead of spinning on them.
#[derive(Default)]
pub struct AcceptBackoff {
    errors: u32,
}

impl AcceptBackoff {
    /// Passes a successful accept through; on an error (typically EMFILE) logs it and waits a
    /// little longer each time in a row (5 ms doubling up to 320 ms), then answers `None`.
    pub async fn check<T>(&mut self, accepted: io::Result<T>) -> Option<T> {
        match accepted {
            Ok(conn) => {
                self.errors = 0;
                Some(conn)
            }
            Err(e) => {
                self.errors = (self.errors + 1).min(6);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(5 << self.errors)).await;
                None
            }
        }
    }
}

/// The live connections of one `serve`.
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
            Ok(()) => tracing::debug!("all connections closed"),
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
