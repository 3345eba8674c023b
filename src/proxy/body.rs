//! Request bodies that can be sent again.
//!
//! hyper's client consumes a request even when it never managed to connect, so a streamed body
//! would be lost with the failed attempt. [`RequestBody`] keeps the client's body in a shared
//! slot that the upstream body only empties when hyper first polls it: if the connection
//! failed, nothing was polled and the same body goes to the next candidate. Empty bodies and
//! small buffered ones (for idempotent retries after sending) replay freely.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::sync::lock;

/// Bodies up to this size are buffered when an idempotent request may be retried after sending.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;

type Slot = Arc<Mutex<Option<Incoming>>>;

/// Set when reading the client's body failed (malformed chunking, a client that hung up
/// mid-body): the exchange then failed on the client's side, not the backend's.
type ClientFailed = Arc<AtomicBool>;

/// The client's request body, held across attempts.
pub enum RequestBody {
    Empty,
    Buffered(Bytes),
    Streamed {
        /// The client's body until an attempt takes it.
        slot: Slot,
        /// The body's size hint, for attempts that have not taken it yet.
        hint: SizeHint,
        /// Whether reading it failed.
        failed: ClientFailed,
    },
}

impl RequestBody {
    /// Wraps `body`; buffers it when `buffer` and it is known to be small.
    pub async fn new(body: Incoming, buffer: bool) -> Result<RequestBody, hyper::Error> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let hint = body.size_hint();
        if buffer && hint.upper().is_some_and(|n| n <= MAX_REPLAY_BODY) {
            return Ok(RequestBody::Buffered(body.collect().await?.to_bytes()));
        }
        Ok(RequestBody::Streamed {
            slot: Arc::new(Mutex::new(Some(body))),
            hint,
            failed: ClientFailed::default(),
        })
    }

    /// A body for the next attempt, or `None` once a streamed body has started to be sent.
    pub fn attempt(&self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Empty => Some(UpstreamBody::Empty),
            RequestBody::Buffered(b) => Some(UpstreamBody::Buffered(Some(b.clone()))),
            RequestBody::Streamed { slot, hint, failed } => {
                lock(slot).is_some().then(|| UpstreamBody::Streamed {
                    slot: slot.clone(),
                    body: None,
                    hint: *hint,
                    failed: failed.clone(),
                })
            }
        }
    }

    /// Can [`RequestBody::attempt`] give a body now?
    pub fn can_attempt(&self) -> bool {
        match self {
            RequestBody::Streamed { slot, .. } => lock(slot).is_some(),
            _ => true,
        }
    }

    /// Did reading the client's body fail? Then a failed exchange is the client's fault.
    pub fn client_failed(&self) -> bool {
        matches!(self, RequestBody::Streamed { failed, .. } if failed.load(Relaxed))
    }

    /// Can a request be sent again after it reached a backend? (Only if nothing streams.)
    pub fn replayable(&self) -> bool {
        !matches!(self, RequestBody::Streamed { .. })
    }
}

/// The body of one upstream attempt.
pub enum UpstreamBody {
    /// No body.
    Empty,
    /// A buffered body, sent once per attempt.
    Buffered(Option<Bytes>),
    /// The client's body, streamed; only the first attempt to poll it gets it.
    Streamed {
        /// Where the body waits until an attempt takes it.
        slot: Slot,
        /// The body once taken.
        body: Option<Incoming>,
        /// The client body's size hint.
        hint: SizeHint,
        /// Set when reading the client's body fails.
        failed: ClientFailed,
    },
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut *self {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Buffered(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Streamed {
                slot, body, failed, ..
            } => {
                if body.is_none() {
                    // First poll: from here on the body belongs to this attempt.
                    *body = lock(slot).take();
                }
                let frame = match body {
                    Some(b) => Pin::new(b).poll_frame(cx),
                    None => Poll::Ready(None),
                };
                if let Poll::Ready(Some(Err(_))) = &frame {
                    failed.store(true, Relaxed);
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Buffered(b) => b.is_none(),
            UpstreamBody::Streamed { body: Some(b), .. } => b.is_end_stream(),
            UpstreamBody::Streamed { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Buffered(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            UpstreamBody::Streamed { body: Some(b), .. } => b.size_hint(),
            UpstreamBody::Streamed { hint, .. } => *hint,
        }
    }
}
