//! Protocol upgrades (`Connection: upgrade`, e.g. WebSocket) relayed to the backend: the
//! request goes out on a connection of its own with `Upgrade` kept, and when the backend
//! answers `101 Switching Protocols` both sides are joined byte for byte. A backend that
//! declines answers normally; its connection is never pooled.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body::UpstreamBody;
use super::upstream::{connect, UpstreamError};
use crate::clock::now_ms;
use crate::sync::lock;

/// What keeps a client connection counted (its `max_connections` slot): the server puts one in
/// each request's extensions, and a tunnel holds it for as long as it lives.
#[derive(Clone)]
pub struct ConnectionHold(pub Arc<dyn Send + Sync>);

/// An upgrade the client asked for: the protocol, the client's side of the switch, and what
/// the tunnel holds while it lives.
pub struct Requested {
    protocol: HeaderValue,
    client: Mutex<Option<OnUpgrade>>,
    hold: Option<ConnectionHold>,
    /// A tunnel with no bytes either way for this long is closed.
    idle: Duration,
}

/// The upgrade `parts` asks for, if any: an HTTP/1.1 request with `Upgrade` and `upgrade`
/// among the `Connection` options. Read before the hop-by-hop headers are stripped.
pub fn requested(parts: &mut Parts, idle: Duration) -> Option<Requested> {
    if parts.version != http::Version::HTTP_11 {
        return None;
    }
    let protocol = parts.headers.get(UPGRADE)?.clone();
    let asks = parts.headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|o| o.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    if !asks {
        return None;
    }
    let client = parts.extensions.remove::<OnUpgrade>()?;
    Some(Requested {
        protocol,
        client: Mutex::new(Some(client)),
        hold: parts.extensions.get::<ConnectionHold>().cloned(),
        idle,
    })
}

/// Puts the upgrade back into a stripped header map.
pub fn keep(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocol.clone());
}

impl Requested {
    /// Sends `req` (upgrade headers kept) to `address` on a fresh connection; on `101`, joins
    /// the client and the backend in a task of their own.
    pub async fn exchange(
        &self,
        address: &str,
        mut req: Request<UpstreamBody>,
        connect_timeout: std::time::Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        keep(req.headers_mut(), &self.protocol);
        let mut sender = connect(address, connect_timeout, true).await?;
        let mut res = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Exchange)?;
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let backend = hyper::upgrade::on(&mut res);
            if let Some(client) = lock(&self.client).take() {
                tokio::spawn(tunnel(client, backend, self.hold.clone(), self.idle));
            }
        }
        Ok(res)
    }
}

/// Relays bytes both ways once both sides have switched, until either closes or nothing moves
/// for `idle`; holds the client connection's slot meanwhile.
async fn tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    _hold: Option<ConnectionHold>,
    idle: Duration,
) {
    let (client, backend) = match tokio::try_join!(client, backend) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let seen = Arc::new(AtomicU64::new(now_ms()));
    let mut client = Idle::new(TokioIo::new(client), seen.clone());
    let mut backend = Idle::new(TokioIo::new(backend), seen.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut backend);
    tokio::pin!(copy);
    let idle_ms = idle.as_millis() as u64;
    loop {
        let quiet = now_ms().saturating_sub(seen.load(Relaxed));
        if quiet >= idle_ms {
            tracing::debug!(?idle, "closing an idle upgraded connection");
            return;
        }
        tokio::select! {
            result = &mut copy => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(Duration::from_millis(idle_ms - quiet)) => {}
        }
    }
}

/// An I/O object that notes when bytes last moved through it.
struct Idle<T> {
    io: T,
    seen: Arc<AtomicU64>,
}

impl<T> Idle<T> {
    fn new(io: T, seen: Arc<AtomicU64>) -> Idle<T> {
        Idle { io, seen }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.seen.store(now_ms(), Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
