//! Scripted HTTP/1.1 backends on 127.0.0.1:0 that say who they are and behave as the path asks.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::wait_until;

pub type BackendBody = BoxBody<Bytes, hyper::Error>;

/// A scripted HTTP/1.1 backend. Every response carries `x-backend: NAME`; the path picks the
/// behaviour: `/status/NNN`, `/echo`, `/big/N`, `/slow/MS`, `/headers`, anything else → the name.
pub struct TestBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Requests received so far (counted when the request head arrives).
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted and not yet closed.
    pub open: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl TestBackend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes every connection: the port is closed afterwards, the
    /// connections a moment later (see [`wait_closed`]).
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

pub async fn start_backend(name: &str) -> TestBackend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hits, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let accept = serve_backend(listener, name, hits.clone(), open.clone());
    TestBackend {
        name: name.to_string(),
        addr,
        hits,
        open,
        accept,
    }
}

/// Like [`start_backend`], but requests for `/held` are answered (like `/`) only once the
/// returned sender is set to `true`, or dropped: a request held in flight for exactly as long
/// as the test needs, however slow the machine.
pub async fn start_held_backend(name: &str) -> (TestBackend, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hits, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (release, released) = watch::channel(false);
    let (counter, name_owned) = (hits.clone(), name.to_string());
    let accept = serve_http(listener, open.clone(), move |req| {
        counter.fetch_add(1, Ordering::SeqCst);
        let (mut released, name) = (released.clone(), name_owned.clone());
        async move {
            if req.uri().path() == "/held" {
                // An error means the sender is gone: nothing holds the request any more.
                let _ = released.wait_for(|released| *released).await;
            }
            backend_answer(&name, req).await
        }
    });
    let backend = TestBackend {
        name: name.to_string(),
        addr,
        hits,
        open,
        accept,
    };
    (backend, release)
}

/// Starts one backend per name, in order.
pub async fn start_backends(names: &[&str]) -> Vec<TestBackend> {
    let mut backends = Vec::new();
    for name in names {
        backends.push(start_backend(name).await);
    }
    backends
}

/// Serves `listener` as the scripted backend `name` (see [`TestBackend`]), counting requests
/// in `hits` and open connections in `open`, until the returned task is aborted.
pub fn serve_backend(
    listener: TcpListener,
    name: &str,
    hits: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
) -> JoinHandle<()> {
    let name = name.to_string();
    serve_http(listener, open, move |req| {
        hits.fetch_add(1, Ordering::SeqCst);
        let name = name.clone();
        async move { backend_answer(&name, req).await }
    })
}

/// Accepts HTTP/1.1 connections on `listener` and answers every request with `answer` (called
/// as soon as the request head arrives); `open` counts the connections not yet closed.
/// Aborting the returned task closes the listener at once and every connection soon after
/// (their tasks are cancelled when the runtime next gets to them): wait for `open` to reach 0
/// with [`wait_closed`].
pub fn serve_http<F, Fut>(
    listener: TcpListener,
    open: Arc<AtomicUsize>,
    answer: F,
) -> JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<BackendBody>> + Send + 'static,
{
    tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts every connection task.
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            while conns.try_join_next().is_some() {}
            let answer = answer.clone();
            let guard = OpenGuard::new(&open);
            conns.spawn(async move {
                // Dropped when the connection ends or its task is aborted.
                let _guard = guard;
                let service = service_fn(move |req| {
                    let res = answer(req);
                    async move { Ok::<_, Infallible>(res.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// One open connection in a counter; counts it down when dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: &Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(open.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (at most 5 s) until every connection counted in `open` is closed; panics naming
/// `what` if one is still open then.
pub async fn wait_closed(open: &AtomicUsize, what: &str) {
    wait_until(Duration::from_secs(5), what, || {
        open.load(Ordering::SeqCst) == 0
    })
    .await;
}

/// A port that was just free and is now closed: connecting to it is refused.
/// An address that refuses connections for the rest of the test process: a socket bound to it
/// and never listening. Holding it (without SO_REUSEADDR) keeps a parallel test's listener, or
/// an outgoing connection's own source port (a self-connect), from making it answer.
pub async fn dead_addr() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

pub fn full(data: impl Into<Bytes>) -> BackendBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The answer of the scripted backend `name` to `req` (see [`TestBackend`]).
pub async fn backend_answer(name: &str, req: Request<Incoming>) -> Response<BackendBody> {
    let path = req.uri().path().to_string();
    let arg = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    let (status, body) = if let Some(code) = arg("/status/") {
        (
            StatusCode::from_u16(code as u16).unwrap(),
            full(name.to_string()),
        )
    } else if path == "/echo" {
        (StatusCode::OK, req.into_body().boxed())
    } else if let Some(n) = arg("/big/") {
        (
            StatusCode::OK,
            Pattern::new(n).map_err(|never| match never {}).boxed(),
        )
    } else if let Some(ms) = arg("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        (StatusCode::OK, full(name.to_string()))
    } else if path == "/headers" {
        let mut map = serde_json::Map::new();
        for (k, v) in req.headers() {
            let entry = map
                .entry(k.as_str().to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.push(Value::String(String::from_utf8_lossy(v.as_bytes()).into()));
            }
        }
        (StatusCode::OK, full(serde_json::to_vec(&map).unwrap()))
    } else {
        (StatusCode::OK, full(name.to_string()))
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert("x-backend", name.parse().unwrap());
    res
}

/// Byte `i` of the deterministic pattern that `/big/N` streams.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

pub fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(pattern_byte).collect()
}

/// A body streaming `len` pattern bytes in 64 KiB frames, never holding more than one frame.
pub struct Pattern {
    sent: u64,
    len: u64,
}

impl Pattern {
    pub fn new(len: u64) -> Pattern {
        Pattern { sent: 0, len }
    }
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent >= self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.sent).min(64 * 1024);
        let chunk: Vec<u8> = (self.sent..self.sent + n).map(pattern_byte).collect();
        self.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}
