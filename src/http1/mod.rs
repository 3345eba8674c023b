//! HTTP/1.1 heads as bytes: the strict, zero-copy head parsers the relay path is built on
//! (RFC 9112), and the writers of the heads it forwards. A front proxy relays header bytes it
//! does not need to understand; what it must understand — the framing of the body — it
//! decides once, strictly, because that is where request smuggling lives.
//!
//! - `head.rs`: parse and validate a request head into ranges of the input buffer.
//! - `names.rs`: what a header name means to the relay, decided once per line while parsing.
//! - `response.rs`: parse and validate a response head the same way, and decide how its body
//!   ends.
//! - `rewrite.rs`: write the request head for the backend and the response head for the
//!   client, each as one buffer: lines as received, minus hop-by-hop, plus `X-Forwarded-*`
//!   (its tests in `rewrite_tests.rs`).
//! - `chunked.rs`: follow a chunked body to its end without copying it.

mod chunked;
mod head;
mod names;
mod response;
mod rewrite;

pub use chunked::{ChunkError, Chunked};
pub use head::{parse_request, parse_request_with, Framing, HeadError, RequestHead, MAX_HEADERS};
pub use names::Lines;
pub use response::{parse_response, parse_response_with, ResponseHead};
pub use rewrite::{request_head, response_head};
