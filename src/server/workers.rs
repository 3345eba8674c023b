//! Proxy worker threads and the acceptor that feeds them.
//!
//! Each worker is a thread with a single-threaded runtime. Everything a client connection needs
//! (its task, the upstream pool and the pooled connections' tasks) stays on that thread, so the
//! request path never wakes another thread. One acceptor hands each new connection to the
//! worker with the fewest live connections: workers sharing the listening socket split a burst
//! of connections unevenly (2:1 seen with 64 clients), leaving one core busy and one idle.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::connections::{serve, slot, AcceptBackoff, Arrivals, Handoff, Live, Policies};
use super::ServeError;
use crate::proxy::Proxy;

/// The acceptor's way to one worker.
pub struct Lane {
    handoffs: mpsc::UnboundedSender<Handoff>,
    /// Its open connections; also the `ringproxy_worker_connections` gauge.
    load: Gauge,
}

/// Resolves when the worker has drained and stopped, or could not start.
pub type Done = oneshot::Receiver<Result<(), ServeError>>;

/// Starts worker `index`, serving the connections handed to it with `proxy`.
pub fn spawn(
    index: usize,
    proxy: Proxy,
    load: Gauge,
    shutdown: CancellationToken,
    policies: Policies,
) -> Result<(Lane, Done), ServeError> {
    let (handoffs, rx) = mpsc::unbounded_channel();
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("ringproxy-worker-{index}"))
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Worker)
                .map(|runtime| {
                    let proxy = Arc::new(proxy);
                    let relay = proxy.clone();
                    runtime.block_on(serve(
                        Arrivals::Handoffs(rx),
                        shutdown,
                        policies,
                        move |req, peer| {
                            let proxy = proxy.clone();
                            async move { proxy.handle(req, peer).await }
                        },
                        Some(relay),
                    ));
                });
            let _ = done_tx.send(outcome);
        })
        .map_err(ServeError::Worker)?;
    Ok((Lane { handoffs, load }, done))
}

/// Accepts on `listener` until `shutdown` fires, handing each connection to the least loaded
/// worker. Returning drops the listener (new connections are refused) and the hand-off
/// channels (each worker then drains what it has).
pub async fn accept(
    listener: TcpListener,
    lanes: Vec<Lane>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = async {
                let slot = slot(&slots).await;
                (listener.accept().await, slot)
            } => accepted,
        };
        let (accepted, slot) = accepted;
        if let Some((stream, peer)) = backoff.check(accepted).await {
            hand_off(&lanes, stream, peer, slot);
        }
    }
}

fn hand_off(
    lanes: &[Lane],
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let Some(lane) = lanes
        .iter()
        .filter(|w| !w.handoffs.is_closed())
        .min_by_key(|w| w.load.get())
    else {
        tracing::error!(%peer, "no proxy worker running; closing the connection");
        return;
    };
    // Leaving this runtime's reactor; the worker registers the socket with its own.
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot hand the connection to a worker");
            return;
        }
    };
    let live = Live::new(Some(&lane.load), slot);
    // A send fails only if the worker is gone; the connection then closes.
    let _ = lane.handoffs.send(Handoff { stream, peer, live });
}
