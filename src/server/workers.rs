//! Proxy worker threads and the acceptor that feeds them.
//!
//! Each worker is a pair of threads, each with a single-threaded runtime: one serves HTTP/1.1
//! with the byte relay on monoio (io_uring where the kernel allows it, else epoll), the other
//! serves with hyper on tokio (h2c, upgrades, what the relay hands over, and everything when
//! `proxy.http1 = "hyper"`). Everything a client connection needs (its task, the upstream
//! pool and the pooled connections) stays on its thread, so the request path never wakes
//! another thread. One acceptor hands each new connection to the worker with the fewest live
//! connections: workers sharing the listening socket split a burst of connections unevenly
//! (2:1 seen with 64 clients), leaving one core busy and one idle.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::connections::{
    serve, slot, AcceptBackoff, Arrivals, Connections, Handoff, Live, Policies,
};
use super::ServeError;
use crate::config::Io;
use crate::proxy::relay::{self, on_uring, Conn, Ended, Limits};
use crate::proxy::Proxy;
use crate::sync::Bell;

/// The acceptor's way to one worker.
pub struct Lane {
    /// To its relay thread.
    relay: mpsc::UnboundedSender<Handoff>,
    /// To its hyper thread.
    hyper: mpsc::UnboundedSender<Handoff>,
    /// Its open connections; also the `ringproxy_worker_connections` gauge.
    load: Gauge,
}

/// Resolves when one of a worker's threads has drained and stopped, or could not start.
pub type Done = oneshot::Receiver<Result<(), ServeError>>;

/// Starts worker `index`, serving the connections handed to it with `proxy` (its relay on
/// `io`); names of backends are resolved on the runtime of the caller.
pub fn spawn(
    index: usize,
    proxy: &Proxy,
    io: Io,
    load: Gauge,
    shutdown: &CancellationToken,
    policies: &Policies,
) -> Result<(Lane, [Done; 2]), ServeError> {
    let (hyper, hyper_arrivals) = mpsc::unbounded_channel();
    let hyper_done = spawn_hyper(
        index,
        proxy.with_own_pool(),
        hyper_arrivals,
        shutdown,
        policies,
    )?;
    let (relay, relay_arrivals) = mpsc::unbounded_channel();
    let (relay_proxy, resolver) = (proxy.with_own_pool(), tokio::runtime::Handle::current());
    let (done_tx, relay_done) = oneshot::channel();
    let (handovers, shutdown, policies) = (hyper.clone(), shutdown.clone(), policies.clone());
    std::thread::Builder::new()
        .name(format!("ringproxy-relay-{index}"))
        .spawn(move || {
            let serving = || {
                let worker = relay::Worker::new(relay_proxy, resolver);
                serve_relay(worker, relay_arrivals, handovers, shutdown, policies)
            };
            let _ = done_tx.send(run_relay(io, serving));
        })
        .map_err(ServeError::Worker)?;
    Ok((Lane { relay, hyper, load }, [hyper_done, relay_done]))
}

/// The hyper thread of a worker.
fn spawn_hyper(
    index: usize,
    proxy: Proxy,
    arrivals: mpsc::UnboundedReceiver<Handoff>,
    shutdown: &CancellationToken,
    policies: &Policies,
) -> Result<Done, ServeError> {
    let (done_tx, done) = oneshot::channel();
    let (shutdown, policies) = (shutdown.clone(), policies.clone());
    std::thread::Builder::new()
        .name(format!("ringproxy-worker-{index}"))
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Worker)
                .map(|runtime| {
                    let proxy = Arc::new(proxy);
                    runtime.block_on(serve(
                        Arrivals::Handoffs(arrivals),
                        shutdown,
                        policies,
                        move |req, peer| {
                            let proxy = proxy.clone();
                            async move { proxy.handle(req, peer).await }
                        },
                    ));
                });
            let _ = done_tx.send(outcome);
        })
        .map_err(ServeError::Worker)?;
    Ok(done)
}

/// Runs `serving` on io_uring when `io` asks for it and the kernel allows it, else on epoll.
fn run_relay<F: std::future::Future<Output = ()>>(
    io: Io,
    serving: impl FnOnce() -> F,
) -> Result<(), ServeError> {
    if io == Io::IoUring {
        if monoio::utils::detect_uring() {
            match uring_runtime() {
                Ok(mut runtime) => {
                    runtime.block_on(serving());
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up io_uring; the relay runs on epoll");
                }
            }
        } else {
            tracing::info!(
                "io_uring is not available (kernel or seccomp); the relay runs on epoll"
            );
        }
    }
    let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .map_err(ServeError::Worker)?;
    runtime.block_on(serving());
    Ok(())
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// An io_uring runtime whose completions are handled only when its thread asks for them, in
/// the call that also waits (`DEFER_TASKRUN`, Linux 6.1): without it the kernel interrupts the
/// thread for each completion (seen in profiles as task work run on the way out of other
/// system calls). Without the flag on older kernels.
fn uring_runtime() -> std::io::Result<UringRuntime> {
    let build = |ring: io_uring::Builder| {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .uring_builder(ring)
            .enable_timer()
            .build()
    };
    let mut deferred = io_uring::IoUring::builder();
    deferred.setup_single_issuer().setup_defer_taskrun();
    build(deferred).or_else(|_| build(io_uring::IoUring::builder()))
}

/// Serves the connections the acceptor hands to a relay thread until `shutdown` fires or the
/// acceptor is gone, handing requests the relay does not serve to the hyper thread; then
/// drains them like [`serve`] does.
async fn serve_relay(
    worker: relay::Worker,
    mut arrivals: mpsc::UnboundedReceiver<Handoff>,
    handovers: mpsc::UnboundedSender<Handoff>,
    shutdown: CancellationToken,
    policies: Policies,
) {
    let io = if on_uring() { "io_uring" } else { "epoll" };
    tracing::debug!(io, "relay worker started");
    let running = worker.proxy.metrics().relay_workers(io);
    running.inc();
    let worker = Rc::new(worker);
    let conns = Connections::default();
    let stopping = Rc::new(Bell::default());
    monoio::spawn({
        let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
        async move {
            shutdown.cancelled().await;
            stopping.ring();
        }
    });
    loop {
        let next = monoio::select! {
            () = shutdown.cancelled() => None,
            next = arrivals.recv() => next,
        };
        let Some(Handoff {
            stream, peer, live, ..
        }) = next
        else {
            break;
        };
        let client = match Conn::from_std(stream) {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot serve the connection; closing it");
                continue;
            }
        };
        let policy = policies();
        let limits = Limits {
            header_timeout: policy.header_timeout,
            keepalive_timeout: policy.keepalive_timeout,
            send_timeout: policy.send_timeout,
            max_head: policy.max_head,
        };
        let (worker, stopping, hard_stop) =
            (worker.clone(), stopping.clone(), conns.hard_stop.clone());
        let handovers = handovers.clone();
        monoio::spawn(conns.tasks.track_future(async move {
            let ended = monoio::select! {
                biased;
                ended = relay::serve(&worker, client, peer, limits, &stopping) => ended,
                // Dropping the connection closes it.
                () = hard_stop.wait() => Ended::Closed,
            };
            if let Ended::HandOver(prefix, stream) = ended {
                // Fails only when the hyper thread is gone (shutting down): the connection
                // closes.
                let _ = handovers.send(Handoff {
                    stream,
                    peer,
                    live,
                    prefix,
                });
            }
        }));
    }
    // New connections are refused during the drain.
    drop(arrivals);
    conns
        .shutdown(policies().grace, monoio::time::timeout)
        .await;
}

/// Accepts on `listener` until `shutdown` fires, handing each connection to the least loaded
/// worker (its relay thread or its hyper thread, as the policy says). Returning drops the
/// listener (new connections are refused) and the hand-off channels (each worker then drains
/// what it has).
pub async fn accept(
    listener: TcpListener,
    lanes: Vec<Lane>,
    max_connections: usize,
    policies: Policies,
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
            hand_off(&lanes, policies().relay, stream, peer, slot);
        }
    }
}

fn hand_off(
    lanes: &[Lane],
    relay: bool,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    fn way(lane: &Lane, relay: bool) -> &mpsc::UnboundedSender<Handoff> {
        if relay {
            &lane.relay
        } else {
            &lane.hyper
        }
    }
    let Some(lane) = lanes
        .iter()
        .filter(|w| !way(w, relay).is_closed())
        .min_by_key(|w| w.load.get())
    else {
        tracing::error!(%peer, "no proxy worker running; closing the connection");
        return;
    };
    let _ = stream.set_nodelay(true);
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
    let _ = way(lane, relay).send(Handoff {
        stream,
        peer,
        live,
        prefix: Vec::new(),
    });
}
