//! The pooled upstream client and how its failures are classified.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use super::body::UpstreamBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The HTTP client that talks to backends, one pool per backend address.
pub type Upstream = Client<HttpConnector, UpstreamBody>;

pub fn client(connect_timeout: Duration) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        // Without a timer the pool silently ignores pool_idle_timeout.
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .timer(TokioTimer::new())
        .build(connector)
}

/// What went wrong talking to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection: the request was never sent.
    Connect,
    /// The connection attempt timed out: the request was never sent.
    ConnectTimeout,
    /// The exchange failed after the connection was made.
    Protocol,
}

pub fn classify(e: &hyper_util::client::legacy::Error) -> Failure {
    if !e.is_connect() {
        return Failure::Protocol;
    }
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return Failure::ConnectTimeout;
            }
        }
        source = s.source();
    }
    Failure::Connect
}

/// The error and its causes on one line, for logs and 502 bodies.
pub fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
