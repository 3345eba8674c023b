//! The fuzz harnesses: one function per target, taking the fuzzer's bytes, each asserting what
//! must hold for *any* input. The `fuzz_targets/*.rs` binaries are one-line wrappers, so the same
//! functions also replay the committed corpus in a plain `cargo test` (stable, no libFuzzer).
//!
//! # Layout
//!
//! - [`config`]: `Config::parse` on arbitrary text; a config it accepts must form a ring and
//!   start a `Cluster`.
//! - [`affinity`]: an HTTP/1 request head parsed with `httparse` (as hyper does), turned into
//!   `http::request::Parts`, keyed by `AffinityConfig::extract` under several source lists; each
//!   source is checked against an independent reading of the request.
//! - [`node`]: `ringproxy::node::run` on arbitrary bytes; every reply line is a JSON message and
//!   there is at most one per input line.
//! - [`admin`]: a few HTTP requests (method, path, body) served by the real `Admin::handle` over
//!   an in-memory pipe (hyper's HTTP/1 server, no socket), against one fresh cluster per input.
//!   No 500, every JSON response parses, every refusal names its error, the ring stays
//!   consistent with the backend list.

mod admin;
mod affinity;
mod config;
mod node;

pub use admin::admin;
pub use affinity::affinity;
pub use config::config;
pub use node::node;

#[cfg(test)]
mod replay;
