//! `ringproxy-node`: the consistent-hash ring over the JSON-lines node protocol.
//!
//! Reads one message per line on stdin and answers on stdout until EOF; see [`ringproxy::node`].
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn`). Exits 0 at EOF, 1 if stdin or
//! stdout fails.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    match ringproxy::node::run_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringproxy-node: {e}");
            ExitCode::FAILURE
        }
    }
}
