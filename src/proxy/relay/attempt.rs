//! One relayed request's attempts: write the rewritten head (and the body, by its framing) to
//! a backend connection from the worker's pool, and read the response head back. The walk
//! (`walk.rs`) decides which backends are tried; this decides what one try does and how its
//! failure is classified, with the same vocabulary as the hyper path.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use http::header::{HeaderName, HeaderValue};
use http::Method;
use monoio::io::AsyncWriteRentExt as _;

use super::buffer::{write, Buffer, CopyError, Half};
use super::deadline::Deadline;
use super::io::{cancelled, connect, race, Conn, Reader, Writer};
use super::spare::LINES_KIND;
use super::Worker;
use crate::config::ProxyConfig;
use crate::http1::{parse_response_with, Framing, HeadError, ResponseHead};
use crate::metrics::Exchange;
use crate::proxy::error::ProxyError;
use crate::proxy::upstream::reset;
use crate::proxy::walk::Attempts;
use crate::proxy::worker::Proxy;
use crate::snapshot::Backend;

/// Largest response head read from a backend.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The request body, and how far it got.
pub(super) enum Body {
    /// None, or read whole and appended to the head (small enough to send again).
    Sent,
    /// To be relayed from the client by its framing; it can be sent once.
    Streamed(Framing, Progress),
}

/// How far a streamed body got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Not a byte read from the client yet.
    Waiting,
    /// Relayed to its end.
    Done,
    /// Broken off: the client connection cannot be read further.
    Broken,
}

/// A relayed request being attempted.
pub(super) struct Relayed<'c> {
    /// The relay worker: its backend connections.
    pub worker: &'c Worker,
    pub method: Method,
    /// The upstream head, followed by the whole body when it is [`Body::Sent`]. Shared with
    /// each write of it: a write abandoned at the request timeout may still hold it, and
    /// the next attempt sends it again.
    pub head: Rc<Vec<u8>>,
    pub body: Body,
    pub expect_continue: bool,
    pub client_read: &'c mut Reader,
    pub client_write: &'c mut Writer,
    pub client_buf: &'c mut Buffer,
    pub send_timeout: Duration,
    /// The connection's attempt deadline (none before its first attempt).
    pub deadline: &'c mut Option<Deadline>,
}

/// A backend's response: its head parsed, the bytes read after it, and the connection.
pub(super) struct Response {
    pub stream: Conn,
    /// Starts with the head (`head.len` bytes), then what arrived of the body.
    pub buf: Buffer,
    pub head: ResponseHead,
    pub exchange: Exchange,
    /// The rest of a request body still going up while the response comes back.
    pub upload: Option<Half>,
}

/// What went wrong talking to the backend, before it is named for the client.
enum Failed {
    Connect(ProxyError),
    /// The connection failed; `answered` if any response byte came.
    Io {
        error: io::Error,
        answered: bool,
    },
    Malformed(HeadError),
    Client(String),
}

impl Attempts for Relayed<'_> {
    type Response = Response;

    fn method(&self) -> &Method {
        &self.method
    }

    fn can_attempt(&self) -> bool {
        !matches!(self.body, Body::Streamed(_, p) if p != Progress::Waiting)
    }

    fn replayable(&self) -> bool {
        matches!(self.body, Body::Sent)
    }

    async fn send(
        &mut self,
        proxy: &Proxy,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Result<Response, ProxyError> {
        let exchange = proxy.metrics().begin(&backend.id);
        let (stream, reused) = match self.worker.pool.take(&backend.address) {
            Some(stream) => (Some(stream), true),
            None => (None, false),
        };
        let backend_id = || backend.id.to_string();
        let error = match self.exchange(proxy, backend, config, stream).await {
            Ok((stream, buf, head, upload)) => {
                exchange.first_byte();
                return Ok(Response {
                    stream,
                    buf,
                    head,
                    exchange,
                    upload,
                });
            }
            Err(Failed::Connect(error)) => error,
            Err(Failed::Client(reason)) => ProxyError::ClientBody(reason),
            Err(Failed::Io { error, answered }) if reused && !answered && closed(error.kind()) => {
                ProxyError::Stale {
                    backend: backend_id(),
                    reason: error.to_string(),
                }
            }
            Err(Failed::Io { error, .. }) => ProxyError::Upstream {
                backend: backend_id(),
                reason: error.to_string(),
            },
            Err(Failed::Malformed(e)) => ProxyError::Upstream {
                backend: backend_id(),
                reason: format!("invalid response head: {e}"),
            },
        };
        Err(error)
    }

    /// The request timeout on the connection's one attempt timer: most attempts end well
    /// within it, and then a timer per attempt (armed, then cancelled) is work for nothing.
    async fn send_within(
        &mut self,
        proxy: &Proxy,
        backend: &Backend,
        config: &ProxyConfig,
    ) -> Option<Result<Response, ProxyError>> {
        let at = monoio::time::Instant::now() + config.request_timeout;
        let mut deadline = match self.deadline.take() {
            Some(mut deadline) => {
                deadline.set(at);
                deadline
            }
            None => Deadline::new(at),
        };
        let sent = monoio::select! {
            // The timer last: it is only polled while the attempt waits.
            biased;
            sent = self.send(proxy, backend, config) => Some(sent),
            () = deadline.expired() => None,
        };
        *self.deadline = Some(deadline);
        sent
    }

    fn status(res: &Response) -> u16 {
        res.head.status
    }

    fn has_header(res: &Response, name: &HeaderName, value: &HeaderValue) -> bool {
        let buf = res.buf.pending();
        res.head
            .headers
            .iter()
            .find(|(n, _)| buf[n.clone()].eq_ignore_ascii_case(name.as_str().as_bytes()))
            .is_some_and(|(_, v)| &buf[v.clone()] == value.as_bytes())
    }
}

impl Relayed<'_> {
    /// Connects (unless `stream` is a pooled connection), sends, and reads the response head.
    async fn exchange(
        &mut self,
        proxy: &Proxy,
        backend: &Backend,
        config: &ProxyConfig,
        stream: Option<Conn>,
    ) -> Result<(Conn, Buffer, ResponseHead, Option<Half>), Failed> {
        let mut stream = match stream {
            Some(s) => s,
            None => {
                let connecting = Instant::now();
                let s = connect(
                    &backend.address,
                    config.connect_timeout,
                    &self.worker.resolver,
                )
                .await
                .map_err(|e| Failed::Connect(ProxyError::upstream(&backend.id, &e)))?;
                proxy.metrics().upstream_opened(&backend.id);
                proxy
                    .metrics()
                    .upstream_connected(&backend.id, connecting.elapsed());
                s
            }
        };
        let io = |error: io::Error| Failed::Io {
            error,
            answered: false,
        };
        stream
            .write
            .write_all(self.head.clone())
            .await
            .0
            .map_err(io)?;
        let head_request = self.method == Method::HEAD;
        let mut buf = Buffer::new();
        let mut upload = match &mut self.body {
            Body::Streamed(framing, progress) => {
                *progress = Progress::Broken;
                if self.expect_continue {
                    let go_on: &'static [u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
                    write(self.client_write, go_on, self.send_timeout)
                        .await
                        .map_err(|_| {
                            Failed::Client("client closed before sending its body".into())
                        })?;
                }
                Some(Half::new(*framing))
            }
            Body::Sent => None,
        };
        let head = loop {
            if let Some(head) = response_head(&mut buf, head_request)? {
                break head;
            }
            let answered = !buf.pending().is_empty();
            // The body goes up while the response is awaited: a backend may answer (and
            // stream its answer) before it has read the whole request.
            let read = match upload.as_mut().filter(|u| !u.done()) {
                Some(up) => {
                    let (stepped, read) = race(
                        |cancel| {
                            up.step(
                                self.client_buf,
                                self.client_read,
                                &mut stream.write,
                                config.request_timeout,
                                Some(cancel),
                            )
                        },
                        |cancel| buf.fill(&mut stream.read, Some(cancel)),
                    )
                    .await;
                    stepped.map_err(|e| match e {
                        CopyError::Read(e) => Failed::Client(e.to_string()),
                        CopyError::Framing(e) => Failed::Client(e.to_string()),
                        CopyError::Write(e) => io(e),
                    })?;
                    match read {
                        Err(e) if cancelled(&e) => continue,
                        read => read,
                    }
                }
                None => buf.fill(&mut stream.read, None).await,
            };
            match read {
                Ok(0) => {
                    return Err(Failed::Io {
                        error: io::ErrorKind::UnexpectedEof.into(),
                        answered,
                    })
                }
                Ok(_) => {}
                Err(error) => return Err(Failed::Io { error, answered }),
            }
        };
        if let (Some(u), Body::Streamed(_, progress)) = (&upload, &mut self.body) {
            if u.done() {
                *progress = Progress::Done;
            }
        }
        Ok((stream, buf, head, upload.filter(|u| !u.done())))
    }
}

/// The final response head at the front of `buf`, once complete; interim (1xx) heads are
/// skipped.
fn response_head(buf: &mut Buffer, head_request: bool) -> Result<Option<ResponseHead>, Failed> {
    loop {
        // Nothing read yet (the first pass, before the backend has answered).
        if buf.pending().is_empty() {
            return Ok(None);
        }
        let lines = || LINES_KIND.take();
        match parse_response_with(buf.pending(), MAX_RESPONSE_HEAD, head_request, lines) {
            Ok(head) if (100..200).contains(&head.status) && head.status != 101 => {
                // 100 Continue, 103 Early Hints: the final response follows.
                buf.consume(head.len);
            }
            Ok(head) => return Ok(Some(head)),
            Err(HeadError::Partial) => return Ok(None),
            Err(e) => return Err(Failed::Malformed(e)),
        }
    }
}

/// Did the backend close (EOF — hyper's "incomplete message" — or reset) rather than fail
/// otherwise?
fn closed(kind: io::ErrorKind) -> bool {
    kind == io::ErrorKind::UnexpectedEof || reset(kind)
}
