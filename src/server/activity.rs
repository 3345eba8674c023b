//! What one client connection is doing, for its watchdog: requests in flight, when the last
//! one finished, and whether a response is stuck on a client that stopped reading.
//!
//! A request counts as in flight from the moment hyper hands it to the service until its
//! response body is dropped (fully sent or abandoned). A response frame counts as *handed*
//! from the moment the body gives it to hyper until hyper asks for the next one: hyper asks
//! again only once the frame is on its way (HTTP/1: buffered for the socket; HTTP/2: sent
//! within the stream's flow-control window), so a frame handed long ago means the client is
//! not reading. That covers HTTP/2 flow-control stalls, which never block a socket write.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::clock::now_ms;

/// Shared by a connection's watchdog, its service calls and its response bodies.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// When the last request finished (ms, [`now_ms`]); the accept time before the first.
    last_done: AtomicU64,
    /// Response frames handed to hyper and not yet followed by a request for the next.
    handed: AtomicUsize,
    /// The last time a response body made progress (a frame handed or the next one asked for).
    last_progress: AtomicU64,
    /// Requests served so far (started, at least).
    started: AtomicUsize,
    /// The connection speaks HTTP/2.
    pub h2: AtomicBool,
    /// Wakes the watchdog when a request starts: it may be asleep until an idle deadline that
    /// no longer applies, and must now watch for a client that stops reading.
    request_started: Notify,
}

impl Activity {
    /// A connection accepted now.
    pub fn new() -> Arc<Activity> {
        let now = now_ms();
        Arc::new(Activity {
            last_done: now.into(),
            last_progress: now.into(),
            ..Activity::default()
        })
    }

    /// A request reached the service.
    pub fn start(self: &Arc<Activity>) -> InFlight {
        self.in_flight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        self.request_started.notify_one();
        InFlight(self.clone())
    }

    /// Resolves once a request has started since the last call (at once if one did meanwhile).
    pub async fn request_started(&self) {
        self.request_started.notified().await;
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Relaxed)
    }

    /// Has any request arrived yet?
    pub fn served_any(&self) -> bool {
        self.started.load(Relaxed) > 0
    }

    /// When the connection last became idle (ms).
    pub fn idle_since(&self) -> u64 {
        self.last_done.load(Relaxed)
    }

    /// Since when a response has been waiting on the client (ms), if one is.
    pub fn stalled_since(&self) -> Option<u64> {
        (self.handed.load(Relaxed) > 0).then(|| self.last_progress.load(Relaxed))
    }

    fn progress(&self) {
        self.last_progress.store(now_ms(), Relaxed);
    }
}

/// One request in flight; dropping it marks the request done.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_done.store(now_ms(), Relaxed);
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request in flight until dropped and reports handed frames.
pub struct Tracked<B> {
    body: B,
    request: InFlight,
    handed: bool,
}

impl<B> Tracked<B> {
    /// `body` as the response of `request`.
    pub fn new(body: B, request: InFlight) -> Tracked<B> {
        Tracked {
            body,
            request,
            handed: false,
        }
    }

    fn taken(&mut self) {
        if self.handed {
            self.handed = false;
            self.request.0.handed.fetch_sub(1, Relaxed);
            self.request.0.progress();
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        // Asked for the next frame: the previous one is on its way.
        self.taken();
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            if !self.body.is_end_stream() {
                self.handed = true;
                self.request.0.handed.fetch_add(1, Relaxed);
                self.request.0.progress();
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if self.handed {
            self.request.0.handed.fetch_sub(1, Relaxed);
        }
    }
}
