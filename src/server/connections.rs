//! Serving accepted connections with hyper-util's auto (HTTP/1.1 + h2c) builder, each watched
//! for clients that overstay (silent, idle, or not reading), and draining them on shutdown:
//! idle connections at once, in-flight requests within the grace period, then a hard stop.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use std::sync::Arc;

use http::{Request, Response, Version};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use super::activity::{Activity, Tracked};
use crate::clock::now_ms;
use crate::proxy::relay::Rewind;
use crate::proxy::ConnectionHold;
use crate::sync::Bell;

/// A connection handed to a worker: the socket, its peer, and the worker's load counter, which
/// the acceptor raised and which drops back when the connection ends.
pub struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub live: Live,
    /// Bytes already read from the socket (by the relay, handing a request over to hyper),
    /// to be read before it.
    pub prefix: Vec<u8>,
}

/// One live connection, counted against its worker and holding one of the process's
/// connection slots; both are given back when this drops.
pub struct Live {
    load: Option<Gauge>,
    _slot: OwnedSemaphorePermit,
}

impl Live {
    /// Counts a connection in `load` (a worker's gauge, if any) holding `slot`.
    pub fn new(load: Option<&Gauge>, slot: OwnedSemaphorePermit) -> Live {
        if let Some(g) = load {
            g.inc();
        }
        Live {
            load: load.cloned(),
            _slot: slot,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(g) = &self.load {
            g.dec();
        }
    }
}

/// Waits for a free connection slot, so at `max_connections` the listener's backlog, not the
/// process's file descriptors, takes the excess.
pub async fn slot(slots: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    let mut warned = false;
    loop {
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return permit;
        }
        if !warned {
            tracing::warn!("connection limit reached; new connections wait in the listen backlog");
            warned = true;
        }
        match slots.clone().acquire_owned().await {
            Ok(permit) => return permit,
            // Never closed; if it were, waiting again would spin, so wait for nothing instead.
            Err(_) => std::future::pending::<()>().await,
        }
    }
}

/// Where a `serve` loop's connections come from.
pub enum Arrivals {
    /// Accept them here (the admin listener), with a connection limit.
    Listener(TcpListener, Arc<Semaphore>),
    /// Receive them from the acceptor (a proxy worker).
    Handoffs(mpsc::UnboundedReceiver<Handoff>),
}

impl Arrivals {
    /// The next connection, and what was read from it already; `None` when no more will come.
    async fn next(&mut self) -> Option<io::Result<(Rewind, SocketAddr, Live)>> {
        match self {
            Arrivals::Listener(l, slots) => {
                let slot = slot(slots).await;
                Some(l.accept().await.map(|(s, peer)| {
                    // Handed-off connections got theirs from the acceptor.
                    let _ = s.set_nodelay(true);
                    (Rewind::new(Vec::new(), s), peer, Live::new(None, slot))
                }))
            }
            Arrivals::Handoffs(rx) => {
                let h = rx.recv().await?;
                Some(
                    TcpStream::from_std(h.stream)
                        .map(|s| (Rewind::new(h.prefix, s), h.peer, h.live)),
                )
            }
        }
    }
}

/// How client connections are policed; read from the settings when a connection is accepted
/// (and the grace period when the shutdown starts), so a reload applies to new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// On shutdown, time for in-flight requests; idle connections close at once.
    pub grace: Duration,
    /// From accept to the first complete request head.
    pub header_timeout: Duration,
    /// HTTP/1 keep-alive: idle time between requests.
    pub keepalive_timeout: Duration,
    /// HTTP/2: time without an open stream.
    pub idle_timeout: Duration,
    /// Time a response may wait on a client that does not read.
    pub send_timeout: Duration,
    /// The largest request head, in bytes; past it: 431.
    pub max_head: usize,
    /// Serve HTTP/1.1 with the byte relay (proxy listener only): the acceptor then hands
    /// new connections to the relay's workers.
    pub relay: bool,
}

/// Reads the current [`Policy`].
pub type Policies = Arc<dyn Fn() -> Policy + Send + Sync>;

/// Serves connections from `source` with hyper until `shutdown` fires or the source ends,
/// each with `handler`; then drains them: idle ones close at once, in-flight requests get the
/// grace period, and what is left after it is closed.
pub async fn serve<H, F, B>(
    mut source: Arrivals,
    shutdown: CancellationToken,
    policies: Policies,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Shared with the connection tasks; a connection the relay keeps never needs it.
    let mut builders: Option<(Policy, Arc<auto::Builder<TokioExecutor>>)> = None;
    let conns = Connections::default();
    // The connections wait for the shutdown on a bell: polled at every wake-up of their tasks.
    let stopping = Arc::new(Bell::default());
    let _ring_on_shutdown = AbortOnDropHandle::new(tokio::spawn({
        let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
        async move {
            shutdown.cancelled().await;
            stopping.ring();
        }
    }));
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
        let policy = policies();
        // One builder per policy; a reload that changes the policy makes a new one.
        let builder = match &builders {
            Some((p, b)) if *p == policy => b,
            _ => &builders.insert((policy, Arc::new(builder(&policy)))).1,
        };
        let handler = handler.clone();
        // Shared with the requests, so a tunnel born of an upgrade keeps the connection's slot.
        let live = Arc::new(live);
        let hold = ConnectionHold(live.clone());
        let builder = builder.clone();
        let (stopping, hard_stop) = (stopping.clone(), conns.hard_stop.clone());
        conns.tasks.spawn(async move {
            let _live = live;
            // Made here, not at accept: a connection the relay served is new to hyper.
            let activity = Activity::new();
            let seen = activity.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                // Only upgrades need it; extensions allocate, so others go without.
                if req.headers().contains_key(http::header::UPGRADE) {
                    req.extensions_mut().insert(hold.clone());
                }
                let request = seen.start();
                if req.version() == Version::HTTP_2 {
                    seen.h2.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let fut = handler(req, peer);
                async move { Ok::<_, Infallible>(fut.await.map(|b| Tracked::new(b, request))) }
            });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            watch(conn, &activity, policy, peer, &stopping, &hard_stop).await;
        });
    }
    // Let go of the listening socket now, not when `serve` returns: new connections are
    // refused during the drain.
    drop(source);
    conns.shutdown(policies().grace, tokio::time::timeout).await;
}

fn builder(policy: &Policy) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Backstop for a head that trickles in after its first byte; the watchdog already bounds
    // the time from accept (or from the previous response) to a complete head. hyper runs this
    // timer whenever it waits for a head, between keep-alive requests too, so it must not be
    // shorter than the keep-alive timeout or it would cut keep-alive short.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_timeout.max(policy.keepalive_timeout))
        // The head must fit the read buffer, or hyper answers 431, as the relay does.
        .max_buf_size(policy.max_head);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        // Rapid reset (CVE-2023-44487): streams a client opens and resets at once still cost
        // work; past this many pending, the connection is closed.
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        .max_header_list_size(u32::try_from(policy.max_head).unwrap_or(u32::MAX));
    builder
}

const H2_MAX_STREAMS: u32 = 128;
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_LOCAL_RESETS: usize = 256;

/// Drives one connection and closes it when its client overstays: idle past its limit,
/// or not reading a response past the send timeout. On shutdown an idle connection closes at
/// once; one with requests in flight finishes them (hard stop after the grace period).
async fn watch<C>(
    conn: C,
    activity: &Activity,
    policy: Policy,
    peer: SocketAddr,
    stopping: &Bell,
    hard_stop: &Bell,
) where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>> + Graceful,
{
    let mut conn = std::pin::pin!(conn);
    let (mut stopping, mut hard_stop) = (stopping.wait(), hard_stop.wait());
    let mut draining = false;
    // How often a busy connection is looked at: a stall can start at any time.
    let check_every =
        (policy.send_timeout.min(policy.keepalive_timeout) / 2).max(Duration::from_millis(10));
    loop {
        let wake = next_check(activity, &policy, check_every);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            // Dropping the connection closes it.
            () = &mut hard_stop => return,
            // Look again: the deadline slept to was computed before this request.
            () = activity.request_started() => {}
            () = &mut stopping, if !draining => {
                if activity.in_flight() == 0 {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(wake) => {
                match verdict(activity, &policy) {
                    Verdict::Fine => {}
                    Verdict::Idle => {
                        tracing::debug!(%peer, "closing an idle client connection");
                        return;
                    }
                    Verdict::NotReading => {
                        tracing::info!(%peer, timeout = ?policy.send_timeout, "client stopped reading its response; closing the connection");
                        return;
                    }
                }
            }
        }
    }
}

enum Verdict {
    Fine,
    Idle,
    NotReading,
}

/// The idle limit that applies now: the header timeout until a first request arrived, then
/// the keep-alive (HTTP/1) or idle (HTTP/2) timeout.
fn idle_limit(activity: &Activity, policy: &Policy) -> Duration {
    if !activity.served_any() {
        policy.header_timeout
    } else if activity.h2.load(std::sync::atomic::Ordering::Relaxed) {
        policy.idle_timeout
    } else {
        policy.keepalive_timeout
    }
}

fn verdict(activity: &Activity, policy: &Policy) -> Verdict {
    let now = now_ms();
    if activity.in_flight() == 0 {
        let limit = idle_limit(activity, policy).as_millis() as u64;
        if now.saturating_sub(activity.idle_since()) >= limit {
            return Verdict::Idle;
        }
    } else if let Some(since) = activity.stalled_since() {
        if now.saturating_sub(since) >= policy.send_timeout.as_millis() as u64 {
            return Verdict::NotReading;
        }
    }
    Verdict::Fine
}

/// When to look again: the idle deadline when idle, the stall deadline when stalled, else
/// after `check_every`.
fn next_check(activity: &Activity, policy: &Policy, check_every: Duration) -> Instant {
    let now = now_ms();
    let at_ms = if activity.in_flight() == 0 {
        activity.idle_since() + idle_limit(activity, policy).as_millis() as u64
    } else if let Some(since) = activity.stalled_since() {
        since + policy.send_timeout.as_millis() as u64
    } else {
        now + check_every.as_millis() as u64
    };
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now))
}

/// A connection that can be asked to finish what it has and close.
pub trait Graceful {
    /// Stops taking new requests; ends once the current ones are done.
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E, B> Graceful for auto::UpgradeableConnection<'static, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: std::pin::Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self);
    }
}

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

/// The live connections of one `serve` (or of one relay worker).
#[derive(Default)]
pub struct Connections {
    pub tasks: TaskTracker,
    /// Rung when the grace period is over: what is left is dropped.
    pub hard_stop: Arc<Bell>,
}

impl Connections {
    /// Each connection has seen the shutdown token itself (idle ones are gone already); this
    /// waits for the busy ones, up to `grace` (timed by `timeout`, the runtime's).
    pub async fn shutdown<T, E>(
        self,
        grace: Duration,
        timeout: impl FnOnce(Duration, Pin<Box<dyn Future<Output = ()> + Send>>) -> T,
    ) where
        T: Future<Output = Result<(), E>>,
    {
        tracing::debug!(?grace, "stopped accepting; waiting for in-flight requests");
        self.tasks.close();
        let tasks = self.tasks.clone();
        match timeout(grace, Box::pin(async move { tasks.wait().await })).await {
            Ok(()) => tracing::debug!("all connections closed"),
            Err(_) => {
                tracing::warn!(?grace, "grace period over; closing remaining connections");
                self.hard_stop.ring();
                // Connection tasks end promptly now: dropped by the hard stop.
                self.tasks.wait().await;
            }
        }
    }
}
