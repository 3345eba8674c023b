//! Connections to backends: HTTP/1.1 keep-alive connections, pooled per worker thread.
//!
//! A request takes the most recently used idle connection to its backend, or opens one; the
//! connection goes back to the pool once the response body has been read to its end. Each
//! connection is driven by a task on the worker thread that opened it, so a worker's requests
//! never wait on another thread. This replaced hyper-util's pooled client, whose pool-key
//! hashing, per-request return task and response extensions cost about a sixth of the
//! instructions of a proxied request (BENCHMARKS.md). The idle connections themselves are kept
//! by `pool.rs`, which the byte relay's raw TCP connections share.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use super::body::UpstreamBody;
use super::pool::Pool;
use crate::metrics::Exchange;

/// TCP keepalive probes find backends that vanished without closing (host down, cable cut).
pub(crate) const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One worker's connections to every backend, keyed by backend address.
pub struct Upstream {
    pool: Arc<Pool<SendRequest<UpstreamBody>>>,
}

/// The timeouts of one exchange, from the settings of the request's snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect, when a new connection is needed.
    pub connect: Duration,
    /// How long the connection may then sit idle in the pool.
    pub idle: Duration,
}

/// Why an exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connect failed.
    #[error("tcp connect error")]
    Connect(#[source] io::Error),
    /// The TCP connect did not finish within the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The HTTP exchange failed after connecting.
    #[error(transparent)]
    Exchange(hyper::Error),
    /// A reused connection closed before any answer: typically the backend timed it out
    /// just as the request went out. The backend did not process it as far as we can tell.
    #[error("reused connection closed before the response: {0}")]
    Stale(#[source] hyper::Error),
}

impl Upstream {
    /// An empty pool; `idle_gauge` counts its idle connections.
    pub fn new(idle_gauge: Gauge) -> Upstream {
        Upstream {
            pool: Arc::new(Pool::new(idle_gauge)),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to the backend at `address`; `opened` is
    /// called with the time it took when that takes a new connection.
    pub async fn send(
        &self,
        address: &Arc<str>,
        mut req: Request<UpstreamBody>,
        timeouts: Timeouts,
        opened: impl FnOnce(Duration),
    ) -> Result<Response<ResponseBody>, UpstreamError> {
        while let Some(mut sender) = self.pool.take(address) {
            match sender.try_send_request(req).await {
                Ok(res) => return Ok(self.lease(res, sender, address, timeouts.idle)),
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request went out: nothing was sent,
                    // so the same request (body untouched) can take another connection.
                    Some(unsent) => req = unsent,
                    None => {
                        let e = e.into_error();
                        return Err(if closed_under_us(&e) {
                            UpstreamError::Stale(e)
                        } else {
                            UpstreamError::Exchange(e)
                        });
                    }
                },
            }
        }
        // Boxed: the connect future is large and rarely needed; inline it would be moved
        // around with every request's future.
        let connecting = Instant::now();
        let mut sender = Box::pin(connect(address, timeouts.connect, false)).await?;
        opened(connecting.elapsed());
        match sender.send_request(req).await {
            Ok(res) => Ok(self.lease(res, sender, address, timeouts.idle)),
            Err(e) => Err(UpstreamError::Exchange(e)),
        }
    }

    fn lease(
        &self,
        res: Response<Incoming>,
        sender: SendRequest<UpstreamBody>,
        address: &Arc<str>,
        idle: Duration,
    ) -> Response<ResponseBody> {
        let lease = Lease {
            sender,
            address: address.clone(),
            pool: self.pool.clone(),
            idle,
        };
        res.map(|body| {
            let mut body = ResponseBody {
                body,
                lease: Some(lease),
                exchange: None,
            };
            body.release_if_done();
            body
        })
    }
}

/// Opens an HTTP/1.1 connection to `address`, driven by a task on the current runtime; with
/// `upgrades`, a request on it may switch protocols (the connection can be upgraded).
pub async fn connect<B>(
    address: &str,
    connect_timeout: Duration,
    upgrades: bool,
) -> Result<SendRequest<B>, UpstreamError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (sender, conn) = handshake(address, connect_timeout).await?;
    tokio::spawn(async move {
        let ended = if upgrades {
            conn.with_upgrades().await
        } else {
            conn.await
        };
        if let Err(e) = ended {
            tracing::debug!(error = %describe(&e), "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Opens a TCP connection to `address` for HTTP/1.1 exchanges: bounded by `connect_timeout`,
/// Nagle off (heads and small bodies go out at once), TCP keepalive on.
pub async fn connect_tcp(
    address: &str,
    connect_timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
        Err(_elapsed) => return Err(UpstreamError::ConnectTimeout),
    };
    // Best effort: a socket without these options still works.
    let _ = stream.set_nodelay(true);
    let _ = SockRef::from(&stream).set_tcp_keepalive(&TcpKeepalive::new().with_time(TCP_KEEPALIVE));
    Ok(stream)
}

type Handshake<B> = (SendRequest<B>, http1::Connection<TokioIo<TcpStream>, B>);

async fn handshake<B>(
    address: &str,
    connect_timeout: Duration,
) -> Result<Handshake<B>, UpstreamError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let stream = connect_tcp(address, connect_timeout).await?;
    http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Exchange)
}

impl ResponseBody {
    /// A body on a connection that is not going back to the pool.
    pub fn unpooled(body: Incoming) -> ResponseBody {
        ResponseBody {
            body,
            lease: None,
            exchange: None,
        }
    }

    /// Times the exchange by this body: it ends when the body does (or is dropped).
    pub fn time(&mut self, exchange: Exchange) {
        if self.body.is_end_stream() {
            exchange.finish();
        } else {
            self.exchange = Some(exchange);
        }
    }

    /// The body ended: its exchange is timed to here.
    fn finish(&mut self) {
        if let Some(e) = self.exchange.take() {
            e.finish();
        }
    }
}

/// Did the connection end (EOF or reset) before any response? On a reused connection that
/// is the backend closing it as idle while our request was on its way.
fn closed_under_us(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return reset(io.kind());
        }
        source = s.source();
    }
    false
}

/// Did the peer reset or abort the connection (rather than fail otherwise)?
pub(crate) fn reset(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A backend connection lent to one response; back to the pool when the body is done.
struct Lease {
    sender: SendRequest<UpstreamBody>,
    address: Arc<str>,
    pool: Arc<Pool<SendRequest<UpstreamBody>>>,
    idle: Duration,
}

/// A backend's response body. Reading it to the end returns its connection to the pool;
/// dropping it earlier closes the connection (the rest of the body is never read).
pub struct ResponseBody {
    body: Incoming,
    lease: Option<Lease>,
    /// Times the exchange and counts it in flight; dropped with the body.
    exchange: Option<Exchange>,
}

impl ResponseBody {
    fn release_if_done(&mut self) {
        if self.body.is_end_stream() {
            self.release();
            self.finish();
        }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.put(lease.address, lease.sender, lease.idle);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        match &frame {
            // The server may stop polling once `is_end_stream` says so: release now.
            Some(Ok(_)) => self.release_if_done(),
            None => {
                self.release();
                self.finish();
            }
            Some(Err(_)) => self.lease = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error and its causes on one line, for logs and 502 bodies.
pub fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
