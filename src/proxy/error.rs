//! Why the proxy could not forward a request, and the one place those reasons become statuses.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{Either, Full};

use super::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no affinity key: tried {0}")]
    MissingKey(String),
    #[error("no backends in the ring")]
    NoBackends,
    #[error("no usable backend: every candidate is down or draining ({skipped} skipped)")]
    AllDown { skipped: usize },
    #[error("cannot read the request body: {0}")]
    ClientBody(String),
    #[error("cannot connect to backend {backend}: {reason}")]
    Connect { backend: String, reason: String },
    #[error("backend {backend} timed out")]
    Timeout { backend: String },
    #[error("backend {backend} failed: {reason}")]
    Upstream { backend: String, reason: String },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingKey(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoBackends | ProxyError::AllDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short text response; the details stay in the log.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let text = match &self {
            ProxyError::MissingKey(_) | ProxyError::ClientBody(_) => format!("{self}\n"),
            _ => format!("{}: {self}\n", status.canonical_reason().unwrap_or("error")),
        };
        let mut res = Response::new(Either::Right(Full::new(Bytes::from(text))));
        *res.status_mut() = status;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}
