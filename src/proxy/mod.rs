//! The proxy: pick a backend for each request on the ring and forward to it.
//!
//! Per request: extract the affinity key, load the snapshot once, take the key's owner on the
//! ring, rewrite the request for the upstream (hop-by-hop headers out, `X-Forwarded-*` in, the
//! chosen backend as the only possible destination) and stream it over a pooled connection
//! to that backend.

mod body;
mod error;
mod pool;
pub mod relay;
mod service;
mod target;
mod upgrade;
mod upstream;
mod walk;
mod worker;

pub use body::UpstreamBody;
pub use error::ProxyError;
pub use pool::{Pool, Pooled};
pub use upgrade::ConnectionHold;
pub use upstream::{connect, connect_tcp, describe, Timeouts, Upstream, UpstreamError};
pub use worker::Proxy;

mod relayed;

pub use relayed::Relayed;

/// Response bodies: either the backend's streamed body or one of ours. An enum rather than a
/// boxed trait object, so relaying a response allocates nothing for its body.
pub type ProxyBody = http_body_util::Either<Relayed, http_body_util::Full<bytes::Bytes>>;
