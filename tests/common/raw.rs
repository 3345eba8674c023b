//! Raw sockets for hostile-client tests: a client connection that writes exact bytes and never
//! reads without a deadline, and a recording backend that keeps every request head it got
//! (and, started with `start_body_recorder`, every body and trailer), counts its connections,
//! and accepts protocol upgrades (echoing the upgraded bytes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::backend::{backend_answer, full, BackendBody};
use super::client::RawReply;

/// What one read attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Some bytes (appended to the connection's buffer).
    Data(usize),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived before the deadline.
    TimedOut,
}

/// A client connection writing exact bytes; every read has a deadline.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read but not consumed yet.
    buf: Vec<u8>,
    /// Bytes read over the connection's life.
    pub received: u64,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} within 5s"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        RawConn {
            stream,
            buf: Vec::new(),
            received: 0,
        }
    }

    /// Writes `bytes` as they are. Errors are returned: a hostile test may write to a
    /// connection the proxy already closed.
    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        self.stream.write_all(bytes.as_ref()).await?;
        self.stream.flush().await
    }

    /// Closes the write side (the proxy reads EOF), keeping the read side open.
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// One read into the buffer, waiting at most `within`.
    pub async fn read_some(&mut self, within: Duration) -> Read {
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Err(_) => Read::TimedOut,
            Ok(Ok(0) | Err(_)) => Read::Closed,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received += n as u64;
                Read::Data(n)
            }
        }
    }

    /// Reads and discards whatever comes until the peer closes; how long that took, or `None`
    /// if the connection was still open after `within`.
    pub async fn wait_closed(&mut self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = started + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.read_some(left).await {
                Read::Closed => return Some(started.elapsed()),
                Read::TimedOut => return None,
                Read::Data(_) => self.buf.clear(),
            }
        }
    }

    /// Reads until `\r\n\r\n` and parses the response head; the bytes after it stay buffered.
    /// Panics if the head is not complete within `within` (naming what did come).
    pub async fn read_head(&mut self, within: Duration) -> (u16, Vec<(String, String)>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return parse_head(&head);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(left).await {
                Read::Data(_) => {}
                other => panic!(
                    "no complete response head within {within:?} ({other:?}); got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Reads one whole response (content-length, chunked, or until close) within `within`.
    pub async fn read_response(&mut self, within: Duration) -> RawReply {
        let deadline = Instant::now() + within;
        let (status, headers) = self.read_head(within).await;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length = header("content-length").map(|v| v.parse::<usize>().unwrap());
        let no_body = status == 101 || status == 204 || status == 304;
        let body = if no_body {
            Vec::new()
        } else if chunked {
            loop {
                if let Some(body) = dechunk(&self.buf) {
                    self.buf.clear();
                    break body;
                }
                self.more(deadline, "a chunked body").await;
            }
        } else if let Some(n) = length {
            while self.buf.len() < n {
                self.more(deadline, "a content-length body").await;
            }
            self.buf.drain(..n).collect()
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.read_to_close(left).await,
                "body without length not closed within {within:?}"
            );
            std::mem::take(&mut self.buf)
        };
        RawReply {
            status,
            headers,
            body,
        }
    }

    /// The bytes buffered and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads until at least `n` bytes are buffered, then takes them; panics after `within`.
    pub async fn read_exact_within(&mut self, n: usize, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        while self.buf.len() < n {
            self.more(deadline, "the expected bytes").await;
        }
        self.buf.drain(..n).collect()
    }

    async fn more(&mut self, deadline: Instant, what: &str) {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.read_some(left).await {
            Read::Data(_) => {}
            other => panic!(
                "{other:?} while reading {what}; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads until the peer closes, keeping the data (see [`RawConn::buffered`]); false if
    /// the connection was still open after `within`.
    pub async fn read_to_close(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_some(left).await {
                Read::Closed => return true,
                Read::TimedOut => return false,
                Read::Data(_) => {}
            }
        }
    }
}

impl RawConn {
    /// Reads one HTTP/2 frame: its type, flags, stream id and payload.
    pub async fn read_h2_frame(&mut self, within: Duration) -> (u8, u8, u32, Vec<u8>) {
        let deadline = Instant::now() + within;
        let head = self.read_exact_within(9, within).await;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let left = deadline.saturating_duration_since(Instant::now());
        let payload = self.read_exact_within(len, left).await;
        (head[3], head[4], stream, payload)
    }
}

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A `GET path` on `stream` as one HEADERS frame (END_STREAM, END_HEADERS), HPACK-encoded
/// without Huffman or indexing: static-table `:method GET` and `:scheme http`, literal
/// `:path`, `:authority` and `headers`.
pub fn h2_get(stream: u32, path: &str, authority: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    fn string(block: &mut Vec<u8>, s: &str) {
        block.push(u8::try_from(s.len()).expect("short strings only (7-bit length)"));
        block.extend_from_slice(s.as_bytes());
    }
    let mut block = vec![0x82, 0x86];
    // Literal without indexing, name from the static table: :path is 4, :authority is 1.
    block.push(0x04);
    string(&mut block, path);
    block.push(0x01);
    string(&mut block, authority);
    for (name, value) in headers {
        block.push(0x00);
        string(&mut block, name);
        string(&mut block, value);
    }
    h2_frame(1, 0x1 | 0x4, stream, &block)
}

/// Sends `request` on a new connection and reads one response (bounded).
pub async fn raw_exchange(addr: SocketAddr, request: impl AsRef<[u8]>) -> RawReply {
    let mut conn = RawConn::connect(addr).await;
    conn.send(request).await.expect("send the request");
    conn.read_response(Duration::from_secs(5)).await
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

/// The decoded body if `data` holds a complete chunked body, else `None`.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            return find(data, b"\r\n").map(|_| out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A request head as a backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as the backend got it.
    pub target: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// With [`start_body_recorder`]: the body as the backend decoded it (de-chunked).
    pub body: Vec<u8>,
    /// With [`start_body_recorder`]: the trailer fields after a chunked body, names lowercased.
    pub trailers: Vec<(String, String)>,
    /// With [`start_body_recorder`]: why reading the body failed (then `body` is what came
    /// before), or `None` for a whole body.
    pub body_error: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A backend that records every request head, counts its connections, and otherwise
/// answers like [`super::backend::TestBackend`] (`/big/N`, `/slow/MS`, `/headers`, ...),
/// except that a request with a body is read to its end before the answer, and a request
/// asking for `Upgrade` gets `101` and then its bytes echoed back.
pub struct Recorder {
    pub name: String,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Connections open now (an upgraded one counts until its tunnel ends).
    open: Arc<AtomicUsize>,
    /// Stops the backend's thread: its listener and every connection close.
    stop: CancellationToken,
}

impl Recorder {
    /// The request heads received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The request targets received so far.
    pub fn targets(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.target).collect()
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` requests arrived.
    pub async fn wait_requests(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.seen.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "{}: {n} requests not received within {within:?}; got {:?}",
                self.name,
                self.targets()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until no connection is open; how long that took, or `None`.
    pub async fn wait_no_connections(&self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        while self.open() > 0 {
            if started.elapsed() >= within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(started.elapsed())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Decrements a counter when dropped (a connection task that ends or is aborted).
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a [`Recorder`] on a thread and runtime of its own, so that a backend streaming a
/// large body never delays the test's reads (and so its timing assertions).
pub async fn start_recorder(name: &str) -> Recorder {
    start_recorder_inner(name, false)
}

/// A [`Recorder`] that records each head on arrival, then reads the body to its end (at most
/// 5 s) and completes the record — decoded body, trailers, or how the body broke — before it
/// answers 200 with its name. For tests comparing what different client paths deliver.
pub async fn start_body_recorder(name: &str) -> Recorder {
    start_recorder_inner(name, true)
}

fn start_recorder_inner(name: &str, bodies: bool) -> Recorder {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let serve = serve_recorder(
        listener,
        (name.to_string(), bodies),
        seen.clone(),
        accepted.clone(),
        open.clone(),
    );
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name(format!("recorder-{name}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // Dropping the runtime afterwards drops every connection and tunnel task.
            runtime.block_on(async move {
                tokio::select! {
                    () = stopped.cancelled() => {}
                    () = serve => {}
                }
            });
        })
        .unwrap();
    Recorder {
        name: name.to_string(),
        addr,
        seen,
        accepted,
        open,
        stop,
    }
}

async fn serve_recorder(
    listener: std::net::TcpListener,
    (name, bodies): (String, bool),
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
) {
    let listener = TcpListener::from_std(listener).unwrap();
    // Dropping the set (when this future is dropped) aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        accepted.fetch_add(1, Ordering::SeqCst);
        open.fetch_add(1, Ordering::SeqCst);
        let guard = Arc::new(OpenGuard(open.clone()));
        let (name, seen) = (name.clone(), seen.clone());
        conns.spawn(async move {
            let service = service_fn(move |req| {
                let (name, seen, guard) = (name.clone(), seen.clone(), guard.clone());
                async move {
                    if bodies {
                        return Ok::<_, Infallible>(record_with_body(&name, &seen, req).await);
                    }
                    Ok(record(&name, &seen, guard, req).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn head_of(req: &Request<Incoming>) -> Seen {
    Seen {
        method: req.method().to_string(),
        target: req.uri().to_string(),
        headers: fields(req.headers()),
        body: Vec::new(),
        trailers: Vec::new(),
        body_error: None,
    }
}

fn fields(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn record_with_body(
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    req: Request<Incoming>,
) -> Response<BackendBody> {
    // The head is recorded on arrival, so a head whose body never completes is seen too.
    let mut got = head_of(&req);
    got.body_error = Some("body not read to its end yet".to_string());
    let at = {
        let mut seen = seen.lock().unwrap();
        seen.push(got.clone());
        seen.len() - 1
    };
    let mut body = req.into_body();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            match frame.into_data() {
                Ok(data) => got.body.extend_from_slice(&data),
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        got.trailers.extend(fields(&trailers));
                    }
                }
            }
        }
        Ok::<(), String>(())
    };
    got.body_error = match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("body not complete within 5s".to_string()),
    };
    seen.lock().unwrap()[at] = got;
    let mut res = Response::new(full(name.to_string()));
    res.headers_mut().insert("x-backend", name.parse().unwrap());
    res
}

async fn record(
    name: &str,
    seen: &Mutex<Vec<Seen>>,
    guard: Arc<OpenGuard>,
    mut req: Request<Incoming>,
) -> Response<BackendBody> {
    seen.lock().unwrap().push(head_of(&req));
    if let Some(protocol) = req.headers().get(http::header::UPGRADE).cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        // The tunnel keeps the connection counted as open until it ends.
        tokio::spawn(async move {
            let _guard = guard;
            if let Ok(upgraded) = upgrade.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut res = Response::new(full(""));
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        res.headers_mut()
            .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
        res.headers_mut().insert(http::header::UPGRADE, protocol);
        return res;
    }
    if req.method() == http::Method::POST {
        // Read the whole body first, so a broken one fails before any answer.
        let failed = req.into_body().collect().await.is_err();
        let mut res = Response::new(full(if failed { "body failed" } else { "body read" }));
        res.headers_mut().insert("x-backend", name.parse().unwrap());
        return res;
    }
    backend_answer(name, req).await
}
