//! Why the proxy could not forward a request: one vocabulary from the failed exchange to the
//! status code. Each error knows its own status, whether it was a backend's failure, whether
//! the request was sent, and its metric label, so no other layer classifies it again.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{Either, Full};

use super::upstream::UpstreamError;
use super::ProxyBody;

/// A request the proxy answered itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `on_missing = "reject"` and no source gave a key; names the sources tried.
    #[error("no affinity key: tried {0}")]
    MissingKey(String),
    /// The ring is empty.
    #[error("no backends in the ring")]
    NoBackends,
    /// Every candidate was down or draining.
    #[error("no usable backend: every candidate is down or draining ({skipped} skipped)")]
    AllDown {
        /// Candidates skipped as unusable.
        skipped: usize,
    },
    /// The request target is in no form a reverse proxy accepts.
    #[error("invalid request target")]
    BadTarget,
    /// `CONNECT`: a reverse proxy does not open tunnels.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client's body could not be read.
    #[error("cannot read the request body: {0}")]
    ClientBody(String),
    /// No connection to the backend: the request was never sent.
    #[error("cannot connect to backend {backend}: {reason}")]
    Connect {
        /// Backend id.
        backend: String,
        /// Why, with its causes.
        reason: String,
    },
    /// The TCP connect timed out: the request was never sent.
    #[error("connecting to backend {backend} timed out")]
    ConnectTimeout {
        /// Backend id.
        backend: String,
    },
    /// No response headers within the request timeout.
    #[error("backend {backend} timed out")]
    Timeout {
        /// Backend id.
        backend: String,
    },
    /// The exchange failed after the request went out.
    #[error("backend {backend} failed: {reason}")]
    Upstream {
        /// Backend id.
        backend: String,
        /// Why, with its causes.
        reason: String,
    },
    /// A reused keep-alive connection closed before any answer: the backend timed it out as
    /// the request went out. Says nothing about the backend's health; idempotent requests are
    /// resent once.
    #[error("backend {backend} closed a reused connection before answering: {reason}")]
    Stale {
        /// Backend id.
        backend: String,
        /// Why, with its causes.
        reason: String,
    },
}

impl ProxyError {
    /// Classifies a failed exchange with `backend`.
    pub fn upstream(backend: &str, e: &UpstreamError) -> ProxyError {
        let backend = backend.to_string();
        let reason = super::upstream::describe(e);
        match e {
            UpstreamError::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                ProxyError::ConnectTimeout { backend }
            }
            UpstreamError::Connect(_) => ProxyError::Connect { backend, reason },
            UpstreamError::ConnectTimeout => ProxyError::ConnectTimeout { backend },
            UpstreamError::Exchange(_) => ProxyError::Upstream { backend, reason },
            UpstreamError::Stale(_) => ProxyError::Stale { backend, reason },
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingKey(_) | ProxyError::ClientBody(_) | ProxyError::BadTarget => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::NoBackends | ProxyError::AllDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } | ProxyError::Stale { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::ConnectTimeout { .. } | ProxyError::Timeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
        }
    }

    /// The backend this failure happened at, if it happened at one.
    pub fn backend(&self) -> Option<&str> {
        match self {
            ProxyError::Connect { backend, .. }
            | ProxyError::ConnectTimeout { backend }
            | ProxyError::Timeout { backend }
            | ProxyError::Upstream { backend, .. }
            | ProxyError::Stale { backend, .. } => Some(backend),
            _ => None,
        }
    }

    /// Did the request certainly not reach the backend? Then any request may go to the next
    /// candidate, and the failure counts against the backend's health.
    pub fn unsent(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }
        )
    }

    /// The `kind` label of `ringproxy_upstream_errors_total{backend, kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect { .. } => "Connect",
            ProxyError::ConnectTimeout { .. } | ProxyError::Timeout { .. } => "Timeout",
            ProxyError::Upstream { .. } | ProxyError::Stale { .. } => "Upstream",
            _ => "None",
        }
    }

    /// The `reason` label of `ringproxy_rejected_total{reason}`: why the client got this
    /// answer instead of a backend's.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::MissingKey(_) => "MissingKey",
            ProxyError::NoBackends => "NoBackends",
            ProxyError::AllDown { .. } => "AllDown",
            ProxyError::ClientBody(_) => "BadRequestBody",
            ProxyError::BadTarget => "BadTarget",
            ProxyError::MethodNotAllowed => "MethodNotAllowed",
            _ => "UpstreamFailed",
        }
    }

    /// The body of the answer the client gets: a short fixed text per kind of failure; the
    /// details (backend, causes) stay in the log.
    pub fn text(&self) -> Bytes {
        match self {
            // Names the configured sources: the client needs them to send a key.
            ProxyError::MissingKey(_) => format!("{self}\n").into(),
            ProxyError::ClientBody(_) => {
                Bytes::from_static(b"Bad Request: the request body could not be read\n")
            }
            ProxyError::BadTarget => Bytes::from_static(b"Bad Request: invalid request target\n"),
            ProxyError::MethodNotAllowed => Bytes::from_static(b"Method Not Allowed\n"),
            ProxyError::NoBackends => Bytes::from_static(b"Service Unavailable: no backends\n"),
            ProxyError::AllDown { .. } => {
                Bytes::from_static(b"Service Unavailable: no usable backend\n")
            }
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } | ProxyError::Stale { .. } => {
                Bytes::from_static(b"Bad Gateway: the backend failed\n")
            }
            ProxyError::ConnectTimeout { .. } | ProxyError::Timeout { .. } => {
                Bytes::from_static(b"Gateway Timeout: the backend did not answer in time\n")
            }
        }
    }

    /// The header fields of the answer the client gets, besides its framing.
    pub fn headers(&self) -> impl Iterator<Item = (header::HeaderName, &'static str)> {
        let allow = (self.status() == StatusCode::METHOD_NOT_ALLOWED).then_some((
            header::ALLOW,
            "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE",
        ));
        std::iter::once((header::CONTENT_TYPE, "text/plain; charset=utf-8")).chain(allow)
    }

    /// The answer the client gets.
    pub fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let text = self.text();
        let mut res = Response::new(Either::Right(Full::new(text)));
        *res.status_mut() = status;
        for (name, value) in self.headers() {
            res.headers_mut()
                .insert(name, header::HeaderValue::from_static(value));
        }
        res
    }
}
