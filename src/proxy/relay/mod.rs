//! The HTTP/1.1 relay: the common case of the proxy listener served without rebuilding what
//! the proxy only passes through. The request head is parsed in place (`http1`), strictly;
//! the key comes from the raw head through the same affinity code as the hyper path; the head
//! goes upstream as one buffer minus hop-by-hop headers plus `X-Forwarded-*`; bodies are
//! relayed as bytes by their framing; the response head is parsed and relayed the same way,
//! over a raw connection from the worker's pool. Routing, failover, resends, health, load and
//! metrics are the shared walk's (`walk.rs`).
//!
//! What the relay does not handle is handed to hyper with the bytes already read put back in
//! front ([`Rewind`]): the HTTP/2 preface (h2c), `Upgrade`, `CONNECT`, absolute-form and
//! asterisk-form targets, targets hyper would rewrite (a fragment, bytes outside the URI
//! grammar), HTTP/1.0, requests without `Host`, and WebDAV's `PROPFIND` / `PROPPATCH` (they
//! start like the preface). Each hand-over is counted by its reason
//! (`ringproxy_http1_handovers_total`): an operator sees how much traffic the relay serves.
//!
//! The relay runs on its workers' own runtime (monoio: io_uring, else epoll; `io.rs`); hyper
//! and everything else stay on tokio, and a hand-over moves the socket there.
//!
//! - `buffer.rs`: read buffers and relaying a body by its framing.
//! - `attempt.rs`: one try at one backend.
//! - `deadline.rs`: the connection's timeouts, each on one timer for the connection's life.
//! - `io.rs`: the sockets, on the relay's runtime.
//! - `rewind.rs`: the hand-over to hyper.

mod attempt;
mod buffer;
mod deadline;
mod io;
mod rewind;
mod spare;

use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use monoio::time::Instant;

pub(crate) use io::{on_uring, Conn};
pub use rewind::Rewind;

use self::attempt::{Body, Progress, Relayed, Response};
use self::buffer::{copy_body, write, Buffer, CopyError, Half};
use self::deadline::Deadline;
use self::io::{race, Reader};
use self::spare::{HEADS_KIND, LINES_KIND};
use super::body::MAX_REPLAY_BODY;
use super::error::ProxyError;
use super::pool::Pool;
use super::walk::{is_idempotent, position};
use super::worker::Proxy;
use crate::affinity_template::{Headers, RequestView, Scheme};
use crate::config::ProxyConfig;
use crate::forwarded::PeerText;
use crate::http1::{parse_request_with, Framing, HeadError, RequestHead};
use crate::load::LoadGuard;
use crate::snapshot::Backend;
use crate::sync::{Bell, Wait};

/// The time limits of one client connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accept to the first complete request head.
    pub header_timeout: Duration,
    /// From the end of one response to the next complete request head.
    pub keepalive_timeout: Duration,
    /// Each write to the client.
    pub send_timeout: Duration,
    /// The largest request head; past it the client gets 431.
    pub max_head: usize,
}

/// What one relay worker's connections share.
pub struct Worker {
    /// The cluster, traffic counts and metrics, as every path sees them.
    pub(crate) proxy: Proxy,
    /// This worker's idle connections to the backends.
    pool: Arc<Pool<Conn>>,
    /// Where backend names are resolved (blocking lookups, off this thread).
    resolver: tokio::runtime::Handle,
}

impl Worker {
    /// A relay worker serving with `proxy`, resolving names on `resolver`.
    pub fn new(proxy: Proxy, resolver: tokio::runtime::Handle) -> Worker {
        // An `Arc` for the pool's sweeper (the pool's code is the hyper path's too); it never
        // leaves this thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let pool = Arc::new(Pool::new(proxy.metrics().upstream_idle()));
        Worker {
            proxy,
            pool,
            resolver,
        }
    }
}

/// How a relayed connection ended.
pub enum Ended {
    /// Closed (or to be closed: dropping the socket closes it).
    Closed,
    /// hyper is to serve the rest: the bytes read of the request the relay stopped at, and
    /// the socket.
    HandOver(Vec<u8>, std::net::TcpStream),
}

/// Serves `client` until it closes, overstays, the shutdown starts while it is idle, or a
/// request needs hyper.
pub(crate) async fn serve(
    worker: &Worker,
    client: Conn,
    peer: SocketAddr,
    limits: Limits,
    shutdown: &Bell,
) -> Ended {
    let proxy = &worker.proxy;
    let mut client = client;
    let mut buf = Buffer::for_requests();
    let peer = Peer {
        addr: peer,
        text: PeerText::new(peer.ip()),
    };
    // One wait for the shutdown for the connection's life, not one per request.
    let mut stopping = shutdown.wait();
    // The first head must be complete within the header timeout of the accept; later ones
    // within the keep-alive timeout of the previous response.
    let mut deadline = Deadline::new(Instant::now() + limits.header_timeout);
    // Each attempt's request timeout, on one timer from the first attempt on.
    let mut attempts = None;
    loop {
        let reading = next_head(
            &mut client.read,
            &mut buf,
            limits.max_head,
            &mut deadline,
            &mut stopping,
        );
        let head = match reading.await {
            Next::Head(head) => head,
            Next::HandOver(reason) => {
                proxy.metrics().handover(reason);
                return hand_over(&mut buf, client);
            }
            Next::Close => return Ended::Closed,
            Next::Reject(status, reason) => {
                let response = simple_response(status, reason, b"", true, b"");
                let _ = write(&mut client.write, response, limits.send_timeout).await;
                return Ended::Closed;
            }
        };
        if let Some(reason) = handover_reason(buf.pending(), &head) {
            proxy.metrics().handover(reason);
            LINES_KIND.give(head.headers);
            return hand_over(&mut buf, client);
        }
        // Boxed: a request's state is most of a connection's (the walk, its attempt, the
        // response's relay), and an idle connection, waiting for its next head, need not
        // hold it (6.4 KiB per connection unboxed).
        let open = Box::pin(request(
            worker,
            &mut client,
            &mut buf,
            &head,
            &peer,
            &limits,
            &mut attempts,
        ))
        .await;
        LINES_KIND.give(head.headers);
        if !open || shutdown.is_rung() {
            return Ended::Closed;
        }
        deadline.set(Instant::now() + limits.keepalive_timeout);
    }
}

/// hyper is to serve `client` from the bytes in `buf` on.
fn hand_over(buf: &mut Buffer, client: Conn) -> Ended {
    match client.into_std() {
        Ok(stream) => Ended::HandOver(buf.take_all(), stream),
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand the connection over; closing it");
            Ended::Closed
        }
    }
}

enum Next {
    Head(RequestHead),
    /// To hyper, for this reason (the `ringproxy_http1_handovers_total` label).
    HandOver(&'static str),
    Close,
    Reject(u16, &'static str),
}

/// Reads until a complete head (at most `max_head` bytes) is in `buf`, by `deadline`.
async fn next_head(
    client: &mut Reader,
    buf: &mut Buffer,
    max_head: usize,
    deadline: &mut Deadline,
    stopping: &mut Wait<'_>,
) -> Next {
    loop {
        let pending = buf.pending();
        if !pending.is_empty() {
            // "PRI * HTTP/2.0": the h2c preface. No other method starts with "PR" but WebDAV's
            // PROPFIND / PROPPATCH, which hyper serves as well.
            if pending.starts_with(b"PR") {
                let webdav = pending.len() > 2 && !pending.starts_with(b"PRI");
                return Next::HandOver(if webdav { "webdav" } else { "h2c" });
            }
            match parse_request_with(pending, max_head, || LINES_KIND.take()) {
                Ok(head) => return Next::Head(head),
                Err(HeadError::Partial) => {}
                Err(HeadError::TooLarge) => {
                    return Next::Reject(431, "Request Header Fields Too Large")
                }
                Err(HeadError::Malformed(why)) => {
                    tracing::debug!(reason = why, "refused a malformed request head");
                    return Next::Reject(400, "Bad Request");
                }
            }
        }
        if buf.pending().is_empty() {
            // Waiting for the next request: with a small buffer.
            buf.release();
        }
        let read = buf.fill(client, None);
        monoio::select! {
            // The timer last: it is only polled while the read waits.
            biased;
            // Idle, or a head half sent: nothing in flight to finish.
            () = &mut *stopping => return Next::Close,
            read = read => match read {
                Ok(n) if n > 0 => {}
                // Closed or failed.
                _ => return Next::Close,
            },
            () = deadline.expired() => return Next::Close,
        }
    }
}

/// Why this request goes to hyper, or `None` when the relay serves it.
fn handover_reason(buf: &[u8], head: &RequestHead) -> Option<&'static str> {
    if head.minor != 1 {
        Some("http10")
    } else if &buf[head.method.clone()] == b"CONNECT" {
        Some("connect")
    } else if head.lines.upgrade != 0 {
        Some("upgrade")
    } else if !plain_target(&buf[head.target.clone()]) {
        Some("target")
    } else if head.lines.host == 0 {
        Some("no_host")
    } else {
        None
    }
}

/// An origin-form target that hyper would forward byte for byte: `/`, then only bytes the
/// URI grammar (as the `http` crate reads it) keeps verbatim, no fragment, within its length.
fn plain_target(target: &[u8]) -> bool {
    if target.first() != Some(&b'/') || target.len() >= usize::from(u16::MAX) {
        return false;
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(at) => (&target[..at], &target[at + 1..]),
        None => (target, &b""[..]),
    };
    path.iter().all(|&b| {
        matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}')
    }) && query
        .iter()
        .all(|&b| matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E))
}

/// The raw head's headers, for the affinity view.
struct RawHeaders<'a> {
    buf: &'a [u8],
    head: &'a RequestHead,
}

impl Headers for RawHeaders<'_> {
    fn each(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (n, v) in &self.head.headers {
            f(&self.buf[n.clone()], &self.buf[v.clone()]);
        }
    }

    fn values<'s>(&'s self, name: &str, f: &mut dyn FnMut(&'s [u8]) -> bool) {
        for (n, v) in &self.head.headers {
            if self.buf[n.clone()].eq_ignore_ascii_case(name.as_bytes()) && f(&self.buf[v.clone()])
            {
                return;
            }
        }
    }
}

/// The client's address, and its text for `X-Forwarded-For`, formatted once per connection.
struct Peer {
    addr: SocketAddr,
    text: PeerText,
}

/// Relays one request and its response; answers whether the connection stays open.
/// `attempts` is the connection's attempt deadline, for this request's walk.
async fn request(
    worker: &Worker,
    client: &mut Conn,
    buf: &mut Buffer,
    head: &RequestHead,
    peer: &Peer,
    limits: &Limits,
    attempts: &mut Option<Deadline>,
) -> bool {
    let proxy = &worker.proxy;
    let snapshot = proxy.cluster().load();
    let settings = &*snapshot.settings;
    let config = &settings.proxy;
    let bytes = buf.pending();
    let method = Method::from_bytes(&bytes[head.method.clone()]).unwrap_or(Method::GET);
    let routed = {
        let headers = RawHeaders { buf: bytes, head };
        let view = RequestView {
            target: &bytes[head.target.clone()],
            headers: &headers,
            peer: peer.addr.ip(),
            scheme: Scheme::Http,
        };
        let key = settings.affinity.extract_view(&view);
        position(&settings.affinity, &snapshot.ring, key.as_deref())
    };
    let mut upstream = HEADS_KIND.take();
    upstream.reserve(head.len + 128);
    // Requests without Host go to hyper, so there is always one to keep.
    crate::http1::request_head(bytes, head, peer.text.as_bytes(), b"", &mut upstream);
    buf.consume(head.len);
    let (position, keyed) = match routed {
        Ok(p) => p,
        Err(error) => {
            HEADS_KIND.give(upstream);
            return refuse(proxy, client, error, head, Progress::Waiting, limits).await;
        }
    };

    // A small body that may be sent again is read whole first, like the hyper path does.
    let retry_after_send = config.retry_idempotent && is_idempotent(&method);
    let body = match head.framing {
        Framing::None => Body::Sent,
        Framing::Length(n) if retry_after_send && n <= MAX_REPLAY_BODY => {
            if let Err(reason) = read_body(
                &mut client.read,
                buf,
                n as usize,
                &mut upstream,
                config.request_timeout,
            )
            .await
            {
                HEADS_KIND.give(upstream);
                let error = ProxyError::ClientBody(reason);
                return refuse(proxy, client, error, head, Progress::Broken, limits).await;
            }
            Body::Sent
        }
        framing => Body::Streamed(framing, Progress::Waiting),
    };
    let mut relayed = Relayed {
        worker,
        method,
        head: Rc::new(upstream),
        body,
        expect_continue: head.expect_continue,
        client_read: &mut client.read,
        client_write: &mut client.write,
        client_buf: &mut *buf,
        send_timeout: limits.send_timeout,
        deadline: attempts,
    };
    let chosen = proxy.walk(&snapshot, position, keyed, &mut relayed).await;
    let progress = match relayed.body {
        Body::Sent => Progress::Done,
        Body::Streamed(_, p) => p,
    };
    // Back to the list, unless an abandoned write still holds it.
    if let Ok(upstream) = Rc::try_unwrap(relayed.head) {
        HEADS_KIND.give(upstream);
    }
    match chosen {
        Ok(chosen) => {
            respond(
                worker,
                client,
                buf,
                chosen.response,
                Upstream {
                    backend: chosen.backend,
                    load: chosen.load,
                },
                config,
                head.close || progress != Progress::Done,
                limits,
            )
            .await
        }
        Err(error) => refuse(proxy, client, error, head, progress, limits).await,
    }
}

/// Reads an `n`-byte body into `out`, within `timeout`.
async fn read_body(
    client: &mut Reader,
    buf: &mut Buffer,
    n: usize,
    out: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), String> {
    let read = async {
        while buf.pending().len() < n {
            if buf.fill(client, None).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match monoio::time::timeout(timeout, read).await {
        Ok(Ok(())) => {
            out.extend_from_slice(&buf.pending()[..n]);
            buf.consume(n);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The backend a response comes from, and its share of the backend's load.
struct Upstream<'a> {
    backend: &'a Backend,
    load: LoadGuard,
}

/// Relays the chosen response to the client; answers whether the connection stays open. The
/// backend's load and timing end when its response has been read, before the client's last
/// write: a client that has its response sees the backend's in-flight figure without it.
#[allow(clippy::too_many_arguments)]
async fn respond(
    worker: &Worker,
    client: &mut Conn,
    client_buf: &mut Buffer,
    res: Response,
    upstream: Upstream<'_>,
    config: &ProxyConfig,
    close: bool,
    limits: &Limits,
) -> bool {
    let Response {
        mut stream,
        mut buf,
        mut head,
        exchange,
        upload,
    } = res;
    let Upstream { backend, load } = upstream;
    let close = close || head.close || upload.is_some();
    let mut out = HEADS_KIND.take();
    out.reserve(head.len + 64);
    let debug = [(&b"x-ringproxy-backend"[..], backend.id.as_bytes())];
    let extra: &[(&[u8], &[u8])] = if config.debug_headers { &debug } else { &[] };
    crate::http1::response_head(buf.pending(), &head, extra, close, &mut out);
    buf.consume(head.len);
    LINES_KIND.give(std::mem::take(&mut head.headers));
    // The backend's load and timing end with the last byte read from it (dropped unfinished
    // if the relay fails).
    let mut with_backend = Some((exchange, load));
    let mut backend_done = || {
        if let Some((exchange, load)) = with_backend.take() {
            exchange.finish();
            drop(load);
        }
    };
    // The whole body is often here already: one write for head and body.
    if let (Framing::Length(n), None) = (head.framing, &upload) {
        if let Ok(n) = usize::try_from(n) {
            if buf.pending().len() >= n {
                out.extend_from_slice(&buf.pending()[..n]);
                buf.consume(n);
                // The backend is done with: its connection is free before the client's write.
                backend_done();
                let keep = finish(worker, backend, config, stream, &buf, close);
                return match write(&mut client.write, out, limits.send_timeout).await {
                    Ok(out) => {
                        HEADS_KIND.give(out);
                        keep
                    }
                    Err(e) => {
                        client_gone(backend, &e);
                        false
                    }
                };
            }
        }
    }
    match write(&mut client.write, out, limits.send_timeout).await {
        Ok(out) => HEADS_KIND.give(out),
        Err(e) => {
            client_gone(backend, &e);
            return false;
        }
    }
    let relayed = match upload {
        None => {
            copy_body(
                head.framing,
                &mut buf,
                &mut stream.read,
                &mut client.write,
                limits.send_timeout,
                &mut backend_done,
            )
            .await
        }
        Some(up) => {
            duplex(
                &mut stream,
                client,
                client_buf,
                &mut buf,
                up,
                head.framing,
                limits,
            )
            .await
        }
    };
    match relayed {
        Ok(()) => {
            backend_done();
            let reusable = !matches!(head.framing, Framing::UntilClose);
            finish(worker, backend, config, stream, &buf, close || !reusable)
        }
        Err(CopyError::Write(e)) => {
            client_gone(backend, &e);
            false
        }
        Err(e) => {
            tracing::warn!(backend = %backend.id, error = ?e, "upstream response body failed");
            false
        }
    }
}

/// The response body down to the client while the rest of the request body goes up, in one
/// task; ends with the response. (The connection closes after: the request may be unfinished.)
async fn duplex(
    backend: &mut Conn,
    client: &mut Conn,
    client_buf: &mut Buffer,
    buf: &mut Buffer,
    mut up: Half,
    framing: Framing,
    limits: &Limits,
) -> Result<(), CopyError> {
    let mut down = Half::new(framing);
    while !down.done() {
        let (from_client, to_backend) = (&mut client.read, &mut backend.write);
        let (from_backend, to_client) = (&mut backend.read, &mut client.write);
        let timeout = limits.send_timeout;
        if up.done() {
            down.step(buf, from_backend, to_client, timeout, None)
                .await?;
            continue;
        }
        let (upped, downed) = race(
            |cancel| up.step(client_buf, from_client, to_backend, timeout, Some(cancel)),
            |cancel| down.step(buf, from_backend, to_client, timeout, Some(cancel)),
        )
        .await;
        if upped.is_err() {
            // The client's body broke off; its response may still be read.
            up = Half::new(Framing::None);
        }
        downed?;
    }
    Ok(())
}

/// The response went out whole: the backend connection goes back to the pool if it can
/// take another request; answers whether the client connection stays open.
fn finish(
    worker: &Worker,
    backend: &Backend,
    config: &ProxyConfig,
    stream: Conn,
    rest: &Buffer,
    close: bool,
) -> bool {
    // Bytes after the response, or a backend that said close: not reusable.
    if rest.pending().is_empty() && !close {
        worker.pool.put(
            backend.address.clone(),
            stream,
            config.upstream_idle_timeout,
        );
    }
    !close
}

fn client_gone(backend: &Backend, e: &dyn std::fmt::Debug) {
    tracing::info!(backend = %backend.id, error = ?e, "client stopped reading its response; closing the connection");
}

/// Answers `error` to the client; the connection stays open only if the request body (if
/// any) was read to its end and the client did not ask to close.
async fn refuse(
    proxy: &Proxy,
    client: &mut Conn,
    error: ProxyError,
    head: &RequestHead,
    progress: Progress,
    limits: &Limits,
) -> bool {
    proxy.metrics().rejected(error.reason());
    let body_left = match head.framing {
        Framing::None => false,
        _ => progress != Progress::Done,
    };
    let close = head.close || body_left;
    let status = error.status();
    let mut extra = Vec::new();
    for (name, value) in error.headers() {
        let _ = write!(extra, "{name}: {value}\r\n");
    }
    let out = simple_response(
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        &extra,
        close,
        &error.text(),
    );
    write(&mut client.write, out, limits.send_timeout)
        .await
        .is_ok()
        && !close
}

/// A response of ours: status line, `extra` header lines, `body` with its length.
fn simple_response(status: u16, reason: &str, extra: &[u8], close: bool, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
    out
}
