//! `ringproxy-node`: the consistent-hash ring over the JSON-lines node protocol.
//!
//! Reads one message per line on stdin and answers on stdout until EOF; see [`ringproxy::node`].
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn`). Exits 0 at EOF, 1 if stdin or
//! stdout fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    ringproxy::logging::init("warn", false);
    match ringproxy::node::run_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringproxy-node: {e}");
            ExitCode::FAILURE
        }
    }
}
