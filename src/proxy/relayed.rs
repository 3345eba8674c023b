//! A backend's response body on its way to the client, holding the request's place in the
//! backend's in-flight count until the body ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::upstream::ResponseBody;
use crate::load::LoadGuard;

/// A relayed response body.
pub struct Relayed {
    body: ResponseBody,
    _load: LoadGuard,
}

impl Relayed {
    /// `body`, counted in flight by `load` while it lasts.
    pub fn new(body: ResponseBody, load: LoadGuard) -> Relayed {
        Relayed { body, _load: load }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
